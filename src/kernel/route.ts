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
