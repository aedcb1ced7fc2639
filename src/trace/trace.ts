// `podnet trace`: resolves SRC and DST in a lab, walks the path once to learn which namespaces the packet
// crosses, puts a trace table in each, sends one real probe, reads what nft saw, walks again with those
// events and the neighbour and FDB entries the probe left, and removes every trace table, whatever happens.

import { randomBytes, randomInt } from "node:crypto";
import { startNftTrace, type NftTraceEvent, type NftTraceSession, type TraceProto } from "../kernel/nft-trace.ts";
import { sendProbe } from "../kernel/probe.ts";
import { join } from "node:path";
import { LabState, type PodRecord } from "../lab/lab-state.ts";
import { EXTERNAL_IP, planLab, type LabPlan } from "../lab/topology.ts";
import { isIp, isIpv4 } from "../net/address.ts";
import type { Hop, TraceEndpoint, TraceResult } from "./model.ts";
import { firstPacketEvents, walkPath } from "./walk.ts";
import { findService, readLabServices } from "./lab-services.ts";

export interface TraceRequest {
  src: string;
  dst: string;
  /** Default: the protocol of the port a Service DST names, else udp. */
  proto?: TraceProto;
  /** Total IP packet size; default 84 bytes (a default ping). */
  size?: number;
  /**
   * tcp/udp: the probe's source port, instead of a random one. A port a client's flow already uses makes the
   * probe a packet of that flow: conntrack's entry then decides its NAT, and the trace shows that entry.
   */
  sport?: number;
}

export class TraceInputError extends Error {
  override name = "TraceInputError";
}

/** The lab's plan, with the topology it was built with. */
export function labPlanOf(state: LabState): LabPlan {
  return planLab({ id: state.data.id, nodes: state.data.nodes, podsPerNode: state.data.podsPerNode, ...(state.data.topology ? { topology: state.data.topology } : {}) });
}

/** The directory where the lab's kubelet records the pods it runs from Pod objects (src/lab/controllers.ts, KUBELET_DIR). */
const KUBELET_STATE_DIR = "kubelet";

/**
 * Every pod of the lab: its own probe pods, then those its kubelet runs from Pod objects (a Deployment's,
 * the example app's), read afresh as the kubelet replaces them. Kubelet pods are named "NAMESPACE/NAME".
 */
export function labPods(state: LabState): { label: string; record: PodRecord }[] {
  const kubelet = LabState.load(join(state.dir, KUBELET_STATE_DIR));
  return [
    ...state.data.pods.map((record) => ({ label: record.name, record })),
    ...(kubelet?.data.pods ?? []).map((record) => ({ label: `${record.namespace ?? "default"}/${record.name}`, record })),
  ];
}

/** Every namespace of the lab, labelled with what it is. */
export function labNamespaceLabels(state: LabState): Map<string, string> {
  const plan = labPlanOf(state);
  const labels = new Map<string, string>();
  plan.switches.forEach((sw, i) => labels.set(sw.netns, i === 0 ? "switch" : `switch${i + 1}`));
  if (plan.router) labels.set(plan.router.netns, "router");
  labels.set(plan.external.netns, "external");
  labels.set(plan.controlPlane.netns, "control-plane");
  for (const n of state.data.nodeRecords) labels.set(n.netns, n.name);
  for (const p of labPods(state)) labels.set(p.record.netns, p.label);
  return labels;
}

/** SRC or DST as given: a pod name ("NAMESPACE/NAME" for the kubelet's), a pod IP, NODE or NODE:PORT, a node IP, or "external"; DST may carry :PORT. */
export function resolveEndpoint(state: LabState, spec: string, field: "src" | "dst"): TraceEndpoint {
  const plan = labPlanOf(state);
  let name = spec;
  let port: number | undefined;
  const colon = spec.lastIndexOf(":");
  if (colon > 0) {
    name = spec.slice(0, colon);
    const text = spec.slice(colon + 1);
    port = Number(text);
    if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new TraceInputError(`${field}: port must be 1-65535, got "${text}" in "${spec}"`);
    if (field === "src") throw new TraceInputError(`src: a source takes no port ("${spec}"); the probe picks its own`);
  }
  const withPort = (e: Omit<TraceEndpoint, "spec" | "port">): TraceEndpoint => ({ spec, ...e, ...(port !== undefined ? { port } : {}) });
  if (name === "external") return withPort({ kind: "external", name: "external", netns: plan.external.netns, ip: EXTERNAL_IP });
  // A pod by its name ("node1-pod1", a kubelet pod as "NAMESPACE/NAME" or, in "default", just "NAME") or its IP.
  const pods = labPods(state);
  const pod = pods.find((p) => p.label === name || p.label === `default/${name}` || (p.record.ip !== undefined && p.record.ip === name));
  if (pod) {
    if (!pod.record.ip) throw new TraceInputError(`${field}: pod ${pod.label} has no address yet`);
    return withPort({ kind: "pod", name: pod.label, netns: pod.record.netns, ip: pod.record.ip });
  }
  const node = state.data.nodeRecords.find((n) => n.name === name || n.ip === name);
  if (node) return withPort({ kind: "node", name: node.name, netns: node.netns, ip: node.ip });
  const known = ["external", ...state.data.nodeRecords.map((n) => n.name), ...pods.map((p) => p.label)];
  // Any other IPv4 address (a ClusterIP, an address outside the lab): the walk finds where it leads.
  if (field === "dst" && isIpv4(name)) return withPort({ kind: "address", name, ip: name });
  if (isIp(name)) throw new TraceInputError(`${field}: ${name} is no pod's or node's address in lab ${state.data.id}`);
  throw new TraceInputError(`${field}: no pod, node or "external" named "${name}" in lab ${state.data.id}; known: ${known.join(", ")}`);
}

const DEFAULT_PORT = 33434;
const DEFAULT_SIZE = 84;

/**
 * resolveEndpoint, and when nothing of the lab's own has that name, a Service (lab-services.ts): DST becomes
 * its ClusterIP on the port named (or its first port), and that port's protocol unless --proto says
 * otherwise. A Service is no sender, so as SRC it is refused by name.
 */
async function resolveOrService(state: LabState, spec: string, field: "src" | "dst"): Promise<{ endpoint: TraceEndpoint; protocol?: TraceProto }> {
  try {
    return { endpoint: resolveEndpoint(state, spec, field) };
  } catch (error) {
    if (!(error instanceof TraceInputError)) throw error;
    const colon = spec.lastIndexOf(":");
    const name = colon > 0 ? spec.slice(0, colon) : spec;
    const services = await readLabServices(state).catch(() => []);
    const service = findService(services, name);
    if (!service) {
      const names = services.map((s) => `${s.namespace}/${s.name}`);
      throw new TraceInputError(`${error.message}${names.length ? `; services: ${names.join(", ")}` : ""}`);
    }
    const label = `${service.namespace}/${service.name}`;
    if (field === "src") throw new TraceInputError(`src: ${label} is a Service; a packet starts at a pod, a node or "external"`);
    if (!service.clusterIp) {
      const endpoints = service.endpoints.map((e) => e.ip).join(", ") || "none";
      throw new TraceInputError(`dst: ${label} has no ClusterIP (${service.type === "ExternalName" ? "ExternalName" : "headless"}); trace to one of its endpoints: ${endpoints}`);
    }
    let port: number | undefined;
    if (colon > 0) {
      const text = spec.slice(colon + 1);
      port = Number(text);
      if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new TraceInputError(`dst: port must be 1-65535, got "${text}" in "${spec}"`);
    }
    // A port it does not serve is still traced: the service proxy rejects it, and the trace shows that.
    const served = port === undefined ? service.ports[0] : service.ports.find((p) => p.port === port);
    const protocol = served && served.protocol !== "sctp" ? served.protocol : undefined;
    const chosenPort = port ?? served?.port;
    return {
      endpoint: { spec, kind: "service", name: label, ip: service.clusterIp, ...(chosenPort !== undefined ? { port: chosenPort } : {}) },
      ...(protocol ? { protocol } : {}),
    };
  }
}

export async function runTrace(state: LabState, req: TraceRequest): Promise<TraceResult> {
  if (state.data.phase !== "up") throw new TraceInputError(`lab ${state.data.id} is not up`);
  if (req.proto !== undefined && !["tcp", "udp", "icmp"].includes(req.proto)) throw new TraceInputError(`--proto must be tcp, udp or icmp, got "${req.proto}"`);
  const size = req.size ?? DEFAULT_SIZE;
  if (!Number.isInteger(size) || size < 28 || size > 65535) throw new TraceInputError(`--size must be 28-65535 bytes, got ${req.size}`);
  const src = (await resolveOrService(state, req.src, "src")).endpoint;
  const resolved = await resolveOrService(state, req.dst, "dst");
  const proto: TraceProto = req.proto ?? resolved.protocol ?? "udp";
  // icmp to a Service: its ClusterIP, no port (ping of a ClusterIP is not served, and the trace shows it).
  const dst: TraceEndpoint = { ...resolved.endpoint };
  if (proto === "icmp" && dst.kind === "service") delete dst.port;
  if (!src.netns) throw new TraceInputError(`src: ${src.spec} is not in the lab`);
  if (src.netns === dst.netns) throw new TraceInputError(`src and dst are both ${src.name}: nothing crosses the network`);
  if (proto === "icmp" && dst.port !== undefined) throw new TraceInputError(`dst: icmp takes no port ("${dst.spec}")`);
  if (req.sport !== undefined) {
    if (proto === "icmp") throw new TraceInputError("--sport: icmp has no ports; use --proto tcp or udp");
    if (!Number.isInteger(req.sport) || req.sport < 1 || req.sport > 65535) throw new TraceInputError(`--sport must be a port 1-65535, got ${req.sport}`);
  }
  const labels = labNamespaceLabels(state);
  const probe = proto === "icmp"
    ? { proto, icmpId: randomInt(1, 65535) }
    : { proto, sport: req.sport ?? randomInt(40_000, 60_000), dport: dst.port ?? DEFAULT_PORT };
  const packet = { src: src.ip, dst: dst.ip, size, ...probe };

  // Pass 1: where the routes lead, to know where to trace.
  const first = walkPath(src.netns, packet, { labels });
  const toTrace = new Set<string>([src.netns, ...(dst.netns ? [dst.netns] : [])]);
  for (const h of first.hops) {
    toTrace.add(h.netns);
    if (h.kind === "veth") toTrace.add(h.to.netns);
  }
  // Where the routes alone cannot tell (an unresolved neighbour before the probe made ARP ask), trace everywhere the probe could go.
  if (!first.delivered) for (const [ns, label] of labels) if (label !== "control-plane") toTrace.add(ns);
  const table = `pntrace_${randomBytes(4).toString("hex")}`;
  const sessions: NftTraceSession[] = [];
  const events = new Map<string, NftTraceEvent[]>();
  let outcome = "not sent";
  let via: "socket" | "raw" | undefined;
  try {
    for (const ns of toTrace) sessions.push(await startNftTrace(ns, table, probe));
    const sent = await sendProbe(src.netns, { ...probe, dst: dst.ip, size });
    outcome = sent.outcome;
    via = sent.via;
    // The probe crosses the namespaces in well under a millisecond; this covers a loaded machine.
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    const stopped = await Promise.allSettled(sessions.map((s) => s.stop()));
    stopped.forEach((r, i) => {
      if (r.status === "fulfilled") events.set(sessions[i]!.netns, firstPacketEvents(r.value));
    });
    const failed = stopped.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  // Pass 2: the same walk, now with what nft saw and the neighbour/FDB entries the probe made.
  const second = walkPath(src.netns, packet, { labels, events, traceTable: table, flowsBefore: first.flows });
  let hops: Hop[] = second.hops;
  if (outcome !== "sent" && outcome !== "not sent") {
    // The sender's own kernel refused it (EMSGSIZE for DF over the MTU, ENETUNREACH…): that is the first hop's verdict.
    const firstDrop = hops.findIndex((h) => h.kind === "drop");
    if (firstDrop === -1) {
      hops = [...hops.filter((h) => h.netns === src.netns && h.kind === "route"), {
        kind: "drop", netns: src.netns, where: src.name, evidence: "route-lookup", reason: outcome === "EMSGSIZE" ? "mtu" : "no-route",
        summary: `the sender's socket refused the probe: ${outcome}`, explain: [`ip -n ${src.netns} route get ${dst.ip}`],
      }];
    }
  }
  return {
    schema: "podnet.trace/v1",
    lab: state.data.id,
    src,
    dst,
    proto,
    probe: {
      ...("sport" in probe ? { sport: probe.sport, dport: probe.dport } : { icmpId: probe.icmpId }),
      size,
      outcome,
      ...(via ? { via } : {}),
      ...(req.sport !== undefined ? { sportGiven: true } : {}),
    },
    delivered: second.delivered,
    hops,
    tracedNamespaces: [...toTrace],
  };
}
