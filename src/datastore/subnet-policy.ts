// Subnet-allocation policy: which subnet a node gets, who keeps one across restarts, when a node may
// come back, and the rules of two-phase removal. It knows nothing of etcd; it works on any
// SubnetRegistry (storage), as flannel's subnet manager works on its registry.

import {
  NodeRemovedError,
  SubnetsExhaustedError,
  type ClusterConfig,
  type LeavingReason,
  type NodeRecord,
  type NodeRegistrationRequest,
} from "./datastore.ts";
import type { SubnetRegistry } from "./subnet-registry.ts";
import { isIpv4 } from "../net/address.ts";
import { parseClusterCidr, pickFreeSubnet, subnetIndex } from "./subnets.ts";

export interface AllocationOptions {
  /** How many times to read again and retry after losing a race; default 50. */
  maxAttempts?: number;
  /** Randomness for spreading racing nodes over the free subnets (tests pass their own). */
  random?: () => number;
}

export function isValidNodeName(name: string): boolean {
  return /^[a-z0-9]([a-z0-9.-]{0,62}[a-z0-9])?$/.test(name);
}

/**
 * Register a node, or register it again:
 * - a node that still has a record keeps its subnet (an expired, not yet removed node is revived);
 * - a node an operator is removing is refused (NodeRemovedError) until the removal completes;
 * - a new node gets its preferred subnet if that is free and inside the cluster CIDR, else the lowest
 *   free one, and after losing a race a random free one, so many nodes starting together spread out.
 */
export async function registerNode<Liveness>(
  registry: SubnetRegistry<Liveness>,
  config: ClusterConfig,
  request: NodeRegistrationRequest,
  liveness: Liveness,
  options: AllocationOptions = {},
): Promise<NodeRecord> {
  if (!isValidNodeName(request.name)) throw new Error(`invalid node name ${JSON.stringify(request.name)}`);
  if (!isIpv4(request.nodeIp)) throw new Error(`invalid node IP ${JSON.stringify(request.nodeIp)}`);
  const cluster = parseClusterCidr(config.clusterCidr);
  const maxAttempts = options.maxAttempts ?? 50;
  const fresh = (podSubnet: string): NodeRecord => ({
    name: request.name,
    nodeIp: request.nodeIp,
    podSubnet,
    backendData: request.backendData ?? {},
    phase: "active",
  });

  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const existing = await registry.getNode(request.name);
    if (existing) {
      const previous = existing.record;
      if (previous.phase === "leaving" && previous.leavingReason === "removed") throw new NodeRemovedError(request.name);
      const record = fresh(previous.podSubnet);
      if (await registry.reviveNode(record, existing.revision, liveness)) return record;
      continue;
    }
    const taken = await registry.claimedSubnets();
    const preferred = request.preferredSubnet;
    const subnet =
      attempt === 0 && preferred !== undefined && !taken.has(preferred) && subnetIndex(cluster, config.subnetLength, preferred) !== undefined
        ? preferred
        : pickFreeSubnet(cluster, config.subnetLength, taken, attempt, options.random);
    if (subnet === undefined) throw new SubnetsExhaustedError(config.clusterCidr, config.subnetLength);
    const record = fresh(subnet);
    if (await registry.createNode(record, liveness)) return record;
  }
  throw new Error(`could not register node ${request.name} after ${maxAttempts} attempts (allocation contention)`);
}

/**
 * Mark a node leaving; with `expectedRevision`, only if the record has not changed since. An
 * operator's removal is not downgraded to an expiry. Returns false if it did not apply.
 */
export async function markNodeLeaving<Liveness>(
  registry: SubnetRegistry<Liveness>,
  name: string,
  reason: LeavingReason,
  expectedRevision?: number,
  now: () => Date = () => new Date(),
): Promise<boolean> {
  const existing = await registry.getNode(name);
  if (!existing) return false;
  if (expectedRevision !== undefined && existing.revision !== expectedRevision) return false;
  const record = existing.record;
  if (record.phase === "leaving" && (record.leavingReason === reason || record.leavingReason === "removed")) return true;
  const leaving: NodeRecord = { ...record, phase: "leaving", leavingReason: reason, leavingSince: now().toISOString() };
  return registry.updateNode(leaving, existing.revision);
}

/** Delete a leaving node's record, claim and acks, if the record is still at `expectedRevision`. */
export async function finalizeNodeRemoval<Liveness>(registry: SubnetRegistry<Liveness>, name: string, expectedRevision: number): Promise<boolean> {
  const existing = await registry.getNode(name);
  if (!existing || existing.revision !== expectedRevision) return false;
  if (existing.record.phase !== "leaving") return false;
  return registry.deleteNode(existing.record, expectedRevision);
}
