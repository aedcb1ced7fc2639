// Allocation of ClusterIPs, NodePorts and LoadBalancer IPs as claims in the object store, so that
// an address or port is handed out in the same atomic commit as the Service that holds it, and a
// conflicting writer (another apply racing this one) makes the whole commit fail instead of two
// services sharing a port. Kubernetes keeps these in bitmaps (pkg/registry/core/service/ipallocator,
// portallocator); here each taken token is one claim, owned by "namespace/name" of its Service.

import { addToIp, formatIp, tryParseIp } from "../net/address.ts";
import { cidrContains, lastAddressOf, networkOf, parseCidr, type Cidr } from "../net/cidr.ts";

export const CLUSTER_IP_POOL = "service-cluster-ips";
export const NODE_PORT_POOL = "service-node-ports";
export const LOAD_BALANCER_IP_POOL = "service-load-balancer-ips";

/** kube-dns's conventional address: the 10th of the service CIDR (10.96.0.10 in the default one). */
export const CLUSTER_DNS_OFFSET = 10n;

export class AllocationError extends Error {
  constructor(
    readonly field: string,
    readonly value: unknown,
    detail: string,
  ) {
    super(detail);
    this.name = "AllocationError";
  }
}

/** token → owner, per pool: the claims as the store reports them, updated as a plan allocates. */
export type ClaimTable = Map<string, Map<string, string>>;

export function claimsIn(table: ClaimTable, pool: string): Map<string, string> {
  let claims = table.get(pool);
  if (!claims) table.set(pool, (claims = new Map()));
  return claims;
}

/** The cluster DNS address of a service CIDR (10.96.0.10 for 10.96.0.0/12). */
export function clusterDnsIp(serviceCidr: string): string {
  return formatIp(addToIp(networkOf(parseCidr(serviceCidr)), CLUSTER_DNS_OFFSET));
}

/**
 * Allocates addresses from CIDRs: the network and broadcast addresses are never handed out, nor
 * (for the service CIDR) the cluster DNS address unless asked for by name. Dynamic allocation
 * takes the lowest free address after a cursor, so a batch of 10,000 services scans each address once.
 */
export class AddressAllocator {
  private readonly ranges: { cidr: Cidr; first: bigint; last: bigint }[];
  private cursor = 0n;
  private rangeIndex = 0;

  constructor(
    cidrs: readonly string[],
    private readonly claims: Map<string, string>,
    private readonly reserved: ReadonlySet<string> = new Set(),
  ) {
    this.ranges = cidrs.map((text) => {
      const cidr = parseCidr(text);
      const network = networkOf(cidr).value;
      const last = lastAddressOf(cidr).value;
      // A /31 or /32 has no network or broadcast address to skip.
      return last - network >= 2n ? { cidr, first: network + 1n, last: last - 1n } : { cidr, first: network, last };
    });
  }

  private contains(ip: string): boolean {
    const parsed = tryParseIp(ip);
    return parsed !== undefined && this.ranges.some((r) => cidrContains(r.cidr, parsed) && parsed.value >= r.first && parsed.value <= r.last);
  }

  /** Takes a specific address, or throws AllocationError naming `field`. */
  claim(ip: string, owner: string, field: string, rangeText: string): void {
    if (!this.contains(ip)) {
      throw new AllocationError(field, ip, `failed to allocate IP ${ip}: the provided IP (${ip}) is not in the valid range. The range of valid IPs is ${rangeText}`);
    }
    const holder = this.claims.get(ip);
    if (holder !== undefined && holder !== owner) {
      throw new AllocationError(field, ip, `failed to allocate IP ${ip}: provided IP is already allocated`);
    }
    this.claims.set(ip, owner);
  }

  /** The next free address, claimed for `owner`; undefined when the ranges are full. */
  next(owner: string): string | undefined {
    for (; this.rangeIndex < this.ranges.length; this.rangeIndex++, this.cursor = 0n) {
      const range = this.ranges[this.rangeIndex]!;
      if (this.cursor < range.first) this.cursor = range.first;
      for (; this.cursor <= range.last; this.cursor++) {
        const ip = formatIp({ family: range.cidr.address.family, value: this.cursor });
        if (this.claims.has(ip) || this.reserved.has(ip)) continue;
        this.claims.set(ip, owner);
        this.cursor++;
        return ip;
      }
    }
    return undefined;
  }
}

/** NodePorts: the inclusive range of the cluster config, lowest free first. */
export class PortAllocator {
  private cursor: number;

  constructor(
    private readonly range: { first: number; last: number },
    private readonly claims: Map<string, string>,
  ) {
    this.cursor = range.first;
  }

  claim(port: number, owner: string, field: string): void {
    if (port < this.range.first || port > this.range.last) {
      throw new AllocationError(field, port, `provided port is not in the valid range. The range of valid ports is ${this.range.first}-${this.range.last}`);
    }
    const holder = this.claims.get(String(port));
    if (holder !== undefined && holder !== owner) throw new AllocationError(field, port, "provided port is already allocated");
    this.claims.set(String(port), owner);
  }

  next(owner: string): number | undefined {
    for (; this.cursor <= this.range.last; this.cursor++) {
      if (this.claims.has(String(this.cursor))) continue;
      this.claims.set(String(this.cursor), owner);
      return this.cursor++;
    }
    return undefined;
  }
}
