// Which node answers ARP for each LoadBalancer IP (MetalLB's L2 mode: one speaker per IP). Every
// node computes the same answer from the same facts, without talking to the others: rendezvous
// (highest-random-weight) hashing of node name × IP over the live, active nodes. When the holder
// leaves, only its IPs move, each to the node with the next-highest weight.
//
// externalTrafficPolicy Local: only nodes with a ready local endpoint are candidates (as MetalLB
// announces from nodes with local endpoints), so the client IP is kept and the traffic is served.

import { createHash } from "node:crypto";
import type { EndpointSlice, Service } from "../k8s/types.ts";
import { LABEL_SERVICE_NAME } from "../k8s/types.ts";

function weight(node: string, ip: string): bigint {
  return createHash("sha256").update(`${node}\0${ip}`).digest().readBigUInt64BE(0);
}

/** The node among `candidates` that announces `ip`, or undefined when there is none. */
export function announcerOf(ip: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1n;
  for (const node of candidates) {
    const w = weight(node, ip);
    if (w > bestWeight || (w === bestWeight && best !== undefined && node < best)) {
      best = node;
      bestWeight = w;
    }
  }
  return best;
}

/** The LoadBalancer IPs of a Service: its status ingress IPs, only for type LoadBalancer. */
export function loadBalancerIpsOf(service: Service): string[] {
  if (service.spec.type !== "LoadBalancer") return [];
  return (service.status?.loadBalancer?.ingress ?? []).flatMap((i) => (i.ip ? [i.ip] : []));
}

/**
 * The LoadBalancer IPs `self` must announce, given every Service, the slices by service
 * ("namespace/name"), and the live, active node names.
 */
export function ipsToAnnounce(
  self: string,
  services: Iterable<Service>,
  slices: Iterable<EndpointSlice>,
  liveNodes: readonly string[],
): string[] {
  const localEndpointNodes = new Map<string, Set<string>>();
  for (const slice of slices) {
    const name = slice.metadata.labels?.[LABEL_SERVICE_NAME];
    if (!name) continue;
    const key = `${slice.metadata.namespace ?? "default"}/${name}`;
    let nodes = localEndpointNodes.get(key);
    if (!nodes) localEndpointNodes.set(key, (nodes = new Set()));
    for (const endpoint of slice.endpoints) if (endpoint.conditions?.ready !== false && endpoint.nodeName) nodes.add(endpoint.nodeName);
  }
  const mine = new Set<string>();
  for (const service of services) {
    const ips = loadBalancerIpsOf(service);
    if (ips.length === 0) continue;
    const key = `${service.metadata.namespace ?? "default"}/${service.metadata.name}`;
    const withEndpoints = localEndpointNodes.get(key);
    const candidates = service.spec.externalTrafficPolicy === "Local" ? liveNodes.filter((n) => withEndpoints?.has(n)) : liveNodes;
    for (const ip of ips) if (announcerOf(ip, candidates) === self) mine.add(ip);
  }
  return [...mine].sort();
}
