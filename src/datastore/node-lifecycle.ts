// Two-phase node removal, decided from one snapshot. Pure: the agent (or `podnet node remove`) carries the plan out.
//
//   active ──(operator remove, or liveness lease expired)──▶ leaving
//   leaving: every live node withdraws its routes to it, then writes an ack
//   leaving + acks from every live node other than itself ──▶ record, subnet claim and acks deleted (subnet free)
//
// A node that is not alive owes no ack: it programs nothing while down and reconciles from the datastore
// when it returns. An expired node whose agent comes back before the deletion revives itself (registerNode).

import type { ClusterSnapshot, NodeView } from "./datastore.ts";

export interface LifecyclePlan {
  /** Active nodes whose liveness lease has expired: mark them leaving ("expired"). */
  markExpired: NodeView[];
  /** Leaving nodes that `self` has not acknowledged yet; ack once the kernel holds no route to them. */
  owedAcks: NodeView[];
  /** Leaving nodes every live node has acknowledged: delete them. */
  finalize: NodeView[];
}

export function planLifecycle(snapshot: ClusterSnapshot, self: string | undefined): LifecyclePlan {
  const markExpired: NodeView[] = [];
  const owedAcks: NodeView[] = [];
  const finalize: NodeView[] = [];
  for (const node of snapshot.nodes) {
    if (node.phase === "active") {
      if (!node.alive && node.name !== self) markExpired.push(node);
      continue;
    }
    if (self !== undefined && node.name !== self && !node.acks.includes(self)) owedAcks.push(node);
    if (missingAcks(snapshot, node).length === 0) finalize.push(node);
  }
  return { markExpired, owedAcks, finalize };
}

/** Live nodes, other than the leaving node itself, that have not yet acknowledged withdrawing routes to it. */
export function missingAcks(snapshot: ClusterSnapshot, leaving: NodeView): string[] {
  return snapshot.nodes.filter((n) => n.alive && n.name !== leaving.name && !leaving.acks.includes(n.name)).map((n) => n.name);
}

/** Nodes others should route to: active ones. A leaving node's routes are withdrawn even while it is still up. */
export function routableNodes(snapshot: ClusterSnapshot): NodeView[] {
  return snapshot.nodes.filter((n) => n.phase === "active");
}
