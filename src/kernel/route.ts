// IP routes over rtnetlink: single adds and deletes, listing, and batched changes for the
// node agent, which programs one route per peer node.
import { AF_INET, AF_INET6 } from "./libc.ts";
import {
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTMSG_LEN,
  RTM_DELROUTE,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  attr,
  attrMap,
  bytesToIp,
  decodeRtMsg,
  encodeAttrs,
  encodeRtMsg,
  ipToBytes,
  parseAttrs,
  cidrToBytes,
  readU32,
  u32,
  type AttrSpec,
  type NlRequest,
} from "./netlink/codec.ts";
import type { KernelError, NetlinkSocket } from "./netlink/socket.ts";

const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_METRICS = 8;
const RTA_TABLE = 15;
const RTAX_MTU = 2;
const RTAX_ADVMSS = 8;
const RTN_UNICAST = 1;
const RTM_F_CLONED = 0x200;
const RTNH_F_ONLINK = 0x4;

export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;
export const RT_TABLE_LOCAL = 255;
/** Route protocols (rtm_protocol): who installed the route. */
export const RTPROT_KERNEL = 2;
export const RTPROT_BOOT = 3;
export const RTPROT_STATIC = 4;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RT_SCOPE_NOWHERE = 255;

export interface RouteSpec {
  /** Destination CIDR; "0.0.0.0/0" or "::/0" for the default route. */
  dst: string;
  gw?: string;
  oifIndex?: number;
  /** Routing table; main (254) when absent. */
  table?: number;
  /** rtm_protocol; boot (3) when absent on add, as `ip route add` does. */
  protocol?: number;
  /** rtm_scope; on add, universe with a gateway and link without one, when absent. */
  scope?: number;
  /** RTA_PRIORITY, shown by `ip route` as "metric". */
  metric?: number;
  mtu?: number;
  advmss?: number;
  /** Inferred from `dst` when absent. */
  family?: 4 | 6;
  /** Take the gateway as directly reachable on `oifIndex` even without a matching subnet (VXLAN overlays). */
  onlink?: boolean;
}

function describe(verb: string, r: RouteSpec): string {
  let text = `${verb} route ${r.dst}`;
  if (r.gw) text += ` via ${r.gw}`;
  if (r.oifIndex !== undefined) text += ` dev #${r.oifIndex}`;
  if (r.onlink) text += " onlink";
  if (r.table !== undefined && r.table !== RT_TABLE_MAIN) text += ` table ${r.table}`;
  if (r.metric !== undefined) text += ` metric ${r.metric}`;
  return text;
}

/** The header and attributes shared by add and delete. */
function routeMessage(r: RouteSpec, forDelete: boolean): { header: Uint8Array; attrs: AttrSpec[] } {
  const { bytes, prefix, family } = cidrToBytes(r.dst);
  if (r.family !== undefined && r.family !== family) throw new Error(`route ${r.dst} is not an IPv${r.family} destination`);
  const table = r.table ?? RT_TABLE_MAIN;
  const attrs: AttrSpec[] = [];
  if (prefix > 0) attrs.push(attr(RTA_DST, bytes));
  if (r.gw) {
    const gw = ipToBytes(r.gw);
    if (gw.byteLength !== bytes.byteLength) throw new Error(`route ${r.dst}: gateway ${r.gw} is of another address family`);
    attrs.push(attr(RTA_GATEWAY, gw));
  }
  if (r.oifIndex !== undefined) attrs.push(attr(RTA_OIF, u32(r.oifIndex)));
  if (r.metric !== undefined) attrs.push(attr(RTA_PRIORITY, u32(r.metric)));
  // Tables above 255 do not fit rtm_table; RTA_TABLE always carries the full number.
  attrs.push(attr(RTA_TABLE, u32(table)));
  if (!forDelete) {
    const metrics: AttrSpec[] = [];
    if (r.mtu !== undefined) metrics.push(attr(RTAX_MTU, u32(r.mtu)));
    if (r.advmss !== undefined) metrics.push(attr(RTAX_ADVMSS, u32(r.advmss)));
    // RTA_METRICS is a nest the kernel parses without expecting the NESTED flag bit.
    if (metrics.length > 0) attrs.push(attr(RTA_METRICS, encodeAttrs(metrics)));
  }
  // A delete matches on what it names: protocol 0 and scope NOWHERE are wildcards, so a
  // route added by another tool (protocol boot, scope link, ...) is still found.
  const header = encodeRtMsg({
    family: family === 4 ? AF_INET : AF_INET6,
    dstLen: prefix,
    table: table < 256 ? table : RT_TABLE_UNSPEC,
    protocol: forDelete ? (r.protocol ?? 0) : (r.protocol ?? RTPROT_BOOT),
    scope: forDelete ? (r.scope ?? RT_SCOPE_NOWHERE) : (r.scope ?? (r.gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK)),
    type: forDelete ? 0 : RTN_UNICAST,
    flags: !forDelete && r.onlink ? RTNH_F_ONLINK : 0,
  });
  return { header, attrs };
}

function addRequest(r: RouteSpec, replace: boolean): NlRequest {
  const { header, attrs } = routeMessage(r, false);
  return { type: RTM_NEWROUTE, flags: NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL), header, attrs };
}

function deleteRequest(r: RouteSpec): NlRequest {
  const { header, attrs } = routeMessage(r, true);
  return { type: RTM_DELROUTE, flags: 0, header, attrs };
}

/** Adds a route; fails with EEXIST if it exists, unless `replace` is set. */
export function addRoute(nl: NetlinkSocket, r: RouteSpec, opts: { replace?: boolean } = {}): void {
  nl.request(addRequest(r, opts.replace ?? false), describe(opts.replace ? "replace" : "add", r));
}

/** Deletes a route; fails with ESRCH if no route matches. */
export function deleteRoute(nl: NetlinkSocket, r: RouteSpec): void {
  nl.request(deleteRequest(r), describe("delete", r));
}

/**
 * Unicast routes of one family. `table` defaults to main; pass 0 for every table.
 * Cached clones (IPv6 exceptions) are left out.
 */
export function listRoutes(nl: NetlinkSocket, filter: { family: 4 | 6; table?: number; protocol?: number }): RouteSpec[] {
  const family = filter.family === 4 ? AF_INET : AF_INET6;
  const wantTable = filter.table ?? RT_TABLE_MAIN;
  const messages = nl.dump({ type: RTM_GETROUTE, flags: 0, header: encodeRtMsg({ family }) }, `list IPv${filter.family} routes`);
  const routes: RouteSpec[] = [];
  for (const msg of messages) {
    if (msg.type !== RTM_NEWROUTE) continue;
    const header = decodeRtMsg(msg.payload);
    if (header.family !== family || header.type !== RTN_UNICAST || header.flags & RTM_F_CLONED) continue;
    const attrs = attrMap(msg.payload.subarray(RTMSG_LEN));
    const tableAttr = attrs.get(RTA_TABLE);
    const table = tableAttr ? readU32(tableAttr) : header.table;
    if (wantTable !== 0 && table !== wantTable) continue;
    if (filter.protocol !== undefined && header.protocol !== filter.protocol) continue;
    const dst = attrs.get(RTA_DST);
    const zero = filter.family === 4 ? "0.0.0.0" : "::";
    const route: RouteSpec = {
      dst: `${dst ? bytesToIp(dst) : zero}/${header.dstLen}`,
      table,
      protocol: header.protocol,
      scope: header.scope,
      family: filter.family,
    };
    const gw = attrs.get(RTA_GATEWAY);
    if (gw) route.gw = bytesToIp(gw);
    if (header.flags & RTNH_F_ONLINK) route.onlink = true;
    const oif = attrs.get(RTA_OIF);
    if (oif) route.oifIndex = readU32(oif);
    const priority = attrs.get(RTA_PRIORITY);
    if (priority) route.metric = readU32(priority);
    const metrics = attrs.get(RTA_METRICS);
    if (metrics) {
      for (const m of parseAttrs(metrics)) {
        if (m.type === RTAX_MTU) route.mtu = readU32(m.data);
        if (m.type === RTAX_ADVMSS) route.advmss = readU32(m.data);
      }
    }
    routes.push(route);
  }
  return routes;
}

export interface RouteChange {
  op: "replace" | "delete";
  route: RouteSpec;
}

/**
 * Applies many route changes in few syscalls (requests packed into ~32 KiB datagrams).
 * Each change succeeds or fails on its own; the result lists every change with its error.
 */
export function applyRouteChanges(nl: NetlinkSocket, changes: readonly RouteChange[]): { route: RouteSpec; error?: KernelError }[] {
  const errors = nl.batch(
    changes.map((c) =>
      c.op === "replace"
        ? { request: addRequest(c.route, true), op: describe("replace", c.route) }
        : { request: deleteRequest(c.route), op: describe("delete", c.route) },
    ),
  );
  return changes.map((c, i) => {
    const error = errors[i];
    return error ? { route: c.route, error } : { route: c.route };
  });
}

// ---- the kernel's own route look-up (RTM_GETROUTE for one address, as `ip route get` does) ----

const RTA_SRC = 2;
const RTA_IIF = 3;
const RTA_PREFSRC = 7;
const RTA_MARK = 16;
const RTA_IP_PROTO = 27;
const RTA_SPORT = 28;
const RTA_DPORT = 29;
/** Answer with the FIB entry that matched rather than the resulting dst (kernel 4.13+, `ip route get … fibmatch`). */
const RTM_F_FIB_MATCH = 0x2000;
const IPPROTO_NUMBERS = { icmp: 1, tcp: 6, udp: 17 } as const;

/** rtm_type of a route or of a look-up's answer. */
export const ROUTE_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat",
};

export interface RouteQuery {
  dst: string;
  src?: string;
  /** The interface the packet came in on: the look-up is then the forwarding path (ip_route_input), not the local output path. */
  iifIndex?: number;
  /** fwmark, as nft's `meta mark` would have set it. */
  mark?: number;
  proto?: keyof typeof IPPROTO_NUMBERS;
  sport?: number;
  dport?: number;
}

export interface RouteLookup {
  /** "unicast", "local", "unreachable", "blackhole", "prohibit", … */
  type: string;
  /** The resulting route for this one packet (the dst cache entry). */
  gw?: string;
  oifIndex?: number;
  prefsrc?: string;
  table: number;
  /** The FIB entry that decided it: prefix, protocol, scope, gateway, device, as `ip route get … fibmatch` shows. */
  entry?: RouteSpec & { type: string };
}

function lookupRequest(q: RouteQuery, fibMatch: boolean): NlRequest {
  const dst = ipToBytes(q.dst);
  const family = dst.byteLength === 4 ? AF_INET : AF_INET6;
  const full = dst.byteLength * 8;
  const attrs: AttrSpec[] = [attr(RTA_DST, dst)];
  if (q.src !== undefined) attrs.push(attr(RTA_SRC, ipToBytes(q.src)));
  if (q.iifIndex !== undefined) attrs.push(attr(RTA_IIF, u32(q.iifIndex)));
  if (q.mark !== undefined) attrs.push(attr(RTA_MARK, u32(q.mark)));
  if (q.proto !== undefined) attrs.push(attr(RTA_IP_PROTO, new Uint8Array([IPPROTO_NUMBERS[q.proto]])));
  // Ports travel in network byte order.
  const be16 = (n: number): Uint8Array => new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
  if (q.sport !== undefined) attrs.push(attr(RTA_SPORT, be16(q.sport)));
  if (q.dport !== undefined) attrs.push(attr(RTA_DPORT, be16(q.dport)));
  return {
    type: RTM_GETROUTE,
    flags: 0,
    header: encodeRtMsg({ family, dstLen: full, srcLen: q.src !== undefined ? full : 0, flags: fibMatch ? RTM_F_FIB_MATCH : 0 }),
    attrs,
  };
}

function describeQuery(q: RouteQuery): string {
  return `route get ${q.dst}${q.src ? ` from ${q.src}` : ""}${q.iifIndex !== undefined ? ` iif #${q.iifIndex}` : ""}${q.mark !== undefined ? ` mark ${q.mark}` : ""}`;
}

/**
 * Asks the kernel which route one packet takes: the same look-up a real packet makes, with its input
 * interface, source, mark and ports. Throws KernelError when the kernel has none (ENETUNREACH,
 * EHOSTUNREACH; EXDEV/EINVAL when the input path refuses the source).
 */
export function lookupRoute(nl: NetlinkSocket, q: RouteQuery): RouteLookup {
  const op = describeQuery(q);
  const reply = nl.request(lookupRequest(q, false), op).find((m) => m.type === RTM_NEWROUTE);
  if (!reply) throw new Error(`${op}: the kernel sent no route`);
  const header = decodeRtMsg(reply.payload);
  const attrs = attrMap(reply.payload.subarray(RTMSG_LEN));
  const tableAttr = attrs.get(RTA_TABLE);
  const result: RouteLookup = { type: ROUTE_TYPE_NAMES[header.type] ?? String(header.type), table: tableAttr ? readU32(tableAttr) : header.table };
  const gw = attrs.get(RTA_GATEWAY);
  if (gw) result.gw = bytesToIp(gw);
  const oif = attrs.get(RTA_OIF);
  if (oif) result.oifIndex = readU32(oif);
  const prefsrc = attrs.get(RTA_PREFSRC);
  if (prefsrc) result.prefsrc = bytesToIp(prefsrc);
  const entry = fibMatch(nl, q, op);
  if (entry) result.entry = entry;
  return result;
}

function fibMatch(nl: NetlinkSocket, q: RouteQuery, op: string): (RouteSpec & { type: string }) | undefined {
  let replies;
  try {
    replies = nl.request(lookupRequest(q, true), `${op} fibmatch`);
  } catch {
    // Local and broadcast answers have no FIB entry to show on some paths; the look-up itself stands.
    return undefined;
  }
  const reply = replies.find((m) => m.type === RTM_NEWROUTE);
  if (!reply) return undefined;
  const header = decodeRtMsg(reply.payload);
  const family = header.family === AF_INET ? 4 : 6;
  const attrs = attrMap(reply.payload.subarray(RTMSG_LEN));
  const dst = attrs.get(RTA_DST);
  const tableAttr = attrs.get(RTA_TABLE);
  const entry: RouteSpec & { type: string } = {
    type: ROUTE_TYPE_NAMES[header.type] ?? String(header.type),
    dst: `${dst ? bytesToIp(dst) : family === 4 ? "0.0.0.0" : "::"}/${header.dstLen}`,
    table: tableAttr ? readU32(tableAttr) : header.table,
    protocol: header.protocol,
    scope: header.scope,
    family,
  };
  const gw = attrs.get(RTA_GATEWAY);
  if (gw) entry.gw = bytesToIp(gw);
  const oif = attrs.get(RTA_OIF);
  if (oif) entry.oifIndex = readU32(oif);
  if (header.flags & RTNH_F_ONLINK) entry.onlink = true;
  const priority = attrs.get(RTA_PRIORITY);
  if (priority) entry.metric = readU32(priority);
  const metrics = attrs.get(RTA_METRICS);
  if (metrics) {
    for (const m of parseAttrs(metrics)) if (m.type === RTAX_MTU) entry.mtu = readU32(m.data);
  }
  return entry;
}
