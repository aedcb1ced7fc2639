import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ClusterSnapshot, LeavingReason, NodeView } from "../datastore/datastore.ts";
import { NodeLifecycleController, type LifecycleDatastore } from "./node-lifecycle-controller.ts";

function node(name: string, over: Partial<NodeView> = {}): NodeView {
  return { name, nodeIp: "192.168.1.1", podSubnet: `10.244.${name.length}.0/24`, backendData: {}, phase: "active", alive: true, revision: 7, acks: [], ...over };
}

/** Records the writes the controller asks for; `accept` decides whether the revision guard lets them through. */
class RecordingStore implements LifecycleDatastore {
  readonly marked: [string, LeavingReason, number | undefined][] = [];
  readonly finalized: [string, number][] = [];
  constructor(
    private readonly nodes: NodeView[],
    private readonly accept = true,
  ) {}
  async snapshot(): Promise<ClusterSnapshot> {
    return { revision: 1, config: undefined, nodes: this.nodes };
  }
  async markNodeLeaving(name: string, reason: LeavingReason, expectedRevision?: number): Promise<boolean> {
    this.marked.push([name, reason, expectedRevision]);
    return this.accept;
  }
  async finalizeNodeRemoval(name: string, expectedRevision: number): Promise<boolean> {
    this.finalized.push([name, expectedRevision]);
    return this.accept;
  }
}

describe("NodeLifecycleController", () => {
  it("marks every dead active node expired at the revision it saw, and owes no ack itself", async () => {
    const store = new RecordingStore([node("a"), node("b", { alive: false, revision: 12 }), node("c", { phase: "leaving", acks: [] })]);
    const actions = await new NodeLifecycleController(store).reconcile();
    assert.deepEqual(store.marked, [["b", "expired", 12]]);
    assert.deepEqual(actions.expired, ["b"]);
    // c is leaving and the live node a has not acked: not deleted.
    assert.deepEqual(store.finalized, []);
  });

  it("deletes a leaving node once every live peer acked; dead peers owe nothing", async () => {
    const store = new RecordingStore([node("a"), node("b", { phase: "leaving", acks: ["a"], revision: 30 }), node("d", { alive: false, phase: "leaving", acks: [] })]);
    const actions = await new NodeLifecycleController(store).reconcile();
    assert.deepEqual(store.finalized, [["b", 30]]);
    assert.deepEqual(actions.removed, ["b"]);
  });

  it("reports nothing when a revision guard refuses (someone else changed the record first)", async () => {
    const store = new RecordingStore([node("a"), node("b", { alive: false })], false);
    assert.deepEqual(await new NodeLifecycleController(store).reconcile(), { expired: [], removed: [] });
    assert.equal(store.marked.length, 1);
  });
});
