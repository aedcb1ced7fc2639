// Turns the benchmark's raw samples into the tables printed on the console and kept in
// bench/RESULTS.md. Every figure is the median across rounds of a per-round statistic, so a
// noisy round on this shared machine moves the result less than it would in a pooled sample.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { Breakdown } from "./cni-breakdown.ts";
import type { CaCertsCheck, MachineNotes } from "./cni-machine.ts";
import type { Mode, ScenarioResult } from "./cni-scenario.ts";
import type { BenchSide } from "./cni-sides.ts";
import type { BinaryUsage } from "./cni-rusage.ts";
import { median, summarize } from "./cni-stats.ts";

export type Operation = "ADD" | "DEL";
type SideName = BenchSide["name"];

export interface OperationFigures {
  p50: number;
  p99: number;
  wallMs: number;
  /** Lowest and highest per-round p50, to show how much the machine moved between rounds. */
  p50Range: [number, number];
}

export interface BenchConfig {
  pods: number;
  rounds: number;
  concurrency: number;
  breakdownSamples: number;
}

export interface BenchReport {
  config: BenchConfig;
  machine: MachineNotes;
  caCerts: CaCertsCheck;
  loadAtEnd: string;
  figures: Map<string, OperationFigures>;
  /** Per figureKey, the resource usage of each measured binary; empty when not measured. */
  usage: Map<string, Map<string, BinaryUsage>>;
  /** True when podnet ran with its resident service (every call forwarded to it). */
  podnetService?: boolean;
  /** The service's --workers, when given. */
  serviceWorkers?: number;
  /** How usage was measured; GNU time's CPU figures come in 10 ms steps. */
  usageMeter?: "wait4" | "gnu-time";
  /** The binary a runtime execs per side; its usage includes any IPAM plugin it runs. */
  mainBinaries: Record<SideName, string>;
  breakdown?: Breakdown;
  durationS: number;
}

export const SCENARIOS: readonly { mode: Mode; op: Operation }[] = [
  { mode: "sequential", op: "ADD" },
  { mode: "sequential", op: "DEL" },
  { mode: "concurrent", op: "ADD" },
  { mode: "concurrent", op: "DEL" },
];

export function figureKey(side: SideName, mode: Mode, op: Operation): string {
  return `${side}/${mode}/${op}`;
}

/** Reduces every round's samples to the figures the report shows. */
export function aggregate(results: readonly ScenarioResult[]): Map<string, OperationFigures> {
  const figures = new Map<string, OperationFigures>();
  const sides = [...new Set(results.map((r) => r.side))];
  for (const side of sides) {
    for (const { mode, op } of SCENARIOS) {
      const rounds = results.filter((r) => r.side === side && r.mode === mode);
      if (rounds.length === 0) continue;
      const perRound = rounds.map((r) => ({ ...summarize(op === "ADD" ? r.addMs : r.delMs), wallMs: op === "ADD" ? r.addWallMs : r.delWallMs }));
      const p50s = perRound.map((r) => r.p50);
      figures.set(figureKey(side, mode, op), {
        p50: median(p50s),
        p99: median(perRound.map((r) => r.p99)),
        wallMs: median(perRound.map((r) => r.wallMs)),
        p50Range: [Math.min(...p50s), Math.max(...p50s)],
      });
    }
  }
  return figures;
}

function scenarioTitle(mode: Mode, op: Operation, concurrency: number): string {
  return mode === "sequential" ? `${op}, one at a time` : `${op}, ${concurrency} at once`;
}

const ms = (x: number): string => x.toFixed(1);
const seconds = (x: number): string => (x / 1000).toFixed(2);
const mib = (kib: number | undefined): string => (kib === undefined ? "n/a" : (kib / 1024).toFixed(1));
const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || b === 0 ? "n/a" : `${(a / b).toFixed(2)}×`;

/** The name the usage tables give podnet's resident service. */
export const SERVICE_BINARY = "podnet-serve";

/**
 * The exec'd binary's usage; with a resident service, CPU includes the service's share per
 * operation, while peak RSS stays the exec'd process's (the service's is listed on its own).
 */
function mainUsage(report: BenchReport, side: SideName, mode: Mode, op: Operation): BinaryUsage | undefined {
  const byBinary = report.usage.get(figureKey(side, mode, op));
  const main = byBinary?.get(report.mainBinaries[side]);
  const service = byBinary?.get(SERVICE_BINARY);
  if (!main || !service) return main;
  return { ...main, meanCpuMs: main.meanCpuMs + service.meanCpuMs };
}

function resultsTable(report: BenchReport): string[] {
  const lines = [
    "| scenario | plugin | p50 ms (range over rounds) | p99 ms | wall s | peak RSS MiB | CPU ms per op |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const { mode, op } of SCENARIOS) {
    const title = scenarioTitle(mode, op, report.config.concurrency);
    const figures = (side: SideName) => report.figures.get(figureKey(side, mode, op));
    const usage = (side: SideName) => mainUsage(report, side, mode, op);
    for (const side of ["podnet", "reference"] as const) {
      const f = figures(side);
      if (!f) continue;
      const u = usage(side);
      lines.push(
        `| ${title} | ${side} | ${ms(f.p50)} (${ms(f.p50Range[0])}–${ms(f.p50Range[1])}) | ${ms(f.p99)} | ${seconds(f.wallMs)} | ${mib(u?.peakRssKiB)} | ${u ? u.meanCpuMs.toFixed(2) : "n/a"} |`,
      );
    }
    const serviceUsage = report.usage.get(figureKey("podnet", mode, op))?.get(SERVICE_BINARY);
    if (serviceUsage) {
      // The resident service is not exec'd, so it is not in the ratio's RSS; its own figures go beside it.
      lines.push(`| ${title} | podnet's resident service (in podnet's CPU above) | | | | ${mib(serviceUsage.peakRssKiB)} | ${serviceUsage.meanCpuMs.toFixed(2)} |`);
    }
    const [p, r] = [figures("podnet"), figures("reference")];
    const [pu, ru] = [usage("podnet"), usage("reference")];
    lines.push(
      `| ${title} | **podnet / reference** | **${ratio(p?.p50, r?.p50)}** | ${ratio(p?.p99, r?.p99)} | ${ratio(p?.wallMs, r?.wallMs)} | ${ratio(pu?.peakRssKiB, ru?.peakRssKiB)} | ${ratio(pu?.meanCpuMs, ru?.meanCpuMs)} |`,
    );
  }
  return lines;
}

interface Target {
  what: string;
  value: (side: SideName) => number | undefined;
}

function targetLines(report: BenchReport): string[] {
  const pick = (mode: Mode, op: Operation, field: "p50" | "wallMs") => (side: SideName) => report.figures.get(figureKey(side, mode, op))?.[field];
  const n = report.config.concurrency;
  const targets: Target[] = [
    { what: "ADD p50, one at a time", value: pick("sequential", "ADD", "p50") },
    { what: "DEL p50, one at a time", value: pick("sequential", "DEL", "p50") },
    { what: `ADD wall time, ${n} at once`, value: pick("concurrent", "ADD", "wallMs") },
    { what: `DEL wall time, ${n} at once`, value: pick("concurrent", "DEL", "wallMs") },
  ];
  return targets.map(({ what, value }) => {
    const podnet = value("podnet");
    const reference = value("reference");
    if (podnet === undefined || reference === undefined) return `- ${what}: not measured`;
    const r = podnet / reference;
    return `- ${what} ≤ 1.0× reference: **${r.toFixed(2)}×, ${r <= 1 ? "met" : "missed"}**`;
  });
}

function breakdownLines(report: BenchReport): string[] {
  const b = report.breakdown;
  if (!b) return [];
  const podnet = b.sides.podnet;
  const reference = b.sides.reference;
  if (!podnet || !reference) return [];
  const nsenter = b.nsenterSpawnMs;
  const nsenterOnly = b.nsenterSpawnMs - b.spawnMs;
  const total = (side: SideName, op: Operation) => report.figures.get(figureKey(side, "sequential", op))?.p50 ?? NaN;
  // podnet's IPAM runs in-process: its cost is the standalone IPAM binary minus that binary's start.
  // The reference's bridge execs host-local without nsenter, so host-local's share is its run
  // through the driver minus nsenter's own cost.
  // With the service, a call's start is the forwarder's exec plus a round trip to the service.
  const podnetStart = (podnet.servedVersionMs ?? podnet.mainVersionMs) - nsenter;
  const columns = [
    { start: podnetStart, ipam: podnet.ipamAddMs - podnet.ipamVersionMs, total: total("podnet", "ADD") },
    { start: reference.mainVersionMs - nsenter, ipam: reference.ipamAddMs - nsenterOnly, total: total("reference", "ADD") },
    { start: podnetStart, ipam: podnet.ipamDelMs - podnet.ipamVersionMs, total: total("podnet", "DEL") },
    { start: reference.mainVersionMs - nsenter, ipam: reference.ipamDelMs - nsenterOnly, total: total("reference", "DEL") },
  ];
  const row = (label: string, cell: (c: (typeof columns)[number]) => number) => `| ${label} | ${columns.map((c) => ms(cell(c))).join(" | ")} |`;
  const lines = [
    `Medians of ${b.samples} runs each, ms. Parts are measured separately; "kernel and the rest" is what remains of the sequential p50.`,
    "",
    "| part | podnet ADD | reference ADD | podnet DEL | reference DEL |",
    "|---|---|---|---|---|",
    row("driver: spawn + `nsenter --net` (measured as `nsenter … /bin/cat`)", () => nsenter),
    row(podnet.servedVersionMs === undefined ? "plugin exec + runtime start (VERSION − row above)" : "plugin exec + runtime start (VERSION − row above; podnet: the forwarder's exec and its round trip to the service)", (c) => c.start),
    row("IPAM (podnet: in-process, IPAM binary's ADD/DEL − its VERSION, a cold process's figure; reference: host-local exec, all of it)", (c) => c.ipam),
    row("kernel work, parsing, result (by difference)", (c) => c.total - nsenter - c.start - c.ipam),
    row("**total: sequential p50**", (c) => c.total),
    "",
    "Raw figures (ms):",
    "",
    `- \`/bin/cat\` spawned directly: ${ms(b.spawnMs)}; through \`nsenter --net=\`: ${ms(b.nsenterSpawnMs)}`,
    ...(b.bunFloorMs === undefined ? [] : [`- empty \`bun build --compile\` binary through nsenter: ${ms(b.bunFloorMs)}`]),
    `- podnet: VERSION ${ms(podnet.mainVersionMs)} (the forwarder execing the full plugin)${podnet.servedVersionMs === undefined ? "" : `, VERSION answered by the service through the forwarder ${ms(podnet.servedVersionMs)}`}; podnet-ipam VERSION ${ms(podnet.ipamVersionMs)}, ADD ${ms(podnet.ipamAddMs)}, DEL ${ms(podnet.ipamDelMs)}`,
    `- reference: bridge VERSION ${ms(reference.mainVersionMs)}; host-local VERSION ${ms(reference.ipamVersionMs)}, ADD ${ms(reference.ipamAddMs)}, DEL ${ms(reference.ipamDelMs)}`,
  ];
  return lines;
}

function usageLines(report: BenchReport): string[] {
  if (report.usage.size === 0) return ["Memory and CPU time were not measured (no C compiler for the wait4 wrapper and no GNU time: `apt-get install gcc` or `time`)."];
  const how =
    report.usageMeter === "gnu-time"
      ? "wrapped in GNU `time` (no C compiler was found; its CPU figures come in 10 ms steps, so only means over many runs mean anything)"
      : "run by a small C wrapper that logs the child's wait4(2) rusage (CPU in µs)";
  const lines = [
    `From a separate, untimed pass of every scenario with each plugin binary ${how}: peak RSS is the largest ru_maxrss of one invocation, CPU is user + system time per invocation (mean). The kernel folds a reaped child into its parent, so \`bridge\`'s figures include the \`host-local\` it runs (RSS: the larger of the two; CPU: the sum); the table above shows those for the reference.`,
    "",
  ];
  for (const [key, byBinary] of report.usage) {
    const parts = [...byBinary].map(([name, u]) => `${name} ${mib(u.peakRssKiB)} MiB, ${u.meanCpuMs.toFixed(2)} ms CPU (${u.invocations} runs)`);
    lines.push(`- ${key}: ${parts.join("; ")}`);
  }
  return lines;
}

/** The generated part of the "CNI plugin" section, as Markdown. */
export function renderReport(report: BenchReport): string {
  const m = report.machine;
  const c = report.config;
  const ca = report.caCerts;
  const caLine = ca.reachedPlugins
    ? "**NODE_EXTRA_CA_CERTS reached the plugins: the figures include its start-up cost.**"
    : `NODE_EXTRA_CA_CERTS was unset for the plugins: the driver passes only PATH and CNI_*, checked with a probe plugin (the benchmark process itself had it ${ca.inBenchProcess ? "set" : "unset"}).`;
  return [
    `Run ${m.date}, ${c.rounds} rounds × ${c.pods} pods per scenario, sides interleaved, ${report.durationS.toFixed(0)} s in all.`,
    "",
    `- Machine: ${m.cpu}, ${m.nproc} CPUs, kernel ${m.kernel}; load average ${m.loadAtStart} at start, ${report.loadAtEnd} at end.`,
    `- Runtimes: Node ${m.node} drives the benchmark; Bun ${m.bun} built podnet (${m.podnetBinaryBytes === undefined ? "size unknown" : `${(m.podnetBinaryBytes / 1048576).toFixed(1)} MiB`}, commit ${m.podnetCommit}).`,
    `- Install size: podnet ${(m.installBytes.podnet / 1048576).toFixed(1)} MiB (the forwarder \`podnet\`, and one Bun executable, \`podnet-plugin\`, also named \`podnet-ipam\` by a hard link); reference ${(m.installBytes.reference / 1048576).toFixed(1)} MiB (\`bridge\` + \`host-local\`).`,
    `- Reference: ${m.referencePlugins} (\`bridge\` + \`host-local\`, cniVersion 1.0.0); podnet with in-process \`podnet-ipam\`, cniVersion 1.1.0, ${report.podnetService ? `**with its resident service** (\`podnet serve\`${report.serviceWorkers === undefined ? "" : ` --workers ${report.serviceWorkers}`} in each node namespace; the exec'd \`podnet\` is the C forwarder, which sends every ADD and DEL to it; peak RSS is the exec'd forwarder's, CPU per operation includes the service's share, and the service's own RSS and CPU are listed beside)` : "on its own (no resident service: the forwarder execs the full Bun plugin for every call)"}.`,
    `- ${caLine}`,
    "- Each scenario gets a fresh node namespace and IPAM directory; every ADD is checked for a distinct address and every DEL for leaving no link and no reservation.",
    "",
    ...resultsTable(report),
    "",
    "Targets:",
    "",
    ...targetLines(report),
    "",
    "### Where the time goes",
    "",
    ...breakdownLines(report),
    "",
    "### Memory and CPU",
    "",
    ...usageLines(report),
  ].join("\n");
}

export const SECTION_HEADING = "## CNI plugin";
const BEGIN = "<!-- bench/cni.ts: generated from here -->";
const END = "<!-- bench/cni.ts: generated up to here -->";

/**
 * Puts the generated block into RESULTS.md under the CNI heading, leaving other sections and any
 * prose written after the block alone.
 */
export function updateResultsFile(path: string, generated: string): void {
  const block = `${BEGIN}\n${generated}\n${END}`;
  const text = existsSync(path) ? readFileSync(path, "utf8") : "# podnet benchmark results\n";
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  let updated: string;
  if (begin >= 0 && end > begin) {
    updated = text.slice(0, begin) + block + text.slice(end + END.length);
  } else {
    const heading = text.indexOf(`${SECTION_HEADING}\n`);
    if (heading >= 0) {
      const afterHeading = heading + SECTION_HEADING.length + 1;
      updated = `${text.slice(0, afterHeading)}\n${block}\n${text.slice(afterHeading)}`;
    } else {
      updated = `${text.trimEnd()}\n\n${SECTION_HEADING}\n\n${block}\n`;
    }
  }
  writeFileSync(path, updated);
}
