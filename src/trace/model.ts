// What a trace reports: the packet's path as hops, each naming the namespace it happened in, the exact
// kernel object that decided it, and how we know (asked the kernel, saw it traced, read kernel state, or
// inferred). New hop kinds (a service's map element, the endpoint chain, DNAT, conntrack; a vxlan FDB,
// ARP entry and outer addresses) are more members of the Hop union, with no change to the rest.

import type { TraceProto } from "../kernel/nft-trace.ts";

/**
 * How a hop is known:
 * - "route-lookup": the kernel's own FIB look-up for this packet (RTM_GETROUTE with its iif and source);
 * - "nft-trace": nftables trace events of the real probe packet;
 * - "kernel-state": a table the kernel keeps (neighbour, bridge FDB, link), read after the probe passed;
 * - "inferred": deduced from the above, not observed as such; the hop's note says from what.
 */
export type Evidence = "route-lookup" | "nft-trace" | "kernel-state" | "inferred";

export interface HopBase {
  /** The namespace, and what it is in the lab: "node1 (pnl-lab-node1)". */
  netns: string;
  where: string;
  evidence: Evidence;
  /** One line for people. */
  summary: string;
  /** Commands that show the same object by hand (`--explain`). */
  explain: string[];
  note?: string;
}

export interface RouteHop extends HopBase {
  kind: "route";
  /** The look-up as asked: input interface (absent for a locally sent packet), source, destination. */
  query: { iif?: string; src?: string; dst: string };
  /** The kernel's answer: "unicast", "local", … */
  result: string;
  gateway?: string;
  dev?: string;
  /** The FIB entry that matched, in `ip route` words, and who installed it. */
  entry?: string;
  protocol?: string;
  /** True when the entry is podnet's (proto 80, the agent's). */
  podnet?: boolean;
}

export interface NeighbourHop extends HopBase {
  kind: "neighbour";
  ip: string;
  dev: string;
  mac?: string;
  state: string;
}

export interface VethHop extends HopBase {
  kind: "veth";
  from: { netns: string; dev: string };
  to: { netns: string; dev: string; where: string };
}

export interface BridgeHop extends HopBase {
  kind: "bridge";
  bridge: string;
  ingressPort?: string;
  /** Where the frame went: out of a port, up to the bridge's own IP stack, or flooded (no FDB entry). */
  delivery: "port" | "local" | "flood";
  egressPort?: string;
  dstMac?: string;
  fdb?: { mac: string; port: string; state: string };
}

export interface NftRuleMatch {
  rule: string;
  handle?: number;
  verdict: string;
}

export interface NftHop extends HopBase {
  kind: "nft";
  family: string;
  table: string;
  chain: string;
  /** Rules that matched, in order; empty when the chain's policy decided. */
  rules: NftRuleMatch[];
  /** The chain's final word: a rule's verdict, or "policy accept". */
  verdict: string;
  /** The packet as nft saw it entering the chain. */
  packet?: string;
  nat?: "masquerade" | "snat" | "dnat" | "redirect";
  /** A `dnat … to ADDRESS[:PORT]` that matched: the walk goes on towards this address (a Service's chosen endpoint). */
  dnatTo?: { address: string; port?: number };
}

export interface ArrivalHop extends HopBase {
  kind: "arrival";
  dev: string;
  /** The source address as the receiver sees it. */
  saddr?: string;
  /** The destination address as the receiver sees it (a DNAT on the way changes it). */
  daddr: string;
  /** Whether the source was rewritten on the way. */
  nat: boolean;
}

/**
 * A Service, as the proxy's nft table decided it: the map element the packet's (daddr . l4proto . dport)
 * looked up, the service chain it jumped to, the endpoint chain the service chain chose, and the DNAT there.
 */
export interface ServiceHop extends HopBase {
  kind: "service";
  table: string;
  map: string;
  /** The element's key, as nft writes it: "10.96.0.20 . tcp . 80". */
  element: string;
  serviceChain: string;
  endpointChain?: string;
  endpoint?: { address: string; port?: number };
}

/** A VXLAN device: encapsulation (FDB entry → remote VTEP, outer addresses) or decapsulation at the remote end. */
export interface VxlanHop extends HopBase {
  kind: "vxlan";
  direction: "encap" | "decap";
  device: string;
  vni: number;
  port: number;
  innerDstMac?: string;
  fdb?: { mac: string; dst: string };
  outer: { src?: string; dst: string };
}

export type DropReason = "no-fdb" | "no-route" | "not-on-link" | "unreachable-route" | "nft-drop" | "nft-reject" | "mtu" | "no-neighbour" | "not-observed" | "input-refused" | "loop";

export interface DropHop extends HopBase {
  kind: "drop";
  reason: DropReason;
}

export type Hop = RouteHop | NeighbourHop | VethHop | BridgeHop | NftHop | ServiceHop | VxlanHop | ArrivalHop | DropHop;

export interface TraceEndpoint {
  /** As given on the command line. */
  spec: string;
  /** "address": an IP that no lab namespace holds (a ClusterIP, say); where it leads is found by the walk. */
  kind: "pod" | "node" | "external" | "address";
  name: string;
  /** The namespace holding the address; absent for kind "address". */
  netns?: string;
  ip: string;
  port?: number;
}

export interface TraceResult {
  schema: "podnet.trace/v1";
  lab: string;
  src: TraceEndpoint;
  dst: TraceEndpoint;
  proto: TraceProto;
  /** The probe packet: identifiers chosen for this trace, size, and what the sender's socket said. */
  probe: { sport?: number; dport?: number; icmpId?: number; size: number; outcome: string };
  delivered: boolean;
  hops: Hop[];
  /** The namespaces a trace table was put in (and removed from). */
  tracedNamespaces: string[];
}
