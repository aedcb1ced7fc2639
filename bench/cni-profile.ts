// `node --import tsx bench/cni-profile.ts`: where one ADD and one DEL of podnet spend their time,
// phase by phase, from the driver's spawn to the driver seeing the process end.
//
// The plugin records timestamps when PODNET_TRACE names a file (src/cni/trace.ts); this script
// notes the epoch at spawn and at exit around each invocation, so the phases before the plugin's
// first line (fork, nsenter, exec, the runtime's own start) and after its last (exit, reaping)
// are measured too. The same pod is ADDed and DELeted `--samples` times in a fresh node
// namespace; each phase is reported as its median. The reference (Go) cannot be instrumented
// this way; bench/RESULTS.md puts its strace timeline beside these figures. With --service, a
// resident `podnet serve` (--workers N, default the service's) runs in the node namespace, the
// forwarder sends it every call, and the phases are the driver's and the service's own marks
// (the forwarder records none).
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { invoke, type DriverOptions } from "../src/runtime/cni-driver.ts";
import { startService } from "../test/helpers/cni-service.ts";
import { cleanupAll, Netns, tempDir } from "../test/helpers/netns.ts";
import { podnetSide } from "./cni-sides.ts";
import { median } from "./cni-stats.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const { values: flags } = parseArgs({
  options: {
    samples: { type: "string", default: "40" },
    "podnet-dir": { type: "string", default: join(ROOT, "dist/cni") },
    service: { type: "boolean", default: false },
    workers: { type: "string" },
  },
});
const samples = Number(flags.samples);
if (!Number.isInteger(samples) || samples <= 0) throw new Error(`--samples must be a positive integer, not ${flags.samples}`);
delete process.env.NODE_EXTRA_CA_CERTS;

interface TraceLine {
  command: string;
  originMs: number;
  marks: [string, number][];
}

/** Milliseconds since the epoch, with the fraction performance.now() gives. */
function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Phase name → duration, for one invocation: the gaps between consecutive points in time. */
function phases(spawnedAt: number, exitedAt: number, trace: TraceLine, served: boolean): [string, number][] {
  // A served call's time origin is the service's start, long before: only its marks count.
  const points: [string, number][] = [["driver spawned nsenter", spawnedAt], ...(served ? [] : [["runtime time origin", trace.originMs] as [string, number]])];
  for (const [label, ms] of trace.marks) points.push([label, trace.originMs + ms]);
  points.push(["driver saw the exit", exitedAt]);
  const out: [string, number][] = [];
  for (let i = 1; i < points.length; i++) out.push([`${points[i - 1]![0]} → ${points[i]![0]}`, points[i]![1] - points[i - 1]![1]]);
  return out;
}

async function main(): Promise<void> {
  const side = podnetSide(flags["podnet-dir"]!);
  const node = Netns.create("pn");
  const pod = Netns.create("pp");
  const dataDir = tempDir("profile-ipam");
  const traceDir = tempDir("profile-trace");
  const serviceTrace = join(traceDir, "service.jsonl");
  const service = flags.service
    ? await startService(side.mainBinary, node.path, { traceFile: serviceTrace, ...(flags.workers === undefined ? {} : { workers: Number(flags.workers) }) })
    : undefined;
  let servedLines = 0;
  try {
    const opts: DriverOptions = { cniPath: side.cniPath, nodeNetns: node.path };
    const list = side.confList(dataDir, service?.socket);
    const stdin = JSON.stringify({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion });
    const byCommand = new Map<string, Map<string, number[]>>();
    const totals = new Map<string, number[]>();
    for (let i = 0; i < samples + 2; i++) {
      for (const command of ["ADD", "DEL"]) {
        const traceFile = join(traceDir, `${i}-${command}.jsonl`);
        const env = {
          PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
          CNI_COMMAND: command,
          CNI_CONTAINERID: `profile-${i}`,
          CNI_NETNS: pod.path,
          CNI_IFNAME: "eth0",
          CNI_ARGS: "IgnoreUnknown=1",
          CNI_PATH: side.cniPath.join(":"),
          PODNET_TRACE: traceFile,
        };
        const spawnedAt = epochMs();
        const run = await invoke(side.mainBinary, env, stdin, opts);
        const exitedAt = epochMs();
        if (run.exitCode !== 0) throw new Error(`podnet ${command} exited ${run.exitCode}: ${run.stdout}${run.stderr}`);
        if (i < 2) {
          // warm-up: page cache, the bridge's first creation
          if (service) servedLines = readFileSync(serviceTrace, "utf8").trim().split("\n").length;
          continue;
        }
        let trace: TraceLine;
        if (service) {
          const lines = readFileSync(serviceTrace, "utf8").trim().split("\n");
          if (lines.length !== servedLines + 1) throw new Error(`the service did not serve ${command} ${i} (${lines.length} trace lines, expected ${servedLines + 1})`);
          servedLines = lines.length;
          trace = JSON.parse(lines.at(-1)!) as TraceLine;
        } else {
          trace = JSON.parse(readFileSync(traceFile, "utf8").trim()) as TraceLine;
        }
        const table = byCommand.get(command) ?? new Map<string, number[]>();
        for (const [name, ms] of phases(spawnedAt, exitedAt, trace, service !== undefined)) table.set(name, [...(table.get(name) ?? []), ms]);
        byCommand.set(command, table);
        totals.set(command, [...(totals.get(command) ?? []), exitedAt - spawnedAt]);
      }
    }
    for (const [command, table] of byCommand) {
      console.log(`\n${command}: medians of ${samples} runs, ms (total ${median(totals.get(command)!).toFixed(2)})\n`);
      console.log("| phase | ms |\n|---|---|");
      let sum = 0;
      for (const [name, values] of table) {
        sum += median(values);
        console.log(`| ${name} | ${median(values).toFixed(2)} |`);
      }
      console.log(`| sum of the medians | ${sum.toFixed(2)} |`);
    }
  } finally {
    await service?.kill();
    node.delete();
    pod.delete();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(traceDir, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (error) {
  console.error(`profile: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
} finally {
  cleanupAll();
}
