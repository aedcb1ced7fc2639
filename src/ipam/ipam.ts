// The IPAM operations, as the bridge plugin calls them in-process and the standalone
// podnet-ipam plugin calls them from main.ts. Each verb works over an IpamStore.
import {
  CniError,
  CURRENT_VERSION,
  ErrorCode,
  type CniAttachment,
  type CniEnv,
  type CniIpConfig,
  type CniResult,
  type IpamConf,
  type NetConf,
} from "../cni/types.ts";
import { Allocator, type Allocation } from "./allocator.ts";
import { DEFAULT_DATA_DIR, DiskStore } from "./disk-store.ts";
import { formatIp, ipEquals, parseIp, tryParseIp, type IpAddress } from "../net/address.ts";
import { allocatableCount, describeRangeSet, parseRangeSets, rangeFor, rangeSetIndexOf, type RangeSet } from "./range.ts";
import type { IpamStore, Reservation } from "./store.ts";

export interface IpamAttachment {
  containerId: string;
  ifname: string;
}

function ipamConfOf(conf: NetConf): IpamConf {
  if (typeof conf.ipam !== "object" || conf.ipam === null) {
    throw new CniError(ErrorCode.InvalidConfig, `ipam: network ${JSON.stringify(conf.name)} has no "ipam" section`);
  }
  return conf.ipam;
}

/** Maps each requested address to the index of the range set it falls in; at most one per set. */
function assignRequests(sets: readonly RangeSet[], requestedIps: readonly string[]): Map<number, IpAddress> {
  const bySet = new Map<number, IpAddress>();
  for (const text of requestedIps) {
    let ip: IpAddress;
    try {
      ip = parseIp(text);
    } catch (error) {
      throw new CniError(ErrorCode.InvalidConfig, `ipam: requested IP: ${(error as Error).message}`);
    }
    const index = rangeSetIndexOf(sets, ip);
    if (index < 0) {
      const all = sets.map((set, i) => `set ${i}: ${describeRangeSet(set)}`).join("; ");
      throw new CniError(ErrorCode.InvalidConfig, `ipam: requested IP ${formatIp(ip)} is not in any range (${all})`);
    }
    const earlier = bySet.get(index);
    if (earlier && !ipEquals(earlier, ip)) {
      throw new CniError(
        ErrorCode.InvalidConfig,
        `ipam: requested IPs ${formatIp(earlier)} and ${formatIp(ip)} both fall in range set ${index} (${describeRangeSet(sets[index]!)}); one address per range set`,
      );
    }
    bySet.set(index, ip);
  }
  return bySet;
}

function ipConfigOf(allocation: Allocation): CniIpConfig {
  return {
    address: `${formatIp(allocation.ip)}/${allocation.range.subnet.prefix}`,
    gateway: formatIp(allocation.range.gateway),
  };
}

/**
 * Takes one address from every range set for the attachment. All-or-nothing under one lock:
 * if a later set fails, the addresses taken from earlier sets are released again. A retried
 * ADD for an attachment that already holds addresses gets the same addresses back.
 */
export function ipamAdd(conf: NetConf, att: IpamAttachment, requestedIps: string[], store: IpamStore): CniResult {
  const ipamConf = ipamConfOf(conf);
  const sets = parseRangeSets(ipamConf);
  const requests = assignRequests(sets, requestedIps);
  const allocations = store.withLock(() => {
    const done: Allocation[] = [];
    try {
      sets.forEach((set, i) => done.push(new Allocator(set, i, store).allocate(att, requests.get(i))));
    } catch (error) {
      for (const allocation of done) if (allocation.fresh) store.release(formatIp(allocation.ip));
      throw error;
    }
    return done;
  });
  const result: CniResult = { cniVersion: CURRENT_VERSION, ips: allocations.map(ipConfigOf) };
  if (Array.isArray(ipamConf.routes) && ipamConf.routes.length > 0) result.routes = ipamConf.routes.map((route) => ({ ...route }));
  if (conf.dns && typeof conf.dns === "object" && Object.keys(conf.dns).length > 0) result.dns = { ...conf.dns };
  return result;
}

/** Releases every address of the attachment. Idempotent; needs no valid range config. */
export function ipamDel(_conf: NetConf, att: IpamAttachment, store: IpamStore): void {
  store.withLock(() => store.releaseByAttachment(att.containerId, att.ifname));
}

/** The addresses the attachment holds. */
export function ipamHeld(att: IpamAttachment, store: IpamStore): Reservation[] {
  return store.withLock(() => store.findByAttachment(att.containerId, att.ifname));
}

/**
 * Verifies that the attachment holds an address in every range set and, when prevResult is
 * given, that each of its addresses in our ranges is one the attachment holds.
 */
export function ipamCheck(conf: NetConf, att: IpamAttachment, store: IpamStore): void {
  const sets = parseRangeSets(ipamConfOf(conf));
  const held = store.withLock(() => store.findByAttachment(att.containerId, att.ifname));
  const who = `${att.containerId}/${att.ifname}`;
  if (held.length === 0) {
    throw new CniError(ErrorCode.UnknownContainer, `ipam: ${who} holds no address in network ${conf.name}`);
  }
  const heldIps = held.map((r) => tryParseIp(r.ip)).filter((ip): ip is IpAddress => ip !== undefined);
  sets.forEach((set, i) => {
    if (!heldIps.some((ip) => rangeFor(set, ip))) {
      throw new CniError(ErrorCode.Internal, `ipam: ${who} holds no address in range set ${i} (${describeRangeSet(set)})`);
    }
  });
  for (const config of conf.prevResult?.ips ?? []) {
    const ip = tryParseIp(String(config.address).split("/")[0] ?? "");
    if (!ip || rangeSetIndexOf(sets, ip) < 0) continue;
    if (!heldIps.some((h) => ipEquals(h, ip))) {
      throw new CniError(ErrorCode.Internal, `ipam: prevResult has ${formatIp(ip)} but ${who} does not hold it`);
    }
  }
}

/** The reservations GC would release: every one whose attachment is not in `valid`. */
export function ipamStale(valid: CniAttachment[], store: IpamStore): Reservation[] {
  const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
  const keepContainers = new Set(valid.map((a) => a.containerID));
  // A legacy host-local file names only the container; it lives while any interface of it does.
  const alive = (r: Reservation) => (r.ifname === "" ? keepContainers.has(r.containerId) : keep.has(`${r.containerId}\0${r.ifname}`));
  return store.withLock(() => store.list().filter((r) => !alive(r)));
}

/** Releases every reservation whose attachment is not in `valid`; returns what it released. */
export function ipamGc(_conf: NetConf, valid: CniAttachment[], store: IpamStore): Reservation[] {
  return store.withLock(() => {
    const stale = ipamStale(valid, store);
    for (const r of stale) store.release(r.ip);
    return stale;
  });
}

/**
 * Throws CniError(NotReady) when an ADD cannot succeed: the store cannot be locked for writing,
 * or some range set has no free address (ADD takes one from every set, so one full set is enough).
 */
export function ipamStatus(conf: NetConf, store: IpamStore): void {
  const sets = parseRangeSets(ipamConfOf(conf));
  let reservations: Reservation[];
  try {
    reservations = store.withLock(() => store.list());
  } catch (error) {
    throw new CniError(ErrorCode.NotReady, `ipam: address store unusable: ${(error as Error).message}`);
  }
  const taken = reservations.map((r) => tryParseIp(r.ip)).filter((ip): ip is IpAddress => ip !== undefined);
  sets.forEach((set, i) => {
    const used = BigInt(taken.filter((ip) => rangeFor(set, ip)).length);
    if (used >= allocatableCount(set)) {
      throw new CniError(ErrorCode.NotReady, `ipam: no free address in range set ${i} (${describeRangeSet(set)})`);
    }
  });
}

/** The disk store of this network: `<ipam.dataDir ?? /var/lib/cni/networks>/<name>`. */
export function openStoreFor(conf: NetConf): IpamStore {
  const dataDir = typeof conf.ipam?.dataDir === "string" && conf.ipam.dataDir !== "" ? conf.ipam.dataDir : DEFAULT_DATA_DIR;
  let sets: RangeSet[] | undefined;
  const rangeSetOf = (ip: string): number => {
    if (sets === undefined) {
      try {
        sets = parseRangeSets(ipamConfOf(conf));
      } catch {
        sets = [];
      }
    }
    const address = tryParseIp(ip);
    return address ? rangeSetIndexOf(sets, address) : -1;
  };
  return DiskStore.open(dataDir, conf.name, { rangeSetOf });
}

/** What a plugin invocation carries; structurally a skel PluginContext. */
export interface RequestContext {
  conf: NetConf;
  env: Pick<CniEnv, "args">;
}

/**
 * The addresses the runtime asked for, from runtimeConfig.ips (the "ips" capability),
 * args.cni.ips and CNI_ARGS IP=, with any "/prefix" removed and duplicates dropped.
 */
export function requestedIps(ctx: RequestContext): string[] {
  const sources: unknown[] = [ctx.conf.runtimeConfig?.ips, ctx.conf.args?.cni?.ips, ctx.env.args?.ip];
  const seen = new Set<string>();
  for (const source of sources) {
    const values = Array.isArray(source) ? source : typeof source === "string" ? [source] : [];
    for (const value of values) {
      if (typeof value !== "string") {
        throw new CniError(ErrorCode.InvalidConfig, `ipam: requested IP ${JSON.stringify(value)} is not a string`);
      }
      // CNI_ARGS can carry several addresses separated by commas (IP=10.0.0.5,fd00::5).
      for (const part of value.split(",")) {
        const address = part.trim().split("/")[0] ?? "";
        if (address !== "") seen.add(address);
      }
    }
  }
  return [...seen];
}
