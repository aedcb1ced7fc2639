// The services reconciler against a recording kernel (pure logic: which transactions, when a full
// sync, repair, conntrack and announcing). The real kernel is in test/services-agent.test.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClusterConfig, ClusterSnapshot, NodeRecord } from "../datastore/datastore.ts";
import { withDefaults } from "../k8s/defaults.ts";
import type { EndpointSlice, Service } from "../k8s/types.ts";
import type { NftTransaction } from "../kernel/nft/model.ts";
import type { UdpFlow } from "../kernel/conntrack.ts";
import type { NftTableState } from "../kernel/nft/readback.ts";
import type { KindInput } from "./object-feed.ts";
import { NftNotEncodable } from "../kernel/nft/netlink-encode.ts";
import { NftChildFailed } from "../kernel/nft/netlink-child.ts";
import { compactObject } from "./object-projection.ts";
import { fullSyncDigest, inKeyOrder, planFullSyncOf, type FullSyncObjects } from "./services-child.ts";
import type { StartupSync, StartupSyncOutcome } from "./services-startup.ts";
import { InputHub } from "./reconciler.ts";
import type { AgentInputs } from "./inputs.ts";
import type { ProxyNodeFacts } from "../services/proxy-compiler.ts";
import { ServicesReconciler, type ChildFullSync, type ServicesKernel } from "./services-reconciler.ts";

const config: ClusterConfig = { clusterCidr: "10.244.0.0/16", subnetLength: 24, backend: "host-gw", nodeLeaseTtlSeconds: 20 };
const self: NodeRecord = { name: "n1", nodeIp: "192.168.1.11", podSubnet: "10.244.1.0/24", backendData: {}, phase: "active" };
const snapshot: ClusterSnapshot = { revision: 1, config, nodes: [{ ...self, alive: true, revision: 1, acks: [] }] };

const svc = (name: string, ip: string, spec: Partial<Service["spec"]> = {}, status?: Service["status"]): Service =>
  withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default" }, spec: { clusterIP: ip, selector: { app: name }, ports: [{ port: 53, targetPort: 53, protocol: "UDP" }], ...spec }, ...(status ? { status } : {}) });
const slice = (name: string, ips: string[]): EndpointSlice => ({
  apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
  metadata: { name: `${name}-x`, namespace: "default", labels: { "kubernetes.io/service-name": name } },
  addressType: "IPv4", ports: [{ name: "", protocol: "UDP", port: 53 }],
  endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: "n1", conditions: { ready: true } })),
});

class RecordingKernel implements ServicesKernel {
  scripts: string[] = [];
  udp: unknown[] = [];
  announced: string[] = [];
  fail = false;
  table: NftTableState | undefined;
  reads = 0;
  async apply(script: string) {
    if (this.fail) throw new Error("nft refused");
    this.scripts.push(script);
  }
  readTable = async () => {
    this.reads++;
    return this.table;
  };
  deleteUdpFlows = async (filter: unknown) => {
    this.udp.push(filter);
    return 1;
  };
  /** The UDP conntrack entries the kernel holds. */
  flows: UdpFlow[] = [];
  listUdpFlows = async () => this.flows;
  underlaySegment(): string | undefined {
    return undefined;
  }

  announce(ips: readonly string[]) {
    const added = ips.filter((ip) => !this.announced.includes(ip));
    const removed = this.announced.filter((ip) => !ips.includes(ip));
    this.announced = [...ips];
    return { added, removed };
  }
}

function feed() {
  const services = new Map<string, Service>();
  const slices = new Map<string, EndpointSlice>();
  let revision = 1;
  return {
    services, slices,
    inputs: () => ({
      config, self, snapshot,
      Service: { kind: "Service", revision, objects: services } as KindInput<"Service">,
      EndpointSlice: { kind: "EndpointSlice", revision: revision++, objects: slices } as KindInput<"EndpointSlice">,
    }),
  };
}

describe("services reconciler", () => {
  it("starts with a full sync, then sends only the changed service, and clears the removed endpoint's UDP flows", async () => {
    const kernel = new RecordingKernel();
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    f.services.set("default/dns", svc("dns", "10.96.0.10"));
    f.services.set("default/web", svc("web", "10.96.0.20"));
    f.slices.set("default/dns-x", slice("dns", ["10.244.1.5", "10.244.1.6"]));
    await r.sync(f.inputs());
    assert.match(kernel.scripts[0]!, /^add table ip podnet-svc/m);
    assert.match(kernel.scripts[0]!, /delete table ip podnet-svc/);
    f.slices.set("default/dns-x", slice("dns", ["10.244.1.5"]));
    await r.sync(f.inputs());
    assert.equal(kernel.scripts.length, 2);
    assert.doesNotMatch(kernel.scripts[1]!, /delete table|10\.96\.0\.20/);
    // The endpoint that stays keeps its map element; the gone one's element goes, and the draw shrinks to one.
    assert.match(kernel.scripts[1]!, /^delete element ip podnet-svc endpoints-udp-\d+ \{ \d+ \}$/m);
    assert.match(kernel.scripts[1]!, /dnat ip to numgen random mod 1 (offset \d+ )?map @endpoints-udp-\d+/);
    assert.deepEqual(kernel.udp, [{ originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.1.6" }]);
  });
  it("after a full sync, clears the UDP entries whose endpoint is gone, left from before the start", async () => {
    const kernel = new RecordingKernel();
    kernel.flows = [
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.1.5" }, // a live endpoint: kept
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.1.9" }, // deleted while the agent was down
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.1.9" }, // another client's entry to it: one filter
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.96.0.10" }, // sent while there were no endpoints: not NATed
      { originalDst: "10.96.0.99", originalPort: 53, replySrc: "10.244.1.9" }, // no such frontend: not ours
      { originalDst: "10.96.0.10", originalPort: 5353, replySrc: "10.244.1.9" }, // a port the service does not have
    ];
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    f.services.set("default/dns", svc("dns", "10.96.0.10"));
    f.slices.set("default/dns-x", slice("dns", ["10.244.1.5", "10.244.1.6"]));
    await r.sync(f.inputs());
    assert.deepEqual(kernel.udp, [
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.1.9" },
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.96.0.10" },
    ]);
    // Incremental syncs do not list the kernel's entries again.
    kernel.udp = [];
    f.slices.set("default/dns-x", slice("dns", ["10.244.1.5", "10.244.1.6", "10.244.1.7"]));
    await r.sync(f.inputs());
    assert.deepEqual(kernel.udp, []);
  });
  it("goes back to a full sync after a failed apply", async () => {
    const kernel = new RecordingKernel();
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    f.services.set("default/dns", svc("dns", "10.96.0.10"));
    await r.sync(f.inputs());
    kernel.fail = true;
    f.slices.set("default/dns-x", slice("dns", ["10.244.1.5"]));
    await assert.rejects(r.sync(f.inputs()), /nft refused/);
    kernel.fail = false;
    await r.sync(f.inputs());
    assert.match(kernel.scripts.at(-1)!, /delete table ip podnet-svc/);
  });
  it("reads the table back when nothing changed, and repairs what differs", async () => {
    const kernel = new RecordingKernel();
    const r = new ServicesReconciler("n1", 1, () => undefined, kernel);
    const f = feed();
    f.services.set("default/dns", svc("dns", "10.96.0.10"));
    f.slices.set("default/dns-x", slice("dns", ["10.244.1.5"]));
    await r.sync(f.inputs());
    // A read-back is due after 20x the cost it is estimated at (the full sync's duration, which a loaded machine stretches).
    const { lastVerifyMs } = r.describe() as { lastVerifyMs: number };
    await new Promise((res) => setTimeout(res, Math.max(30, 20 * lastVerifyMs + 10)));
    kernel.table = undefined; // the table was deleted by hand
    await r.sync(f.inputs());
    assert.equal(kernel.reads, 1);
    assert.match(kernel.scripts.at(-1)!, /add chain ip podnet-svc services/);
    assert.doesNotMatch(kernel.scripts.at(-1)!, /delete table/);
  });
  it("hands transactions, not scripts, to a kernel that takes them, and says when one went through libnftables", async () => {
    const transactions: NftTransaction[] = [];
    let prepared = 0;
    const kernel = Object.assign(new RecordingKernel(), {
      applyTransaction: async (tx: NftTransaction) => {
        transactions.push(tx);
        return transactions.length === 1 ? { way: "netlink" as const, bytes: 100 } : { way: "libnftables" as const, bytes: 50, fallback: "changes[0]: statement log" };
      },
      prepareLargeTransaction: () => void prepared++,
    });
    const logs: string[] = [];
    const r = new ServicesReconciler("n1", 60_000, (m) => logs.push(m), kernel);
    const f = feed();
    for (let i = 0; i < 1000; i++) f.services.set(`default/s${i}`, svc(`s${i}`, `10.96.${i >> 8}.${i & 255}`));
    await r.sync(f.inputs());
    assert.equal(prepared, 1, "a full sync of 1,000 services lets the kernel side get ready");
    assert.equal(transactions[0]!.changes[0]!.op, "ensureTable");
    assert.ok(transactions[0]!.changes.some((c) => c.op === "deleteTable"));
    f.slices.set("default/s1-x", slice("s1", ["10.244.1.5"]));
    await r.sync(f.inputs());
    assert.equal(transactions.length, 2);
    assert.equal(kernel.scripts.length, 0);
    assert.ok(!transactions[1]!.changes.some((c) => c.op === "deleteTable"));
    assert.ok(logs.some((m) => /incremental sync through libnftables: the netlink writer cannot encode changes\[0\]: statement log/.test(m)), logs.join("\n"));
    assert.deepEqual((r.describe() as { lastSync: { way: string } }).lastSync.way, "libnftables");
  });
  it("announces the LoadBalancer IPs it wins, and withdraws them when the service goes", async () => {
    const kernel = new RecordingKernel();
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    f.services.set("default/lb", svc("lb", "10.96.0.30", { type: "LoadBalancer", ports: [{ port: 80, nodePort: 30080 }] }, { loadBalancer: { ingress: [{ ip: "192.168.1.240" }] } }));
    await r.sync(f.inputs());
    assert.deepEqual(kernel.announced, ["192.168.1.240"]);
    f.services.delete("default/lb");
    await r.sync(f.inputs());
    assert.deepEqual(kernel.announced, []);
  });
});

/** A kernel side whose "child" plans the full sync from the objects after a JSON round trip, as the real child gets them. */
class ChildKernel extends RecordingKernel {
  childPlans: NftTransaction[] = [];
  recorded: NftTransaction[] = [];
  transactions: NftTransaction[] = [];
  settled = 0;
  childFails: Error | undefined;
  /** Statements the child reports beyond its plan's (a disagreement between the two compiles). */
  childMiscount = 0;
  startFullSync(objects: FullSyncObjects): Promise<ChildFullSync> {
    const received = JSON.parse(JSON.stringify(objects)) as FullSyncObjects;
    if (this.childFails) return Promise.reject(this.childFails);
    const tx = planFullSyncOf(received);
    this.childPlans.push(tx);
    return Promise.resolve({ way: "netlink", bytes: 1, encodeMs: 1, kernelMs: 1, handOverMs: 1, compileMs: 1, changes: tx.changes.length + this.childMiscount, kernelAnsweredAt: Date.now() });
  }
  recordApplied(tx: NftTransaction) {
    this.recorded.push(tx);
  }
  applyTransaction = async (tx: NftTransaction) => {
    this.transactions.push(tx);
    return { way: "netlink" as const, bytes: 1 };
  };
  settleMemory() {
    this.settled++;
  }
}

function manyServices(f: ReturnType<typeof feed>, count: number): void {
  // Kinds the JSON hand-over must carry unchanged: ClusterIP, NodePort, LoadBalancer (with source
  // ranges), session affinity, named target ports; as the agent holds them (its projections).
  const put = (service: Service) => f.services.set(`default/${service.metadata.name}`, compactObject("Service", service));
  const putSlice = (s: EndpointSlice) => f.slices.set(`default/${s.metadata.name}`, compactObject("EndpointSlice", s));
  put(svc("np", "10.96.9.1", { type: "NodePort", ports: [{ port: 80, targetPort: "http", nodePort: 30080, protocol: "TCP" }], externalTrafficPolicy: "Local" }));
  put(svc("lb", "10.96.9.2", { type: "LoadBalancer", ports: [{ port: 443, nodePort: 30443, protocol: "TCP" }], loadBalancerSourceRanges: ["203.0.113.0/24"] }, { loadBalancer: { ingress: [{ ip: "192.168.1.240" }] } }));
  put(svc("aff", "10.96.9.3", { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }));
  putSlice(slice("aff", ["10.244.1.7", "10.244.2.8"]));
  for (let i = 0; i < count; i++) {
    put(svc(`s${i}`, `10.96.${i >> 8}.${i & 255}`));
    putSlice(slice(`s${i}`, [`10.244.${1 + (i % 3)}.${i & 255}`, `10.244.9.${i & 255}`]));
  }
}

describe("services reconciler: a large full sync compiled in the child", () => {
  it("the child's plan from the handed-over objects is the agent's own; then changes go the usual way", async () => {
    const kernel = new ChildKernel();
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    manyServices(f, 1000);
    await r.sync(f.inputs());
    assert.equal(kernel.childPlans.length, 1);
    assert.equal(kernel.transactions.length + kernel.scripts.length, 0, "nothing else applied the full sync");
    assert.deepEqual(kernel.childPlans[0], kernel.recorded[0], "the same table from the JSON copy as from the agent's objects");
    assert.ok(kernel.childPlans[0]!.changes.some((c) => c.op === "deleteTable"));
    assert.equal(kernel.settled, 1);
    const last = (r.describe() as { lastFullSync: { phases: Record<string, number>; startedAtMs: number } }).lastFullSync;
    assert.equal(last.phases["childCompile"], 1);
    assert.ok(last.phases["settle"]! >= 0 && last.startedAtMs > 0);
    f.slices.set("default/s1-x", slice("s1", ["10.244.1.99"]));
    await r.sync(f.inputs());
    assert.equal(kernel.childPlans.length, 1);
    assert.equal(kernel.transactions.length, 1);
    assert.ok(!kernel.transactions[0]!.changes.some((c) => c.op === "deleteTable"));
    assert.equal(kernel.settled, 1, "memory is settled after full syncs (and batches of thousands of services) only");
  });
  it("below 1,000 services the full sync stays in the agent", async () => {
    const kernel = new ChildKernel();
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    manyServices(f, 10);
    await r.sync(f.inputs());
    assert.equal(kernel.childPlans.length, 0);
    assert.equal(kernel.transactions.length, 1);
  });
  it("what the child cannot encode goes in through the agent's own plan", async () => {
    const kernel = new ChildKernel();
    kernel.childFails = new NftNotEncodable("statement log");
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    manyServices(f, 1000);
    await r.sync(f.inputs());
    assert.equal(kernel.transactions.length, 1);
    assert.ok(kernel.transactions[0]!.changes.some((c) => c.op === "deleteTable"));
    assert.equal(kernel.recorded.length, 0);
  });
  it("a kernel refusal in the child fails the sync, and the next one is a full sync again", async () => {
    const kernel = new ChildKernel();
    kernel.childFails = new Error("add rule: File exists");
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    manyServices(f, 1000);
    await assert.rejects(r.sync(f.inputs()), /File exists/);
    assert.equal(kernel.transactions.length, 0);
    kernel.childFails = undefined;
    await r.sync(f.inputs());
    assert.equal(kernel.childPlans.length, 1);
    assert.equal((r.describe() as { lastFullSync: { kind: string } | null }).lastFullSync?.kind, "full");
  });
  it("a child that fails without asking the kernel (not started, crashed, no room for its payload) leaves the sync to the agent's own plan", async () => {
    const kernel = new ChildKernel();
    kernel.childFails = new NftChildFailed("exited with a signal");
    const logs: string[] = [];
    const r = new ServicesReconciler("n1", 60_000, (m) => logs.push(m), kernel);
    const f = feed();
    manyServices(f, 1000);
    await r.sync(f.inputs());
    assert.equal(kernel.transactions.length, 1, "the agent applied its own full sync");
    assert.ok(kernel.transactions[0]!.changes.some((c) => c.op === "deleteTable"));
    assert.ok(logs.some((m) => /the full sync's child failed/.test(m)), logs.join("\n"));
    assert.equal((r.describe() as { lastFullSync: { kind: string } | null }).lastFullSync?.kind, "full");
  });
  it("a burst of small syncs that adds up to a large one settles memory once, when the burst is over", async () => {
    const kernel = new ChildKernel();
    kernel.applyTransaction = async (tx: NftTransaction) => {
      kernel.transactions.push(tx);
      return { way: "netlink" as const, bytes: 600_000 };
    };
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const f = feed();
    manyServices(f, 10);
    await r.sync(f.inputs());
    assert.equal(kernel.settled, 1, "a full sync settles at once");
    for (let i = 0; i < 4; i++) {
      f.services.set(`default/burst${i}`, svc(`burst${i}`, `10.96.200.${i}`));
      await r.sync(f.inputs());
    }
    assert.equal(kernel.transactions.length, 5);
    assert.equal(kernel.settled, 1, "not after each sync of the burst");
    await new Promise((resolve) => setTimeout(resolve, 1300));
    assert.equal(kernel.settled, 2, "once, a second after the burst's last sync");
  });
  it("a child whose statement count differs from the agent's plan is overruled by that plan", async () => {
    const kernel = new ChildKernel();
    kernel.childMiscount = 1;
    const logs: string[] = [];
    const r = new ServicesReconciler("n1", 60_000, (m) => logs.push(m), kernel);
    const f = feed();
    manyServices(f, 1000);
    await r.sync(f.inputs());
    assert.equal(kernel.transactions.length, 1);
    assert.deepEqual(kernel.transactions[0], kernel.childPlans[0]);
    assert.ok(logs.some((m) => /the child's full sync had \d+ statements/.test(m)), logs.join("\n"));
  });
});

/**
 * A startup child that "lists" the objects it is given (a copy, as if from etcd) and plans them as
 * the real one does: in key order, after a JSON round trip, with the node facts it was told.
 */
class FakeStartup implements StartupSync {
  told: ProxyNodeFacts[] = [];
  plans: NftTransaction[] = [];
  ended = 0;
  /** Resolved once `end` has been called (the reconciler must wait for it before it applies anything). */
  endedBeforeApply: boolean | undefined;
  fails: Error | undefined;
  constructor(private readonly listed: { services: Map<string, Service>; slices: Map<string, EndpointSlice> }, private readonly kernel: ChildKernel) {}
  nodeKnown(node: ProxyNodeFacts): void {
    this.told.push(node);
  }
  async outcome(): Promise<StartupSyncOutcome> {
    if (this.fails) throw this.fails;
    const node = this.told[0];
    if (!node) throw new NftChildFailed("no node facts");
    const services = new Map(JSON.parse(JSON.stringify([...this.listed.services])) as [string, Service][]);
    const slices = new Map(JSON.parse(JSON.stringify([...this.listed.slices])) as [string, EndpointSlice][]);
    const tx = planFullSyncOf({ node, services: inKeyOrder(services), slices: inKeyOrder(slices) });
    this.plans.push(tx);
    return { bytes: 7, encodeMs: 1, kernelMs: 1, compileMs: 1, changes: tx.changes.length, digest: fullSyncDigest(services, slices, node), revision: 5, kernelAnsweredAt: 1234, startedAt: 1000, listedAt: 1100, toldAt: 1050 };
  }
  async end(): Promise<void> {
    this.ended++;
    this.endedBeforeApply ??= this.kernel.transactions.length === 0 && this.kernel.childPlans.length === 0;
  }
}

function hubWithNode(): InputHub<AgentInputs> {
  const hub = new InputHub<AgentInputs>();
  hub.set("config", config);
  hub.set("self", self);
  return hub;
}

/** manyServices, but the feed's maps in another order than their keys' (as events leave them). */
function shuffledFeed(count: number) {
  const f = feed();
  manyServices(f, count);
  for (const map of [f.services, f.slices] as Map<string, unknown>[]) {
    const entries = [...map].reverse();
    map.clear();
    for (const [k, v] of entries) map.set(k, v);
  }
  return f;
}

describe("services reconciler: the first full sync made by the startup child", () => {
  it("takes the child's table when the child compiled the same objects, and is told the node's facts once registered", async () => {
    const kernel = new ChildKernel();
    const f = shuffledFeed(1000);
    const startup = new FakeStartup({ services: new Map(f.services), slices: new Map(f.slices) }, kernel);
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    const hub = new InputHub<AgentInputs>();
    r.useStartupSync(startup, hub);
    assert.equal(startup.told.length, 0, "nothing to tell before registration");
    hub.set("config", config);
    hub.set("self", self);
    assert.deepEqual(startup.told, [{ nodeName: "n1", nodeIps: ["192.168.1.11"], podCidr: "10.244.1.0/24", clusterCidr: "10.244.0.0/16" }]);
    hub.set("self", { ...self, backendData: { x: "y" } });
    assert.equal(startup.told.length, 1, "told once");
    await r.sync(f.inputs());
    assert.equal(kernel.transactions.length + kernel.scripts.length + kernel.childPlans.length, 0, "nothing else wrote the table");
    assert.deepEqual(kernel.recorded[0], startup.plans[0], "the agent's own plan (its feed's order) is the child's (key order)");
    const last = (r.describe() as { lastFullSync: { appliedBy: string; kernelAnsweredAt: number; scriptBytes: number } }).lastFullSync;
    assert.equal(last.appliedBy, "startup child");
    assert.equal(last.kernelAnsweredAt, 1234);
    assert.equal(last.scriptBytes, 7);
    f.slices.set("default/s1-x", slice("s1", ["10.244.1.99"]));
    await r.sync(f.inputs());
    assert.equal(kernel.transactions.length, 1);
    assert.ok(!kernel.transactions[0]!.changes.some((c) => c.op === "deleteTable"), "then changes are incremental");
  });
  it("applies its own plan when the child listed other objects (a change between the two lists)", async () => {
    const kernel = new ChildKernel();
    const f = shuffledFeed(1000);
    const listed = { services: new Map(f.services), slices: new Map(f.slices) };
    listed.slices.set("default/s7-x", slice("s7", ["10.244.1.77"]));
    const startup = new FakeStartup(listed, kernel);
    const logs: string[] = [];
    const r = new ServicesReconciler("n1", 60_000, (m) => logs.push(m), kernel);
    r.useStartupSync(startup, hubWithNode());
    await r.sync(f.inputs());
    assert.equal(startup.plans.length, 1);
    assert.equal(kernel.transactions.length, 1, "the agent's own full replacement");
    assert.ok(kernel.transactions[0]!.changes.some((c) => c.op === "deleteTable"));
    assert.ok(logs.some((m) => /startup child's full sync .* was of other objects/.test(m)), logs.join("\n"));
    assert.equal((r.describe() as { lastFullSync: { appliedBy: string } }).lastFullSync.appliedBy, "agent");
  });
  it("a startup child that declined or failed without asking the kernel leaves the full sync to the agent", async () => {
    for (const [error, logged] of [[new NftChildFailed("declined: only 999 services"), false], [new NftChildFailed("listing etcd: deadline exceeded"), true]] as const) {
      const kernel = new ChildKernel();
      const f = shuffledFeed(1000);
      const startup = new FakeStartup({ services: f.services, slices: f.slices }, kernel);
      startup.fails = error;
      const logs: string[] = [];
      const r = new ServicesReconciler("n1", 60_000, (m) => logs.push(m), kernel);
      r.useStartupSync(startup, hubWithNode());
      await r.sync(f.inputs());
      assert.equal(kernel.transactions.length, 1);
      assert.ok(kernel.transactions[0]!.changes.some((c) => c.op === "deleteTable"));
      assert.equal(logs.some((m) => /startup child did not sync/.test(m)), logged, logs.join("\n"));
    }
  });
  it("a kernel refusal in the startup child fails the sync; the next is the agent's own full sync", async () => {
    const kernel = new ChildKernel();
    const f = shuffledFeed(1000);
    const startup = new FakeStartup({ services: f.services, slices: f.slices }, kernel);
    startup.fails = new Error("add rule: File exists");
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    r.useStartupSync(startup, hubWithNode());
    await assert.rejects(r.sync(f.inputs()), /File exists/);
    assert.equal(kernel.transactions.length + kernel.childPlans.length, 0);
    await r.sync(f.inputs());
    assert.equal(kernel.childPlans.length, 1, "the usual large full sync, through the objects' child");
  });
  it("below 1,000 services the startup child is ended, and gone, before the agent writes the table", async () => {
    const kernel = new ChildKernel();
    const f = shuffledFeed(10);
    const startup = new FakeStartup({ services: f.services, slices: f.slices }, kernel);
    const r = new ServicesReconciler("n1", 60_000, () => undefined, kernel);
    r.useStartupSync(startup, hubWithNode());
    await r.sync(f.inputs());
    assert.equal(startup.ended, 1);
    assert.equal(startup.endedBeforeApply, true);
    assert.equal(startup.plans.length, 0);
    assert.equal(kernel.transactions.length, 1);
  });
});
