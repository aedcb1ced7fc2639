// Agents against a 3-member etcd cluster: killing one member changes nothing a user can see.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { AgentCluster, ip, waitFor, type TestNode } from "./agent-harness.ts";

describe("podnet agent with a 3-member etcd cluster", () => {
  const cluster = new AgentCluster();
  let n1: TestNode, n2: TestNode, n3: TestNode;
  const describeNode = (node: TestNode) => () => `routes of ${node.name}: ${JSON.stringify(cluster.routes(node))}\n--- log ---\n${cluster.logOf(node)}`;

  before(async () => {
    await cluster.create(3, { etcdMembers: 3 });
    [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode];
  });
  after(async () => {
    await cluster.destroy();
  });

  it("keeps serving when the member the agents dial first dies", async () => {
    cluster.startAgent(n1);
    cluster.startAgent(n2);
    for (const node of [n1, n2]) await waitFor(() => cluster.routes(node).length === 1, 20_000, describeNode(node));

    await cluster.etcdCluster!.killMember(0);
    // Users see no change: routes stay, and new work (a third node joining) still goes through.
    for (const node of [n1, n2]) assert.equal(cluster.routes(node).length, 1);
    cluster.startAgent(n3);
    await waitFor(async () => (await cluster.health(n3)).ready === true, 30_000, describeNode(n3));
    const subnet = String((await cluster.health(n3)).podSubnet);
    for (const node of [n1, n2]) {
      await waitFor(() => cluster.routes(node).includes(`${subnet} via ${n3.ip}`), 15_000, describeNode(node));
    }
    // Repairs continue too.
    ip("-n", n1.netns, "route", "del", subnet);
    await waitFor(() => cluster.routes(n1).includes(`${subnet} via ${n3.ip}`), 1500, describeNode(n1), 10);
    const subnets = await Promise.all(cluster.nodes.map(async (n) => String((await cluster.health(n)).podSubnet)));
    assert.equal(new Set(subnets).size, 3);
    for (const node of cluster.nodes) assert.equal((await cluster.health(node)).datastoreConnected, true);
  });
});
