// IP ranges and range sets as host-local understands them, parsed from the IPAM config.
//
// A Range is one subnet with an inclusive [rangeStart, rangeEnd] window and a gateway.
// A RangeSet is several ranges of one family; every ADD takes one address from each set,
// so a dual-stack network has one IPv4 set and one IPv6 set.
import { CniError, ErrorCode, type IpamConf, type IpamRangeConf } from "../cni/types.ts";
import {
  addToIp,
  bitsOf,
  compareIp,
  formatIp,
  ipEquals,
  parseIp,
  type IpAddress,
  type IpFamily,
} from "../net/address.ts";
import { broadcastOf, canonicalCidr, cidrContains, formatCidr, lastAddressOf, networkOf, parseCidr, type Cidr } from "../net/cidr.ts";

export interface Range {
  /** Canonical: host bits are zero. */
  readonly subnet: Cidr;
  readonly rangeStart: IpAddress;
  readonly rangeEnd: IpAddress;
  readonly gateway: IpAddress;
}

export interface RangeSet {
  readonly family: IpFamily;
  readonly ranges: readonly Range[];
}

function invalid(where: string, message: string): CniError {
  return new CniError(ErrorCode.InvalidConfig, `ipam: ${where}: ${message}`);
}

function parseAddressField(where: string, field: string, value: unknown): IpAddress {
  if (typeof value !== "string") throw invalid(where, `${field} must be a string, got ${JSON.stringify(value)}`);
  try {
    return parseIp(value);
  } catch (error) {
    throw invalid(where, `${field}: ${(error as Error).message}`);
  }
}

/**
 * Validates one range and fills in host-local's defaults:
 * rangeStart = network + 1; rangeEnd = broadcast − 1 for IPv4, the last address for IPv6;
 * gateway = network + 1.
 */
export function parseRange(conf: IpamRangeConf, where = "range"): Range {
  if (typeof conf !== "object" || conf === null) throw invalid(where, "a range must be an object with a subnet");
  if (typeof conf.subnet !== "string") throw invalid(where, `subnet must be a CIDR string, got ${JSON.stringify(conf.subnet)}`);
  let written: Cidr;
  try {
    written = parseCidr(conf.subnet);
  } catch (error) {
    throw invalid(where, `subnet: ${(error as Error).message}`);
  }
  const subnet = canonicalCidr(written);
  const family = subnet.address.family;
  if (!ipEquals(written.address, subnet.address)) {
    throw invalid(where, `subnet ${conf.subnet} has host bits set; the network is ${formatCidr(subnet)}`);
  }
  // A /31 or /32 (/127, /128) leaves nothing once the network, gateway and broadcast are set aside.
  if (subnet.prefix > bitsOf(family) - 2) throw invalid(where, `subnet ${formatCidr(subnet)} is too small to allocate from`);

  const network = networkOf(subnet);
  const last = lastAddressOf(subnet);
  const checkInside = (field: string, ip: IpAddress): IpAddress => {
    if (ip.family !== family) throw invalid(where, `${field} ${formatIp(ip)} is not IPv${family} like subnet ${formatCidr(subnet)}`);
    if (!cidrContains(subnet, ip)) throw invalid(where, `${field} ${formatIp(ip)} is outside subnet ${formatCidr(subnet)}`);
    return ip;
  };

  const gateway =
    conf.gateway === undefined ? addToIp(network, 1n) : checkInside("gateway", parseAddressField(where, "gateway", conf.gateway));
  const rangeStart =
    conf.rangeStart === undefined
      ? addToIp(network, 1n)
      : checkInside("rangeStart", parseAddressField(where, "rangeStart", conf.rangeStart));
  const rangeEnd =
    conf.rangeEnd === undefined
      ? family === 4
        ? addToIp(last, -1n)
        : last
      : checkInside("rangeEnd", parseAddressField(where, "rangeEnd", conf.rangeEnd));
  if (compareIp(rangeStart, rangeEnd) > 0) {
    throw invalid(where, `rangeStart ${formatIp(rangeStart)} is after rangeEnd ${formatIp(rangeEnd)}`);
  }
  return { subnet, rangeStart, rangeEnd, gateway };
}

/** Whether ip lies in the range's [rangeStart, rangeEnd] window. */
export function rangeContains(range: Range, ip: IpAddress): boolean {
  return ip.family === range.subnet.address.family && compareIp(range.rangeStart, ip) <= 0 && compareIp(ip, range.rangeEnd) <= 0;
}

/** Why ip may not be handed out from this range, or undefined when it may. */
export function whyNotAllocatable(range: Range, ip: IpAddress): string | undefined {
  if (!rangeContains(range, ip)) return `${formatIp(ip)} is outside ${describeRange(range)}`;
  if (ipEquals(ip, networkOf(range.subnet))) return `${formatIp(ip)} is the network address of ${formatCidr(range.subnet)}`;
  const broadcast = broadcastOf(range.subnet);
  if (broadcast && ipEquals(ip, broadcast)) return `${formatIp(ip)} is the broadcast address of ${formatCidr(range.subnet)}`;
  if (ipEquals(ip, range.gateway)) return `${formatIp(ip)} is the gateway of ${formatCidr(range.subnet)}`;
  return undefined;
}

export function isAllocatable(range: Range, ip: IpAddress): boolean {
  return whyNotAllocatable(range, ip) === undefined;
}

/** The range of the set whose window holds ip. */
export function rangeFor(set: RangeSet, ip: IpAddress): Range | undefined {
  return set.ranges.find((range) => rangeContains(range, ip));
}

/** How many addresses the set can hand out (window sizes minus network, broadcast and gateway). */
export function allocatableCount(set: RangeSet): bigint {
  let count = 0n;
  for (const range of set.ranges) {
    count += range.rangeEnd.value - range.rangeStart.value + 1n;
    const excluded = [networkOf(range.subnet), broadcastOf(range.subnet), range.gateway];
    const seen: IpAddress[] = [];
    for (const ip of excluded) {
      if (ip && rangeContains(range, ip) && !seen.some((s) => ipEquals(s, ip))) {
        seen.push(ip);
        count -= 1n;
      }
    }
  }
  return count;
}

/** "10.244.1.0/24" or, with a narrowed window, "10.244.1.0/24 [10.244.1.10-10.244.1.20]". */
export function describeRange(range: Range): string {
  const defaultStart = addToIp(networkOf(range.subnet), 1n);
  const last = lastAddressOf(range.subnet);
  const defaultEnd = range.subnet.address.family === 4 ? addToIp(last, -1n) : last;
  if (ipEquals(range.rangeStart, defaultStart) && ipEquals(range.rangeEnd, defaultEnd)) return formatCidr(range.subnet);
  return `${formatCidr(range.subnet)} [${formatIp(range.rangeStart)}-${formatIp(range.rangeEnd)}]`;
}

export function describeRangeSet(set: RangeSet): string {
  return set.ranges.map(describeRange).join(", ");
}

function windowsOverlap(a: Range, b: Range): boolean {
  if (a.subnet.address.family !== b.subnet.address.family) return false;
  return compareIp(a.rangeStart, b.rangeEnd) <= 0 && compareIp(b.rangeStart, a.rangeEnd) <= 0;
}

function parseRangeSet(confs: unknown, setIndex: number): RangeSet {
  if (!Array.isArray(confs) || confs.length === 0) {
    throw invalid(`range set ${setIndex}`, "a range set must be a non-empty array of ranges");
  }
  const ranges = confs.map((conf, i) => parseRange(conf as IpamRangeConf, `range set ${setIndex}, range ${i}`));
  const family = ranges[0]!.subnet.address.family;
  ranges.forEach((range, i) => {
    if (range.subnet.address.family !== family) {
      throw invalid(`range set ${setIndex}`, `range ${i} (${describeRange(range)}) is not IPv${family} like range 0; use one range set per family`);
    }
    for (let j = 0; j < i; j++) {
      if (windowsOverlap(ranges[j]!, range)) {
        throw invalid(`range set ${setIndex}`, `range ${j} (${describeRange(ranges[j]!)}) overlaps range ${i} (${describeRange(range)})`);
      }
    }
  });
  return { family, ranges };
}

/**
 * The range sets of an IPAM config. Accepts `ranges: [[…], […]]` and host-local's single-range
 * shorthand (`subnet`, `rangeStart`, `rangeEnd`, `gateway`); like host-local, the shorthand
 * becomes the first set when both are given. Throws CniError(InvalidConfig).
 */
export function parseRangeSets(conf: IpamConf): RangeSet[] {
  if (typeof conf !== "object" || conf === null) throw invalid("config", "missing ipam section");
  const sets: RangeSet[] = [];
  if (conf.subnet !== undefined) {
    sets.push(
      parseRangeSet(
        [{ subnet: conf.subnet, rangeStart: conf.rangeStart, rangeEnd: conf.rangeEnd, gateway: conf.gateway }],
        0,
      ),
    );
  } else if (conf.rangeStart !== undefined || conf.rangeEnd !== undefined || conf.gateway !== undefined) {
    throw invalid("config", "rangeStart, rangeEnd or gateway given without subnet");
  }
  if (conf.ranges !== undefined) {
    if (!Array.isArray(conf.ranges)) throw invalid("config", "ranges must be an array of range sets");
    conf.ranges.forEach((set) => sets.push(parseRangeSet(set, sets.length)));
  }
  if (sets.length === 0) throw invalid("config", "no IP ranges: give ranges or subnet");
  for (let i = 0; i < sets.length; i++) {
    for (let j = 0; j < i; j++) {
      for (const a of sets[j]!.ranges) {
        for (const b of sets[i]!.ranges) {
          if (windowsOverlap(a, b)) {
            throw invalid("config", `range set ${j} (${describeRangeSet(sets[j]!)}) overlaps range set ${i} (${describeRangeSet(sets[i]!)})`);
          }
        }
      }
    }
  }
  return sets;
}

/** Index of the set whose window holds ip, or -1. */
export function rangeSetIndexOf(sets: readonly RangeSet[], ip: IpAddress): number {
  return sets.findIndex((set) => rangeFor(set, ip) !== undefined);
}
