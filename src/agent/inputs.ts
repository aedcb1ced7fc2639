// The inputs reconcilers can ask for, by name. The agent's core publishes the first three from the
// datastore; reconcilers publish the rest for the core (and for each other). A new input (say the
// Services and EndpointSlices of the service proxy) is one more entry here plus whoever publishes it.

import type { ClusterConfig, ClusterSnapshot, NodeRecord } from "../datastore/datastore.ts";

export interface AgentInputs {
  /** The cluster config; republished only when its content changes. */
  config: ClusterConfig;
  /** This node's record as registered (its pod subnet); set once registered. */
  self: NodeRecord;
  /** The last datastore snapshot read: every node, at one revision. */
  snapshot: ClusterSnapshot;
  /** From the routes reconciler: the MTU pods must use (the backend's, or the agent's --mtu). */
  podMtu: number;
  /** From the routes reconciler: this node's backendData for its record (a VTEP MAC, say). */
  backendData: Record<string, string>;
  /**
   * From the routes reconciler: leaving nodes the kernel holds nothing of ours for, as
   * `name@revision` of the record it saw leaving; the core acknowledges exactly these.
   */
  withdrawn: ReadonlySet<string>;
}

export function withdrawnKey(node: { name: string; revision: number }): string {
  return `${node.name}@${node.revision}`;
}

export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const item of a) if (!b.has(item)) return false;
  return true;
}
