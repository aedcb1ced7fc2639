import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { missingAcks, planLifecycle } from "./node-lifecycle.ts";
import type { ClusterSnapshot, NodeView } from "./datastore.ts";

function node(name: string, over: Partial<NodeView> = {}): NodeView {
  return { name, nodeIp: "192.168.1.1", podSubnet: "10.244.0.0/24", backendData: {}, phase: "active", alive: true, revision: 1, acks: [], ...over };
}
const snap = (nodes: NodeView[]): ClusterSnapshot => ({ revision: 1, config: undefined, nodes });

describe("planLifecycle", () => {
  it("marks silent active nodes expired, but never ourselves", () => {
    const plan = planLifecycle(snap([node("a", { alive: false }), node("b", { alive: false }), node("c")]), "a");
    assert.deepEqual(plan.markExpired.map((n) => n.name), ["b"]);
  });

  it("finalizes a leaving node only when every live node other than it acked", () => {
    const leaving = node("b", { phase: "leaving", acks: ["a"] });
    const nodes = [node("a"), leaving, node("c"), node("d", { alive: false })];
    assert.deepEqual(missingAcks(snap(nodes), leaving), ["c"]);
    let plan = planLifecycle(snap(nodes), "c");
    assert.deepEqual(plan.finalize, []);
    assert.deepEqual(plan.owedAcks.map((n) => n.name), ["b"]);
    const acked = node("b", { phase: "leaving", acks: ["a", "c"] });
    plan = planLifecycle(snap([node("a"), acked, node("c"), node("d", { alive: false })]), "c");
    assert.deepEqual(plan.finalize.map((n) => n.name), ["b"]);
    assert.deepEqual(plan.owedAcks, []);
  });

  it("a leaving node owes no ack to itself, and a lone leaving node is finalized at once", () => {
    const plan = planLifecycle(snap([node("b", { phase: "leaving" })]), "b");
    assert.deepEqual(plan.owedAcks, []);
    assert.deepEqual(plan.finalize.map((n) => n.name), ["b"]);
  });
});
