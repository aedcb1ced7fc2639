// `podnet lab up --explain`: the ip/nft/bridge commands that would build, by hand, what `lab up` (the
// lab, the plugin and the agent) built. Derived from live state: every namespace is read back after up
// (links, veth peers, addresses, routes that are not the kernel's own, nft tables) and written as the
// commands that recreate it, in the order up works: namespaces, the underlay switch and its hosts,
// each node's agent (host-gw routes, masquerade), then each pod as the CNI plugin wires it.

import { listAddresses } from "../kernel/address.ts";
import { getBridgePortHairpin, type LinkInfo } from "../kernel/link.ts";
import { listFdb, listNeighbours, NUD_PERMANENT } from "../kernel/neigh.ts";
import { namedNetnsPath } from "../kernel/named-netns-path.ts";
import { listNftTables } from "../kernel/nft-tables.ts";
import { nftListTable } from "../kernel/nft.ts";
import { listRoutes, RTPROT_KERNEL, RTPROT_BOOT, RTPROT_STATIC, type RouteSpec } from "../kernel/route.ts";
import { getSysctlIn } from "../kernel/sysctl.ts";
import type { LabState } from "../lab/lab-state.ts";
import { labNamespaceLabels, labPlanOf } from "./trace.ts";
import { LabKernel, PODNET_ROUTE_PROTOCOL, withSocket } from "./walk.ts";

const PROTO_WORDS: Record<number, string> = { [RTPROT_BOOT]: "", [RTPROT_STATIC]: " proto static", [PODNET_ROUTE_PROTOCOL]: " proto 80" };

function routeCommand(ns: string, r: RouteSpec, names: ReadonlyMap<number, string>): string {
  let text = `ip -n ${ns} route add ${r.dst === "0.0.0.0/0" ? "default" : r.dst}`;
  if (r.gw) text += ` via ${r.gw}`;
  if (r.oifIndex !== undefined) text += ` dev ${names.get(r.oifIndex) ?? `#${r.oifIndex}`}`;
  text += PROTO_WORDS[r.protocol ?? RTPROT_BOOT] ?? ` proto ${r.protocol}`;
  if (r.onlink) text += " onlink";
  if (r.metric !== undefined) text += ` metric ${r.metric}`;
  if (r.mtu !== undefined) text += ` mtu ${r.mtu}`;
  return text;
}

export function explainLab(state: LabState): string {
  const plan = labPlanOf(state);
  const labels = labNamespaceLabels(state);
  const kernel = new LabKernel(labels);
  const out: string[] = [];
  const section = (title: string): void => {
    out.push("", `# ${title}`);
  };
  out.push(`# podnet lab ${state.data.id}: equivalent commands, derived from the live kernel state after up`);
  out.push(`# (read back from every namespace; not a log of the calls, which went over rtnetlink and libnftables)`);

  section("namespaces");
  for (const ns of state.data.namespaces) out.push(`ip netns add ${ns}`, `ip -n ${ns} link set lo up`);

  /** Creates every link of `ns` whose creation belongs there: bridges, and veths whose other end is elsewhere, made from this side. */
  const linksOf = (ns: string, vethFromHere: (l: LinkInfo) => boolean): void => {
    const links = kernel.view(ns).links;
    for (const bridge of links.filter((l) => l.kind === "bridge")) {
      out.push(`ip -n ${ns} link add ${bridge.name} type bridge`);
      out.push(`ip -n ${ns} link set ${bridge.name} up`);
    }
    for (const l of links.filter((x) => x.kind === "veth" && vethFromHere(x))) {
      const peer = kernel.vethPeer(ns, l);
      out.push(`ip -n ${ns} link add ${l.name} type veth peer name ${peer?.link.name ?? "?"} netns ${peer?.netns ?? "?"}`);
      const master = links.find((m) => m.index === l.masterIndex);
      if (master) out.push(`ip -n ${ns} link set ${l.name} master ${master.name}`);
      out.push(`ip -n ${ns} link set ${l.name} up`);
      if (master && withSocket(ns, (nl) => getBridgePortHairpin(nl, l.index))) out.push(`bridge -n ${ns} link set dev ${l.name} hairpin on`);
    }
  };
  const addressesOf = (ns: string, only?: (l: LinkInfo) => boolean): void => {
    const links = kernel.view(ns).links;
    const names = new Map(links.map((l) => [l.index, l]));
    for (const a of withSocket(ns, (nl) => listAddresses(nl))) {
      const link = names.get(a.index);
      if (!link || link.name === "lo" || a.family !== 4 || (only && !only(link))) continue;
      out.push(`ip -n ${ns} addr add ${a.cidr} dev ${link.name}`);
      if (link.kind === "veth" && link.masterIndex === undefined) out.push(`ip -n ${ns} link set ${link.name} up`);
    }
  };
  const routesOf = (ns: string, keep: (r: RouteSpec) => boolean): void => {
    const names = new Map(kernel.view(ns).links.map((l) => [l.index, l.name]));
    for (const r of withSocket(ns, (nl) => listRoutes(nl, { family: 4 }))) if (r.protocol !== RTPROT_KERNEL && keep(r)) out.push(routeCommand(ns, r, names));
  };
  const nftOf = (ns: string, owner: (family: string, table: string) => boolean): void => {
    for (const t of listNftTables(namedNetnsPath(ns))) {
      if (!owner(t.family, t.name)) continue;
      const text = nftListTable(t.family as "ip", t.name, namedNetnsPath(ns));
      if (text) out.push(`ip netns exec ${ns} nft -f - <<'EOF'`, text.trimEnd(), "EOF");
    }
  };

  section(`underlay: ${plan.switches.map((sw) => `switch ${sw.bridge} (${sw.cidr})`).join(", ")}${plan.router ? ", the router" : ""} and the hosts plugged in (lab)`);
  for (const sw of plan.switches) linksOf(sw.netns, () => true);
  const hosts = [...(plan.router ? [{ netns: plan.router.netns, forwards: true, uplinks: plan.router.uplinks.map((u) => u.name) }] : []), ...[plan.controlPlane, plan.external, ...plan.nodes].map((h) => ({ netns: h.netns, forwards: h.role === "node", uplinks: [h.uplink] }))];
  for (const host of hosts) {
    addressesOf(host.netns, (l) => host.uplinks.includes(l.name));
    if (host.forwards && getSysctlIn(namedNetnsPath(host.netns), "net.ipv4.ip_forward") === "1") out.push(`ip netns exec ${host.netns} sysctl -w net.ipv4.ip_forward=1`);
    // The routed topology's default route via the router is the lab's, not the agent's.
    routesOf(host.netns, (r) => r.protocol !== PODNET_ROUTE_PROTOCOL && (r.oifIndex === undefined || host.uplinks.includes(kernel.view(host.netns).links.find((l) => l.index === r.oifIndex)?.name ?? "")));
  }

  for (const node of state.data.nodeRecords) {
    section(`${node.name}: podnet agent (${state.data.backend ?? "host-gw"}: routes to the other nodes' subnets${state.data.backend === "vxlan" ? " over the VXLAN device, its ARP and FDB entries" : ""}; masquerade out of the cluster)`);
    for (const v of kernel.view(node.netns).links.filter((l) => l.kind === "vxlan")) {
      const under = kernel.view(node.netns).links.find((l) => l.index === v.vxlan?.underlayIndex);
      out.push(`ip -n ${node.netns} link add ${v.name} address ${v.mac} mtu ${v.mtu} type vxlan id ${v.vxlan?.vni ?? "?"}${v.vxlan?.localIp ? ` local ${v.vxlan.localIp}` : ""}${under ? ` dev ${under.name}` : ""} dstport ${v.vxlan?.port ?? "?"}${v.vxlan?.learning ? "" : " nolearning"}`);
      addressesOf(node.netns, (l) => l.index === v.index);
      out.push(`ip -n ${node.netns} link set ${v.name} up`);
      for (const n of withSocket(node.netns, (nl) => listNeighbours(nl, v.index))) if (n.mac && n.state & NUD_PERMANENT) out.push(`ip -n ${node.netns} neigh replace ${n.ip} lladdr ${n.mac} dev ${v.name} nud permanent`);
      for (const f of withSocket(node.netns, (nl) => listFdb(nl, v.index))) if (f.dst && f.dst !== "0.0.0.0") out.push(`bridge -n ${node.netns} fdb append ${f.mac} dev ${v.name} dst ${f.dst} self permanent`);
    }
    routesOf(node.netns, (r) => r.protocol === PODNET_ROUTE_PROTOCOL);
    nftOf(node.netns, () => true);
  }
  for (const node of state.data.nodeRecords) {
    section(`${node.name}: the CNI plugin, per pod (bridge once, then a veth per pod, its address and routes)`);
    const nodeLinks = kernel.view(node.netns).links;
    linksOf(node.netns, (l) => l.masterIndex !== undefined && nodeLinks.some((b) => b.index === l.masterIndex && b.kind === "bridge"));
    addressesOf(node.netns, (l) => l.kind === "bridge");
    for (const pod of state.data.pods.filter((p) => p.node === node.name)) {
      out.push(`# pod ${pod.name}`);
      addressesOf(pod.netns);
      routesOf(pod.netns, () => true);
      nftOf(pod.netns, () => true);
    }
  }
  return out.join("\n").replace(/^\n/, "") + "\n";
}
