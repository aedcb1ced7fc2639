// `lab check`: the connectivity matrix that proves the Kubernetes network model on the lab.
// Every pod dials every pod (same node and across nodes), itself over lo, and the external host,
// all over TCP; each answer names the server and the peer address it saw, so the check can assert
// "right pod, and no NAT" between pods and "masqueraded to the node IP" on the way out.
// Planning and judging are pure; only runProbes touches namespaces.

import { join } from "node:path";
import { argvInNamedNetns } from "../kernel/netns-exec.ts";
import { runCommand } from "../supervise/command.ts";
import { REPO_ROOT } from "./repo-root.ts";
import { PROBE_PORT } from "./topology.ts";

export type ProbeKind = "pod" | "lo" | "external";

export interface CheckPod {
  name: string;
  node: string;
  netns: string;
  ip: string;
}

export interface CheckTarget {
  label: string;
  kind: ProbeKind;
  host: string;
  port: number;
  /** The name the probe server must answer with. */
  expectSelf: string;
  /** The source address the server must have seen. */
  expectPeer: string;
}

export interface ProbeOutcome {
  label: string;
  self?: string;
  peer?: string;
  error?: string;
  ms?: number;
}

export interface CheckCell {
  from: string;
  to: string;
  kind: ProbeKind;
  ok: boolean;
  /** Why it failed, in words; absent when ok. */
  problem?: string;
  ms?: number;
}

export interface CheckReport {
  pods: string[];
  cells: CheckCell[];
  ok: boolean;
}

export const EXTERNAL_LABEL = "external";
export const LOOPBACK_LABEL = "lo";

/** What one source pod must reach and what each server must report. */
export function planTargets(source: CheckPod, pods: readonly CheckPod[], nodeIps: ReadonlyMap<string, string>, externalIp: string): CheckTarget[] {
  const targets: CheckTarget[] = pods
    .filter((p) => p.name !== source.name)
    .map((p) => ({ label: p.name, kind: "pod" as const, host: p.ip, port: PROBE_PORT, expectSelf: p.name, expectPeer: source.ip }));
  targets.push({ label: LOOPBACK_LABEL, kind: "lo", host: "127.0.0.1", port: PROBE_PORT, expectSelf: source.name, expectPeer: "127.0.0.1" });
  const nodeIp = nodeIps.get(source.node);
  if (nodeIp === undefined) throw new Error(`pod ${source.name}: unknown node ${source.node}`);
  targets.push({ label: EXTERNAL_LABEL, kind: "external", host: externalIp, port: PROBE_PORT, expectSelf: EXTERNAL_LABEL, expectPeer: nodeIp });
  return targets;
}

export function judge(from: string, target: CheckTarget, outcome: ProbeOutcome | undefined): CheckCell {
  const cell = { from, to: target.label, kind: target.kind, ms: outcome?.ms };
  if (!outcome) return { ...cell, ok: false, problem: "no result from the probe client" };
  if (outcome.error) return { ...cell, ok: false, problem: `${target.host}:${target.port}: ${outcome.error}` };
  if (outcome.self !== target.expectSelf) {
    return { ...cell, ok: false, problem: `${target.host} answered as ${outcome.self ?? "?"}, expected ${target.expectSelf}` };
  }
  if (outcome.peer !== target.expectPeer) {
    const why = target.kind === "external" ? "not masqueraded to the node IP" : "NAT between pods";
    return { ...cell, ok: false, problem: `${why}: server saw ${outcome.peer ?? "?"}, expected ${target.expectPeer}` };
  }
  return { ...cell, ok: true };
}

const PROBE_CLIENT = join(REPO_ROOT, "src/lab/probe-client.mjs");

/**
 * The verdict on a whole check: every source pod's planned targets, each judged by the outcome its probe
 * client reported for it (none reported counts as a failure). Passes only if there is at least one cell
 * and every cell passes.
 */
export function judgeMatrix(
  pods: readonly CheckPod[],
  nodeIps: ReadonlyMap<string, string>,
  externalIp: string,
  outcomesBySource: ReadonlyMap<string, readonly ProbeOutcome[]>,
): CheckReport {
  const cells: CheckCell[] = [];
  for (const source of pods) {
    const outcomes = outcomesBySource.get(source.name) ?? [];
    for (const target of planTargets(source, pods, nodeIps, externalIp)) {
      cells.push(judge(source.name, target, outcomes.find((o) => o.label === target.label)));
    }
  }
  return { pods: pods.map((p) => p.name), cells, ok: cells.length > 0 && cells.every((c) => c.ok) };
}

/** Run one probe client per source pod (a few at a time) and judge every answer. */
export async function runCheck(
  pods: readonly CheckPod[],
  nodeIps: ReadonlyMap<string, string>,
  externalIp: string,
  opts: { timeoutMs?: number; concurrency?: number } = {},
): Promise<CheckReport> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const outcomes = new Map<string, ProbeOutcome[]>();
  const queue = [...pods];
  const worker = async (): Promise<void> => {
    for (let source = queue.shift(); source; source = queue.shift()) {
      outcomes.set(source.name, await runProbeClient(source, planTargets(source, pods, nodeIps, externalIp), timeoutMs));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 6) }, worker));
  return judgeMatrix(pods, nodeIps, externalIp, outcomes);
}

async function runProbeClient(source: CheckPod, targets: CheckTarget[], timeoutMs: number): Promise<ProbeOutcome[]> {
  const request = { timeoutMs, targets: targets.map(({ label, host, port }) => ({ label, host, port })) };
  const result = await runCommand(argvInNamedNetns(source.netns, [process.execPath, PROBE_CLIENT]), {
    input: JSON.stringify(request),
    env: probeEnv(),
    timeoutMs: timeoutMs + 15_000,
  });
  if (result.code !== 0) return targets.map((t) => ({ label: t.label, error: `probe client failed: ${result.stderr.trim()}` }));
  try {
    return JSON.parse(result.stdout) as ProbeOutcome[];
  } catch {
    return targets.map((t) => ({ label: t.label, error: `probe client printed ${JSON.stringify(result.stdout.slice(0, 100))}` }));
  }
}

/**
 * The matrix as text: one row per source pod, one column per target pod (numbered as the rows),
 * then lo and external. "ok" passes; "--" no connection; "NAT" the wrong source address; "??" the wrong server.
 */
export function formatReport(report: CheckReport, podLabels: ReadonlyMap<string, string> = new Map()): string {
  const columns = [...report.pods, LOOPBACK_LABEL, EXTERNAL_LABEL];
  const header = columns.map((c, i) => (i < report.pods.length ? String(i + 1) : c === LOOPBACK_LABEL ? "lo" : "ext"));
  const width = Math.max(3, ...header.map((h) => h.length));
  const rowLabel = (p: string, i: number): string => `${i + 1} ${p}${podLabels.get(p) ? ` ${podLabels.get(p)}` : ""}`;
  const rowName = Math.max(9, ...report.pods.map(rowLabel).map((l) => l.length));
  const lines: string[] = [];
  lines.push(`${"from \\ to".padEnd(rowName)}  ${header.map((h) => h.padStart(width)).join(" ")}`);
  report.pods.forEach((from, i) => {
    const marks = columns.map((to) => {
      if (to === from) return "·".padStart(width);
      const cell = report.cells.find((c) => c.from === from && c.to === to);
      return symbol(cell).padStart(width);
    });
    lines.push(`${rowLabel(from, i).padEnd(rowName)}  ${marks.join(" ")}`);
  });
  lines.push("");
  const count = (kind: ProbeKind): string => {
    const all = report.cells.filter((c) => c.kind === kind);
    return `${all.filter((c) => c.ok).length}/${all.length}`;
  };
  lines.push(`pod→pod ${count("pod")} ok (no NAT), pod→external ${count("external")} ok (masqueraded), in-pod over lo ${count("lo")} ok`);
  const failures = report.cells.filter((c) => !c.ok);
  for (const f of failures) lines.push(`FAIL ${f.from} → ${f.to}: ${f.problem ?? "?"}`);
  lines.push(report.ok ? "check: PASS" : `check: FAIL (${failures.length} of ${report.cells.length})`);
  return lines.join("\n") + "\n";
}

/** The probes make no TLS connections; NODE_EXTRA_CA_CERTS would only add ~40 ms to each start. */
export function probeEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

function symbol(cell: CheckCell | undefined): string {
  if (!cell) return "?";
  if (cell.ok) return "ok";
  const problem = cell.problem ?? "";
  if (problem.startsWith("NAT") || problem.startsWith("not masqueraded")) return "NAT";
  if (problem.includes("answered as")) return "??";
  return "--";
}
