// A backend turns the cluster's node list into this node's kernel state (routes, tunnels, FDB entries).
// host-gw is the first; a VXLAN backend for nodes without a shared L2 segment implements the same interface.

import type { NodeView } from "../datastore/datastore.ts";

export interface BackendSyncResult {
  /** Routes (or other per-peer entries) of ours the kernel holds after the sync. */
  routesProgrammed: number;
  /** Kernel changes this sync made; 0 once the kernel matches. */
  changes: { add: number; replace: number; delete: number };
  /** Kernel requests that failed; the next sync retries them. */
  errors: string[];
  /** Destinations we left alone because a route someone else made already covers them. */
  conflicts: string[];
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
   * touching nothing the backend did not create. Idempotent: called on every datastore change and on
   * every periodic resync, so it also repairs state changed by hand.
   */
  reconcile(nodes: readonly NodeView[], self: string): BackendSyncResult;
}
