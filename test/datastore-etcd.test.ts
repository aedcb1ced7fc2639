// The etcd datastore against real etcd processes: a single member and a 3-member cluster, on loopback in the
// root namespace (etcd only listens on 127.0.0.1; no links, routes or rules are touched).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEtcd, startEtcdCluster, type EtcdCluster, type EtcdServer } from "../src/supervise/etcd-server.ts";
import { EtcdDatastore } from "../src/datastore/etcd-datastore.ts";
import { DEFAULT_CLUSTER_CONFIG, NodeRemovedError, type ClusterConfig } from "../src/datastore/datastore.ts";
import { planLifecycle } from "../src/datastore/node-lifecycle.ts";

let prefixCounter = 0;
function uniquePrefix(): string {
  return `/podnet-test-${process.pid}-${prefixCounter++}/`;
}

const config: ClusterConfig = { ...DEFAULT_CLUSTER_CONFIG, nodeLeaseTtlSeconds: 3 };

/** A datastore under a fresh prefix with the test's cluster config written, closed afterwards whatever happens. */
async function withConfiguredDatastore(endpoints: string[], use: (ds: EtcdDatastore) => Promise<void>): Promise<void> {
  const ds = new EtcdDatastore({ endpoints, prefix: uniquePrefix() });
  try {
    await ds.ensureClusterConfig(config);
    await use(ds);
  } finally {
    await ds.close();
  }
}

describe("etcd datastore, single member", () => {
  let dir: string;
  let etcd: EtcdServer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pnt-datastore-"));
    etcd = await startEtcd({ dataDir: dir });
  });
  after(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("first writer of the cluster config wins", async () => {
    const ds = new EtcdDatastore({ endpoints: etcd.endpoints, prefix: uniquePrefix() });
    try {
      const first = await ds.ensureClusterConfig(config);
      const second = await ds.ensureClusterConfig({ ...config, clusterCidr: "10.99.0.0/16" });
      assert.deepEqual(first, config);
      assert.deepEqual(second, config);
    } finally {
      await ds.close();
    }
  });

  it("with a watch open, snapshots follow other clients' changes and always show this client's own writes", async () => {
    const prefix = uniquePrefix();
    const watching = new EtcdDatastore({ endpoints: etcd.endpoints, prefix });
    const other = new EtcdDatastore({ endpoints: etcd.endpoints, prefix });
    let changes = 0;
    const watch = await watching.watch({ onChange: () => changes++ });
    try {
      await watching.ensureClusterConfig(config);
      const own = await watching.registerNode({ name: "self", nodeIp: "192.168.1.10" });
      // Read-your-writes: right after its own write, even before the watch event arrives.
      assert.deepEqual((await watching.snapshot()).nodes.map((n) => n.name), ["self"]);
      const peer = await other.registerNode({ name: "peer", nodeIp: "192.168.1.11" });
      const deadline = Date.now() + 5000;
      let names: string[] = [];
      while (Date.now() < deadline) {
        names = (await watching.snapshot()).nodes.map((n) => n.name);
        if (names.length === 2) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(names, ["peer", "self"]);
      assert.ok(changes > 0, "the watch reported the changes");
      assert.ok(await other.markNodeLeaving("peer", "removed"));
      while (Date.now() < deadline) {
        const view = (await watching.snapshot()).nodes.find((n) => n.name === "peer");
        if (view?.phase === "leaving") break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const fromMirror = await watching.snapshot();
      const fresh = await watching.snapshot({ fresh: true });
      assert.deepEqual(fromMirror.nodes, fresh.nodes, "the mirror matches a full read");
      own.release();
      peer.release();
    } finally {
      await watch.close();
      await watching.close();
      await other.close();
    }
  });

  it("20 agents registering at once get 20 distinct subnets inside the cluster CIDR", async () => {
    const prefix = uniquePrefix();
    const setup = new EtcdDatastore({ endpoints: etcd.endpoints, prefix });
    await setup.ensureClusterConfig(config);
    // Separate clients, as separate agents would have.
    const agents = Array.from({ length: 20 }, () => new EtcdDatastore({ endpoints: etcd.endpoints, prefix }));
    try {
      const leases = await Promise.all(
        agents.map((ds, i) => ds.registerNode({ name: `node-${i}`, nodeIp: `192.168.1.${i + 10}` })),
      );
      const subnets = leases.map((l) => l.node.podSubnet);
      assert.equal(new Set(subnets).size, 20, `duplicate subnets: ${subnets.join(" ")}`);
      for (const subnet of subnets) assert.match(subnet, /^10\.244\.\d+\.0\/24$/);
      const snapshot = await setup.snapshot();
      assert.equal(snapshot.nodes.length, 20);
      assert.ok(snapshot.nodes.every((n) => n.alive && n.phase === "active"));
      for (const lease of leases) lease.release();
    } finally {
      await Promise.all([...agents, setup].map((ds) => ds.close()));
    }
  });

  it("a re-registering node keeps its subnet and updates its IP", async () => {
    await withConfiguredDatastore(etcd.endpoints, async (ds) => {
      const a = await ds.registerNode({ name: "a", nodeIp: "192.168.1.11" });
      const b = await ds.registerNode({ name: "b", nodeIp: "192.168.1.12" });
      a.release();
      const again = await ds.registerNode({ name: "a", nodeIp: "192.168.1.21", backendData: { vtepMac: "02:00:00:00:00:21" } });
      assert.equal(again.node.podSubnet, a.node.podSubnet);
      assert.notEqual(again.node.podSubnet, b.node.podSubnet);
      const snapshot = await ds.snapshot();
      assert.equal(snapshot.nodes.find((n) => n.name === "a")?.nodeIp, "192.168.1.21");
      assert.deepEqual(snapshot.nodes.find((n) => n.name === "a")?.backendData, { vtepMac: "02:00:00:00:00:21" }, "backend data is published with the record");
      assert.deepEqual(snapshot.nodes.find((n) => n.name === "b")?.backendData, {});
      again.release();
      b.release();
    });
  });

  it("removal is two-phase: the subnet is freed only after every live node acknowledged", async () => {
    await withConfiguredDatastore(etcd.endpoints, async (ds) => {
      const a = await ds.registerNode({ name: "a", nodeIp: "192.168.1.11" });
      const b = await ds.registerNode({ name: "b", nodeIp: "192.168.1.12" });
      const c = await ds.registerNode({ name: "c", nodeIp: "192.168.1.13" });
      const freed = b.node.podSubnet;

      let snapshot = await ds.snapshot();
      const bView = snapshot.nodes.find((n) => n.name === "b")!;
      assert.equal(await ds.markNodeLeaving("b", "removed", bView.revision), true);
      await assert.rejects(ds.registerNode({ name: "b", nodeIp: "192.168.1.12" }), NodeRemovedError);

      snapshot = await ds.snapshot();
      let plan = planLifecycle(snapshot, "a");
      assert.deepEqual(plan.owedAcks.map((n) => n.name), ["b"]);
      assert.deepEqual(plan.finalize, [], "nobody acked yet");

      await ds.ackNodeLeaving("b", "a");
      snapshot = await ds.snapshot();
      assert.deepEqual(planLifecycle(snapshot, "a").finalize, [], "c has not acked");
      await ds.ackNodeLeaving("b", "c");
      snapshot = await ds.snapshot();
      plan = planLifecycle(snapshot, "a");
      assert.deepEqual(plan.finalize.map((n) => n.name), ["b"]);
      assert.equal(await ds.finalizeNodeRemoval("b", plan.finalize[0]!.revision), true);
      assert.equal(await ds.finalizeNodeRemoval("b", plan.finalize[0]!.revision), false, "second finalize is a no-op");

      snapshot = await ds.snapshot();
      assert.deepEqual(snapshot.nodes.map((n) => n.name), ["a", "c"]);
      const d = await ds.registerNode({ name: "d", nodeIp: "192.168.1.14" });
      assert.equal(d.node.podSubnet, freed, "the lowest free subnet is the one b left");
      for (const l of [a, b, c, d]) l.release();
    });
  });

  it("a node whose lease expires is seen as not alive, and reviving it keeps its subnet", async () => {
    await withConfiguredDatastore(etcd.endpoints, async (ds) => {
      const a = await ds.registerNode({ name: "a", nodeIp: "192.168.1.11" });
      const b = await ds.registerNode({ name: "b", nodeIp: "192.168.1.12" });
      b.release();
      const deadline = Date.now() + 15_000;
      let snapshot = await ds.snapshot();
      while (snapshot.nodes.find((n) => n.name === "b")?.alive && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        snapshot = await ds.snapshot();
      }
      const plan = planLifecycle(snapshot, "a");
      assert.deepEqual(plan.markExpired.map((n) => n.name), ["b"]);
      assert.equal(await ds.markNodeLeaving("b", "expired", plan.markExpired[0]!.revision), true);
      await ds.ackNodeLeaving("b", "a");
      const revived = await ds.registerNode({ name: "b", nodeIp: "192.168.1.12" });
      assert.equal(revived.node.podSubnet, b.node.podSubnet);
      snapshot = await ds.snapshot();
      const bView = snapshot.nodes.find((n) => n.name === "b")!;
      assert.equal(bView.phase, "active");
      assert.deepEqual(bView.acks, [], "old acks are cleared on revival");
      a.release();
      revived.release();
    });
  });

  it("a node registering with a preferred free subnet gets it", async () => {
    await withConfiguredDatastore(etcd.endpoints, async (ds) => {
      const a = await ds.registerNode({ name: "a", nodeIp: "192.168.1.11", preferredSubnet: "10.244.7.0/24" });
      assert.equal(a.node.podSubnet, "10.244.7.0/24");
      const b = await ds.registerNode({ name: "b", nodeIp: "192.168.1.12", preferredSubnet: "10.244.7.0/24" });
      assert.notEqual(b.node.podSubnet, "10.244.7.0/24");
      a.release();
      b.release();
    });
  });
});

describe("etcd datastore, 3-member cluster", () => {
  let dir: string;
  let cluster: EtcdCluster;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pnt-datastore-cluster-"));
    cluster = await startEtcdCluster({ dataDir: dir, members: 3 });
  });
  after(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps allocating distinct subnets and serving snapshots with one member dead", async () => {
    await withConfiguredDatastore(cluster.endpoints, async (ds) => {
      const before = await Promise.all([0, 1, 2, 3, 4].map((i) => ds.registerNode({ name: `n${i}`, nodeIp: `192.168.1.${11 + i}` })));
      await cluster.killMember(0);
      const afterKill = await Promise.all([5, 6, 7, 8, 9].map((i) => ds.registerNode({ name: `n${i}`, nodeIp: `192.168.1.${11 + i}` })));
      const all = [...before, ...afterKill].map((l) => l.node.podSubnet);
      assert.equal(new Set(all).size, 10);
      const snapshot = await ds.snapshot();
      assert.equal(snapshot.nodes.length, 10);
      const again = await ds.registerNode({ name: "n0", nodeIp: "192.168.1.11" });
      assert.equal(again.node.podSubnet, before[0]!.node.podSubnet);
      await cluster.restartMember(0);
      for (const l of [...before, ...afterKill, again]) l.release();
    });
  });
});
