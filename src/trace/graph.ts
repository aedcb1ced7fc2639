// A picture of a lab: the underlay switch, the hosts on it, every node with its subnet and bridge, the
// pods with their addresses. elkjs (the Eclipse Layout Kernel) places boxes and routes edges; this
// module only measures labels, builds the graph, and writes SVG from elk's coordinates. A trace's path
// is drawn onto it by highlighting the boxes and links it crossed. Services (read over the lab's API) are
// boxes of their own with an edge to each endpoint pod (dashed while not ready); VXLAN tunnels are boxes in
// their nodes with an edge between VTEPs that know each other.

import type { ElkExtendedEdge, ElkNode } from "elkjs/lib/elk-api.js";
import { listAddresses } from "../kernel/address.ts";
import { listLinks, type LinkInfo } from "../kernel/link.ts";
import { listFdb } from "../kernel/neigh.ts";
import { namedNetnsPath } from "../kernel/named-netns-path.ts";
import { NetlinkSocket } from "../kernel/netlink/socket.ts";
import type { LabState } from "../lab/lab-state.ts";
import { CONTROL_PLANE_IP, EXTERNAL_IP } from "../lab/topology.ts";
import { canonicalCidrText } from "../net/cidr.ts";
import type { TraceResult } from "./model.ts";
import { labPlanOf, labPods } from "./trace.ts";
import { readLabServices, type LabService } from "./lab-services.ts";

function serviceBoxId(service: Pick<LabService, "namespace" | "name">): string {
  return `service:${service.namespace}/${service.name}`;
}

/** Monospace labels are measured, not guessed: 12 px DejaVu Sans Mono advances 7.22 px per character. */
export const FONT_SIZE = 12;
export const CHAR_WIDTH = 7.3;
export const LINE_HEIGHT = 16;
const PAD = 8;

export interface GraphBox {
  id: string;
  /** Lines of the box's label. */
  lines: string[];
  kind: "switch" | "host" | "node" | "bridge" | "pod" | "tunnel" | "service";
  parent?: string;
}

export interface LabGraphModel {
  title: string;
  boxes: GraphBox[];
  edges: { id: string; from: string; to: string; label?: string; dashed?: boolean }[];
}

export interface PlacedBox extends GraphBox {
  x: number;
  y: number;
  width: number;
  height: number;
  /** The label's own box (absolute), for overlap checks. */
  label: { x: number; y: number; width: number; height: number };
}

export interface PlacedGraph {
  width: number;
  height: number;
  boxes: PlacedBox[];
  edges: { id: string; from: string; to: string; points: { x: number; y: number }[] }[];
}

/**
 * The lab as boxes and edges, read from its state, (for bridges, subnets and tunnels) from each node's
 * kernel, and (services) from its controllers, given as `services`.
 */
export function labGraphModel(state: LabState, services: readonly LabService[] = []): LabGraphModel {
  const plan = labPlanOf(state);
  const boxes: GraphBox[] = [];
  const edges: LabGraphModel["edges"] = [];
  const switchId = (i: number): string => (i === 0 ? "switch" : `switch${i + 1}`);
  plan.switches.forEach((sw, i) => boxes.push({ id: switchId(i), kind: "switch", lines: [`underlay switch ${sw.bridge}`, sw.cidr] }));
  if (plan.router) {
    boxes.push({ id: "router", kind: "host", lines: ["router", ...plan.router.uplinks.map((u) => `${u.name} ${u.ip}`)] });
    for (const u of plan.router.uplinks) edges.push({ id: `e-router-${u.switchIndex}`, from: switchId(u.switchIndex), to: "router" });
  }
  boxes.push({ id: "external", kind: "host", lines: ["external", EXTERNAL_IP] });
  boxes.push({ id: "control-plane", kind: "host", lines: ["control-plane (etcd)", CONTROL_PLANE_IP] });
  edges.push({ id: "e-external", from: switchId(plan.external.switchIndex), to: "external" }, { id: "e-control-plane", from: switchId(plan.controlPlane.switchIndex), to: "control-plane" });
  const vteps = new Map<string, string>();
  const tunnels: { from: string; remoteIp: string }[] = [];
  const pods = labPods(state);
  const podByIp = new Map<string, string>();
  for (const node of state.data.nodeRecords) {
    const { bridges, vxlans } = nodeDevices(node.netns);
    boxes.push({ id: node.name, kind: "node", lines: [node.name, `eth0 ${node.ip}`, ...bridges.map((b) => `pods ${b.subnet}`)] });
    const host = plan.nodes.find((n) => n.name === node.name);
    edges.push({ id: `e-${node.name}`, from: switchId(host?.switchIndex ?? 0), to: node.name });
    for (const b of bridges) boxes.push({ id: `${node.name}/${b.name}`, kind: "bridge", parent: node.name, lines: [`bridge ${b.name}`, b.address] });
    for (const v of vxlans) {
      const id = `${node.name}/${v.name}`;
      boxes.push({ id, kind: "tunnel", parent: node.name, lines: [`vxlan ${v.name} VNI ${v.vni}`, `VTEP ${v.local ?? node.ip}`] });
      vteps.set(v.local ?? node.ip, id);
      for (const remote of v.remotes) tunnels.push({ from: id, remoteIp: remote });
    }
    // The lab's probe pods and the pods its kubelet runs from Pod objects ("NAMESPACE/NAME"), as trace names them.
    for (const { label, record: pod } of pods.filter((p) => p.record.node === node.name)) {
      boxes.push({ id: label, kind: "pod", parent: node.name, lines: [label, `eth0 ${pod.ip ?? "-"}`] });
      if (pod.ip) podByIp.set(pod.ip, label);
      const bridge = bridges[0];
      if (bridge) edges.push({ id: `e-${label}`, from: `${node.name}/${bridge.name}`, to: label });
    }
  }
  for (const service of services) {
    const id = serviceBoxId(service);
    const ports = service.ports.map((p) => `${p.port}/${p.protocol}${p.nodePort ? ` nodePort ${p.nodePort}` : ""}`);
    boxes.push({ id, kind: "service", lines: [`service ${service.namespace}/${service.name}`, service.clusterIp ? `ClusterIP ${service.clusterIp}` : service.type === "ExternalName" ? "ExternalName" : "headless", ...ports] });
    for (const endpoint of service.endpoints) {
      const pod = podByIp.get(endpoint.ip);
      if (pod) edges.push({ id: `s-${id}-${pod}`, from: id, to: pod, ...(endpoint.ready ? {} : { dashed: true }) });
    }
  }
  // One tunnel edge per pair of VTEPs that have FDB entries for each other.
  const seen = new Set<string>();
  for (const t of tunnels) {
    const to = vteps.get(t.remoteIp);
    if (!to) continue;
    const key = [t.from, to].sort().join(" ");
    if (seen.has(key)) continue;
    seen.add(key);
    edges.push({ id: `t-${key.replace(" ", "-")}`, from: t.from, to, label: "vxlan" });
  }
  const topology = plan.topology === "routed" ? ", routed underlay" : "";
  const backend = state.data.backend ? `, ${state.data.backend}` : "";
  return { title: `podnet lab ${state.data.id}: ${state.data.nodes} nodes, ${state.data.network} network${backend}${topology}`, boxes, edges };
}

function nodeDevices(netns: string): { bridges: { name: string; address: string; subnet: string }[]; vxlans: { name: string; vni: number; local?: string; remotes: string[] }[] } {
  const nl = NetlinkSocket.open(namedNetnsPath(netns));
  try {
    const links = listLinks(nl);
    const fdb = links.some((l) => l.kind === "vxlan") ? listFdb(nl) : [];
    const vxlans = links.filter((l) => l.kind === "vxlan").map((l) => ({
      name: l.name,
      vni: l.vxlan?.vni ?? 0,
      ...(l.vxlan?.localIp ? { local: l.vxlan.localIp } : {}),
      remotes: [...new Set(fdb.filter((e) => e.index === l.index && e.dst && e.dst !== "0.0.0.0").map((e) => e.dst!))],
    }));
    return { bridges: bridgesOf(nl, links), vxlans };
  } finally {
    nl.close();
  }
}

function bridgesOf(nl: NetlinkSocket, links: readonly LinkInfo[]): { name: string; address: string; subnet: string }[] {
  const addresses = listAddresses(nl);
  return links.filter((l) => l.kind === "bridge").map((l) => {
    const a = addresses.find((x) => x.index === l.index && x.family === 4);
    return { name: l.name, address: a ? a.cidr : "no address", subnet: a ? canonicalCidrText(a.cidr) : "-" };
  });
}

function labelSize(lines: readonly string[]): { width: number; height: number } {
  return { width: Math.ceil(Math.max(...lines.map((l) => l.length)) * CHAR_WIDTH), height: lines.length * LINE_HEIGHT };
}

/** elk places everything; coordinates come back relative to each parent and are made absolute here. */
export async function layoutLabGraph(model: LabGraphModel): Promise<PlacedGraph> {
  const elkNodes = new Map<string, ElkNode>();
  const root: ElkNode = {
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "DOWN",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.spacing.nodeNode": "30",
      "elk.layered.spacing.nodeNodeBetweenLayers": "40",
      "elk.edgeRouting": "ORTHOGONAL",
    },
    children: [],
    edges: [],
  };
  for (const box of model.boxes) {
    const size = labelSize(box.lines);
    const isParent = model.boxes.some((b) => b.parent === box.id);
    const node: ElkNode = isParent
      ? {
          id: box.id,
          children: [],
          // A compound box keeps its label at the top: elk reserves that room as padding.
          layoutOptions: { "elk.padding": `[top=${size.height + 2 * PAD},left=${PAD},bottom=${PAD},right=${PAD}]`, "elk.nodeSize.minimum": `(${size.width + 2 * PAD}, ${size.height + 2 * PAD})`, "elk.nodeSize.constraints": "MINIMUM_SIZE" },
        }
      : { id: box.id, width: size.width + 2 * PAD, height: size.height + 2 * PAD };
    elkNodes.set(box.id, node);
  }
  for (const box of model.boxes) {
    const parent = box.parent ? elkNodes.get(box.parent) : root;
    (parent!.children ??= []).push(elkNodes.get(box.id)!);
  }
  root.edges = model.edges.map((e): ElkExtendedEdge => ({ id: e.id, sources: [e.from], targets: [e.to] }));
  // Loaded here, not at the top: the CLI bundle is one module for every subcommand, and elk's
  // import alone is ~23 MB of heap, which a long-lived `podnet agent` would carry for nothing.
  const { default: ELK } = await import("elkjs/lib/elk.bundled.js");
  const laidOut = await new ELK().layout(root);

  const absolute = new Map<string, { x: number; y: number }>([["root", { x: 0, y: 0 }]]);
  const placed: PlacedBox[] = [];
  const byId = new Map(model.boxes.map((b) => [b.id, b]));
  const visit = (node: ElkNode, ox: number, oy: number): void => {
    for (const child of node.children ?? []) {
      const x = ox + (child.x ?? 0);
      const y = oy + (child.y ?? 0);
      absolute.set(child.id, { x, y });
      const box = byId.get(child.id)!;
      const size = labelSize(box.lines);
      placed.push({ ...box, x, y, width: child.width ?? 0, height: child.height ?? 0, label: { x: x + PAD, y: y + PAD, width: size.width, height: size.height } });
      visit(child, x, y);
    }
  };
  visit(laidOut, 0, 0);
  const edges: PlacedGraph["edges"] = [];
  const collect = (node: ElkNode): void => {
    for (const edge of (node.edges ?? []) as (ElkExtendedEdge & { container?: string })[]) {
      // elk gives an edge's points relative to its container (the lowest common ancestor of its ends).
      const origin = absolute.get(edge.container ?? node.id) ?? { x: 0, y: 0 };
      const points = (edge.sections ?? []).flatMap((s) => [s.startPoint, ...(s.bendPoints ?? []), s.endPoint]).map((p) => ({ x: p.x + origin.x, y: p.y + origin.y }));
      const model_ = model.edges.find((e) => e.id === edge.id)!;
      edges.push({ id: edge.id, from: model_.from, to: model_.to, points });
    }
    for (const child of node.children ?? []) collect(child);
  };
  collect(laidOut);
  return { width: Math.ceil(laidOut.width ?? 0), height: Math.ceil(laidOut.height ?? 0), boxes: placed, edges };
}

const escape = (text: string): string => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const FILL: Record<GraphBox["kind"], string> = { switch: "#e8eef7", host: "#f4f4f4", node: "#fbfaf3", bridge: "#e9f5ec", pod: "#ffffff", tunnel: "#f3eaf7", service: "#fdf1e3" };

/** Which boxes and edges a trace crossed: the namespaces of its hops, and the bridges it went through. */
export function pathElements(model: LabGraphModel, trace: TraceResult): { boxes: Set<string>; edges: Set<string> } {
  const boxes = new Set<string>();
  for (const hop of trace.hops) {
    const isSwitch = /^switch\d*$/.test(hop.where);
    if (model.boxes.some((b) => b.id === hop.where)) boxes.add(hop.where);
    if (hop.kind === "bridge" && !isSwitch) boxes.add(`${hop.where}/${hop.bridge}`);
    if (hop.kind === "vxlan") boxes.add(`${hop.where}/${hop.device}`);
  }
  // A service the probe was sent to, or whose map element it matched, and the endpoint it was sent on to.
  const serviceIps = new Set<string>();
  if (trace.dst.kind === "service" || trace.dst.kind === "address") serviceIps.add(trace.dst.ip);
  for (const hop of trace.hops) if (hop.kind === "service") serviceIps.add(hop.element.split(" . ")[0]!);
  for (const box of model.boxes) if (box.kind === "service" && box.lines.some((l) => serviceIps.has(l.replace(/^ClusterIP /, "")))) boxes.add(box.id);
  const edges = new Set(model.edges.filter((e) => boxes.has(e.from) && boxes.has(e.to)).map((e) => e.id));
  // A pod's edge starts at its node's bridge: include it when the pod is on the path.
  for (const e of model.edges) if (boxes.has(e.to) && e.from.includes("/") && boxes.has(e.from.split("/")[0]!)) edges.add(e.id);
  return { boxes, edges };
}

export function renderSvg(model: LabGraphModel, graph: PlacedGraph, trace?: TraceResult): string {
  const margin = 20;
  const titleHeight = 28;
  const caption = trace ? traceCaption(trace) : [];
  const width = Math.max(graph.width, Math.max(model.title.length, ...caption.map((c) => c.length)) * CHAR_WIDTH) + 2 * margin;
  const height = graph.height + titleHeight + caption.length * LINE_HEIGHT + 2 * margin + (caption.length ? 10 : 0);
  const path = trace ? pathElements(model, trace) : { boxes: new Set<string>(), edges: new Set<string>() };
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${Math.ceil(width)}" height="${Math.ceil(height)}" viewBox="0 0 ${Math.ceil(width)} ${Math.ceil(height)}" font-family="DejaVu Sans Mono, monospace" font-size="${FONT_SIZE}">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(`<text x="${margin}" y="${margin + 14}" font-size="14" font-weight="bold">${escape(model.title)}</text>`);
  out.push(`<g transform="translate(${margin},${margin + titleHeight})">`);
  // Parents before children, so inner boxes are drawn on top.
  for (const box of graph.boxes) {
    const on = path.boxes.has(box.id);
    out.push(`<rect data-id="${escape(box.id)}" x="${box.x}" y="${box.y}" width="${box.width}" height="${box.height}" rx="4" fill="${FILL[box.kind]}" stroke="${on ? "#d1495b" : "#6b7a8f"}" stroke-width="${on ? 3 : 1}"/>`);
  }
  for (const edge of graph.edges) {
    const on = path.edges.has(edge.id);
    const d = edge.points.map((p, i) => `${i === 0 ? "M" : "L"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    const dashed = edge.id.startsWith("t-") || model.edges.find((e) => e.id === edge.id)?.dashed ? ` stroke-dasharray="6 4"` : "";
    out.push(`<path data-id="${escape(edge.id)}" d="${d}" fill="none" stroke="${on ? "#d1495b" : "#8a96a8"}" stroke-width="${on ? 3 : 1.2}"${dashed}/>`);
  }
  for (const box of graph.boxes) {
    // The label's band in the box's colour, over any edge elk routed through it, so the text stays readable.
    out.push(`<rect x="${box.label.x - 3}" y="${box.label.y}" width="${box.label.width + 6}" height="${box.label.height}" fill="${FILL[box.kind]}"/>`);
    box.lines.forEach((line, i) => {
      out.push(`<text class="label" x="${box.label.x}" y="${box.label.y + (i + 1) * LINE_HEIGHT - 4}"${i === 0 ? ` font-weight="bold"` : ""}>${escape(line)}</text>`);
    });
  }
  out.push(`</g>`);
  caption.forEach((line, i) => {
    out.push(`<text class="caption" x="${margin}" y="${margin + titleHeight + graph.height + 20 + i * LINE_HEIGHT}" fill="${i === 0 ? "#d1495b" : "#333333"}">${escape(line)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

function traceCaption(trace: TraceResult): string[] {
  const end = trace.hops.at(-1);
  const head = `trace ${trace.proto} ${trace.src.name} → ${trace.dst.name}: ${trace.delivered ? "delivered" : `NOT delivered (${end?.kind === "drop" ? `${end.reason} at ${end.where}` : "lost"})`}`;
  return [head, ...trace.hops.map((h, i) => `${String(i + 1).padStart(2)}. ${h.where}: ${h.summary}`.slice(0, 140))];
}

export async function renderLabGraph(state: LabState, opts: { path?: TraceResult } = {}): Promise<string> {
  // A graph is still drawn when the controllers do not answer: without services, and says so in its title.
  let services: LabService[] = [];
  let unread = "";
  try {
    services = await readLabServices(state);
  } catch (error) {
    unread = ` (services not shown: ${(error as Error).message})`;
  }
  const model = labGraphModel(state, services);
  model.title += unread;
  return renderSvg(model, await layoutLabGraph(model), opts.path);
}

export function wrapHtml(svg: string, title: string): string {
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${escape(title)}</title></head>\n<body style="margin:0">\n${svg}</body></html>\n`;
}
