import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { NodeRemovedError, SubnetsExhaustedError, type ClusterConfig, type NodeRecord } from "./datastore.ts";
import type { StoredNode, SubnetRegistry } from "./subnet-registry.ts";
import { finalizeNodeRemoval, markNodeLeaving, registerNode } from "./subnet-policy.ts";

/**
 * The registry contract in memory, with the same all-or-nothing guarded writes as etcd. Each call
 * yields to the event loop first, so concurrent registrations interleave as they would over a network.
 */
class MemoryRegistry implements SubnetRegistry<string> {
  revision = 0;
  nodes = new Map<string, StoredNode>();
  claims = new Map<string, string>();
  alive = new Map<string, string>();
  acks = new Map<string, Set<string>>();
  /** Runs before each createNode: lets a test slip a competing write in. */
  beforeCreate: ((record: NodeRecord) => void) | undefined;
  creates = 0;

  async getNode(name: string) {
    await tick();
    const stored = this.nodes.get(name);
    return stored && { record: { ...stored.record }, revision: stored.revision };
  }
  async claimedSubnets() {
    await tick();
    return new Set(this.claims.keys());
  }
  async createNode(record: NodeRecord, liveness: string) {
    await tick();
    this.creates++;
    this.beforeCreate?.(record);
    if (this.nodes.has(record.name) || this.claims.has(record.podSubnet)) return false;
    this.revision++;
    this.claims.set(record.podSubnet, record.name);
    this.nodes.set(record.name, { record: { ...record }, revision: this.revision });
    this.alive.set(record.name, liveness);
    return true;
  }
  async reviveNode(record: NodeRecord, expectedRevision: number, liveness: string) {
    await tick();
    if (this.nodes.get(record.name)?.revision !== expectedRevision || this.claims.get(record.podSubnet) !== record.name) return false;
    this.revision++;
    this.nodes.set(record.name, { record: { ...record }, revision: this.revision });
    this.alive.set(record.name, liveness);
    this.acks.delete(record.name);
    return true;
  }
  async updateNode(record: NodeRecord, expectedRevision: number) {
    await tick();
    if (this.nodes.get(record.name)?.revision !== expectedRevision) return false;
    this.revision++;
    this.nodes.set(record.name, { record: { ...record }, revision: this.revision });
    return true;
  }
  async addAck(leaving: string, acker: string) {
    await tick();
    if (!this.nodes.has(leaving)) return;
    this.acks.set(leaving, new Set([...(this.acks.get(leaving) ?? []), acker]));
  }
  async deleteNode(record: NodeRecord, expectedRevision: number) {
    await tick();
    if (this.nodes.get(record.name)?.revision !== expectedRevision || this.claims.get(record.podSubnet) !== record.name) return false;
    this.revision++;
    this.nodes.delete(record.name);
    this.claims.delete(record.podSubnet);
    this.alive.delete(record.name);
    this.acks.delete(record.name);
    return true;
  }
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const config: ClusterConfig = { clusterCidr: "10.244.0.0/16", subnetLength: 24, backend: "host-gw", nodeLeaseTtlSeconds: 20 };
const small: ClusterConfig = { ...config, clusterCidr: "10.9.0.0/22" }; // four /24s

describe("subnet policy", () => {
  it("a new node gets the lowest free subnet, and marks itself alive", async () => {
    const registry = new MemoryRegistry();
    const a = await registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1" }, "lease-a");
    const b = await registerNode(registry, config, { name: "b", nodeIp: "192.168.0.2", backendData: { mac: "x" } }, "lease-b");
    assert.equal(a.podSubnet, "10.244.0.0/24");
    assert.equal(b.podSubnet, "10.244.1.0/24");
    assert.deepEqual(b.backendData, { mac: "x" });
    assert.equal(registry.alive.get("b"), "lease-b");
    assert.equal(registry.claims.get("10.244.1.0/24"), "b");
  });

  it("a free preferred subnet is granted; a taken or foreign one is not", async () => {
    const registry = new MemoryRegistry();
    assert.equal((await registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1", preferredSubnet: "10.244.7.0/24" }, "l")).podSubnet, "10.244.7.0/24");
    assert.equal((await registerNode(registry, config, { name: "b", nodeIp: "192.168.0.2", preferredSubnet: "10.244.7.0/24" }, "l")).podSubnet, "10.244.0.0/24");
    assert.equal((await registerNode(registry, config, { name: "c", nodeIp: "192.168.0.3", preferredSubnet: "10.99.0.0/24" }, "l")).podSubnet, "10.244.1.0/24");
    assert.equal((await registerNode(registry, config, { name: "d", nodeIp: "192.168.0.4", preferredSubnet: "10.244.8.0/25" }, "l")).podSubnet, "10.244.2.0/24");
  });

  it("a node that registers again keeps its subnet, takes the new IP and clears acks of an expiry", async () => {
    const registry = new MemoryRegistry();
    const first = await registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1" }, "old");
    const revision = registry.nodes.get("a")!.revision;
    assert.equal(await markNodeLeaving(registry, "a", "expired", revision), true);
    await registry.addAck("a", "b");
    const again = await registerNode(registry, config, { name: "a", nodeIp: "192.168.0.9", preferredSubnet: "10.244.5.0/24" }, "new");
    assert.equal(again.podSubnet, first.podSubnet, "the record's subnet wins over the preferred one");
    assert.equal(again.nodeIp, "192.168.0.9");
    assert.equal(again.phase, "active");
    assert.equal(registry.alive.get("a"), "new");
    assert.equal(registry.acks.has("a"), false);
  });

  it("a node an operator is removing may not register until the removal completes", async () => {
    const registry = new MemoryRegistry();
    await registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1" }, "l");
    assert.equal(await markNodeLeaving(registry, "a", "removed"), true);
    await assert.rejects(registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1" }, "l"), NodeRemovedError);
    // An expiry seen later does not downgrade the operator's removal.
    assert.equal(await markNodeLeaving(registry, "a", "expired"), true);
    assert.equal(registry.nodes.get("a")!.record.leavingReason, "removed");
    assert.equal(await finalizeNodeRemoval(registry, "a", registry.nodes.get("a")!.revision), true);
    assert.equal(registry.claims.size, 0);
    assert.equal((await registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1" }, "l")).podSubnet, "10.244.0.0/24");
  });

  it("removal is refused for an active node or a stale revision", async () => {
    const registry = new MemoryRegistry();
    await registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1" }, "l");
    const active = registry.nodes.get("a")!.revision;
    assert.equal(await finalizeNodeRemoval(registry, "a", active), false, "not leaving");
    assert.equal(await markNodeLeaving(registry, "a", "removed", active + 100), false, "stale revision");
    assert.equal(await markNodeLeaving(registry, "a", "removed", active), true);
    assert.equal(await finalizeNodeRemoval(registry, "a", active), false, "the mark changed the revision");
    assert.equal(await markNodeLeaving(registry, "ghost", "removed"), false);
    assert.equal(registry.nodes.size, 1);
  });

  it("after losing a race the node reads again and takes another subnet", async () => {
    const registry = new MemoryRegistry();
    registry.beforeCreate = (record) => {
      // Someone else claims the subnet between our read and our write, once.
      registry.beforeCreate = undefined;
      registry.claims.set(record.podSubnet, "intruder");
    };
    const a = await registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1" }, "l", { random: () => 0.5 });
    assert.equal(registry.creates, 2);
    assert.notEqual(a.podSubnet, "10.244.0.0/24");
    assert.equal(registry.claims.get(a.podSubnet), "a");
  });

  it("nodes registering at once never share a subnet, and the pool running out is an error", async () => {
    const registry = new MemoryRegistry();
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => registerNode(registry, small, { name: `n${i}`, nodeIp: `192.168.0.${i + 1}` }, "l")),
    );
    const granted = results.flatMap((r) => (r.status === "fulfilled" ? [r.value.podSubnet] : []));
    assert.equal(granted.length, 4);
    assert.equal(new Set(granted).size, 4);
    for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof SubnetsExhaustedError, String(r.reason));
    assert.deepEqual([...registry.claims.keys()].sort(), ["10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24", "10.9.3.0/24"]);
  });

  it("gives up after maxAttempts of contention", async () => {
    const registry = new MemoryRegistry();
    registry.beforeCreate = (record) => registry.claims.set(record.podSubnet, "intruder");
    await assert.rejects(registerNode(registry, config, { name: "a", nodeIp: "192.168.0.1" }, "l", { maxAttempts: 3 }), /after 3 attempts/);
    assert.equal(registry.creates, 3);
  });

  it("bad names and IPs are refused before anything is written", async () => {
    const registry = new MemoryRegistry();
    await assert.rejects(registerNode(registry, config, { name: "Bad_Name", nodeIp: "192.168.0.1" }, "l"), /invalid node name "Bad_Name"/);
    await assert.rejects(registerNode(registry, config, { name: "a", nodeIp: "192.168.0" }, "l"), /invalid node IP "192.168.0"/);
    assert.equal(registry.creates, 0);
  });
});
