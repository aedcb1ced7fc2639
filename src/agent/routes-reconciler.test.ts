// The routes reconciler's decisions (which backend, when to switch, what to report withdrawn), over an
// in-memory routing table. The real kernel side is covered by test/agent-*.test.ts.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ClusterConfig, ClusterSnapshot, NodeRecord, NodeView } from "../datastore/datastore.ts";
import { BackendConfigError, type Backend, type BackendFactory } from "./backend.ts";
import { hostGwFactory } from "./host-gw-backend.ts";
import type { AgentInputs } from "./inputs.ts";
import { AgentMetrics } from "./metrics.ts";
import { InputHub, NotReadyError } from "./reconciler.ts";
import { PODNET_ROUTE_PROTOCOL, type RouteChange } from "./route-plan.ts";
import type { KernelRoute, RouteTable } from "./route-table.ts";
import { RoutesReconciler } from "./routes-reconciler.ts";

class MemoryRouteTable implements RouteTable {
  // The underlay's connected route: host-gw peers on 192.168.1.0/24 are on-link.
  routes: KernelRoute[] = [{ dst: "192.168.1.0/24", protocol: 2, scope: 253 }];
  mtu = 1450;
  failDelete = new Set<string>();

  listMainIpv4(): KernelRoute[] {
    return this.routes.map((r) => ({ ...r }));
  }

  apply(changes: readonly RouteChange[]): { error?: string }[] {
    return changes.map((change) => {
      const { dst, gw } = change.route;
      if (change.op === "delete") {
        if (this.failDelete.has(dst)) return { error: "EBUSY" };
        this.routes = this.routes.filter((r) => !(r.dst === dst && r.gw === gw && r.protocol === PODNET_ROUTE_PROTOCOL));
      } else {
        this.routes = this.routes.filter((r) => !(r.dst === dst));
        this.routes.push({ dst, gw, protocol: PODNET_ROUTE_PROTOCOL });
      }
      return {};
    });
  }

  interfaceWithAddress(address: string): { name: string; mtu: number } | undefined {
    return address === "192.168.1.11" ? { name: "eth0", mtu: this.mtu } : undefined;
  }

  close(): void {}

  ours(): string[] {
    return this.routes.filter((r) => r.protocol === PODNET_ROUTE_PROTOCOL).map((r) => `${r.dst} via ${r.gw}`).sort();
  }
}

function node(name: string, index: number, extra: Partial<NodeView> = {}): NodeView {
  return { name, nodeIp: `192.168.1.${10 + index}`, podSubnet: `10.244.${index}.0/24`, backendData: {}, phase: "active", alive: true, revision: 100 + index, acks: [], ...extra };
}

const self: NodeRecord = { name: "n1", nodeIp: "192.168.1.11", podSubnet: "10.244.1.0/24", backendData: {}, phase: "active" };

function config(backend: string, backendOptions?: ClusterConfig["backendOptions"]): ClusterConfig {
  return { clusterCidr: "10.244.0.0/16", subnetLength: 24, backend, nodeLeaseTtlSeconds: 20, ...(backendOptions ? { backendOptions } : {}) };
}

function snapshot(nodes: NodeView[]): ClusterSnapshot {
  return { revision: 1, config: undefined, nodes };
}

/** A second backend kind for switching: records what happened to it. */
function fakeFactory(events: string[]): BackendFactory {
  return {
    name: "fake",
    build(options) {
      if ("bad" in options) throw new BackendConfigError("backendOptions.fake: bad");
      events.push("build");
      const backend: Backend = {
        name: "fake",
        reconcile: (nodes) => {
          events.push("reconcile");
          return { routesProgrammed: nodes.length - 1, changes: { add: 0, replace: 0, delete: 0 }, errors: [], conflicts: [], notWithdrawn: [] };
        },
        mtu: () => 1400,
        teardown: () => {
          events.push("teardown");
        },
        nodeData: () => ({ vtep: "02:00:00:00:00:01" }),
      };
      return backend;
    },
    withdraw: () => {
      events.push("withdraw");
      return 0;
    },
  };
}

function setup(opts: { mtuOverride?: number } = {}) {
  const table = new MemoryRouteTable();
  const hub = new InputHub<AgentInputs>();
  const events: string[] = [];
  const logs: string[] = [];
  const reconciler = new RoutesReconciler(
    { factories: [hostGwFactory, fakeFactory(events)], env: { nodeName: "n1", nodeIp: "192.168.1.11", routeTable: table }, hub, metrics: new AgentMetrics(), log: (m) => logs.push(m), ...opts },
    500,
  );
  const sync = (cfg: ClusterConfig, nodes: NodeView[]) => reconciler.sync({ config: cfg, self, snapshot: snapshot(nodes) });
  return { table, hub, events, logs, reconciler, sync };
}

describe("RoutesReconciler", () => {
  it("host-gw: routes to active peers, the underlay MTU, and leaving nodes reported withdrawn", () => {
    const { table, hub, sync, reconciler } = setup();
    sync(config("host-gw"), [node("n1", 1), node("n2", 2), node("n3", 3, { phase: "leaving", leavingReason: "removed" })]);
    assert.deepEqual(table.ours(), ["10.244.2.0/24 via 192.168.1.12"]);
    assert.equal(hub.get("podMtu"), 1450);
    assert.deepEqual([...hub.get("withdrawn")!], ["n3@103"]);
    assert.deepEqual(hub.get("backendData"), {});
    assert.equal(reconciler.describe().running, "host-gw");
  });

  it("host-gw: a peer whose node IP is not on-link gets no route, and the condition names it and suggests vxlan", () => {
    const { table, sync, reconciler, logs } = setup();
    const far = node("n9", 9, { nodeIp: "192.168.2.19" });
    // A route to it from before its IP moved to another subnet: it must not stay half-working.
    table.apply([{ op: "add", route: { dst: "10.244.9.0/24", gw: "192.168.1.19" } }]);
    sync(config("host-gw"), [node("n1", 1), node("n2", 2), far]);
    assert.deepEqual(table.ours(), ["10.244.2.0/24 via 192.168.1.12"]);
    const condition = reconciler.describe().condition;
    assert.equal(condition?.reason, "PeersNotOnLink");
    assert.deepEqual(condition?.peers, [{ name: "n9", nodeIp: "192.168.2.19" }]);
    assert.match(condition?.message ?? "", /n9 \(192\.168\.2\.19\).*vxlan/);
    assert.ok(logs.some((l) => l.startsWith("PeersNotOnLink: ")), logs.join("\n"));
    // The peer comes back onto the shared subnet: the condition clears.
    sync(config("host-gw"), [node("n1", 1), node("n2", 2), node("n9", 9)]);
    assert.equal(reconciler.describe().condition, null);
    assert.deepEqual(table.ours(), ["10.244.2.0/24 via 192.168.1.12", "10.244.9.0/24 via 192.168.1.19"]);
  });

  it("--mtu overrides the backend's MTU", () => {
    const { hub, sync } = setup({ mtuOverride: 1300 });
    sync(config("host-gw"), [node("n1", 1)]);
    assert.equal(hub.get("podMtu"), 1300);
  });

  it("an unknown backend is NotReady with the reason, and still withdraws an earlier run's routes to leaving nodes", () => {
    const { table, hub, sync, reconciler, events, logs } = setup();
    // Left by an earlier run of the agent: routes to n2 (active) and n3 (now leaving).
    table.apply([
      { op: "add", route: { dst: "10.244.2.0/24", gw: "192.168.1.12" } },
      { op: "add", route: { dst: "10.244.3.0/24", gw: "192.168.1.13" } },
    ]);
    const nodes = [node("n1", 1), node("n2", 2), node("n3", 3, { phase: "leaving", leavingReason: "removed" })];
    assert.throws(() => sync(config("wireguard"), nodes), (err: unknown) => err instanceof NotReadyError && /backend "wireguard": unknown backend \(this agent knows: host-gw, fake\)/.test(err.message));
    assert.deepEqual(table.ours(), ["10.244.2.0/24 via 192.168.1.12"], "the leaving node's route is gone, the active peer's stays");
    assert.deepEqual([...hub.get("withdrawn")!], ["n3@103"]);
    assert.equal(hub.get("podMtu"), undefined, "no MTU without a backend");
    assert.ok(events.includes("withdraw"), "every known kind withdraws");
    assert.ok(logs.some((l) => /removed 1 host-gw entry an earlier run left for leaving nodes/.test(l)), logs.join("\n"));
    assert.match(reconciler.describe().buildError ?? "", /unknown backend/);
    assert.equal(reconciler.describe().running, null);
  });

  it("a leaving node whose routes could not be removed is not reported withdrawn", () => {
    const { table, hub, sync } = setup();
    sync(config("host-gw"), [node("n1", 1), node("n2", 2), node("n3", 3)]);
    table.failDelete.add("10.244.3.0/24");
    assert.throws(() => sync(config("host-gw"), [node("n1", 1), node("n2", 2, { phase: "leaving" }), node("n3", 3, { phase: "leaving" })]), /route errors: delete 10\.244\.3\.0\/24/);
    assert.deepEqual([...hub.get("withdrawn")!], ["n2@102"]);
  });

  it("host-gw rejects options, naming them; the error is NotReady", () => {
    const { sync } = setup();
    assert.throws(
      () => sync(config("host-gw", { "host-gw": { mtu: 9000, vni: 1 } }), [node("n1", 1)]),
      (err: unknown) => err instanceof NotReadyError && err.message === `backend "host-gw": backendOptions.host-gw: unknown options "mtu", "vni" (it takes none)`,
    );
    assert.doesNotThrow(() => sync(config("host-gw", { "host-gw": {} }), [node("n1", 1)]));
  });

  it("a node IP on no interface leaves the MTU unknown: NotReady", () => {
    const table = new MemoryRouteTable();
    const hub = new InputHub<AgentInputs>();
    const r = new RoutesReconciler({ factories: [hostGwFactory], env: { nodeName: "n1", nodeIp: "192.168.9.9", routeTable: table }, hub, metrics: new AgentMetrics(), log: () => undefined }, 500);
    assert.throws(() => r.sync({ config: config("host-gw"), self, snapshot: snapshot([node("n1", 1)]) }), (err: unknown) => err instanceof NotReadyError && /no interface holds the node IP 192\.168\.9\.9/.test(err.message));
  });

  it("switches backend: builds the new one, tears the old one down, publishes its MTU and node data; and back", () => {
    const { table, hub, sync, events, reconciler } = setup();
    const nodes = [node("n1", 1), node("n2", 2)];
    sync(config("host-gw"), nodes);
    assert.deepEqual(table.ours(), ["10.244.2.0/24 via 192.168.1.12"]);
    sync(config("fake"), nodes);
    assert.deepEqual(table.ours(), [], "host-gw's routes are removed");
    assert.deepEqual(events, ["build", "reconcile"]);
    assert.equal(hub.get("podMtu"), 1400);
    assert.deepEqual(hub.get("backendData"), { vtep: "02:00:00:00:00:01" });
    assert.equal(reconciler.describe().running, "fake");
    sync(config("host-gw"), nodes);
    assert.deepEqual(events, ["build", "reconcile", "teardown"]);
    assert.deepEqual(table.ours(), ["10.244.2.0/24 via 192.168.1.12"]);
    assert.deepEqual(hub.get("backendData"), {});
  });

  it("a running backend keeps reconciling when the config switches to one that cannot be built", () => {
    const { table, hub, sync, reconciler } = setup();
    sync(config("host-gw"), [node("n1", 1), node("n2", 2), node("n3", 3)]);
    const nodes = [node("n1", 1), node("n2", 2), node("n3", 3, { phase: "leaving" })];
    assert.throws(() => sync(config("fake", { fake: { bad: true } }), nodes), (err: unknown) => err instanceof NotReadyError && /backendOptions\.fake: bad/.test(err.message));
    assert.deepEqual(table.ours(), ["10.244.2.0/24 via 192.168.1.12"], "host-gw still withdrew the leaving node");
    assert.deepEqual([...hub.get("withdrawn")!], ["n3@103"]);
    assert.equal(reconciler.describe().running, "host-gw");
    assert.equal(reconciler.describe().wanted, "fake");
    // Fixed config: the switch goes through.
    sync(config("fake", { fake: {} }), nodes);
    assert.equal(reconciler.describe().running, "fake");
    assert.equal(reconciler.describe().buildError, null);
  });
});
