// Walks a packet through the lab's namespaces, asking the kernel at each step: the route look-up
// (RTM_GETROUTE, with the interface the packet came in on), the neighbour entry of the next hop, the
// veth's other end, the bridge FDB entry that picks a port. nft trace events of the real probe are merged
// in per namespace. The walk never changes kernel state.

import { listAddresses } from "../kernel/address.ts";
import { parseIp } from "../net/address.ts";
import { cidrContains, parseCidr } from "../net/cidr.ts";
import { listFdb, listNeighbours, NUD_PERMANENT, NUD_REACHABLE, NUD_STALE, NUD_NOARP } from "../kernel/neigh.ts";
import { listLinks, type LinkInfo } from "../kernel/link.ts";
import { NetlinkSocket } from "../kernel/netlink/socket.ts";
import { KernelError } from "../kernel/netlink/socket.ts";
import { netnsIdOf } from "../kernel/netns-id.ts";
import { getSysctlIn } from "../kernel/sysctl.ts";
import { namedNetnsPath } from "../kernel/named-netns-path.ts";
import { lookupRoute, RTPROT_BOOT, RTPROT_KERNEL, RTPROT_STATIC, type RouteLookup } from "../kernel/route.ts";
import { getSetElement, listChainRules, type NftTraceEvent, type TraceProto } from "../kernel/nft-trace.ts";
import { conntrackListArgs, listFlows, type ConntrackEntry, type ConntrackFilter, type ConntrackTuple } from "../kernel/conntrack.ts";
import { readMapElements } from "../kernel/nft.ts";
import type { NftFamily, NftMapElement } from "../kernel/nft/model.ts";
import type { BridgeHop, ConntrackHop, DropHop, DropReason, Hop, NftHop, NftRuleMatch, RouteHop, ServiceHop } from "./model.ts";

/** podnet's agent marks its routes with this rtm_protocol (src/agent/route-table.ts). */
export const PODNET_ROUTE_PROTOCOL = 80;
const MAX_NAMESPACES = 16;

export interface WalkPacket {
  src: string;
  dst: string;
  proto: TraceProto;
  sport?: number;
  dport?: number;
  size: number;
}

export interface WalkOptions {
  /** namespace name → what it is ("node1", "node1-pod1", "external", "switch"). */
  labels: ReadonlyMap<string, string>;
  /** nft trace events per namespace, when a probe was traced (pass 2). */
  events?: ReadonlyMap<string, NftTraceEvent[]>;
  /** The trace's own table, whose events are left out. */
  traceTable?: string;
  /**
   * The conntrack entries the first walk found per namespace, before the probe was sent (pass 2): only a
   * flow that was there before is one the probe joined. Absent in the first walk, where every entry found is.
   */
  flowsBefore?: ReadonlyMap<string, ConntrackEntry[]>;
}

export interface WalkResult {
  hops: Hop[];
  delivered: boolean;
  /** Every namespace the packet entered, in order. */
  namespaces: string[];
  /** The conntrack entries of the packet's flow read in each namespace (tcp and udp). */
  flows: Map<string, ConntrackEntry[]>;
}

interface NsView {
  netns: string;
  links: LinkInfo[];
}

/** Kernel views of the lab's namespaces, read once per walk (or per explain). */
export class LabKernel {
  private readonly views = new Map<string, NsView>();
  constructor(private readonly labels: ReadonlyMap<string, string>) {}

  view(netns: string): NsView {
    let v = this.views.get(netns);
    if (!v) {
      v = { netns, links: withSocket(netns, (nl) => listLinks(nl)) };
      this.views.set(netns, v);
    }
    return v;
  }

  /**
   * The other end of a veth: the lab namespace holding a veth whose index is our peer index and whose
   * peer index is ours. (Link indices are per namespace, so both directions must agree.)
   */
  vethPeer(netns: string, link: LinkInfo): { netns: string; link: LinkInfo } | undefined {
    if (link.peerIndex === undefined) return undefined;
    for (const other of this.labels.keys()) {
      if (other === netns) continue;
      if (link.linkNetnsId !== undefined && withSocket(netns, (nl) => netnsIdOf(nl, namedNetnsPath(other))) !== link.linkNetnsId) continue;
      const found = this.view(other).links.find((l) => l.index === link.peerIndex && l.peerIndex === link.index && l.kind === "veth");
      if (found) return { netns: other, link: found };
    }
    return undefined;
  }
}

/** Run `fn` with a netlink socket opened in a named namespace, closed however `fn` ends. */
export function withSocket<T>(netns: string, fn: (nl: NetlinkSocket) => T): T {
  const nl = NetlinkSocket.open(namedNetnsPath(netns));
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}

const PROTOCOL_NAMES: Record<number, string> = { [RTPROT_KERNEL]: "kernel", [RTPROT_BOOT]: "boot", [RTPROT_STATIC]: "static", [PODNET_ROUTE_PROTOCOL]: "80" };

export function neighbourStateName(state: number): string {
  const names: [number, string][] = [[0x01, "INCOMPLETE"], [NUD_REACHABLE, "REACHABLE"], [NUD_STALE, "STALE"], [0x08, "DELAY"], [0x10, "PROBE"], [0x20, "FAILED"], [NUD_NOARP, "NOARP"], [NUD_PERMANENT, "PERMANENT"]];
  return names.filter(([bit]) => state & bit).map(([, n]) => n).join(",") || "NONE";
}

export function walkPath(start: string, packet: WalkPacket, opts: WalkOptions): WalkResult {
  const kernel = new LabKernel(opts.labels);
  const hops: Hop[] = [];
  const namespaces: string[] = [];
  const flows = new Map<string, ConntrackEntry[]>();
  const where = (ns: string): string => opts.labels.get(ns) ?? ns;
  const base = (ns: string) => ({ netns: ns, where: where(ns), explain: [] as string[] });
  const pkt = { ...packet };
  let position: { netns: string; iif?: LinkInfo } = { netns: start };
  /** While a VXLAN device carries the packet: the inner packet, restored when the outer one arrives at the remote VTEP. */
  let encapsulated: { inner: WalkPacket; vni: number; device: string } | undefined;
  /** A masquerade rewrote the probe's source port (kube-proxy's `fully-random`): where, and to what. */
  let portRewritten: { ns: string; sport: number } | undefined;
  const drop = (ns: string, reason: DropReason, summary: string, evidence: DropHop["evidence"], explain: string[] = [], note?: string): WalkResult => {
    const hop: DropHop = { kind: "drop", ...base(ns), reason, summary, evidence, explain };
    if (note) hop.note = note;
    hops.push(hop);
    return { hops, delivered: false, namespaces, flows };
  };

  for (;;) {
    const ns = position.netns;
    if (namespaces.filter((n) => n === ns).length >= 2 || namespaces.length >= MAX_NAMESPACES) {
      return drop(ns, "loop", `the packet came back to ${where(ns)}: a routing loop`, "inferred");
    }
    namespaces.push(ns);
    const view = kernel.view(ns);
    const nameOf = (index: number | undefined): string => view.links.find((l) => l.index === index)?.name ?? `#${index}`;
    const ipN = `ip -n ${ns}`;

    // nft: what the probe met in this namespace, observed. Prerouting/output chains come before the
    // routing decision in the kernel, postrouting after; all are listed here, each with its hook's chain.
    // The outer VXLAN packet is not traced (its source port is the kernel's flow hash, so the probe's mark does not
    // match it); the inner packet's events belong to the namespaces where it is routed.
    const nftHops = opts.events && !encapsulated ? nftHopsFor(ns, opts.events.get(ns) ?? [], opts.traceTable, base(ns)) : [];
    const seenHere = encapsulated ? undefined : opts.events?.get(ns)?.find((e) => e.kind === "packet" && e.table === opts.traceTable && e.family === "inet" && (!position.iif || e.packet.iif === position.iif.name));
    if (seenHere?.kind === "packet" && seenHere.packet.saddr && position.iif) pkt.src = seenHere.packet.saddr;

    // A DNAT through an endpoint map names no address: the probe's conntrack entry says which it chose.
    if (opts.events) resolveMapDnat(ns, nftHops, pkt);
    // A DNAT before routing (a Service's endpoint chain) changes where the packet goes: the look-up is for the new destination.
    const dnat = nftHops.find((h) => h.dnatTo && !/post|input|forward|fwd/i.test(h.chain))?.dnatTo;
    if (dnat) {
      pkt.dst = dnat.address;
      if (dnat.port !== undefined) pkt.dport = dnat.port;
    }
    // No rule rewrote it here: a flow conntrack already knows is NATed by its entry, without any nat rule.
    const conntrack = dnat || encapsulated ? undefined : existingFlow(ns, pkt, nftHops, opts, flows, base(ns));
    if (conntrack?.dnatTo) {
      pkt.dst = conntrack.dnatTo.address;
      if (conntrack.dnatTo.port !== undefined) pkt.dport = conntrack.dnatTo.port;
    }

    // The kernel's route look-up, as for this packet.
    const query = { dst: pkt.dst, ...(position.iif ? { src: pkt.src, iifIndex: position.iif.index } : {}), proto: pkt.proto, ...(pkt.sport ? { sport: pkt.sport } : {}), ...(pkt.dport ? { dport: pkt.dport } : {}) };
    const getCmd = `${ipN} route get ${pkt.dst}${position.iif ? ` from ${pkt.src} iif ${position.iif.name}` : ""}`;
    let lookup: RouteLookup;
    try {
      lookup = withSocket(ns, (nl) => lookupRoute(nl, query));
    } catch (error) {
      if (!(error instanceof KernelError)) throw error;
      const reason: DropReason = error.code === "ENETUNREACH" || error.code === "EHOSTUNREACH" ? "no-route" : "input-refused";
      // A host that does not forward answers EHOSTUNREACH for anything not its own: say so, it is the reason.
      const forwarding = position.iif && error.code === "EHOSTUNREACH" ? getSysctlIn(namedNetnsPath(ns), "net.ipv4.conf.all.forwarding") : undefined;
      const text = forwarding === "0" ? `no route to ${pkt.dst} in ${where(ns)}: it does not forward (net.ipv4.conf.all.forwarding=0), so it routes nothing that is not its own (${error.code})`
        : reason === "no-route" ? `no route to ${pkt.dst} in ${where(ns)} (${error.code})` : `${where(ns)} refuses the packet from ${pkt.src} on ${position.iif?.name} (${error.code}: rp_filter, forwarding off, or a martian source)`;
      hops.push(...nftHops.filter((h) => h.chain !== "postrouting"));
      return drop(ns, reason, text, "route-lookup", [getCmd, `${ipN} route show`]);
    }
    const entry = lookup.entry;
    const entryText = entry ? formatEntry(entry, nameOf) : undefined;
    const routeHop: RouteHop = {
      kind: "route",
      ...base(ns),
      evidence: "route-lookup",
      query: { dst: pkt.dst, ...(position.iif ? { iif: position.iif.name, src: pkt.src } : {}) },
      result: lookup.type,
      summary: `${lookup.type === "local" ? `local delivery (${entryText ?? "local"})` : `route ${entryText ?? lookup.type}`}${entry?.protocol === PODNET_ROUTE_PROTOCOL ? " (podnet's route)" : ""}`,
      explain: [`${getCmd} fibmatch`],
    };
    if (lookup.gw) routeHop.gateway = lookup.gw;
    if (lookup.oifIndex !== undefined && lookup.type !== "local") routeHop.dev = nameOf(lookup.oifIndex);
    if (entryText) routeHop.entry = entryText;
    if (entry?.protocol !== undefined) {
      routeHop.protocol = PROTOCOL_NAMES[entry.protocol] ?? String(entry.protocol);
      routeHop.podnet = entry.protocol === PODNET_ROUTE_PROTOCOL;
    }
    // Trace events name chains, not hooks; podnet's chains are named after their hooks, and so are most.
    const afterRouting = (h: NftHop): boolean => /post|input|forward|fwd/i.test(h.chain);
    const preHops: Hop[] = nftHops.filter((h) => !afterRouting(h));
    const service = serviceHopFrom(nftHops, base(ns), ns);
    if (service) {
      if (opts.events) withAffinityElement(service, ns, seenHere?.kind === "packet" ? seenHere.packet.saddr ?? pkt.src : pkt.src);
      preHops.push(service);
    }
    if (conntrack) preHops.push(conntrack);
    const postHops = nftHops.filter(afterRouting);
    hops.push(...preHops);
    const stopper = preHops.find((h): h is NftHop => h.kind === "nft" && isDropVerdict(h));
    const nftDrop = (h: NftHop): WalkResult => {
      const rule = h.rules.at(-1);
      const reject = h.verdict.startsWith("reject") || h.rules.some((r) => /\breject\b/.test(r.rule));
      return drop(ns, reject ? "nft-reject" : "nft-drop", `${reject ? "rejected" : "dropped"} by nft ${h.family} ${h.table} ${h.chain}: ${rule ? `${rule.rule}${rule.handle !== undefined ? ` (handle ${rule.handle})` : ""}` : h.verdict}`, "nft-trace", h.explain);
    };
    if (stopper) return nftDrop(stopper);
    hops.push(routeHop);

    if (lookup.type === "local" && encapsulated) {
      const vni = encapsulated.vni;
      const device = view.links.find((l) => l.kind === "vxlan" && l.vxlan?.vni === vni);
      if (!device) return drop(ns, "no-route", `${where(ns)} has no VXLAN device for VNI ${vni}: the outer packet is delivered, its inner packet dropped`, "kernel-state", [`${ipN} -d link show type vxlan`]);
      hops.push({
        kind: "vxlan",
        ...base(ns),
        evidence: "kernel-state",
        direction: "decap",
        device: device.name,
        vni,
        port: device.vxlan?.port ?? 0,
        outer: { src: pkt.src, dst: pkt.dst },
        summary: `VXLAN ${device.name} (VNI ${vni}) decapsulates: the inner packet enters ${where(ns)} on ${device.name}`,
        explain: [`${ipN} -d link show dev ${device.name}`],
      });
      pkt.src = encapsulated.inner.src;
      pkt.dst = encapsulated.inner.dst;
      pkt.proto = encapsulated.inner.proto;
      if (encapsulated.inner.sport !== undefined) pkt.sport = encapsulated.inner.sport;
      if (encapsulated.inner.dport !== undefined) pkt.dport = encapsulated.inner.dport;
      else delete pkt.dport;
      encapsulated = undefined;
      position = { netns: ns, iif: device };
      namespaces.pop();
      continue;
    }
    if (lookup.type === "local") {
      hops.push(...postHops);
      const inputStop = postHops.find((h) => isDropVerdict(h));
      if (inputStop) return nftDrop(inputStop);
      const dev = position.iif?.name ?? "lo";
      const observed = seenHere?.kind === "packet" ? seenHere.packet : undefined;
      const saddr = observed?.saddr ?? pkt.src;
      const arrivedObserved = opts.events !== undefined && observed !== undefined;
      hops.push({
        kind: "arrival",
        ...base(ns),
        evidence: arrivedObserved ? "nft-trace" : "inferred",
        dev,
        saddr,
        daddr: pkt.dst,
        nat: saddr !== packet.src,
        summary: `arrives on ${where(ns)} ${dev} for ${pkt.dst}, from ${saddr}${saddr !== packet.src ? ` (NAT: sent as ${packet.src})` : " (no NAT)"}`,
        explain: [`ip -n ${ns} addr show dev ${dev}`],
        ...(arrivedObserved ? {} : { note: opts.events ? "the probe was not seen entering this namespace" : "walk only; no probe sent" }),
      });
      if (opts.events && !arrivedObserved && portRewritten) {
        const last = hops.at(-1)!;
        last.evidence = "kernel-state";
        last.note = `the masquerade in ${where(portRewritten.ns)} gave the probe source port ${portRewritten.sport} (its conntrack entry), which the trace's tables do not match: arrival follows from the routes, the source from that entry`;
      } else if (opts.events && !arrivedObserved) {
        return drop(ns, "not-observed", `the probe never reached ${where(ns)}, though the routes lead there`, "nft-trace", [], "routes and tables say it should arrive; something outside them (a qdisc, a firewall outside nft, a link down) lost it");
      }
      return { hops, delivered: true, namespaces, flows };
    }
    if (lookup.type !== "unicast") {
      return drop(ns, "unreachable-route", `${where(ns)} has a ${lookup.type} route for ${pkt.dst}: ${entryText ?? ""}`.trim(), "route-lookup", [getCmd]);
    }
    const oif = view.links.find((l) => l.index === lookup.oifIndex);
    if (!oif) return drop(ns, "no-route", `${where(ns)}: the route's device #${lookup.oifIndex} is gone`, "kernel-state");
    const mtu = Math.min(oif.mtu, entry?.mtu ?? Infinity);
    if (pkt.size > mtu) {
      return drop(ns, "mtu", `MTU too small: ${oif.name} in ${where(ns)} carries ${mtu} bytes, the probe is ${pkt.size} with DF set`, "kernel-state", [`${ipN} link show dev ${oif.name}`, getCmd]);
    }
    hops.push(...postHops);
    const postStop = postHops.find((h) => isDropVerdict(h));
    if (postStop) return nftDrop(postStop);
    const masq = postHops.find((h) => h.nat === "masquerade" || h.nat === "snat");
    const before = { src: pkt.src, sport: pkt.sport };
    if (masq) {
      // The source after masquerade is the egress interface's address: the next namespace's trace shows it.
      pkt.src = lookup.prefsrc ?? pkt.src;
    } else if (conntrack?.snatTo) {
      pkt.src = conntrack.snatTo.address;
      if (conntrack.snatTo.port !== undefined) pkt.sport = conntrack.snatTo.port;
    }
    // After the probe, the flow's conntrack entry here says what a source NAT made of it (a masquerade may
    // also pick another port: always, with kube-proxy's fully-random). The trace tables match the probe's own
    // port, so past a changed port they cannot see it; the arrival then rests on the routes and this entry.
    if (opts.events && !conntrack && (pkt.proto === "tcp" || pkt.proto === "udp") && before.sport !== undefined) {
      const entry = listFlows({ proto: pkt.proto, originalSrc: before.src, originalSport: before.sport }, namedNetnsPath(ns)).find((e) => e.reply.dst !== before.src || e.reply.dport !== before.sport);
      if (entry) {
        pkt.src = entry.reply.dst;
        if (entry.reply.dport !== undefined && entry.reply.dport !== before.sport) {
          pkt.sport = entry.reply.dport;
          portRewritten = { ns, sport: entry.reply.dport };
        }
      }
    }

    // Layer 2: the next hop's MAC from the neighbour table.
    const nextHop = lookup.gw ?? pkt.dst;
    const neighbour = withSocket(ns, (nl) => listNeighbours(nl, oif.index)).find((n) => n.ip === nextHop);
    const state = neighbour ? neighbourStateName(neighbour.state) : "NONE";
    const nextMac = neighbour?.mac;
    if (opts.events) {
      hops.push({
        kind: "neighbour",
        ...base(ns),
        evidence: "kernel-state",
        ip: nextHop,
        dev: oif.name,
        ...(nextMac ? { mac: nextMac } : {}),
        state,
        summary: `next hop ${nextHop} on ${oif.name} is ${nextMac ?? "unresolved"} (${state})`,
        explain: [`${ipN} neigh show ${nextHop} dev ${oif.name}`],
      });
      if (!nextMac || state.includes("FAILED") || state.includes("INCOMPLETE")) {
        const onLinkSubnet = withSocket(ns, (nl) => listAddresses(nl, oif.index)).map((a) => a.cidr).find((c) => cidrContains(parseCidr(c), parseIp(nextHop)));
        const reason: DropReason = lookup.gw && !onLinkSubnet ? "not-on-link" : "no-neighbour";
        const why = reason === "not-on-link"
          ? `gateway ${nextHop} is not on-link: no address of ${oif.name} covers it${entry?.onlink ? " (the route forces it with onlink)" : ""}, and nothing answers ARP for it`
          : `${lookup.gw ? "gateway " : ""}${nextHop} does not answer ARP on ${oif.name} (${state}${onLinkSubnet ? `, in ${onLinkSubnet}` : ""})`;
        return drop(ns, reason, why, "kernel-state", [`${ipN} neigh show dev ${oif.name}`, `${ipN} addr show dev ${oif.name}`]);
      }
    }

    // Out of the interface: a bridge's port, or a veth to the next namespace.
    if (oif.kind === "vxlan") {
      // Into the tunnel: the FDB entry for the next hop's MAC names the remote VTEP; the outer packet is then
      // routed from this namespace like any packet it sends.
      const fdb = nextMac ? withSocket(ns, (nl) => listFdb(nl, oif.index)).find((e) => e.mac === nextMac && e.dst) : undefined;
      const local = oif.vxlan?.localIp ?? lookup.prefsrc;
      if (!fdb?.dst) return drop(ns, "no-fdb", `VXLAN ${oif.name} has no FDB entry for ${nextMac ?? "the next hop"}: no remote VTEP to send to`, "kernel-state", [`bridge -n ${ns} fdb show dev ${oif.name}`]);
      hops.push({
        kind: "vxlan",
        ...base(ns),
        evidence: "kernel-state",
        direction: "encap",
        device: oif.name,
        vni: oif.vxlan?.vni ?? 0,
        port: oif.vxlan?.port ?? 0,
        ...(nextMac ? { innerDstMac: nextMac } : {}),
        fdb: { mac: fdb.mac, dst: fdb.dst },
        outer: { ...(local ? { src: local } : {}), dst: fdb.dst },
        summary: `VXLAN ${oif.name} (VNI ${oif.vxlan?.vni ?? "?"}): FDB ${fdb.mac} → remote VTEP ${fdb.dst}; outer UDP ${local ?? "?"} → ${fdb.dst}:${oif.vxlan?.port ?? "?"}`,
        explain: [`bridge -n ${ns} fdb show dev ${oif.name}`, `${ipN} neigh show dev ${oif.name}`, `${ipN} -d link show dev ${oif.name}`],
      });
      encapsulated = { inner: { ...pkt }, vni: oif.vxlan?.vni ?? 0, device: oif.name };
      pkt.src = local ?? pkt.src;
      pkt.dst = fdb.dst;
      pkt.proto = "udp";
      delete pkt.sport;
      if (oif.vxlan?.port) pkt.dport = oif.vxlan.port;
      position = { netns: ns };
      namespaces.pop();
      continue;
    }
    const next = leave(kernel, ns, oif, nextMac, base, hops, opts);
    if ("drop" in next) return drop(next.netns, next.reason, next.summary, next.evidence);
    position = next;
  }
}

type Leave = { netns: string; iif: LinkInfo } | { drop: true; netns: string; reason: DropReason; summary: string; evidence: DropHop["evidence"] };

/** Follows a frame from `oif` in `ns` to the interface it enters next, recording veth and bridge hops. */
function leave(kernel: LabKernel, ns: string, oif: LinkInfo, dstMac: string | undefined, base: (ns: string) => { netns: string; where: string; explain: string[] }, hops: Hop[], opts: WalkOptions): Leave {
  let out = { netns: ns, link: oif };
  for (let guard = 0; guard < 8; guard++) {
    if (out.link.kind === "bridge") {
      const bridgeHop = bridgeForward(kernel, out.netns, out.link, undefined, dstMac, base);
      hops.push(bridgeHop.hop);
      if (!bridgeHop.egress) return { drop: true, netns: out.netns, reason: "no-neighbour", summary: `bridge ${out.link.name} has no FDB entry for ${dstMac ?? "the next hop"}`, evidence: "kernel-state" };
      out = { netns: out.netns, link: bridgeHop.egress };
      continue;
    }
    const peer = kernel.vethPeer(out.netns, out.link);
    if (!peer) return { drop: true, netns: out.netns, reason: "no-route", summary: `${out.link.name} in ${opts.labels.get(out.netns)} leads outside the lab`, evidence: "kernel-state" };
    hops.push({
      kind: "veth",
      ...base(out.netns),
      evidence: "kernel-state",
      from: { netns: out.netns, dev: out.link.name },
      to: { netns: peer.netns, dev: peer.link.name, where: opts.labels.get(peer.netns) ?? peer.netns },
      summary: `veth ${out.link.name} → ${peer.link.name} in ${opts.labels.get(peer.netns) ?? peer.netns}`,
      explain: [`ip -n ${out.netns} -d link show dev ${out.link.name}`],
    });
    if (peer.link.masterIndex === undefined) return { netns: peer.netns, iif: peer.link };
    const bridge = kernel.view(peer.netns).links.find((l) => l.index === peer.link.masterIndex);
    if (!bridge) return { netns: peer.netns, iif: peer.link };
    const forwarded = bridgeForward(kernel, peer.netns, bridge, peer.link, dstMac, base);
    hops.push(forwarded.hop);
    if (forwarded.hop.delivery === "local") return { netns: peer.netns, iif: bridge };
    if (!forwarded.egress) return { drop: true, netns: peer.netns, reason: "no-neighbour", summary: `bridge ${bridge.name} has no FDB entry for ${dstMac ?? "the next hop"}`, evidence: "kernel-state" };
    out = { netns: peer.netns, link: forwarded.egress };
  }
  return { drop: true, netns: ns, reason: "loop", summary: "too many layer-2 hops", evidence: "inferred" };
}

function bridgeForward(kernel: LabKernel, ns: string, bridge: LinkInfo, ingress: LinkInfo | undefined, dstMac: string | undefined, base: (ns: string) => { netns: string; where: string; explain: string[] }): { hop: BridgeHop; egress?: LinkInfo } {
  const links = kernel.view(ns).links;
  const explain = [`bridge -n ${ns} fdb show br ${bridge.name}${dstMac ? ` | grep -i ${dstMac}` : ""}`, `bridge -n ${ns} link show`];
  if (dstMac && dstMac === bridge.mac) {
    return {
      hop: { kind: "bridge", ...base(ns), evidence: "kernel-state", bridge: bridge.name, ...(ingress ? { ingressPort: ingress.name } : {}), delivery: "local", dstMac, summary: `bridge ${bridge.name}: ${dstMac} is the bridge's own address, up to ${bridge.name}'s IP stack`, explain },
    };
  }
  const ports = new Map(links.filter((l) => l.masterIndex === bridge.index).map((l) => [l.index, l]));
  const fdb = dstMac ? withSocket(ns, (nl) => listFdb(nl)).find((e) => e.mac === dstMac && ports.has(e.index)) : undefined;
  const egress = fdb ? ports.get(fdb.index) : undefined;
  const hop: BridgeHop = {
    kind: "bridge",
    ...base(ns),
    evidence: fdb ? "kernel-state" : "inferred",
    bridge: bridge.name,
    ...(ingress ? { ingressPort: ingress.name } : {}),
    delivery: egress ? "port" : "flood",
    ...(dstMac ? { dstMac } : {}),
    summary: egress ? `bridge ${bridge.name}${ingress ? ` in on ${ingress.name}` : ""}, FDB ${dstMac} → port ${egress.name}` : `bridge ${bridge.name}: no FDB entry for ${dstMac ?? "?"}, flooded`,
    explain,
  };
  if (fdb && egress) {
    hop.egressPort = egress.name;
    hop.fdb = { mac: fdb.mac, port: egress.name, state: fdb.state & NUD_PERMANENT ? "permanent" : "learned" };
  }
  return egress ? { hop, egress } : { hop };
}

function isDropVerdict(h: NftHop): boolean {
  return h.verdict === "drop" || h.verdict.startsWith("reject") || h.rules.some((r) => r.verdict === "drop" || /\breject\b/.test(r.rule));
}

/**
 * A Service decision among the nft hops of one namespace: a rule that looked the packet up in a verdict
 * map (`… vmap @service-ips`) and jumped to a chain, that chain choosing an endpoint chain, and the DNAT
 * there. The element's key is the packet's own daddr . l4proto . dport at that chain, which the rule looks up.
 */
export function serviceHopFrom(nftHops: readonly NftHop[], base: { netns: string; where: string; explain: string[] }, ns: string): ServiceHop | undefined {
  for (const h of nftHops) {
    const lookup = h.rules.find((r) => /vmap @([\w.-]+)/.test(r.rule) && /^(goto|jump) /.test(r.verdict));
    if (!lookup) continue;
    const map = /vmap @([\w.-]+)/.exec(lookup.rule)![1]!;
    const serviceChain = lookup.verdict.split(" ")[1]!;
    // A chain can be entered more than once (left by a jump, come back to): all its visits count.
    const visits = (chain: string): NftHop[] => nftHops.filter((x) => x.table === h.table && x.chain === chain);
    // A jump into a chain that only sets a mark (kube-proxy's mark-for-masquerade) decides nothing.
    const onlyMarks = (chain: string): boolean => visits(chain).every((v) => v.rules.every((r) => /^meta mark set /.test(r.rule)));
    // From the map's target, follow the deciding goto (or jump) down to the chain that DNATs: service-… for
    // a ClusterIP, external-… → service-… for an external IP or LoadBalancer IP, then endpoint-… when the
    // service has endpoint chains (session affinity, many endpoints).
    const followed: NftRuleMatch[] = [];
    const path = [serviceChain];
    let endpoint: { address: string; port?: number } | undefined;
    for (let chain = serviceChain; path.length <= 6; ) {
      endpoint = visits(chain).find((v) => v.dnatTo)?.dnatTo;
      if (endpoint) break;
      const moves = visits(chain).flatMap((v) => v.rules).filter((r) => /^(goto|jump) /.test(r.verdict) && !onlyMarks(r.verdict.split(" ")[1]!));
      const next = moves.filter((r) => r.verdict.startsWith("goto ")).at(-1) ?? moves.at(-1);
      if (!next) break;
      followed.push(next);
      chain = next.verdict.split(" ")[1]!;
      path.push(chain);
    }
    const endpointChain = path.length > 1 ? path.at(-1) : undefined;
    const byMap = endpoint ? visits(path.at(-1)!).find((v) => v.dnatTo && v.dnatMap) : undefined;
    const endpointElement = byMap?.dnatMap && endpoint ? endpointElementOf(ns, h.family, h.table, byMap.dnatMap, endpoint) : undefined;
    const packet = h.packet ?? "";
    const daddr = /(?:^|\s)ip daddr (\S+)/.exec(packet)?.[1];
    const proto = /(?:^|\s)(tcp|udp|sctp) dport (\d+)/.exec(packet);
    // The element's key is what the lookup rule concatenates: daddr . l4proto . dport, or (NodePorts) l4proto . dport.
    const keyHasAddress = /ip daddr \. meta l4proto/.test(lookup.rule);
    const element = `${keyHasAddress ? `${daddr ?? "?"} . ` : ""}${proto?.[1] ?? "?"} . ${proto?.[2] ?? "?"}`;
    // ClientIP affinity: a followed `ip saddr @SET goto CHAIN` rule matched, so an element chose.
    const byAffinity = followed.find((r) => /(?:^|\s)ip saddr @([^\s{}]+)/.test(r.rule));
    const bySet = byAffinity && /(?:^|\s)ip saddr @([^\s{}]+)/.exec(byAffinity.rule)?.[1];
    const saddr = /(?:^|\s)ip saddr (\S+)/.exec(visits(serviceChain)[0]?.packet ?? packet)?.[1];
    const affinity = saddr && bySet ? { set: bySet, element: saddr, decided: true } : undefined;
    const hop: ServiceHop = {
      kind: "service",
      ...base,
      evidence: "nft-trace",
      table: h.table,
      map,
      element,
      serviceChain,
      ...(endpointChain ? { endpointChain } : {}),
      ...(endpoint ? { endpoint } : {}),
      ...(affinity ? { affinity } : {}),
      ...(endpointElement ? { endpointElement } : {}),
      summary: `service: @${map} element ${element} → ${path.join(" → ")}${endpoint ? ` → DNAT ${endpoint.address}${endpoint.port !== undefined ? `:${endpoint.port}` : ""}` : " (no endpoint chosen)"}${
        endpointElement ? ` (numgen random mod ${endpointElement.mod} offset ${endpointElement.offset} drew ${endpointElement.key}: element ${endpointElement.key} of @${endpointElement.map}; the endpoint is the probe's conntrack entry's)` : ""}${
        affinity ? `; chosen by session affinity: element ${affinity.element} of @${affinity.set}` : ""}`,
      explain: [
        `ip netns exec ${ns} nft get element ${h.family} ${h.table} ${map} '{ ${element} }'`,
        `ip netns exec ${ns} nft list chain ${h.family} ${h.table} ${serviceChain}`,
        ...path.slice(1).map((chain) => `ip netns exec ${ns} nft list chain ${h.family} ${h.table} ${chain}`),
        ...(endpointElement ? [`ip netns exec ${ns} nft get element ${h.family} ${h.table} ${endpointElement.map} '{ ${endpointElement.key} }'`] : []),
        `ip netns exec ${ns} conntrack -L${keyHasAddress && daddr ? ` -d ${daddr}` : ""}${proto ? ` -p ${proto[1]} --orig-port-dst ${proto[2]}` : ""}`,
      ],
      note: `the element's key is the packet's ${keyHasAddress ? "daddr . " : ""}l4proto . dport as the lookup rule saw it`,
    };
    return hop;
  }
  return undefined;
}

/**
 * The events of the probe's first packet in one namespace. A TCP probe whose connection is answered sends
 * more packets from the same port (the handshake's last ACK, the FIN), and each goes through the same base
 * chains again; nft prints the packet at the first event of every base chain, so a second "packet" event at
 * a chain that already had one is the next packet.
 */
export function firstPacketEvents(events: readonly NftTraceEvent[]): NftTraceEvent[] {
  const seen = new Set<string>();
  const first: NftTraceEvent[] = [];
  for (const e of events) {
    if (e.kind === "packet") {
      const key = `${e.family} ${e.table} ${e.chain}`;
      if (seen.has(key)) break;
      seen.add(key);
    }
    first.push(e);
  }
  return first;
}

/** The probe's nft events in one namespace, one hop per chain it crossed (the trace's own table left out). */
export function nftHopsFor(ns: string, events: readonly NftTraceEvent[], traceTable: string | undefined, base: { netns: string; where: string; explain: string[] }): NftHop[] {
  const hops: NftHop[] = [];
  let current: NftHop | undefined;
  // nft prints the packet once per hook, at its first chain; chains jumped to from there see the same packet.
  let lastPacket: string | undefined;
  for (const e of events) {
    if (e.kind === "packet") lastPacket = e.packet.text;
    if (e.table === traceTable) continue;
    const key = `${e.family} ${e.table} ${e.chain}`;
    if (!current || `${current.family} ${current.table} ${current.chain}` !== key || e.kind === "packet") {
      current = {
        kind: "nft",
        ...base,
        explain: [`ip netns exec ${ns} nft -a list chain ${e.family} ${e.table} ${e.chain}`],
        evidence: "nft-trace",
        family: e.family,
        table: e.table,
        chain: e.chain,
        rules: [],
        verdict: "continue",
        summary: "",
        ...(lastPacket && e.kind !== "packet" ? { packet: lastPacket } : {}),
      };
      hops.push(current);
    }
    if (e.kind === "packet") current.packet = e.packet.text;
    else if (e.kind === "rule") {
      current.rules.push({ rule: e.rule, ...(e.handle !== undefined ? { handle: e.handle } : {}), verdict: e.verdict });
      current.verdict = e.verdict;
      const nat = /\b(masquerade|snat|dnat|redirect)\b/.exec(e.rule)?.[1] as NftHop["nat"] | undefined;
      if (nat) current.nat = nat;
      // nft prints a literal DNAT as `dnat ip to 10.244.1.3:8080` (or without the port).
      const dnat = /\bdnat (?:ip )?to (\d+\.\d+\.\d+\.\d+)(?::(\d+))?/.exec(e.rule);
      if (dnat && e.verdict !== "continue") current.dnatTo = { address: dnat[1]!, ...(dnat[2] ? { port: Number(dnat[2]) } : {}) };
      // The endpoint map layout: `dnat ip to numgen random mod N [offset O] map @MAP` (the address is the element's).
      const fromMap = /\bdnat (?:ip )?to numgen random mod (\d+)(?: offset (\d+))? map @([\w.-]+)/.exec(e.rule);
      if (fromMap && e.verdict !== "continue") current.dnatMap = { map: fromMap[3]!, mod: Number(fromMap[1]), offset: Number(fromMap[2] ?? 0) };
    } else current.verdict = e.kind === "policy" ? `policy ${e.verdict}` : e.verdict;
  }
  for (const h of hops) {
    const last = h.rules.at(-1);
    h.summary = `nft ${h.family} ${h.table} ${h.chain}: ${last ? `rule "${last.rule}"${last.handle !== undefined ? ` (handle ${last.handle})` : ""} → ${last.verdict}` : h.verdict}${h.nat === "masquerade" ? " — masquerade" : h.dnatTo ? ` — DNAT to ${h.dnatTo.address}${h.dnatTo.port !== undefined ? `:${h.dnatTo.port}` : ""}` : h.rules.length === 0 ? " (no rule matched)" : ""}`;
  }
  return hops;
}

function formatEntry(entry: NonNullable<RouteLookup["entry"]>, nameOf: (i: number | undefined) => string): string {
  const parts: string[] = [];
  if (entry.type !== "unicast") parts.push(entry.type);
  parts.push(entry.dst === "0.0.0.0/0" ? "default" : entry.dst);
  if (entry.gw) parts.push("via", entry.gw);
  if (entry.oifIndex !== undefined) parts.push("dev", nameOf(entry.oifIndex));
  if (entry.protocol !== undefined && entry.protocol !== RTPROT_BOOT) parts.push("proto", PROTOCOL_NAMES[entry.protocol] ?? String(entry.protocol));
  if (entry.scope === 253) parts.push("scope", "link");
  if (entry.scope === 254) parts.push("scope", "host");
  if (entry.onlink) parts.push("onlink");
  if (entry.metric !== undefined) parts.push("metric", String(entry.metric));
  if (entry.mtu !== undefined) parts.push("mtu", String(entry.mtu));
  if (entry.table !== undefined && entry.table !== 254) parts.push("table", String(entry.table));
  return parts.join(" ");
}

/**
 * Completes a service hop's session affinity from the kernel: the element's expiry, and, when no affinity
 * rule matched (the trace does not report the endpoint chain's `update @SET`, a dynset that never ends a
 * rule's evaluation), the set that chain updates, read from the chain, with this client's element in it.
 */
function withAffinityElement(service: ServiceHop, ns: string, client: string | undefined): void {
  const family = "ip";
  let affinity = service.affinity;
  if (!affinity && service.endpointChain && client) {
    const set = listChainRules(ns, family, service.table, service.endpointChain)?.map((r) => /\bupdate @([^\s{}]+) \{ ip saddr \}/.exec(r)?.[1]).find((x) => x !== undefined);
    if (set) affinity = { set, element: client, decided: false };
  }
  if (!affinity) return;
  const element = getSetElement(ns, family, service.table, affinity.set, affinity.element);
  if (!element.present) return;
  service.affinity = { ...affinity, ...(element.expires ? { expires: element.expires } : {}) };
  if (!affinity.decided) service.summary += `; session affinity: ${affinity.element} now in @${affinity.set}, so it keeps this endpoint`;
  if (element.expires) service.summary += ` (expires in ${element.expires})`;
  service.explain.push(`ip netns exec ${ns} nft get element ${family} ${service.table} ${affinity.set} '{ ${affinity.element} }'`);
}

const sameTuple = (a: ConntrackTuple, b: ConntrackTuple): boolean => a.src === b.src && a.dst === b.dst && a.sport === b.sport && a.dport === b.dport;

/**
 * The conntrack entry of the packet's flow in `ns`, as a hop, when the flow was there before the probe and
 * its entry NATs: then the entry, not a rule, decides where the packet goes (nf_nat runs the nat chains
 * for a flow's first packet only, and applies the stored binding to every later one).
 */
function existingFlow(ns: string, pkt: WalkPacket, nftHops: readonly NftHop[], opts: WalkOptions, flows: Map<string, ConntrackEntry[]>, base: { netns: string; where: string; explain: string[] }): ConntrackHop | undefined {
  if ((pkt.proto !== "tcp" && pkt.proto !== "udp") || pkt.sport === undefined || pkt.dport === undefined) return undefined;
  const filter: ConntrackFilter = { proto: pkt.proto, originalSrc: pkt.src, originalSport: pkt.sport, originalDst: pkt.dst, originalDport: pkt.dport };
  const entries = listFlows(filter, namedNetnsPath(ns));
  flows.set(ns, [...(flows.get(ns) ?? []), ...entries]);
  const dnatOf = (e: ConntrackEntry) => (e.reply.src !== e.original.dst || e.reply.sport !== e.original.dport ? { address: e.reply.src, ...(e.reply.sport !== undefined ? { port: e.reply.sport } : {}) } : undefined);
  const snatOf = (e: ConntrackEntry) => (e.reply.dst !== e.original.src || e.reply.dport !== e.original.sport ? { address: e.reply.dst, ...(e.reply.dport !== undefined ? { port: e.reply.dport } : {}) } : undefined);
  // A SYN to a flow in TIME_WAIT or CLOSE starts a new flow (conntrack re-creates the entry and the rules run
  // again), so such an entry decides nothing for the probe.
  const entry = entries.find((e) => (dnatOf(e) || snatOf(e)) && e.state !== "TIME_WAIT" && e.state !== "CLOSE");
  if (!entry) return undefined;
  const existedBefore = opts.flowsBefore === undefined || (opts.flowsBefore.get(ns) ?? []).some((e) => sameTuple(e.original, entry.original) && sameTuple(e.reply, entry.reply));
  if (!existedBefore) return undefined;
  const dnatTo = dnatOf(entry);
  const snatTo = snatOf(entry);
  const natRuleMet = nftHops.some((h) => h.nat !== undefined);
  const t = (x: ConntrackTuple): string => `${x.src}${x.sport !== undefined ? `:${x.sport}` : ""} → ${x.dst}${x.dport !== undefined ? `:${x.dport}` : ""}`;
  const target = (x: { address: string; port?: number }): string => `${x.address}${x.port !== undefined ? `:${x.port}` : ""}`;
  const hop: ConntrackHop = {
    kind: "conntrack",
    ...base,
    evidence: "kernel-state",
    proto: entry.proto,
    original: entry.original,
    reply: entry.reply,
    ...(entry.state ? { state: entry.state } : {}),
    flags: entry.flags,
    timeout: entry.timeout,
    ...(entry.mark !== undefined ? { mark: entry.mark } : {}),
    ...(dnatTo ? { dnatTo } : {}),
    ...(snatTo ? { snatTo } : {}),
    existing: true,
    summary: `conntrack: existing ${entry.proto} flow ${t(entry.original)}${entry.state ? ` ${entry.state}` : ""}${entry.flags.length ? ` [${entry.flags.join(",")}]` : ""}, reply ${t(entry.reply)}: ${
      dnatTo ? `DNAT to ${target(dnatTo)}` : ""}${dnatTo && snatTo ? ", " : ""}${snatTo ? `SNAT to ${target(snatTo)}` : ""} by the entry; no service rule chose ${dnatTo ? "the endpoint" : "the address"}`,
    explain: [`ip netns exec ${ns} conntrack ${conntrackListArgs(filter).join(" ")}`],
    note: `the entry was there before the probe was sent; nat chains run for a flow's first packet only${opts.events ? (natRuleMet ? "" : ", and the probe met no nat rule here (nft trace)") : ""}`,
  };
  return hop;
}

/**
 * For a DNAT through an endpoint map (the rule shows no address), the endpoint the draw chose, from the
 * probe's own conntrack entry in `ns` (read after the probe): its reply comes from the endpoint.
 */
function resolveMapDnat(ns: string, nftHops: NftHop[], pkt: WalkPacket): void {
  const hop = nftHops.find((h) => h.dnatMap && !h.dnatTo && !/post|input|forward|fwd/i.test(h.chain));
  if (!hop || (pkt.proto !== "tcp" && pkt.proto !== "udp") || pkt.sport === undefined || pkt.dport === undefined) return;
  const entries = listFlows({ proto: pkt.proto, originalSrc: pkt.src, originalSport: pkt.sport, originalDst: pkt.dst, originalDport: pkt.dport }, namedNetnsPath(ns));
  const entry = entries.find((e) => e.reply.src !== e.original.dst || e.reply.sport !== e.original.dport);
  if (!entry) return;
  hop.dnatTo = { address: entry.reply.src, ...(entry.reply.sport !== undefined ? { port: entry.reply.sport } : {}) };
  hop.explain.push(`ip netns exec ${ns} conntrack -L -p ${pkt.proto} -s ${pkt.src} --sport ${pkt.sport} -d ${pkt.dst} --dport ${pkt.dport}`);
}

/** The key, among the ones the rule could draw, whose element of the map is the endpoint. */
function endpointElementOf(ns: string, family: string, table: string, d: { map: string; mod: number; offset: number }, endpoint: { address: string; port?: number }): ServiceHop["endpointElement"] {
  let elements: readonly NftMapElement[] | undefined;
  try {
    elements = readMapElements(family as NftFamily, table, d.map, namedNetnsPath(ns));
  } catch {
    return undefined; // the map is gone (a sync replaced it): the endpoint still stands, from conntrack
  }
  const found = elements?.find((e) => {
    const key = Number(e.key[0]);
    return key >= d.offset && key < d.offset + d.mod && e.value?.[0] === endpoint.address && (endpoint.port === undefined || Number(e.value?.[1]) === endpoint.port);
  });
  return found ? { map: d.map, key: Number(found.key[0]), mod: d.mod, offset: d.offset } : undefined;
}
