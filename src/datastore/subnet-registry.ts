// Storage of node records and subnet claims, without any policy: what a backend (etcd today, the
// Kubernetes API later) must offer so that subnet-policy.ts can allocate, revive and remove nodes.
// flannel splits the same way: pkg/subnet/etcd/registry.go stores, the subnet manager decides.
//
// Every write is all-or-nothing and guarded; a guard that no longer holds makes it return false, and
// the policy decides whether to read again and retry.

import type { NodeRecord } from "./datastore.ts";

export interface StoredNode {
  record: NodeRecord;
  /** Store revision of the record, for guarded writes. */
  revision: number;
}

/**
 * `Liveness` is the backend's handle for "this node is alive" (an etcd lease id, say): the registry
 * attaches it to the node's liveness marker; the policy only passes it through.
 */
export interface SubnetRegistry<Liveness> {
  getNode(name: string): Promise<StoredNode | undefined>;
  /** Every claimed subnet (as "a.b.c.d/len"), whoever holds it. */
  claimedSubnets(): Promise<Set<string>>;
  /**
   * Claim `record.podSubnet` for the node, store the record and mark it alive, if neither the node
   * nor the claim exists yet.
   */
  createNode(record: NodeRecord, liveness: Liveness): Promise<boolean>;
  /**
   * Replace the record, mark it alive and clear the acknowledgements of an earlier removal, if the
   * record is still at `expectedRevision` and the node still holds the claim on its subnet.
   */
  reviveNode(record: NodeRecord, expectedRevision: number, liveness: Liveness): Promise<boolean>;
  /** Replace the record if it is still at `expectedRevision` (liveness and acks untouched). */
  updateNode(record: NodeRecord, expectedRevision: number): Promise<boolean>;
  /** `acker` has withdrawn its routes to `leaving`; recorded only while the leaving node's record exists. */
  addAck(leaving: string, acker: string): Promise<void>;
  /**
   * Delete the record, its subnet claim, its liveness marker and its acks, if the record is still at
   * `expectedRevision` and the claim still names the node.
   */
  deleteNode(record: NodeRecord, expectedRevision: number): Promise<boolean>;
}
