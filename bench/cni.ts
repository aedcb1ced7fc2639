// `npm run bench:cni`: podnet against the reference bridge + host-local, side by side, in one run.
//
// Both plugins are driven by the same CNI driver (src/runtime/cni-driver.ts) inside node
// namespaces created here, 100 pods per scenario, ADD then DEL, one at a time and 8 at once.
// Rounds alternate which side goes first so that machine noise falls on both; the report gives
// medians across rounds. Then a pass measuring memory and CPU time, and a start-up/IPAM breakdown, and the result is
// printed and written into the "CNI plugin" section of bench/RESULTS.md.
//
// Everything created (namespaces, temp dirs) is removed on exit, error, Ctrl-C or timeout.
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { cleanupAll } from "../test/helpers/netns.ts";
import { measureBreakdown, type Breakdown } from "./cni-breakdown.ts";
import { checkCaCertsReachPlugins, formatLoad, machineNotes } from "./cni-machine.ts";
import { readUsageLog, RUSAGE_LOG_VARIABLE, usageMeter, usageWrappers, type BinaryUsage, type UsageMeter } from "./cni-rusage.ts";
import { aggregate, figureKey, renderReport, SERVICE_BINARY, updateResultsFile, type BenchReport } from "./cni-report.ts";
import { PodPool, runScenario, type Mode, type ScenarioResult } from "./cni-scenario.ts";
import { podnetSide, referenceSide, type BenchSide } from "./cni-sides.ts";
import { summarize } from "./cni-stats.ts";
import { antispoofComparison, renderAntispoof, writeAntispoofSection } from "./cni-antispoof.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BUN = join(ROOT, "node_modules/@oven/bun-linux-x64/bin/bun");
const MODES: readonly Mode[] = ["sequential", "concurrent"];

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    pods: { type: "string", default: "100" },
    concurrency: { type: "string", default: "8" },
    "breakdown-samples": { type: "string", default: "30" },
    "podnet-dir": { type: "string", default: join(ROOT, "dist/cni") },
    // podnet as recommended (README, "Design"): the forwarder and a resident service per node.
    // --podnet-alone measures the forwarder execing the full plugin for every call instead.
    "podnet-alone": { type: "boolean", default: false },
    "service-workers": { type: "string" },
    "reference-dir": { type: "string", default: "/usr/lib/cni" },
    "time-limit-s": { type: "string", default: "600" },
    "no-usage": { type: "boolean", default: false },
    "no-breakdown": { type: "boolean", default: false },
    "no-antispoof": { type: "boolean", default: false },
    "antispoof-rounds": { type: "string", default: "3" },
    "no-write": { type: "boolean", default: false },
    results: { type: "string", default: join(ROOT, "bench/RESULTS.md") },
  },
});

function positiveInt(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, not ${text}`);
  return n;
}

const rounds = positiveInt("rounds", flags.rounds);
const podCount = positiveInt("pods", flags.pods);
const concurrency = positiveInt("concurrency", flags.concurrency);
const breakdownSamples = positiveInt("breakdown-samples", flags["breakdown-samples"]);
const timeLimitS = positiveInt("time-limit-s", flags["time-limit-s"]);

// The driver never forwards this variable, and the probe in machineNotes proves it; removing it
// here as well keeps any other child of this process from paying Node's certificate loading.
const caCertsAtStart = process.env.NODE_EXTRA_CA_CERTS;
delete process.env.NODE_EXTRA_CA_CERTS;

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`bench: ${signal}, cleaning up`);
    process.exit(130);
  });
}
// The netns helper removes its namespaces and temp dirs in an exit hook, so exiting is cleaning up.
const watchdog = setTimeout(() => {
  console.error(`bench: over the ${timeLimitS} s limit, giving up`);
  process.exit(3);
}, timeLimitS * 1000);
watchdog.unref();

function log(line: string): void {
  console.log(`bench: ${line}`);
}

function describe(result: ScenarioResult): string {
  const add = summarize(result.addMs);
  const del = summarize(result.delMs);
  return `ADD p50 ${add.p50.toFixed(1)} p99 ${add.p99.toFixed(1)} wall ${(result.addWallMs / 1000).toFixed(2)} s; DEL p50 ${del.p50.toFixed(1)} p99 ${del.p99.toFixed(1)} wall ${(result.delWallMs / 1000).toFixed(2)} s`;
}

async function timedRounds(sides: readonly BenchSide[], pods: PodPool): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  for (let round = 0; round < rounds; round++) {
    const ordered = round % 2 === 0 ? sides : [...sides].reverse();
    for (const mode of MODES) {
      for (const side of ordered) {
        const result = await runScenario(side, pods, `r${round}-${side.name}-${mode}`, { mode, concurrency });
        results.push(result);
        log(`round ${round + 1}/${rounds} ${side.name.padEnd(9)} ${mode.padEnd(10)} ${describe(result)}`);
      }
    }
  }
  return results;
}

/** One more pass of every scenario with the plugins wrapped in a rusage meter; its timings are discarded. */
async function usagePass(meter: UsageMeter, sides: readonly BenchSide[], pods: PodPool): Promise<Map<string, Map<string, BinaryUsage>>> {
  const usage = new Map<string, Map<string, BinaryUsage>>();
  for (const side of sides) {
    const wrappers = usageWrappers(meter, [side.mainBinary, side.ipamBinary]);
    for (const mode of MODES) {
      const logPath = join(wrappers, `${mode}.log`);
      const result = await runScenario(side, pods, `use-${side.name}-${mode}`, {
        mode,
        concurrency,
        cniPath: [wrappers, ...side.cniPath],
        env: { [RUSAGE_LOG_VARIABLE]: logPath },
      });
      for (const [command, byBinary] of readUsageLog(logPath)) {
        if (command === "ADD" || command === "DEL") usage.set(figureKey(side.name, mode, command), byBinary);
      }
      if (result.service) {
        // The service's share: its CPU over the phase divided by the operations, its peak RSS so far.
        for (const [command, cpuMs] of [["ADD", result.service.addCpuMs], ["DEL", result.service.delCpuMs]] as const) {
          const key = figureKey(side.name, mode, command);
          const byBinary = usage.get(key) ?? new Map<string, BinaryUsage>();
          byBinary.set(SERVICE_BINARY, { invocations: podCount, peakRssKiB: result.service.peakRssKiB, meanCpuMs: cpuMs / podCount });
          usage.set(key, byBinary);
        }
      }
      const main = usage.get(figureKey(side.name, mode, "ADD"))?.get(basename(side.mainBinary));
      log(`usage ${side.name} ${mode}: ADD peak RSS ${((main?.peakRssKiB ?? 0) / 1024).toFixed(1)} MiB, CPU ${main?.meanCpuMs.toFixed(1)} ms per ADD`);
    }
  }
  return usage;
}

async function main(): Promise<void> {
  const started = performance.now();
  if (process.getuid?.() !== 0) throw new Error("the benchmark needs root to create network namespaces");
  const serviceWorkers = flags["service-workers"] === undefined ? undefined : Number(flags["service-workers"]);
  if (serviceWorkers !== undefined && (!Number.isInteger(serviceWorkers) || serviceWorkers < 0)) throw new Error(`--service-workers must be a whole number, not ${flags["service-workers"]}`);
  const withService = !flags["podnet-alone"];
  const sides = [podnetSide(flags["podnet-dir"]!, withService, serviceWorkers), referenceSide(flags["reference-dir"]!)];
  for (const side of sides) {
    for (const binary of [side.mainBinary, side.ipamBinary]) {
      if (!existsSync(binary)) throw new Error(`${binary} is missing${side.name === "podnet" ? ": run npm run build" : ""}`);
    }
  }

  const machine = machineNotes(ROOT, BUN, join(flags["podnet-dir"]!, "podnet-plugin"), {
    podnet: sides[0]!.installFiles,
    reference: sides[1]!.installFiles,
  });
  const probe = await checkCaCertsReachPlugins();
  const caCerts = { ...probe, inBenchProcess: caCertsAtStart };
  log(`${machine.cpu}, ${machine.nproc} CPUs, kernel ${machine.kernel}, node ${machine.node}, bun ${machine.bun}, load ${machine.loadAtStart}`);
  log(`NODE_EXTRA_CA_CERTS: ${caCertsAtStart ? "set in this process, " : ""}${probe.reachedPlugins ? "REACHED the plugins" : "unset for the plugins (checked with a probe plugin)"}`);
  log(`${rounds} rounds × ${podCount} pods, concurrency ${concurrency}, podnet ${withService ? `with its service (workers: ${serviceWorkers ?? "default"})` : "alone"}`);

  const pods = PodPool.create(podCount);
  try {
    // The breakdown runs first: besides its own figures, it warms both sides' binaries into the page cache.
    let breakdown: Breakdown | undefined;
    if (!flags["no-breakdown"]) {
      breakdown = await measureBreakdown(sides, pods.pods[0]!.path, breakdownSamples, BUN);
      log(`breakdown: nsenter /bin/cat ${breakdown.nsenterSpawnMs.toFixed(1)} ms, podnet VERSION ${breakdown.sides.podnet?.mainVersionMs.toFixed(1)} ms, bridge VERSION ${breakdown.sides.reference?.mainVersionMs.toFixed(1)} ms`);
    }
    const results = await timedRounds(sides, pods);
    const meter = flags["no-usage"] ? undefined : usageMeter();
    const usage = meter ? await usagePass(meter, sides, pods) : new Map<string, Map<string, BinaryUsage>>();

    const report: BenchReport = {
      config: { pods: podCount, rounds, concurrency, breakdownSamples },
      machine,
      caCerts,
      loadAtEnd: formatLoad(),
      figures: aggregate(results),
      usage,
      ...(meter ? { usageMeter: meter.kind } : {}),
      podnetService: withService,
      ...(serviceWorkers === undefined ? {} : { serviceWorkers }),
      mainBinaries: { podnet: basename(sides[0]!.mainBinary), reference: basename(sides[1]!.mainBinary) },
      ...(breakdown ? { breakdown } : {}),
      durationS: (performance.now() - started) / 1000,
    };
    const markdown = renderReport(report);
    console.log(`\n${markdown}\n`);
    if (!flags["no-write"]) {
      updateResultsFile(flags.results!, markdown);
      log(`written to ${flags.results}`);
    }
    if (!flags["no-antispoof"]) {
      // podnet alone, anti-spoofing off, on, and on with a hostPort per pod (bench/cni-antispoof.ts).
      const figures = await antispoofComparison(flags["podnet-dir"]!, pods, positiveInt("antispoof-rounds", flags["antispoof-rounds"]), log);
      const antispoof = renderAntispoof(figures, new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC");
      console.log(`\n${antispoof}\n`);
      if (!flags["no-write"]) writeAntispoofSection(flags.results!, antispoof);
    }
  } finally {
    pods.delete();
  }
}

try {
  await main();
} catch (error) {
  console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
} finally {
  cleanupAll();
}
