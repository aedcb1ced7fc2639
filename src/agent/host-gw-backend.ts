// host-gw: a plain route `<peer pod subnet> via <peer node IP>` per peer. Needs every node on one L2 segment.

import type { NodeView } from "../datastore/datastore.ts";
import type { Backend, BackendSyncResult } from "./backend.ts";
import { desiredRoutes, planRouteChanges, PODNET_ROUTE_PROTOCOL, type OwnedRoute } from "./route-plan.ts";
import type { RouteTable } from "./route-table.ts";

export class HostGwBackend implements Backend {
  readonly name = "host-gw";

  constructor(private readonly table: RouteTable) {}

  reconcile(nodes: readonly NodeView[], self: string): BackendSyncResult {
    const all = this.table.listMainIpv4();
    const ours: OwnedRoute[] = [];
    const foreignDsts = new Set<string>();
    for (const route of all) {
      if (route.protocol === PODNET_ROUTE_PROTOCOL && route.gw !== undefined) ours.push({ dst: route.dst, gw: route.gw });
      else foreignDsts.add(route.dst);
    }
    const desired = desiredRoutes(nodes, self);
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
    if (changes.length > 0) {
      const results = this.table.apply(changes);
      results.forEach((result, i) => {
        const change = changes[i]!;
        if (result.error) errors.push(result.error);
        else counts[change.op]++;
      });
    }
    const programmed = ours.length - counts.delete + counts.add;
    return { routesProgrammed: programmed, changes: counts, errors, conflicts };
  }
}
