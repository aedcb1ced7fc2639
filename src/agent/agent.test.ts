// The agent's core against an in-memory datastore and stand-in reconcilers: what it publishes, what it
// acknowledges, when it is ready, and when it registers again. Real etcd and kernels: test/agent-*.test.ts.

import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClusterConfig, ClusterSnapshot, Datastore, LeavingReason, NodeLease, NodeRecord, NodeRegistrationRequest, NodeView, WatchListener } from "../datastore/datastore.ts";
import { NodeAgent } from "./agent.ts";
import type { AgentInputs } from "./inputs.ts";
import { withdrawnKey } from "./inputs.ts";
import { AgentMetrics } from "./metrics.ts";
import { NotReadyError, type InputHub, type Reconciler } from "./reconciler.ts";

const CONFIG: ClusterConfig = { clusterCidr: "10.244.0.0/16", subnetLength: 24, backend: "host-gw", nodeLeaseTtlSeconds: 20 };

/** Nodes and acks in memory; every write notifies the watch, as etcd's would. */
class MemoryDatastore implements Datastore {
  config: ClusterConfig | undefined;
  nodes = new Map<string, NodeView>();
  registrations: NodeRegistrationRequest[] = [];
  acks: string[] = [];
  private revision = 1;
  private listener: WatchListener | undefined;

  async ensureClusterConfig(defaults: ClusterConfig): Promise<ClusterConfig> {
    this.config ??= defaults;
    return this.config;
  }
  async snapshot(): Promise<ClusterSnapshot> {
    return { revision: this.revision, config: this.config, nodes: [...this.nodes.values()].sort((a, b) => a.name.localeCompare(b.name)) };
  }
  async registerNode(request: NodeRegistrationRequest): Promise<NodeLease> {
    this.registrations.push(request);
    const previous = this.nodes.get(request.name);
    const record: NodeRecord = { name: request.name, nodeIp: request.nodeIp, podSubnet: previous?.podSubnet ?? "10.244.1.0/24", backendData: request.backendData ?? {}, phase: "active" };
    this.put({ ...record, alive: true, revision: 0, acks: [] });
    return { node: record, onLost: () => undefined, release: () => undefined };
  }
  async markNodeLeaving(name: string, reason: LeavingReason): Promise<boolean> {
    const node = this.nodes.get(name);
    if (!node) return false;
    this.put({ ...node, phase: "leaving", leavingReason: reason });
    return true;
  }
  async ackNodeLeaving(leaving: string, acker: string): Promise<void> {
    this.acks.push(`${acker} acks ${leaving}`);
    const node = this.nodes.get(leaving);
    if (node) node.acks = [...node.acks, acker];
    this.changed();
  }
  async finalizeNodeRemoval(name: string): Promise<boolean> {
    const done = this.nodes.delete(name);
    this.changed();
    return done;
  }
  async watch(listener: WatchListener) {
    this.listener = listener;
    return { close: async () => undefined };
  }
  async close(): Promise<void> {}

  put(node: NodeView): void {
    this.nodes.set(node.name, { ...node, revision: ++this.revision });
    this.listener?.onChange();
  }
  private changed(): void {
    this.revision++;
    this.listener?.onChange();
  }
}

/** Stands in for the routes reconciler: reports withdrawn what the test allows, and the backend's facts. */
class StandInRoutes implements Reconciler<AgentInputs, "config" | "self" | "snapshot"> {
  readonly name = "routes";
  readonly inputs = ["config", "self", "snapshot"] as const;
  readonly gatesReadiness = true;
  readonly backoff = { initialMs: 10, maxMs: 20 };
  canWithdraw = true;
  failWith: string | undefined;
  mtu = 1450;
  backendData: Record<string, string> = {};

  constructor(private readonly hub: InputHub<AgentInputs>) {}

  sync({ snapshot }: { readonly snapshot: ClusterSnapshot }): void {
    this.hub.set("backendData", this.backendData, (a, b) => JSON.stringify(a) === JSON.stringify(b));
    if (this.canWithdraw) this.hub.set("withdrawn", new Set(snapshot.nodes.filter((n) => n.phase !== "active").map(withdrawnKey)));
    if (this.failWith) throw new NotReadyError(this.failWith);
    this.hub.set("podMtu", this.mtu, (a, b) => a === b);
  }
}

async function until(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("NodeAgent core", () => {
  let dir: string;
  let store: MemoryDatastore;
  let routes: StandInRoutes;
  let agent: NodeAgent;
  let stop: AbortController;
  let running: Promise<unknown>;
  const logs: string[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "pnt-agent-core-"));
    store = new MemoryDatastore();
    stop = new AbortController();
    logs.length = 0;
    agent = new NodeAgent(
      {
        name: "n1",
        nodeIp: "192.168.1.11",
        cniConfDir: join(dir, "cni"),
        ipamDataDir: join(dir, "ipam"),
        readyFile: join(dir, "ready"),
        cniVersion: "1.1.0",
        bridge: "cni0",
        clusterDefaults: CONFIG,
        datastoreRefreshMs: 60_000,
        log: (m) => logs.push(m),
      },
      { datastore: store, metrics: new AgentMetrics(), reconcilers: (hub) => [(routes = new StandInRoutes(hub))] },
    );
  });
  afterEach(async () => {
    stop.abort();
    await running;
    rmSync(dir, { recursive: true, force: true });
  });

  const conflistMtu = () => (JSON.parse(readFileSync(join(dir, "cni", "10-podnet.conflist"), "utf8")) as { plugins: { mtu: number }[] }).plugins[0]!.mtu;

  it("publishes config, self and snapshot; is ready with the reported MTU in the conflist", async () => {
    running = agent.run(stop.signal);
    await until(() => agent.health().ready, "ready");
    assert.equal(conflistMtu(), 1450);
    assert.ok(existsSync(join(dir, "ready")));
    assert.equal(agent.hub.get("self")?.podSubnet, "10.244.1.0/24");
    assert.deepEqual(agent.hub.get("config"), CONFIG);
    routes.mtu = 1400;
    store.put({ ...store.nodes.get("n1")! }); // any change wakes the reconciler
    await until(() => conflistMtu() === 1400, "the new MTU in the conflist");
  });

  it("a NotReady reconciler removes the ready file and says why; recovery restores it", async () => {
    running = agent.run(stop.signal);
    await until(() => agent.health().ready, "ready");
    routes.failWith = "backend \"bogus\": unknown backend";
    store.put({ ...store.nodes.get("n1")! });
    await until(() => !agent.health().ready, "NotReady");
    assert.equal(existsSync(join(dir, "ready")), false);
    assert.ok(existsSync(join(dir, "cni", "10-podnet.conflist")), "the conflist stays for running pods");
    assert.deepEqual(agent.health().notReadyReasons, ["routes: backend \"bogus\": unknown backend"]);
    routes.failWith = undefined;
    await until(() => agent.health().ready, "ready again");
    assert.ok(existsSync(join(dir, "ready")));
  });

  it("acknowledges a leaving node only once the routes reconciler reports it withdrawn, then finalizes", async () => {
    routes.canWithdraw = false;
    store.put({ name: "n2", nodeIp: "192.168.1.12", podSubnet: "10.244.2.0/24", backendData: {}, phase: "active", alive: true, revision: 0, acks: [] });
    running = agent.run(stop.signal);
    await until(() => agent.health().ready, "ready");
    await store.markNodeLeaving("n2", "removed");
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(store.acks, [], "no ack before the withdrawal is reported");
    assert.ok(store.nodes.has("n2"));
    routes.canWithdraw = true;
    store.put({ ...store.nodes.get("n1")! });
    await until(() => !store.nodes.has("n2"), "n2 finalized");
    assert.deepEqual(store.acks, ["n1 acks n2"]);
  });

  it("acknowledges and finalizes even while the node is NotReady", async () => {
    routes.failWith = "backend \"bogus\": unknown backend";
    store.put({ name: "n2", nodeIp: "192.168.1.12", podSubnet: "10.244.2.0/24", backendData: {}, phase: "leaving", leavingReason: "removed", alive: true, revision: 0, acks: [] });
    running = agent.run(stop.signal);
    await until(() => !store.nodes.has("n2"), "n2 finalized");
    assert.deepEqual(store.acks, ["n1 acks n2"]);
    assert.equal(agent.health().ready, false);
  });

  it("registers again when the backend's node data changes", async () => {
    running = agent.run(stop.signal);
    await until(() => agent.health().ready, "ready");
    assert.equal(store.registrations.length, 1);
    routes.backendData = { vtepMac: "02:00:00:00:00:01" };
    store.put({ ...store.nodes.get("n1")! });
    await until(() => store.registrations.length === 2, "a second registration");
    assert.deepEqual(store.registrations[1]?.backendData, { vtepMac: "02:00:00:00:00:01" });
    assert.deepEqual(store.nodes.get("n1")?.backendData, { vtepMac: "02:00:00:00:00:01" });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(store.registrations.length, 2, "unchanged data does not register again");
  });
});
