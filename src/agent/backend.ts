// A backend turns the cluster's node list into this node's kernel state (routes, tunnels, FDB entries).
// host-gw is the first; a VXLAN backend for nodes without a shared L2 segment implements the same interface.
//
// Life of a backend, driven by the routes reconciler (routes-reconciler.ts):
//   factory.build(options, env)  validates its options (a BackendConfigError names the bad field) and
//                                creates what it needs; a throw leaves the node NotReady, retried with backoff
//   reconcile(nodes, self)       on every node-list change and every resync
//   mtu()                        after each reconcile: the MTU pods must use, written into the conflist
//   teardown()                   when the cluster config switches to another backend: remove all its state
//
// Ownership: every backend keeps to state it can recognise as its own (routes with PODNET_ROUTE_PROTOCOL,
// devices of its own name) and never touches anything else.

import type { NodeView } from "../datastore/datastore.ts";
import type { OverlayKernel } from "./overlay-kernel.ts";
import type { RouteTable } from "./route-table.ts";

export interface BackendSyncResult {
  /** Routes (or other per-peer entries) of ours the kernel holds after the sync. */
  routesProgrammed: number;
  /** Kernel changes this sync made; 0 once the kernel matches. */
  changes: { add: number; replace: number; delete: number };
  /** Kernel requests that failed; the next sync retries them. */
  errors: string[];
  /** Destinations we left alone because a route someone else made already covers them. */
  conflicts: string[];
  /**
   * Names of nodes that are not active but for which the kernel may still hold state of ours, because
   * removing it failed this time. Every other non-active node is withdrawn from, and can be acknowledged.
   */
  notWithdrawn: string[];
  /**
   * Peers this backend cannot reach as configured (host-gw: a peer's node IP is not on-link). They get no
   * state at all, rather than half-working routes; the agent reports them in /status, the log and a metric.
   */
  unreachable?: UnreachablePeers;
}

export interface UnreachablePeers {
  /** A short condition name, like a Kubernetes node condition's type. */
  reason: string;
  /** What is wrong and what to do about it, naming the peers. */
  message: string;
  peers: { name: string; nodeIp: string }[];
}

export interface Backend {
  readonly name: string;
  /**
   * Facts about this node that peers' backends need, published in the node's record as
   * `backendData` (a VXLAN backend would give its VTEP MAC). host-gw needs none.
   */
  nodeData?(): Record<string, string>;
  /**
   * Make the kernel hold exactly what reaching `nodes` (every node record, ourselves included) needs,
   * touching nothing the backend did not create. Nodes that are not active (leaving) get nothing: after
   * a sync without errors the kernel holds nothing of ours that points at them. Idempotent: called on
   * every datastore change and on every periodic resync, so it also repairs state changed by hand.
   */
  reconcile(nodes: readonly NodeView[], self: string): BackendSyncResult;
  /** The MTU pods on this node must use with this backend (an overlay subtracts its header). */
  mtu(): number;
  /** Backend-specific facts for /status (vxlan: device, VTEP MAC, peers), as of the last reconcile. */
  describe?(): object;
  /** Remove everything this backend put in the kernel; it is not used again afterwards. */
  teardown(): void;
}

/** What a backend may use: this node's identity and the agent's kernel views. */
export interface BackendEnv {
  nodeName: string;
  nodeIp: string;
  routeTable: RouteTable;
  /** The overlay's view of devices, neighbours and FDB entries (vxlan); backends without a device ignore it. */
  overlay?: OverlayKernel;
}

export interface BackendFactory {
  readonly name: string;
  /**
   * Validate `options` (the cluster config's `backendOptions[name]`, `{}` when absent) and build the
   * backend. Throws BackendConfigError for options it does not accept, naming the field.
   */
  build(options: Readonly<Record<string, unknown>>, env: BackendEnv): Backend;
  /**
   * Remove whatever a backend of this kind (of this run or an earlier one) holds for `nodes`, without
   * needing its options. Used while no backend can be built, so leaving nodes can still be
   * acknowledged truthfully: state an earlier run left for them is withdrawn first. Returns how many
   * entries it removed.
   */
  withdraw(nodes: readonly NodeView[], env: BackendEnv): number;
}

/** The cluster config asks for a backend this agent cannot build as configured. */
export class BackendConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackendConfigError";
  }
}

/** Reject keys a backend does not know, so a misspelt option is an error rather than silently ignored. */
export function rejectUnknownOptions(backend: string, options: Readonly<Record<string, unknown>>, known: readonly string[]): void {
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length === 0) return;
  const accepted = known.length === 0 ? "it takes none" : `it takes ${known.join(", ")}`;
  throw new BackendConfigError(`backendOptions.${backend}: unknown option${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => JSON.stringify(k)).join(", ")} (${accepted})`);
}
