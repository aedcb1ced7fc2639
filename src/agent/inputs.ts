// The inputs reconcilers can ask for, by name. The agent's core publishes config, self and snapshot
// from the datastore, and the object kinds reconcilers declare (object-feed.ts); reconcilers publish the
// rest for the core (and for each other). A new kind of input is one more entry here plus its publisher.

import type { ClusterConfig, ClusterSnapshot, NodeRecord } from "../datastore/datastore.ts";
import type { ObjectInputs } from "./object-feed.ts";

/**
 * Besides the entries below, every object kind (Service, EndpointSlice, Pod, Namespace, Deployment) is an
 * input under its own name, fed from the datastore's ObjectStore only if some reconciler declares it.
 */
export interface AgentInputs extends ObjectInputs {
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
