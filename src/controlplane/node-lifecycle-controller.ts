// The node lifecycle controller: the duties an agent's least-privilege etcd role forbids it
// (datastore/etcd-roles.ts). A node whose liveness lease expired is marked leaving ("expired"); a leaving
// node that every live peer has acknowledged (routes withdrawn) is deleted, which frees its subnet.
// kube-controller-manager's node lifecycle controller plays this part in Kubernetes.
//
// The decisions are planLifecycle's (datastore/node-lifecycle.ts), made for no node in particular, so
// this controller owes no acks. Every write is guarded by the record's revision: an agent that revives
// its node, or an agent allowed to do the same duty (an etcd without auth), makes the write a no-op.

import type { Datastore } from "../datastore/datastore.ts";
import { planLifecycle } from "../datastore/node-lifecycle.ts";

export type LifecycleDatastore = Pick<Datastore, "snapshot" | "markNodeLeaving" | "finalizeNodeRemoval">;

export interface LifecycleActions {
  /** Nodes this pass marked leaving because their liveness lease had expired. */
  expired: string[];
  /** Leaving nodes this pass deleted. */
  removed: string[];
}

export class NodeLifecycleController {
  constructor(
    private readonly datastore: LifecycleDatastore,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** One pass over a fresh snapshot (a cached one could be missing an ack and delay nothing, but could also be stale the other way). */
  async reconcile(): Promise<LifecycleActions> {
    const snapshot = await this.datastore.snapshot({ fresh: true });
    const plan = planLifecycle(snapshot, undefined);
    const actions: LifecycleActions = { expired: [], removed: [] };
    for (const node of plan.markExpired) {
      if (await this.datastore.markNodeLeaving(node.name, "expired", node.revision)) {
        actions.expired.push(node.name);
        this.log(`node ${node.name} missed its liveness lease; marked leaving (expired)`);
      }
    }
    for (const node of plan.finalize) {
      if (await this.datastore.finalizeNodeRemoval(node.name, node.revision)) {
        actions.removed.push(node.name);
        this.log(`node ${node.name} removed; subnet ${node.podSubnet} is free`);
      }
    }
    return actions;
  }
}
