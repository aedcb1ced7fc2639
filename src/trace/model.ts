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
  /**
   * A `dnat ip to numgen random mod N offset O map @MAP` that matched: the address came from an element
   * of MAP, which the rule does not show; dnatTo is then the probe's conntrack entry's, read after the probe.
   */
  dnatMap?: { map: string; mod: number; offset: number };
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
 * A Service, as the proxy's nft table decided it: the map element the packet's (daddr . l4proto . dport,
 * or l4proto . dport for a NodePort) looked up, the chain the map sent it to, the chain that chose the
 * endpoint and DNATed (an endpoint chain; or, for an external or LoadBalancer IP, the service chain the
 * external chain went on to), and the DNAT there.
 */
export interface ServiceHop extends HopBase {
  kind: "service";
  table: string;
  map: string;
  /** The element's key, as nft writes it: "10.96.0.20 . tcp . 80" (a NodePort: "tcp . 30080"). */
  element: string;
  /** The chain the map's verdict named. */
  serviceChain: string;
  /** The chain, below serviceChain, that DNATed; absent when serviceChain itself did. */
  endpointChain?: string;
  endpoint?: { address: string; port?: number };
  /**
   * ClientIP session affinity (kube-proxy's per-endpoint `dynamic, timeout` sets): the set and its element,
   * the client's address. `decided`: the service chain's `ip saddr @SET` rule matched, so an element there
   * before this packet chose the endpoint; otherwise the endpoint chain's `update @SET` added it (read from
   * the kernel: that rule is not in the trace). `expires`: the element's time left, read after the probe.
   */
  affinity?: { set: string; element: string; decided: boolean; expires?: string };
  /**
   * The endpoint map layout: the rule drew a number in offset..offset+mod-1 and DNATed to that key's
   * element of `map`; `key` is the element holding the endpoint conntrack says was chosen.
   */
  endpointElement?: { map: string; key: number; mod: number; offset: number };
}

/**
 * A flow conntrack already knew before the probe was sent: its entry, not a rule, decided the NAT (the nat
 * hooks see only a flow's first packet), so an existing flow keeps going to the endpoint it went to first.
 */
export interface ConntrackHop extends HopBase {
  kind: "conntrack";
  proto: string;
  /** The flow's first packet as it arrived, before NAT. */
  original: { src: string; dst: string; sport?: number; dport?: number };
  /** What a reply must carry: its source is where the DNAT sends the flow. */
  reply: { src: string; dst: string; sport?: number; dport?: number };
  /** TCP's state; absent for UDP. */
  state?: string;
  /** "ASSURED", "UNREPLIED", as the kernel reports them. */
  flags: string[];
  /** Seconds left, as read after the probe passed. */
  timeout: number;
  mark?: number;
  /** The destination the entry rewrites to (a Service's endpoint), when it DNATs. */
  dnatTo?: { address: string; port?: number };
  /** The source the entry rewrites to (masquerade), when it SNATs. */
  snatTo?: { address: string; port?: number };
  /** True: the entry was there before the probe was sent (read by the first walk), so the probe joined an existing flow. */
  existing: boolean;
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

export type Hop = RouteHop | NeighbourHop | VethHop | BridgeHop | NftHop | ServiceHop | ConntrackHop | VxlanHop | ArrivalHop | DropHop;

export interface TraceEndpoint {
  /** As given on the command line. */
  spec: string;
  /**
   * "address": an IP that no lab namespace holds (a ClusterIP, say); where it leads is found by the walk.
   * "service": a Service named on the command line; `ip` is its ClusterIP, `name` NAMESPACE/NAME.
   */
  kind: "pod" | "node" | "external" | "address" | "service";
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
  probe: {
    sport?: number;
    dport?: number;
    icmpId?: number;
    size: number;
    outcome: string;
    /** "socket"; or "raw": the source port (--sport) belonged to a client's socket, so the probe was written as a packet of its flow. */
    via?: "socket" | "raw";
    /** True when the source port was asked for (--sport) rather than picked at random. */
    sportGiven?: boolean;
  };
  delivered: boolean;
  hops: Hop[];
  /** The namespaces a trace table was put in (and removed from). */
  tracedNamespaces: string[];
}
