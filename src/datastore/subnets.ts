// IPv4 subnet arithmetic for carving node pod subnets out of the cluster CIDR. Pure: no I/O.

export interface Ipv4Cidr {
  /** Network address as an unsigned 32-bit number, host bits cleared. */
  network: number;
  prefixLength: number;
}

export function parseIpv4(text: string): number {
  const parts = text.split(".");
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${text}`);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) throw new Error(`not an IPv4 address: ${text}`);
    const octet = Number(part);
    if (octet > 255) throw new Error(`not an IPv4 address: ${text}`);
    value = value * 256 + octet;
  }
  return value;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

export function isIpv4(text: string): boolean {
  try {
    parseIpv4(text);
    return true;
  } catch {
    return false;
  }
}

/** Parse "10.244.0.0/16". Host bits must be zero, so a typo such as 10.244.1.0/16 is caught rather than silently widened. */
export function parseIpv4Cidr(text: string): Ipv4Cidr {
  const [address, lengthText, extra] = text.split("/");
  if (address === undefined || lengthText === undefined || extra !== undefined || !/^\d{1,2}$/.test(lengthText)) {
    throw new Error(`not an IPv4 CIDR: ${text}`);
  }
  const prefixLength = Number(lengthText);
  if (prefixLength > 32) throw new Error(`not an IPv4 CIDR: ${text}`);
  const network = parseIpv4(address);
  if ((network & hostMask(prefixLength)) >>> 0 !== 0) throw new Error(`${text} has host bits set`);
  return { network, prefixLength };
}

export function formatIpv4Cidr(cidr: Ipv4Cidr): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefixLength}`;
}

function hostMask(prefixLength: number): number {
  return prefixLength === 0 ? 0xffffffff : (2 ** (32 - prefixLength) - 1) >>> 0;
}

export function cidrContains(outer: Ipv4Cidr, address: number): boolean {
  const size = 2 ** (32 - outer.prefixLength);
  return address >= outer.network && address < outer.network + size;
}

/** How many /subnetLength subnets fit in the cluster CIDR. */
export function subnetCount(cluster: Ipv4Cidr, subnetLength: number): number {
  if (!Number.isInteger(subnetLength) || subnetLength < cluster.prefixLength || subnetLength > 30) {
    throw new Error(`subnet length /${subnetLength} does not fit in /${cluster.prefixLength} (must be between /${cluster.prefixLength} and /30)`);
  }
  return 2 ** (subnetLength - cluster.prefixLength);
}

/** The index-th /subnetLength subnet of the cluster CIDR, as text. */
export function subnetAt(cluster: Ipv4Cidr, subnetLength: number, index: number): string {
  const count = subnetCount(cluster, subnetLength);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new RangeError(`subnet index ${index} out of range 0..${count - 1}`);
  return formatIpv4Cidr({ network: cluster.network + index * 2 ** (32 - subnetLength), prefixLength: subnetLength });
}

/** The index of `subnet` within the cluster CIDR, or undefined when it is not one of its aligned /subnetLength subnets. */
export function subnetIndex(cluster: Ipv4Cidr, subnetLength: number, subnet: string): number | undefined {
  let parsed: Ipv4Cidr;
  try {
    parsed = parseIpv4Cidr(subnet);
  } catch {
    return undefined;
  }
  if (parsed.prefixLength !== subnetLength || !cidrContains(cluster, parsed.network)) return undefined;
  return (parsed.network - cluster.network) / 2 ** (32 - subnetLength);
}

/**
 * Choose a free subnet. `attempt` 0 takes the lowest free one, so a small cluster gets predictable
 * subnets; later attempts (after losing an allocation race) pick among the free ones at random, so
 * many agents racing for the same lowest subnet spread out instead of colliding again and again.
 */
export function pickFreeSubnet(
  cluster: Ipv4Cidr,
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
