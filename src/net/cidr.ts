// CIDR prefixes: parsing, containment, overlap, first/last/nth address and carving into subnets.
// Pure, imports only ./address.ts (see that file for why this folder imports nothing else).
import { bitsOf, formatIp, IpParseError, parseIp, type IpAddress, type IpFamily } from "./address.ts";

/** A prefix as written: `address` may carry host bits (10.0.0.5/24 keeps the .5, as an interface address does). */
export interface Cidr {
  readonly address: IpAddress;
  readonly prefix: number;
}

export interface ParseCidrOptions {
  /**
   * "allow" (the default) keeps host bits, as an interface address "10.0.0.5/24" needs;
   * "reject" refuses them, so a typo such as 10.244.1.0/16 for a network is caught instead of silently widened.
   */
  hostBits?: "allow" | "reject";
  /** Refuse the other family. */
  family?: IpFamily;
}

const PREFIX_LENGTH = /^(0|[1-9][0-9]{0,2})$/;

/** Parses "address/prefix"; throws IpParseError naming the input and the reason. */
export function parseCidr(text: string, options: ParseCidrOptions = {}): Cidr {
  if (typeof text !== "string") throw new IpParseError(String(text), "CIDR", "not a string");
  const slash = text.indexOf("/");
  if (slash < 0) throw new IpParseError(text, "CIDR", 'missing "/prefix"');
  let address: IpAddress;
  try {
    address = parseIp(text.slice(0, slash));
  } catch (error) {
    throw new IpParseError(text, "CIDR", (error as Error).message);
  }
  if (options.family !== undefined && address.family !== options.family) {
    throw new IpParseError(text, "CIDR", `not an IPv${options.family} prefix`);
  }
  const prefixText = text.slice(slash + 1);
  if (!PREFIX_LENGTH.test(prefixText)) throw new IpParseError(text, "CIDR", `prefix length "${prefixText}" is not a decimal number`);
  const prefix = Number(prefixText);
  const bits = bitsOf(address.family);
  if (prefix > bits) throw new IpParseError(text, "CIDR", `prefix length ${prefix} is longer than ${bits} bits`);
  const cidr = { address, prefix };
  if (options.hostBits === "reject" && (address.value & hostMask(cidr)) !== 0n) {
    throw new IpParseError(text, "CIDR", `host bits are set (the network is ${formatCidr(canonicalCidr(cidr))})`);
  }
  return cidr;
}

/** parseCidr that answers undefined instead of throwing. */
export function tryParseCidr(text: string, options: ParseCidrOptions = {}): Cidr | undefined {
  try {
    return parseCidr(text, options);
  } catch {
    return undefined;
  }
}

/** 4 or 6 for a well-formed "address/prefix" (host bits allowed), 0 otherwise. */
export function cidrFamily(text: string): 0 | IpFamily {
  return tryParseCidr(text)?.address.family ?? 0;
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.address)}/${cidr.prefix}`;
}

/** A single-address prefix: /32 or /128. */
export function hostCidr(ip: IpAddress): Cidr {
  return { address: ip, prefix: bitsOf(ip.family) };
}

function hostMask(cidr: Cidr): bigint {
  return (1n << BigInt(bitsOf(cidr.address.family) - cidr.prefix)) - 1n;
}

/** The netmask as an address, e.g. /24 → 255.255.255.0. */
export function netmaskOf(cidr: Cidr): IpAddress {
  const all = (1n << BigInt(bitsOf(cidr.address.family))) - 1n;
  return { family: cidr.address.family, value: all & ~hostMask(cidr) };
}

/** The first address of the prefix (host bits cleared). */
export function networkOf(cidr: Cidr): IpAddress {
  return { family: cidr.address.family, value: cidr.address.value & ~hostMask(cidr) };
}

/** The last address of the prefix (host bits set). */
export function lastAddressOf(cidr: Cidr): IpAddress {
  return { family: cidr.address.family, value: networkOf(cidr).value | hostMask(cidr) };
}

/** The IPv4 broadcast address; IPv6 has none, so undefined. */
export function broadcastOf(cidr: Cidr): IpAddress | undefined {
  return cidr.address.family === 4 ? lastAddressOf(cidr) : undefined;
}

/** How many addresses the prefix spans. */
export function sizeOf(cidr: Cidr): bigint {
  return hostMask(cidr) + 1n;
}

/** The prefix with host bits cleared, e.g. 10.0.0.5/24 → 10.0.0.0/24. */
export function canonicalCidr(cidr: Cidr): Cidr {
  return { address: networkOf(cidr), prefix: cidr.prefix };
}

/** "10.0.0.5/24" → "10.0.0.0/24" (what nft and route tables want); throws on bad input. */
export function canonicalCidrText(text: string): string {
  return formatCidr(canonicalCidr(parseCidr(text)));
}

/**
 * The n-th address of the prefix counting from its network address (0); a negative n counts back from
 * the last address (-1). Throws RangeError when n falls outside the prefix.
 */
export function nthAddress(cidr: Cidr, n: bigint | number): IpAddress {
  const offset = BigInt(n);
  const size = sizeOf(cidr);
  const index = offset < 0n ? size + offset : offset;
  if (index < 0n || index >= size) throw new RangeError(`address ${offset} is outside ${formatCidr(canonicalCidr(cidr))} (${size} addresses)`);
  return { family: cidr.address.family, value: networkOf(cidr).value + index };
}

export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  return ip.family === cidr.address.family && (ip.value & ~hostMask(cidr)) === networkOf(cidr).value;
}

/** Whether every address of `inner` is in `outer`. */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, networkOf(inner));
}

/** Whether two prefixes share at least one address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.address.family !== b.address.family) return false;
  return cidrContains(a, networkOf(b)) || cidrContains(b, networkOf(a));
}

export function cidrEquals(a: Cidr, b: Cidr): boolean {
  return a.prefix === b.prefix && a.address.family === b.address.family && a.address.value === b.address.value;
}

/** Orders by family, then network address, then shorter prefix first (a supernet before its subnets). */
export function compareCidr(a: Cidr, b: Cidr): number {
  if (a.address.family !== b.address.family) return a.address.family - b.address.family;
  const na = networkOf(a).value;
  const nb = networkOf(b).value;
  if (na !== nb) return na < nb ? -1 : 1;
  return a.prefix - b.prefix;
}

function checkSubnetPrefix(cidr: Cidr, subnetPrefix: number): void {
  const bits = bitsOf(cidr.address.family);
  if (!Number.isInteger(subnetPrefix) || subnetPrefix < cidr.prefix || subnetPrefix > bits) {
    throw new RangeError(`subnet prefix /${subnetPrefix} does not fit in ${formatCidr(canonicalCidr(cidr))} (must be /${cidr.prefix} to /${bits})`);
  }
}

/** How many /subnetPrefix subnets the prefix holds. */
export function subnetCount(cidr: Cidr, subnetPrefix: number): bigint {
  checkSubnetPrefix(cidr, subnetPrefix);
  return 1n << BigInt(subnetPrefix - cidr.prefix);
}

/** The index-th /subnetPrefix subnet of the prefix; throws RangeError out of range. */
export function subnetAt(cidr: Cidr, subnetPrefix: number, index: bigint | number): Cidr {
  const count = subnetCount(cidr, subnetPrefix);
  const i = BigInt(index);
  if (i < 0n || i >= count) throw new RangeError(`subnet index ${i} out of range 0..${count - 1n}`);
  const step = 1n << BigInt(bitsOf(cidr.address.family) - subnetPrefix);
  return { address: { family: cidr.address.family, value: networkOf(cidr).value + i * step }, prefix: subnetPrefix };
}

/** The index of `subnet` among the aligned /subnetPrefix subnets of `cidr`, or undefined when it is not one. */
export function subnetIndex(cidr: Cidr, subnetPrefix: number, subnet: Cidr): bigint | undefined {
  checkSubnetPrefix(cidr, subnetPrefix);
  if (subnet.prefix !== subnetPrefix || !cidrContains(cidr, subnet.address)) return undefined;
  if ((subnet.address.value & hostMask(subnet)) !== 0n) return undefined;
  return (subnet.address.value - networkOf(cidr).value) >> BigInt(bitsOf(cidr.address.family) - subnetPrefix);
}

/** Every /subnetPrefix subnet of the prefix, lowest first (lazily: a /8 holds 2^24 /32s). */
export function* subnetsOf(cidr: Cidr, subnetPrefix: number): Generator<Cidr> {
  const count = subnetCount(cidr, subnetPrefix);
  for (let i = 0n; i < count; i++) yield subnetAt(cidr, subnetPrefix, i);
}
