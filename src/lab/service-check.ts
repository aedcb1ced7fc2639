// `lab check`'s services section: what the node proxies must do for the Services in the cluster,
// probed from real pods and from the external host. Planning and judging are pure; running starts
// one service-probe.mjs per client inside its namespace.
// - every pod → every ClusterIP port with ready endpoints: every request answered; with ≥ 2 ready
//   endpoints the answers come from ≥ 2 of them (sessionAffinity None); with ClientIP affinity from
//   exactly one; `/clientip` shows the client pod's own IP (no SNAT), except when the client is itself
//   an endpoint (hairpin: it must answer, and is masqueraded);
// - a ClusterIP port with no ready endpoints: refused (ECONNREFUSED) in under 1 s;
// - external host → every NodePort on every node, and → every LoadBalancer IP: answered.

import { join } from "node:path";
import type { EndpointSlice, Pod, Service } from "../k8s/types.ts";
import { LABEL_SERVICE_NAME } from "../k8s/types.ts";
import { argvInNamedNetns } from "../kernel/netns-exec.ts";
import { runCommand } from "../supervise/command.ts";
import { probeEnv } from "./check.ts";
import { REPO_ROOT } from "./repo-root.ts";

const SERVICE_PROBE = join(REPO_ROOT, "src/lab/service-probe.mjs");
/** Requests per spread check: with 3 endpoints, all 8 landing on one by chance has p = 3 · 3⁻⁸ ≈ 0.05%. */
export const SPREAD_REQUESTS = 8;
export const REFUSED_WITHIN_MS = 1000;

export interface ServiceClient {
  /** "default/client", "node1-pod1", "external". */
  name: string;
  netns: string;
  /** The address the client's packets leave with (pods: the pod IP); undefined for the external host. */
  ip?: string;
}

export type ServiceExpectation =
  | { kind: "spread"; minDistinct: number }
  | { kind: "sticky" }
  | { kind: "answers" }
  | { kind: "clientip"; ip: string }
  | { kind: "refused" };

export interface ServiceProbe {
  client: string;
  label: string;
  host: string;
  port: number;
  path: string;
  count: number;
  expect: ServiceExpectation;
}

export interface ServiceOutcome {
  label: string;
  answers: string[];
  errors: { code: string; ms: number }[];
}

export interface ServiceCell {
  client: string;
  label: string;
  ok: boolean;
  problem?: string;
}

/** Ready endpoint addresses of a service, from its EndpointSlices. */
export function readyEndpoints(service: Service, slices: readonly EndpointSlice[]): string[] {
  const ns = service.metadata.namespace ?? "default";
  const out = new Set<string>();
  for (const slice of slices) {
    if ((slice.metadata.namespace ?? "default") !== ns || slice.metadata.labels?.[LABEL_SERVICE_NAME] !== service.metadata.name) continue;
    for (const endpoint of slice.endpoints ?? []) {
      if (endpoint.conditions?.ready === false) continue;
      for (const address of endpoint.addresses) out.add(address);
    }
  }
  return [...out];
}

export function planServiceProbes(services: readonly Service[], slices: readonly EndpointSlice[], podClients: readonly ServiceClient[], external: ServiceClient, nodeIps: readonly string[]): ServiceProbe[] {
  const probes: ServiceProbe[] = [];
  for (const service of services) {
    const spec = service.spec;
    if (!spec || spec.type === "ExternalName" || !spec.clusterIP || spec.clusterIP === "None") continue;
    const name = `${service.metadata.namespace ?? "default"}/${service.metadata.name}`;
    const endpoints = readyEndpoints(service, slices);
    for (const port of spec.ports ?? []) {
      if ((port.protocol ?? "TCP") !== "TCP") continue;
      const at = `${name} ${spec.clusterIP}:${port.port}`;
      for (const client of podClients) {
        const probe = (label: string, path: string, count: number, expect: ServiceExpectation): void => {
          probes.push({ client: client.name, label, host: spec.clusterIP!, port: port.port, path, count, expect });
        };
        if (endpoints.length === 0) {
          probe(`${at} no endpoints`, "/hostname", 1, { kind: "refused" });
          continue;
        }
        const hairpin = client.ip !== undefined && endpoints.includes(client.ip);
        if (spec.sessionAffinity === "ClientIP") probe(`${at} affinity`, "/hostname", SPREAD_REQUESTS, { kind: "sticky" });
        else probe(`${at}${hairpin ? " hairpin" : ""}`, "/hostname", SPREAD_REQUESTS, endpoints.length >= 2 ? { kind: "spread", minDistinct: 2 } : { kind: "answers" });
        if (!hairpin && client.ip) probe(`${at} clientip`, "/clientip", 1, { kind: "clientip", ip: client.ip });
      }
      if (endpoints.length === 0) continue;
      if (port.nodePort) {
        for (const nodeIp of nodeIps) probes.push({ client: external.name, label: `${name} NodePort ${nodeIp}:${port.nodePort}`, host: nodeIp, port: port.nodePort, path: "/hostname", count: 2, expect: { kind: "answers" } });
      }
      for (const ingress of service.status?.loadBalancer?.ingress ?? []) {
        if (!ingress.ip) continue;
        probes.push({ client: external.name, label: `${name} LoadBalancer ${ingress.ip}:${port.port}`, host: ingress.ip, port: port.port, path: "/hostname", count: 2, expect: { kind: "answers" } });
      }
    }
  }
  return probes;
}

export function judgeServiceProbe(probe: ServiceProbe, outcome: ServiceOutcome | undefined): ServiceCell {
  const cell = (ok: boolean, problem?: string): ServiceCell => ({ client: probe.client, label: probe.label, ok, ...(problem ? { problem } : {}) });
  if (!outcome) return cell(false, "no result");
  const errors = outcome.errors.map((e) => `${e.code} after ${e.ms} ms`);
  if (probe.expect.kind === "refused") {
    if (outcome.answers.length > 0) return cell(false, `answered (${outcome.answers[0]}) but has no endpoints`);
    const error = outcome.errors[0];
    if (!error) return cell(false, "no outcome");
    if (error.code !== "ECONNREFUSED") return cell(false, `${error.code} after ${error.ms} ms, not refused`);
    return error.ms < REFUSED_WITHIN_MS ? cell(true) : cell(false, `refused only after ${error.ms} ms`);
  }
  if (errors.length > 0) return cell(false, `${errors.length} of ${outcome.answers.length + errors.length} failed: ${errors.slice(0, 2).join(", ")}`);
  const distinct = new Set(outcome.answers);
  switch (probe.expect.kind) {
    case "spread":
      return distinct.size >= probe.expect.minDistinct ? cell(true) : cell(false, `all ${probe.count} answers from ${[...distinct].join(", ")}`);
    case "sticky":
      return distinct.size === 1 ? cell(true) : cell(false, `session affinity broken: answers from ${[...distinct].join(", ")}`);
    case "clientip": {
      const seen = (outcome.answers[0] ?? "").replace(/:\d+$/, "");
      return seen === probe.expect.ip ? cell(true) : cell(false, `server saw ${seen}, not the client's ${probe.expect.ip} (SNAT)`);
    }
    case "answers":
      return cell(true);
  }
}

export interface ServiceReport {
  cells: ServiceCell[];
  ok: boolean;
}

export async function runServiceCheck(probes: readonly ServiceProbe[], clients: readonly ServiceClient[], opts: { timeoutMs?: number; concurrency?: number } = {}): Promise<ServiceReport> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const byClient = new Map<string, ServiceProbe[]>();
  for (const probe of probes) byClient.set(probe.client, [...(byClient.get(probe.client) ?? []), probe]);
  const queue = clients.filter((c) => byClient.has(c.name));
  const cells: ServiceCell[] = [];
  const worker = async (): Promise<void> => {
    for (let client = queue.shift(); client; client = queue.shift()) {
      const mine = byClient.get(client.name)!;
      const outcomes = await runProbe(client, mine, timeoutMs);
      for (const probe of mine) cells.push(judgeServiceProbe(probe, outcomes.find((o) => o.label === probe.label)));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
  return { cells, ok: cells.every((c) => c.ok) };
}

async function runProbe(client: ServiceClient, probes: readonly ServiceProbe[], timeoutMs: number): Promise<ServiceOutcome[]> {
  const request = { timeoutMs, requests: probes.map(({ label, host, port, path, count }) => ({ label, host, port, path, count })) };
  const result = await runCommand(argvInNamedNetns(client.netns, [process.execPath, SERVICE_PROBE]), {
    input: JSON.stringify(request),
    env: probeEnv(),
    timeoutMs: timeoutMs * SPREAD_REQUESTS + 20_000,
  });
  const failed = (why: string): ServiceOutcome[] => probes.map((p) => ({ label: p.label, answers: [], errors: [{ code: why, ms: 0 }] }));
  if (result.code !== 0) return failed(`service probe failed: ${result.stderr.trim()}`);
  try {
    return JSON.parse(result.stdout) as ServiceOutcome[];
  } catch {
    return failed(`service probe printed ${JSON.stringify(result.stdout.slice(0, 100))}`);
  }
}

export function formatServiceReport(report: ServiceReport): string {
  const lines = ["", "services"];
  if (report.cells.length === 0) lines.push("  (no services to check)");
  const byLabel = new Map<string, ServiceCell[]>();
  for (const cell of report.cells) byLabel.set(cell.label, [...(byLabel.get(cell.label) ?? []), cell]);
  for (const [label, cells] of [...byLabel].sort(([a], [b]) => a.localeCompare(b))) {
    const passed = cells.filter((c) => c.ok).length;
    lines.push(`  ${passed === cells.length ? "ok  " : "FAIL"} ${label}: ${passed}/${cells.length} clients`);
    for (const c of cells.filter((x) => !x.ok)) lines.push(`       ${c.client}: ${c.problem ?? "?"}`);
  }
  const failures = report.cells.filter((c) => !c.ok).length;
  lines.push(report.ok ? "services: PASS" : `services: FAIL (${failures} of ${report.cells.length})`);
  return lines.join("\n") + "\n";
}

/** Pods that can be clients: Running with an IP, keyed as namespace/name. */
export function podClients(pods: readonly Pod[], netnsOf: (pod: Pod) => string | undefined): ServiceClient[] {
  const out: ServiceClient[] = [];
  for (const pod of pods) {
    const netns = netnsOf(pod);
    if (pod.status?.phase !== "Running" || !pod.status.podIP || !netns) continue;
    out.push({ name: `${pod.metadata.namespace ?? "default"}/${pod.metadata.name}`, netns, ip: pod.status.podIP });
  }
  return out;
}
