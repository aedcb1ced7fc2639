// The agent's narrow view of the kernel routing table, over src/kernel's rtnetlink socket. The agent
// runs inside its node's network namespace, so the socket is opened in the current one.

import { listAddresses } from "../kernel/address.ts";
import { getLinkByIndex } from "../kernel/link.ts";
import { NetlinkSocket } from "../kernel/netlink/socket.ts";
import { ipEquals, tryParseIp } from "../net/address.ts";
import { parseCidr } from "../net/cidr.ts";
import { applyRouteChanges, listRoutes, RT_TABLE_MAIN, RT_SCOPE_UNIVERSE, type RouteSpec } from "../kernel/route.ts";
import { PODNET_ROUTE_PROTOCOL, type RouteChange } from "./route-plan.ts";

export interface KernelRoute {
  dst: string;
  gw?: string;
  protocol: number;
  scope?: number;
  oifIndex?: number;
  onlink?: boolean;
}

export interface RouteTable {
  /** Every IPv4 unicast route of the main table, whoever made it. */
  listMainIpv4(): KernelRoute[];
  /** Apply changes to our own routes; one result per change, with an error text if it failed. */
  apply(changes: readonly RouteChange[]): { error?: string }[];
  /** The interface that holds `address` (this node's underlay IP): its name and MTU, or undefined if none does. */
  interfaceWithAddress(address: string): { name: string; mtu: number } | undefined;
  close(): void;
}

export class NetlinkRouteTable implements RouteTable {
  private readonly nl: NetlinkSocket;

  constructor(nsPath?: string) {
    this.nl = NetlinkSocket.open(nsPath);
  }

  listMainIpv4(): KernelRoute[] {
    return listRoutes(this.nl, { family: 4, table: RT_TABLE_MAIN }).map((r) => {
      const route: KernelRoute = { dst: r.dst, protocol: r.protocol ?? 0, scope: r.scope ?? 0 };
      if (r.gw !== undefined) route.gw = r.gw;
      if (r.oifIndex !== undefined) route.oifIndex = r.oifIndex;
      if (r.onlink) route.onlink = true;
      return route;
    });
  }

  apply(changes: readonly RouteChange[]): { error?: string }[] {
    const specs = changes.map((change) => {
      const route: RouteSpec = {
        dst: change.route.dst,
        gw: change.route.gw,
        table: RT_TABLE_MAIN,
        // On delete the protocol narrows the match to our own route, so a same-destination route of someone else survives.
        protocol: PODNET_ROUTE_PROTOCOL,
      };
      if (change.op !== "delete") route.scope = RT_SCOPE_UNIVERSE;
      if (change.route.oifIndex !== undefined) route.oifIndex = change.route.oifIndex;
      if (change.op !== "delete" && change.route.onlink) route.onlink = true;
      // "add" becomes replace only after the backend has checked nobody else holds the destination.
      return { op: change.op === "delete" ? ("delete" as const) : ("replace" as const), route };
    });
    return applyRouteChanges(this.nl, specs).map((result) => (result.error ? { error: result.error.message } : {}));
  }

  interfaceWithAddress(address: string): { name: string; mtu: number } | undefined {
    const wanted = tryParseIp(address);
    if (wanted?.family !== 4) return undefined;
    const holder = listAddresses(this.nl).find((a) => a.family === 4 && ipEquals(parseCidr(a.cidr).address, wanted));
    if (!holder) return undefined;
    const link = getLinkByIndex(this.nl, holder.index);
    return link ? { name: link.name, mtu: link.mtu } : undefined;
  }

  close(): void {
    this.nl.close();
  }
}
