// host-gw: a plain route `<peer pod subnet> via <peer node IP>` per peer. Needs every node on one L2 segment:
// a peer whose node IP no connected route covers cannot be a next hop (the kernel refuses "invalid gateway",
// or, through a default route, the packets would leave with the pod address for a router that knows no pod
// subnets). Such peers get no route at all, and the backend reports them (`unreachable`), suggesting vxlan.
// Options: none (`backendOptions["host-gw"]` absent or `{}`). Pod MTU: the underlay interface's, since
// host-gw adds no header.

import type { NodeView } from "../datastore/datastore.ts";
import { rejectUnknownOptions, type Backend, type BackendFactory, type BackendSyncResult, type UnreachablePeers } from "./backend.ts";
import { desiredRoutes, isOnLink, planRouteChanges, PODNET_ROUTE_PROTOCOL, type OwnedRoute, type RouteChange } from "./route-plan.ts";
import type { KernelRoute, RouteTable } from "./route-table.ts";

export const hostGwFactory: BackendFactory = {
  name: "host-gw",
  build(options, env) {
    rejectUnknownOptions("host-gw", options, []);
    return new HostGwBackend(env.routeTable, env.nodeIp);
  },
  withdraw(nodes, env) {
    const leaving = new Set(nodes.map((n) => n.podSubnet));
    const changes: RouteChange[] = ownRoutes(env.routeTable)
      .ours.filter((route) => leaving.has(route.dst))
      .map((route) => ({ op: "delete", route }));
    if (changes.length > 0) throwOnErrors(env.routeTable.apply(changes), "withdrawing routes");
    return changes.length;
  },
};

export class HostGwBackend implements Backend {
  readonly name = "host-gw";

  constructor(
    private readonly table: RouteTable,
    private readonly nodeIp: string,
  ) {}

  reconcile(nodes: readonly NodeView[], self: string): BackendSyncResult {
    const kernelRoutes = this.table.listMainIpv4();
    const { ours, foreignDsts } = ownRoutes(this.table, kernelRoutes);
    const { reachable, unreachable } = splitOnLink(nodes, self, kernelRoutes);
    const desired = desiredRoutes(reachable, self);
    const conflicts: string[] = [];
    const changes = planRouteChanges(desired, ours).filter((change) => {
      // Adding would replace a route someone else made for the same destination: leave theirs and report it.
      if (change.op === "add" && foreignDsts.has(change.route.dst)) {
        conflicts.push(change.route.dst);
        return false;
      }
      return true;
    });
    const counts = { add: 0, replace: 0, delete: 0 };
    const errors: string[] = [];
    const failedDsts = new Set<string>();
    if (changes.length > 0) {
      const results = this.table.apply(changes);
      results.forEach((result, i) => {
        const change = changes[i]!;
        if (result.error) {
          errors.push(`${change.op} ${change.route.dst} via ${change.route.gw}: ${result.error}`);
          failedDsts.add(change.route.dst);
        } else counts[change.op]++;
      });
    }
    const notWithdrawn = nodes.filter((n) => n.phase !== "active" && failedDsts.has(n.podSubnet)).map((n) => n.name);
    const programmed = ours.length - counts.delete + counts.add;
    const result: BackendSyncResult = { routesProgrammed: programmed, changes: counts, errors, conflicts, notWithdrawn };
    if (unreachable.length > 0) result.unreachable = notOnLinkCondition(unreachable);
    return result;
  }

  mtu(): number {
    const underlay = this.table.interfaceWithAddress(this.nodeIp);
    if (!underlay) throw new Error(`host-gw: no interface holds the node IP ${this.nodeIp}, so the underlay MTU is unknown`);
    return underlay.mtu;
  }

  teardown(): void {
    const changes: RouteChange[] = ownRoutes(this.table).ours.map((route) => ({ op: "delete", route }));
    if (changes.length > 0) throwOnErrors(this.table.apply(changes), "removing host-gw routes");
  }
}

/** Active peers whose node IP is on-link, and those it is not (host-gw cannot route to them). */
export function splitOnLink(nodes: readonly NodeView[], self: string, routes: readonly KernelRoute[]): { reachable: NodeView[]; unreachable: NodeView[] } {
  const reachable: NodeView[] = [];
  const unreachable: NodeView[] = [];
  for (const node of nodes) {
    if (node.name !== self && node.phase === "active" && !isOnLink(node.nodeIp, routes)) unreachable.push(node);
    else reachable.push(node);
  }
  return { reachable, unreachable };
}

export function notOnLinkCondition(peers: readonly NodeView[]): UnreachablePeers {
  const named = peers.map((p) => `${p.name} (${p.nodeIp})`).join(", ");
  return {
    reason: "PeersNotOnLink",
    message: `host-gw cannot route to ${peers.length} peer${peers.length === 1 ? "" : "s"} whose node IP is not on a subnet this node is connected to: ${named}; their pods are unreachable from here. Use the vxlan backend (cluster config backend "vxlan"), with directRouting to keep plain routes to same-subnet peers`,
    peers: peers.map((p) => ({ name: p.name, nodeIp: p.nodeIp })),
  };
}

function ownRoutes(table: RouteTable, routes: readonly KernelRoute[] = table.listMainIpv4()): { ours: OwnedRoute[]; foreignDsts: Set<string> } {
  const ours: OwnedRoute[] = [];
  const foreignDsts = new Set<string>();
  for (const route of routes) {
    if (route.protocol === PODNET_ROUTE_PROTOCOL && route.gw !== undefined) {
      const own: OwnedRoute = { dst: route.dst, gw: route.gw };
      if (route.oifIndex !== undefined) own.oifIndex = route.oifIndex;
      if (route.onlink) own.onlink = true;
      ours.push(own);
    }
    else foreignDsts.add(route.dst);
  }
  return { ours, foreignDsts };
}

function throwOnErrors(results: readonly { error?: string }[], what: string): void {
  const errors = results.flatMap((r) => (r.error ? [r.error] : []));
  if (errors.length > 0) throw new Error(`${what}: ${errors.slice(0, 3).join("; ")}${errors.length > 3 ? ` (+${errors.length - 3} more)` : ""}`);
}
