// UDP conntrack entries left behind while the agent was not running. proxy-plan.ts's staleUdpFlows
// finds the flows to clear from one compilation to the next, which covers every change the agent
// sees; an endpoint that went away while the agent was down (or while etcd was unreachable) is
// never seen as a change. So after a full sync the agent lists the UDP entries and compares each
// with what the proxy now says, as kube-proxy's conntrack clean-up does at every full sync
// (pkg/proxy/conntrack/cleanup.go, CleanStaleEntries → filterForNAT: an entry whose original
// destination is a service frontend and whose reply source is not one of its serving endpoints).

import type { UdpFrontend } from "./proxy-compiler.ts";
import type { StaleUdpFlow } from "./proxy-plan.ts";

/** A UDP conntrack entry, as src/kernel/conntrack.ts lists them. */
export interface ObservedUdpFlow {
  originalDst: string;
  originalPort: number;
  /** The DNAT target, or the original destination itself when the entry was not NATed. */
  replySrc: string;
}

/**
 * The entries to delete: each one sent to a UDP frontend (a ClusterIP, external or LoadBalancer
 * IP, or a NodePort on one of `nodeIps`) whose reply source is not an endpoint of that frontend
 * now — a dead endpoint, or no DNAT at all (sent while the frontend had no endpoints,
 * kubernetes#48370). Each comes back as one filter (frontend IP, port, reply source), deduplicated.
 */
export function staleUdpFlowsAtStart(frontends: readonly UdpFrontend[], flows: readonly ObservedUdpFlow[], nodeIps: readonly string[]): StaleUdpFlow[] {
  const byAddress = new Map<string, UdpFrontend>();
  const byNodePort = new Map<number, UdpFrontend>();
  for (const frontend of frontends) {
    if (frontend.ip === undefined) byNodePort.set(frontend.port, frontend);
    else byAddress.set(`${frontend.ip}:${frontend.port}`, frontend);
  }
  const local = new Set(nodeIps);
  const endpointSets = new Map<UdpFrontend, Set<string>>();
  const stale = new Map<string, StaleUdpFlow>();
  for (const flow of flows) {
    const frontend = byAddress.get(`${flow.originalDst}:${flow.originalPort}`) ?? (local.has(flow.originalDst) ? byNodePort.get(flow.originalPort) : undefined);
    if (frontend === undefined) continue;
    let endpoints = endpointSets.get(frontend);
    if (!endpoints) endpointSets.set(frontend, (endpoints = new Set(frontend.endpointIps)));
    if (endpoints.has(flow.replySrc)) continue;
    const key = `${flow.originalDst}:${flow.originalPort}>${flow.replySrc}`;
    if (!stale.has(key)) stale.set(key, { frontendIp: flow.originalDst, port: flow.originalPort, endpointIp: flow.replySrc });
  }
  return [...stale.values()];
}
