// What routes a node should hold and how to get there from what the kernel holds. Pure: no I/O.

import type { NodeView } from "../datastore/datastore.ts";

/**
 * Route protocol number podnet's agent stamps on every route it creates (0x50; `ip route` shows
 * "proto 80"). The agent lists, changes and deletes only routes carrying it, so routes made by
 * anyone else are never touched. 80 is not in iproute2's reserved rt_protos list.
 */
export const PODNET_ROUTE_PROTOCOL = 0x50;

/** One route the agent owns: `dst via gw`, in the main table, stamped with PODNET_ROUTE_PROTOCOL. */
export interface OwnedRoute {
  dst: string;
  gw: string;
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
    const keep = wanted ? routes.find((r) => r.gw === wanted.gw) : undefined;
    for (const route of routes) {
      if (route === keep) continue;
      if (wanted && keep === undefined && route === routes[0]) continue; // replaced below
      changes.push({ op: "delete", route });
    }
  }
  for (const [dst, route] of want) {
    const existing = have.get(dst);
    if (!existing) changes.push({ op: "add", route });
    else if (!existing.some((r) => r.gw === route.gw)) changes.push({ op: "replace", route });
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
