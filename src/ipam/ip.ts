// IPv4 and IPv6 addresses and CIDR prefixes as bigints. Pure: no I/O, no CNI types.
//
// An address is its family plus its value as an unsigned integer (32 or 128 bits).
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) stay IPv6: a v6 subnet never silently
// contains a v4 address or the reverse. `unmapIpv4` converts explicitly when wanted.

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  readonly value: bigint;
}

/** A prefix as written: `address` may carry host bits (10.0.0.5/24 keeps the .5). */
export interface Cidr {
  readonly address: IpAddress;
  readonly prefix: number;
}

export function bitsOf(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

function maxValue(family: IpFamily): bigint {
  return (1n << BigInt(bitsOf(family))) - 1n;
}

export class IpParseError extends Error {
  constructor(input: string, what: string, reason: string) {
    super(`invalid ${what} ${JSON.stringify(input)}: ${reason}`);
    this.name = "IpParseError";
  }
}

const DECIMAL_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4Value(text: string, original: string): bigint {
  const parts = text.split(".");
  if (parts.length !== 4) throw new IpParseError(original, "IP address", "an IPv4 address has four dot-separated parts");
  let value = 0n;
  for (const part of parts) {
    // Leading zeros are refused: some parsers read them as octal, so "010" is ambiguous.
    if (!DECIMAL_OCTET.test(part)) {
      throw new IpParseError(original, "IP address", `"${part}" is not a decimal number 0-255 without leading zeros`);
    }
    const octet = Number(part);
    if (octet > 255) throw new IpParseError(original, "IP address", `${part} is larger than 255`);
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

function parseGroups(text: string, original: string): bigint[] {
  if (text === "") return [];
  return text.split(":").map((group) => {
    if (!HEX_GROUP.test(group)) {
      throw new IpParseError(original, "IP address", `"${group}" is not a group of 1-4 hex digits`);
    }
    return BigInt(`0x${group}`);
  });
}

function parseIpv6Value(text: string, original: string): bigint {
  if (text.includes("%")) throw new IpParseError(original, "IP address", "zone indices (%...) are not accepted");
  let body = text;
  // An embedded IPv4 tail (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) stands for the last two groups.
  let ipv4Tail: bigint | undefined;
  const lastColon = body.lastIndexOf(":");
  if (body.slice(lastColon + 1).includes(".")) {
    ipv4Tail = parseIpv4Value(body.slice(lastColon + 1), original);
    body = `${body.slice(0, lastColon + 1)}0:0`;
  }
  const doubleColons = body.split("::").length - 1;
  if (doubleColons > 1) throw new IpParseError(original, "IP address", '"::" may appear only once');
  let groups: bigint[];
  if (doubleColons === 1) {
    const [headText = "", tailText = ""] = body.split("::");
    const head = parseGroups(headText, original);
    const tail = parseGroups(tailText, original);
    const missing = 8 - head.length - tail.length;
    if (missing < 1) throw new IpParseError(original, "IP address", '"::" must stand for at least one group');
    groups = [...head, ...new Array<bigint>(missing).fill(0n), ...tail];
  } else {
    groups = parseGroups(body, original);
    if (groups.length !== 8) throw new IpParseError(original, "IP address", "an IPv6 address without \"::\" has eight groups");
  }
  let value = 0n;
  for (const group of groups) value = (value << 16n) | group;
  if (ipv4Tail !== undefined) value |= ipv4Tail;
  return value;
}

/** Parses a textual IPv4 or IPv6 address; throws IpParseError with the reason. */
export function parseIp(text: string): IpAddress {
  if (typeof text !== "string") throw new IpParseError(String(text), "IP address", "not a string");
  const trimmed = text.trim();
  if (trimmed === "") throw new IpParseError(text, "IP address", "empty");
  if (trimmed.includes(":")) return { family: 6, value: parseIpv6Value(trimmed, text) };
  return { family: 4, value: parseIpv4Value(trimmed, text) };
}

/** parseIp that answers undefined instead of throwing. */
export function tryParseIp(text: string): IpAddress | undefined {
  try {
    return parseIp(text);
  } catch {
    return undefined;
  }
}

function formatIpv4Value(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join(".");
}

const MAPPED_PREFIX = 0xffffn << 32n;

/** Canonical text: dotted quad for IPv4; RFC 5952 for IPv6 (lower case, longest zero run compressed). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return formatIpv4Value(ip.value);
  if (ip.value >> 32n === 0xffffn) return `::ffff:${formatIpv4Value(ip.value & 0xffffffffn)}`;
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((ip.value >> shift) & 0xffffn));
  // RFC 5952: compress the longest run of two or more zero groups; the first one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** ::ffff:a.b.c.d → a.b.c.d; any other address unchanged. */
export function unmapIpv4(ip: IpAddress): IpAddress {
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) return { family: 4, value: ip.value & 0xffffffffn };
  return ip;
}

/** Parses "address/prefix"; the address may have host bits set. */
export function parseCidr(text: string): Cidr {
  if (typeof text !== "string") throw new IpParseError(String(text), "CIDR", "not a string");
  const trimmed = text.trim();
  const slash = trimmed.indexOf("/");
  if (slash < 0) throw new IpParseError(text, "CIDR", 'missing "/prefix"');
  let address: IpAddress;
  try {
    address = parseIp(trimmed.slice(0, slash));
  } catch (error) {
    throw new IpParseError(text, "CIDR", (error as Error).message);
  }
  const prefixText = trimmed.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) {
    throw new IpParseError(text, "CIDR", `prefix "${prefixText}" is not a decimal number`);
  }
  const prefix = Number(prefixText);
  if (prefix > bitsOf(address.family)) {
    throw new IpParseError(text, "CIDR", `prefix ${prefix} is longer than ${bitsOf(address.family)} bits`);
  }
  return { address, prefix };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.address)}/${cidr.prefix}`;
}

function hostMask(cidr: Cidr): bigint {
  return (1n << BigInt(bitsOf(cidr.address.family) - cidr.prefix)) - 1n;
}

/** The first address of the prefix (host bits cleared). */
export function networkOf(cidr: Cidr): IpAddress {
  return { family: cidr.address.family, value: cidr.address.value & ~hostMask(cidr) };
}

/** The last address of the prefix (host bits set): the broadcast address for IPv4. */
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

export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  return ip.family === cidr.address.family && (ip.value & ~hostMask(cidr)) === networkOf(cidr).value;
}

/** Whether two prefixes share at least one address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.address.family !== b.address.family) return false;
  return cidrContains(a, networkOf(b)) || cidrContains(b, networkOf(a));
}

/** ip + offset (offset may be negative); throws RangeError when the result leaves the address space. */
export function addToIp(ip: IpAddress, offset: bigint): IpAddress {
  const value = ip.value + offset;
  if (value < 0n || value > maxValue(ip.family)) {
    throw new RangeError(`${formatIp(ip)} + ${offset} leaves the IPv${ip.family} address space`);
  }
  return { family: ip.family, value };
}

/** Orders IPv4 before IPv6, then numerically. */
export function compareIp(a: IpAddress, b: IpAddress): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

export function ipEquals(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.value === b.value;
}

/** Re-formats an address text canonically ("2001:DB8:0::1" → "2001:db8::1"). */
export function canonicalIpText(text: string): string {
  return formatIp(parseIp(text));
}

/** For tests and diagnostics: ::ffff:0:0/96. */
export const IPV4_MAPPED_PREFIX: Cidr = { address: { family: 6, value: MAPPED_PREFIX }, prefix: 96 };
