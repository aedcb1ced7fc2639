// The one interface through which podnet reads and writes cluster state. etcd implements it first
// (etcd-datastore.ts); a Kubernetes API backend can implement the same contract later.

export interface ClusterConfig {
  /** Pod addresses of the whole cluster, e.g. 10.244.0.0/16. */
  clusterCidr: string;
  /** Prefix length of each node's pod subnet, e.g. 24. */
  subnetLength: number;
  /** Name of the route backend every agent uses, e.g. "host-gw". */
  backend: string;
  /**
   * Liveness lease TTL, which is also the grace period: a node whose agent has not renewed its lease
   * for this long is marked leaving (reason "expired") and, once every live node has withdrawn its
   * routes, its subnet is freed.
   */
  nodeLeaseTtlSeconds: number;
  /**
   * Options per backend, keyed by backend name, e.g. { "vxlan": { "vni": 1, "port": 8472 } }. Each
   * backend validates its own object; the datastore only checks that each is a JSON object.
   */
  backendOptions?: Record<string, Record<string, unknown>>;
  /** ClusterIPs are allocated from here; default 10.96.0.0/12 (10.96.0.10 is kept for cluster DNS). */
  serviceCidr?: string;
  /** Inclusive NodePort range; default 30000-32767. */
  nodePortRange?: { first: number; last: number };
  /** Addresses LoadBalancer services get their IPs from (CIDRs); none by default. */
  loadBalancerCidrs?: string[];
}

export const DEFAULT_CLUSTER_CONFIG: ClusterConfig = {
  clusterCidr: "10.244.0.0/16",
  subnetLength: 24,
  backend: "host-gw",
  nodeLeaseTtlSeconds: 20,
  backendOptions: {},
  serviceCidr: "10.96.0.0/12",
  nodePortRange: { first: 30000, last: 32767 },
  loadBalancerCidrs: [],
};

/** "active": others route to it. "leaving": others withdraw their routes and acknowledge; then the record and subnet go. */
export type NodePhase = "active" | "leaving";
export type LeavingReason = "removed" | "expired";

export interface NodeRecord {
  name: string;
  nodeIp: string;
  podSubnet: string;
  /** Backend-specific facts a peer needs (a VXLAN VTEP MAC, say). host-gw needs none. */
  backendData: Record<string, string>;
  phase: NodePhase;
  leavingReason?: LeavingReason;
  /** ISO time the node was marked leaving. */
  leavingSince?: string;
}

/** A node as seen in one consistent snapshot. */
export interface NodeView extends NodeRecord {
  /** The node's liveness lease is current. */
  alive: boolean;
  /** Datastore revision of the record, for compare-and-swap updates. */
  revision: number;
  /** Names of nodes that acknowledged withdrawing their routes to this (leaving) node. */
  acks: string[];
}

export interface ClusterSnapshot {
  /** Datastore revision the snapshot was read at. */
  revision: number;
  config: ClusterConfig | undefined;
  /** Sorted by name. */
  nodes: NodeView[];
}

export interface NodeRegistrationRequest {
  name: string;
  nodeIp: string;
  backendData?: Record<string, string>;
  /** Subnet to ask for first when the node has no record (e.g. the one in the conflist left by a previous run). */
  preferredSubnet?: string;
}

/** A registered node whose liveness lease this process keeps alive. */
export interface NodeLease {
  readonly node: NodeRecord;
  /** Called once if the lease is lost (expired or revoked on the server); the caller should register again. */
  onLost(listener: (reason: Error) => void): void;
  /** Stop renewing but leave the lease to expire by itself: the grace period then protects a restarting agent's subnet. */
  release(): void;
}

export interface DatastoreWatch {
  close(): Promise<void>;
}

export interface WatchListener {
  /**
   * Node state changed (the config, a node record, liveness, acks or subnet claims); read a fresh
   * snapshot. Cluster objects never fire it: watch those by kind with ObjectStore.watchObjects.
   */
  onChange(): void;
  /** The watch stream connected (true) or broke (false); the backend reconnects by itself. */
  onConnection?(connected: boolean): void;
}

export interface Datastore {
  /** Store `defaults` if no cluster config exists yet, then return the stored config (first writer wins). */
  ensureClusterConfig(defaults: ClusterConfig): Promise<ClusterConfig>;
  /**
   * The whole cluster state at one revision. While a watch is open the backend may answer from a
   * local mirror that the watch keeps current (never older than this client's own last write);
   * `fresh: true` always reads the backing store, as a guard against a missed event.
   */
  snapshot(options?: { fresh?: boolean }): Promise<ClusterSnapshot>;
  /**
   * Register or re-register a node: a node that still has a record keeps its subnet (and an expired,
   * not yet removed node is revived); a new node gets a free subnet, allocated transactionally.
   * Throws NodeRemovedError while an operator's removal of this node is in progress.
   */
  registerNode(request: NodeRegistrationRequest): Promise<NodeLease>;
  /** Mark a node leaving; with expectedRevision, only if the record has not changed since. Returns false if it did not apply. */
  markNodeLeaving(name: string, reason: LeavingReason, expectedRevision?: number): Promise<boolean>;
  /** `acker` has no routes to `leaving` any more. No-op if the leaving node is already gone. */
  ackNodeLeaving(leaving: string, acker: string): Promise<void>;
  /** Delete a leaving node's record, subnet claim and acks, if the record is still at expectedRevision. */
  finalizeNodeRemoval(name: string, expectedRevision: number): Promise<boolean>;
  watch(listener: WatchListener): Promise<DatastoreWatch>;
  close(): Promise<void>;
}

export class NodeRemovedError extends Error {
  constructor(name: string) {
    super(`node ${name} is being removed from the cluster; it can register again once the removal completes`);
    this.name = "NodeRemovedError";
  }
}

export class SubnetsExhaustedError extends Error {
  constructor(clusterCidr: string, subnetLength: number) {
    super(`no free /${subnetLength} subnet left in ${clusterCidr}`);
    this.name = "SubnetsExhaustedError";
  }
}
