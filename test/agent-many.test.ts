// 20 real agent processes started at the same moment, each in its own node namespace: every node gets
// its own subnet (allocation is transactional), and every node routes to all 19 others.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { AgentCluster, waitFor } from "./agent-harness.ts";

const NODES = 20;

describe("20 agents started at once", () => {
  const cluster = new AgentCluster();
  before(async () => {
    await cluster.create(NODES);
  });
  after(async () => {
    await cluster.destroy();
  });

  it("get 20 distinct subnets inside the cluster CIDR, and each routes to the 19 others", async () => {
    for (const node of cluster.nodes) cluster.startAgent(node);
    const subnets = new Map<string, string>();
    for (const node of cluster.nodes) {
      await waitFor(async () => (await cluster.health(node).catch(() => undefined))?.ready === true, 90_000, () => cluster.logOf(node));
      subnets.set(node.name, String((await cluster.health(node)).podSubnet));
    }
    const distinct = new Set(subnets.values());
    assert.equal(distinct.size, NODES, `subnets: ${[...subnets.values()].join(" ")}`);
    for (const subnet of distinct) assert.match(subnet, /^10\.244\.\d+\.0\/24$/);
    for (const node of cluster.nodes) {
      const expected = cluster.nodes.filter((p) => p !== node).map((p) => `${subnets.get(p.name)} via ${p.ip}`).sort();
      await waitFor(() => cluster.routes(node).length === NODES - 1, 30_000, () => `${node.name}: ${cluster.routes(node).length} routes\n${cluster.logOf(node)}`);
      assert.deepEqual(cluster.routes(node), expected);
    }
  });
});
