// Carving node pod subnets out of the cluster CIDR: the policy (which subnet a node gets). Pure: no I/O.
// The address maths is src/net's.
import { formatCidr, parseCidr, subnetAt as netSubnetAt, subnetCount as netSubnetCount, subnetIndex as netSubnetIndex, tryParseCidr, type Cidr } from "../net/cidr.ts";

/** The cluster CIDR as written in the cluster config: IPv4, host bits refused (a typo such as 10.244.1.0/16 is caught, not widened). */
export function parseClusterCidr(text: string): Cidr {
  return parseCidr(text, { family: 4, hostBits: "reject" });
}

/** How many /subnetLength subnets fit in the cluster CIDR. */
export function subnetCount(cluster: Cidr, subnetLength: number): number {
  if (!Number.isInteger(subnetLength) || subnetLength < cluster.prefix || subnetLength > 30) {
    throw new Error(`subnet length /${subnetLength} does not fit in /${cluster.prefix} (must be between /${cluster.prefix} and /30)`);
  }
  return Number(netSubnetCount(cluster, subnetLength));
}

/** The index-th /subnetLength subnet of the cluster CIDR, as text. */
export function subnetAt(cluster: Cidr, subnetLength: number, index: number): string {
  const count = subnetCount(cluster, subnetLength);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new RangeError(`subnet index ${index} out of range 0..${count - 1}`);
  return formatCidr(netSubnetAt(cluster, subnetLength, index));
}

/** The index of `subnet` within the cluster CIDR, or undefined when it is not one of its aligned /subnetLength subnets. */
export function subnetIndex(cluster: Cidr, subnetLength: number, subnet: string): number | undefined {
  const parsed = tryParseCidr(subnet, { hostBits: "reject" });
  if (parsed === undefined) return undefined;
  const index = netSubnetIndex(cluster, subnetLength, parsed);
  return index === undefined ? undefined : Number(index);
}

/**
 * Choose a free subnet. `attempt` 0 takes the lowest free one, so a small cluster gets predictable
 * subnets; later attempts (after losing an allocation race) pick among the free ones at random, so
 * many agents racing for the same lowest subnet spread out instead of colliding again and again.
 */
export function pickFreeSubnet(
  cluster: Cidr,
  subnetLength: number,
  taken: ReadonlySet<string>,
  attempt = 0,
  random: () => number = Math.random,
): string | undefined {
  const count = subnetCount(cluster, subnetLength);
  const takenIndices = new Set<number>();
  for (const subnet of taken) {
    const index = subnetIndex(cluster, subnetLength, subnet);
    if (index !== undefined) takenIndices.add(index);
  }
  const freeCount = count - takenIndices.size;
  if (freeCount <= 0) return undefined;
  // Walk to the n-th free index; counts are at most 2^16 for sane configs, so a scan is fine.
  const wanted = attempt === 0 ? 0 : Math.min(freeCount - 1, Math.floor(random() * freeCount));
  let seen = 0;
  for (let index = 0; index < count; index++) {
    if (takenIndices.has(index)) continue;
    if (seen === wanted) return subnetAt(cluster, subnetLength, index);
    seen++;
  }
  return undefined;
}
