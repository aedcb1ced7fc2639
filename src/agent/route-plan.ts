// What routes a node should hold and how to get there from what the kernel holds. Pure: no I/O.

import type { NodeView } from "../datastore/datastore.ts";
import { tryParseIp } from "../net/address.ts";
import { cidrContains, tryParseCidr } from "../net/cidr.ts";

/**
 * Route protocol number podnet's agent stamps on every route it creates (0x50; `ip route` shows
 * "proto 80"). The agent lists, changes and deletes only routes carrying it, so routes made by
 * anyone else are never touched. 80 is not in iproute2's reserved rt_protos list.
 */
export const PODNET_ROUTE_PROTOCOL = 0x50;

/**
 * One route the agent owns: `dst via gw`, in the main table, stamped with PODNET_ROUTE_PROTOCOL.
 * An overlay route also names its device and is `onlink`: its gateway (the peer's tunnel address) is on
 * no connected subnet.
 */
export interface OwnedRoute {
  dst: string;
  gw: string;
  oifIndex?: number;
  onlink?: boolean;
}

/**
 * Whether the kernel's `actual` route is the `wanted` one. A plain route (host-gw) leaves the device to the
 * kernel, which reports it anyway, so only an onlink route compares devices.
 */
export function sameRoute(wanted: OwnedRoute, actual: OwnedRoute): boolean {
  if (wanted.gw !== actual.gw) return false;
  if (wanted.onlink) return actual.onlink === true && actual.oifIndex === wanted.oifIndex;
  return actual.onlink !== true;
}

export type RouteChange =
  /** Create; never replaces a route someone else made for the same destination. */
  | { op: "add"; route: OwnedRoute }
  /** Our route exists with a different gateway (the peer's node IP changed). */
  | { op: "replace"; route: OwnedRoute }
  | { op: "delete"; route: OwnedRoute };

/** Peers to route to: every active node except ourselves, with a subnet and an IP. */
export function desiredRoutes(nodes: readonly NodeView[], self: string): OwnedRoute[] {
  const routes = new Map<string, OwnedRoute>();
  for (const node of nodes) {
    if (node.name === self || node.phase !== "active") continue;
    routes.set(node.podSubnet, { dst: node.podSubnet, gw: node.nodeIp });
  }
  return [...routes.values()].sort(compareRoutes);
}

/** The changes that turn `actual` (our routes as the kernel holds them) into `desired`; empty when they match. */
export function planRouteChanges(desired: readonly OwnedRoute[], actual: readonly OwnedRoute[]): RouteChange[] {
  const want = new Map(desired.map((r) => [r.dst, r]));
  const have = new Map<string, OwnedRoute[]>();
  for (const route of actual) have.set(route.dst, [...(have.get(route.dst) ?? []), route]);

  const changes: RouteChange[] = [];
  for (const [dst, routes] of have) {
    const wanted = want.get(dst);
    // Duplicates of one destination can only come from outside interference (e.g. other metrics); keep at most one.
    const keep = wanted ? routes.find((r) => sameRoute(wanted, r)) : undefined;
    for (const route of routes) {
      if (route === keep) continue;
      if (wanted && keep === undefined && route === routes[0]) continue; // replaced below
      changes.push({ op: "delete", route });
    }
  }
  for (const [dst, route] of want) {
    const existing = have.get(dst);
    if (!existing) changes.push({ op: "add", route });
    else if (!existing.some((r) => sameRoute(route, r))) changes.push({ op: "replace", route });
  }
  // Deletions first, so a replaced destination never briefly has two of our routes.
  return changes.sort((a, b) => opOrder(a.op) - opOrder(b.op) || compareRoutes(a.route, b.route));
}

function opOrder(op: RouteChange["op"]): number {
  return op === "delete" ? 0 : op === "replace" ? 1 : 2;
}

function compareRoutes(a: OwnedRoute, b: OwnedRoute): number {
  return a.dst < b.dst ? -1 : a.dst > b.dst ? 1 : a.gw < b.gw ? -1 : a.gw > b.gw ? 1 : 0;
}

/** rtm_scope of a connected route ("scope link"): its destination is reachable without a gateway. */
export const SCOPE_LINK = 253;

/** A route as far as on-link checks need it. */
export interface ConnectedRouteView {
  dst: string;
  gw?: string;
  scope?: number;
  protocol: number;
  oifIndex?: number;
}

/**
 * Whether `ip` is on-link: a connected route (no gateway, scope link, not the default, not one of ours)
 * covers it, so a route `via ip` works without another router in between. `excludeOif` leaves out a
 * device whose connected routes do not count (the overlay's own).
 */
export function isOnLink(ip: string, routes: readonly ConnectedRouteView[], excludeOif?: number): boolean {
  const address = tryParseIp(ip);
  if (!address) return false;
  return routes.some((route) => {
    if (route.gw !== undefined || route.scope !== SCOPE_LINK || route.protocol === PODNET_ROUTE_PROTOCOL) return false;
    if (excludeOif !== undefined && route.oifIndex === excludeOif) return false;
    const cidr = tryParseCidr(route.dst);
    return cidr !== undefined && cidr.prefix > 0 && cidrContains(cidr, address);
  });
}
