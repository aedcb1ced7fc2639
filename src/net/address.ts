// IPv4 and IPv6 addresses: strict parsing, RFC 5952 formatting, ordering and arithmetic.
//
// This is the only address parser in podnet, and every layer may import it, so it imports nothing:
// no podnet module, and not node:net either (the CNI plugin is a Bun binary whose start-up is
// measured, and loading node:net costs it about 10 ms; see the README, "The plugin binary").
//
// An address is its family plus its value as an unsigned integer (32 or 128 bits). IPv4-mapped IPv6
// addresses (::ffff:a.b.c.d) stay IPv6, so a v6 prefix never silently contains a v4 address or the
// reverse; `unmapIpv4` converts when a caller wants that.
//
// Accepted text is what Go's net.ParseIP accepts (libcni and Kubernetes validate with it), and no more:
// - IPv4: exactly four decimal parts 0-255, no leading zeros ("010.1.2.3" is refused: some parsers read
//   it as octal, so it means different addresses to different tools), no surrounding whitespace;
// - IPv6: every RFC 4291 section 2.2 text form (full, "::"-compressed, an embedded IPv4 tail), hex
//   digits in either case; zone indices ("fe80::1%eth0") are refused because a zone is not part of an
//   address that can be stored, compared or routed.

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  readonly value: bigint;
}

export class IpParseError extends Error {
  constructor(input: string, what: string, reason: string) {
    super(`invalid ${what} ${JSON.stringify(input)}: ${reason}`);
    this.name = "IpParseError";
  }
}

export function bitsOf(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

export function maxValueOf(family: IpFamily): bigint {
  return (1n << BigInt(bitsOf(family))) - 1n;
}

const DECIMAL_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * The value of a dotted quad by the rules above, or -1 when the text is not one: no regular
 * expression, split or BigInt, because the service proxy checks and orders tens of thousands of
 * addresses per compile. parseIpv4Value's slower path remains the one that says what is wrong.
 */
export function ipv4Number(text: string): number {
  const length = text.length;
  if (length < 7 || length > 15) return -1;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return -1; // a leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return -1;
    } else {
      return -1;
    }
  }
  if (digits === 0 || dots !== 3) return -1;
  return value * 256 + octet;
}

function parseIpv4Value(text: string, original: string): bigint {
  const fast = ipv4Number(text);
  if (fast >= 0) return BigInt(fast);
  const parts = text.split(".");
  if (parts.length !== 4) throw new IpParseError(original, "IP address", "an IPv4 address has four dot-separated parts");
  let value = 0n;
  for (const part of parts) {
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
    if (!HEX_GROUP.test(group)) throw new IpParseError(original, "IP address", `"${group}" is not a group of 1-4 hex digits`);
    return BigInt(`0x${group}`);
  });
}

function parseIpv6Value(text: string): bigint {
  if (text.includes("%")) throw new IpParseError(text, "IP address", "zone indices (%...) are not accepted");
  let body = text;
  // An embedded IPv4 tail (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) stands for the last two groups.
  let ipv4Tail: bigint | undefined;
  const lastColon = body.lastIndexOf(":");
  if (body.slice(lastColon + 1).includes(".")) {
    ipv4Tail = parseIpv4Value(body.slice(lastColon + 1), text);
    body = `${body.slice(0, lastColon + 1)}0:0`;
  }
  const doubleColons = body.split("::").length - 1;
  if (doubleColons > 1) throw new IpParseError(text, "IP address", '"::" may appear only once');
  let groups: bigint[];
  if (doubleColons === 1) {
    const [headText = "", tailText = ""] = body.split("::");
    const head = parseGroups(headText, text);
    const tail = parseGroups(tailText, text);
    const missing = 8 - head.length - tail.length;
    if (missing < 1) throw new IpParseError(text, "IP address", '"::" must stand for at least one group');
    groups = [...head, ...new Array<bigint>(missing).fill(0n), ...tail];
  } else {
    groups = parseGroups(body, text);
    if (groups.length !== 8) throw new IpParseError(text, "IP address", 'an IPv6 address without "::" has eight groups');
  }
  let value = 0n;
  for (const group of groups) value = (value << 16n) | group;
  if (ipv4Tail !== undefined) value |= ipv4Tail;
  return value;
}

/** Parses a textual IPv4 or IPv6 address; throws IpParseError naming the input and the reason. */
export function parseIp(text: string): IpAddress {
  if (typeof text !== "string") throw new IpParseError(String(text), "IP address", "not a string");
  if (text === "") throw new IpParseError(text, "IP address", "empty");
  if (text.includes(":")) return { family: 6, value: parseIpv6Value(text) };
  return { family: 4, value: parseIpv4Value(text, text) };
}

/** parseIp restricted to one family. */
export function parseIpOf(family: IpFamily, text: string): IpAddress {
  const ip = parseIp(text);
  if (ip.family !== family) throw new IpParseError(text, "IP address", `not an IPv${family} address`);
  return ip;
}

/** parseIp that answers undefined instead of throwing. */
export function tryParseIp(text: string): IpAddress | undefined {
  try {
    return parseIp(text);
  } catch {
    return undefined;
  }
}

/** 4 or 6 for a textual IPv4 or IPv6 address, 0 for anything else (the shape of node:net's isIP). */
export function ipFamily(text: string): 0 | IpFamily {
  return tryParseIp(text)?.family ?? 0;
}

export function isIp(text: string): boolean {
  return ipFamily(text) !== 0;
}

export function isIpv4(text: string): boolean {
  return typeof text === "string" && ipv4Number(text) >= 0;
}

export function isIpv6(text: string): boolean {
  return ipFamily(text) === 6;
}

function formatIpv4Value(value: bigint): string {
  return `${(value >> 24n) & 0xffn}.${(value >> 16n) & 0xffn}.${(value >> 8n) & 0xffn}.${value & 0xffn}`;
}

/**
 * Canonical text: dotted quad for IPv4; RFC 5952 section 4 for IPv6 (lower case, no leading zeros,
 * the longest run of two or more zero groups compressed, the first on a tie) with the section 5 dotted
 * tail for IPv4-mapped addresses.
 */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return formatIpv4Value(ip.value);
  if (ip.value >> 32n === 0xffffn) return `::ffff:${formatIpv4Value(ip.value & 0xffffffffn)}`;
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((ip.value >> shift) & 0xffffn));
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

/** Re-formats an address text canonically ("2001:DB8:0::1" → "2001:db8::1"); throws on bad input. */
export function canonicalIpText(text: string): string {
  return formatIp(parseIp(text));
}

/** ::ffff:a.b.c.d → a.b.c.d; any other address unchanged. */
export function unmapIpv4(ip: IpAddress): IpAddress {
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) return { family: 4, value: ip.value & 0xffffffffn };
  return ip;
}

/** Orders IPv4 before IPv6, then numerically. */
export function compareIp(a: IpAddress, b: IpAddress): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

export function ipEquals(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.value === b.value;
}

/** ip + offset (offset may be negative); throws RangeError when the result leaves the address space. */
export function addToIp(ip: IpAddress, offset: bigint): IpAddress {
  const value = ip.value + offset;
  if (value < 0n || value > maxValueOf(ip.family)) {
    throw new RangeError(`${formatIp(ip)} + ${offset} leaves the IPv${ip.family} address space`);
  }
  return { family: ip.family, value };
}

/** The next address, or undefined after the last one of the family. */
export function nextIp(ip: IpAddress): IpAddress | undefined {
  return ip.value === maxValueOf(ip.family) ? undefined : { family: ip.family, value: ip.value + 1n };
}

/** The previous address, or undefined before 0.0.0.0 / ::. */
export function prevIp(ip: IpAddress): IpAddress | undefined {
  return ip.value === 0n ? undefined : { family: ip.family, value: ip.value - 1n };
}

/** Network byte order: 4 bytes for IPv4, 16 for IPv6 (what netlink and sockets carry). */
export function ipToBytes(ip: IpAddress): Uint8Array {
  const length = ip.family === 4 ? 4 : 16;
  const out = new Uint8Array(length);
  let value = ip.value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

/** The address in 4 or 16 network-order bytes; throws RangeError for any other length. */
export function ipFromBytes(bytes: Uint8Array): IpAddress {
  if (bytes.byteLength !== 4 && bytes.byteLength !== 16) throw new RangeError(`an address is 4 or 16 bytes, got ${bytes.byteLength}`);
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return { family: bytes.byteLength === 4 ? 4 : 6, value };
}
