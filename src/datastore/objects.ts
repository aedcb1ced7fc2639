// The cluster-object half of the datastore: Kubernetes-shaped Namespaces, Pods, Services,
// EndpointSlices and Deployments, stored as their Kubernetes JSON. etcd implements it first; a
// Kubernetes API source can implement the same contract later (list + watch by kind is exactly
// what an informer gives).
//
// Consumers subscribe per kind, so a change to an EndpointSlice never wakes the route reconciler.

import type { KindMap, ObjectKind } from "../k8s/types.ts";

export type ObjectEventType = "added" | "modified" | "deleted";

export interface ObjectEvent<K extends ObjectKind = ObjectKind> {
  type: ObjectEventType;
  kind: K;
  /** The object after the change; for "deleted", the last stored version. */
  object: KindMap[K];
  /** Datastore revision of the change. */
  revision: number;
}

export interface ObjectList<K extends ObjectKind> {
  items: KindMap[K][];
  /** Datastore revision the list was read at; a watch from revision + 1 misses nothing. */
  revision: number;
}

export interface ObjectWatchHandler {
  /**
   * Called once per event, in revision order. Before the first event the handler gets one `onSync`
   * with the full current list of each watched kind (also after a reconnect that had to re-list, in
   * which case consumers must replace, not merge, their state).
   */
  onSync(lists: { [K in ObjectKind]?: KindMap[K][] }, revision: number): void;
  onEvent(event: ObjectEvent): void;
  /** The watch stream connected (true) or broke (false); it reconnects by itself. */
  onConnection?(connected: boolean): void;
}

/**
 * One write of an all-or-nothing transaction. Preconditions are checked together with the writes:
 * if any fails, nothing is written and `commit` rejects with ConflictError.
 */
export type ObjectWrite =
  /** Create; fails if an object of that kind, namespace and name exists. */
  | { op: "create"; object: KindMap[ObjectKind] }
  /** Replace; with `metadata.resourceVersion` set, only if the stored object is still at it. */
  | { op: "update"; object: KindMap[ObjectKind] }
  /** Delete; with `resourceVersion`, only if still at it. Deleting a missing object is a conflict. */
  | { op: "delete"; kind: ObjectKind; namespace?: string; name: string; resourceVersion?: string }
  /**
   * Claim a unique token in a named pool (a ClusterIP, a NodePort, a LoadBalancer IP): fails if
   * anyone holds it. `owner` is stored with the claim ("namespace/name" of the Service).
   */
  | { op: "claim"; pool: string; token: string; owner: string }
  /** Release a claim; a missing claim is not an error. */
  | { op: "release"; pool: string; token: string };

export interface ObjectStore {
  get<K extends ObjectKind>(kind: K, namespace: string | undefined, name: string): Promise<KindMap[K] | undefined>;
  /** Every object of a kind, in one namespace or (namespace undefined) all of them. */
  list<K extends ObjectKind>(kind: K, namespace?: string): Promise<ObjectList<K>>;
  /** Who holds each token of a pool (token → owner). */
  claims(pool: string): Promise<Map<string, string>>;
  /**
   * Apply every write atomically. Objects written get `metadata.resourceVersion` (the new revision),
   * and on create `metadata.uid` and `metadata.creationTimestamp`. Returns the revision.
   */
  commit(writes: readonly ObjectWrite[]): Promise<number>;
  /** Watch some kinds: a full list first (onSync), then every change. */
  watchObjects(kinds: readonly ObjectKind[], handler: ObjectWatchHandler): Promise<{ close(): Promise<void> }>;
}

export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConflictError";
  }
}
