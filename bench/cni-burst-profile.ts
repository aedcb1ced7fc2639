// `node --import tsx bench/cni-burst-profile.ts`: where the service's time goes when ADDs and DELs
// come 8 at once. A resident `podnet serve` traces every request it serves (PODNET_TRACE, one line
// each, src/cni/trace.ts); 100 pods are ADDed and then DELeted through the forwarder with
// `--concurrency` in flight, and each phase between the service's marks is reported as its
// median and its sum over the requests (the sum shows what a serialised phase costs the burst).
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CniNetwork } from "../src/runtime/cni-driver.ts";
import { startService } from "../test/helpers/cni-service.ts";
import { cleanupAll, Netns, tempDir } from "../test/helpers/netns.ts";
import { podnetSide } from "./cni-sides.ts";
import { median } from "./cni-stats.ts";
import { PodPool } from "./cni-scenario.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const { values: flags } = parseArgs({
  options: {
    pods: { type: "string", default: "100" },
    concurrency: { type: "string", default: "8" },
    workers: { type: "string" },
    "podnet-dir": { type: "string", default: join(ROOT, "dist/cni") },
  },
});
delete process.env.NODE_EXTRA_CA_CERTS;

async function inFlight<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i] as T, i);
      }
    }),
  );
}

async function main(): Promise<void> {
  const side = podnetSide(flags["podnet-dir"]!);
  const node = Netns.create("bb");
  const pods = PodPool.create(Number(flags.pods));
  const dataDir = tempDir("burst-ipam");
  const traceFile = join(tempDir("burst-trace"), "service.jsonl");
  const service = await startService(side.mainBinary, node.path, { traceFile, ...(flags.workers === undefined ? {} : { workers: Number(flags.workers) }) });
  try {
    const net = new CniNetwork(side.confList(dataDir, service.socket), { cniPath: side.cniPath, nodeNetns: node.path });
    const attachments = pods.attachments("burst");
    const results: Record<string, unknown>[] = [];
    const limit = Number(flags.concurrency);
    let started = performance.now();
    await inFlight(attachments, limit, async (att, i) => {
      results[i] = await net.add(att);
    });
    console.log(`ADD wall ${(performance.now() - started).toFixed(0)} ms`);
    started = performance.now();
    await inFlight(attachments, limit, async (att, i) => net.del(att, results[i]));
    console.log(`DEL wall ${(performance.now() - started).toFixed(0)} ms`);
    const lines = readFileSync(traceFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { command: string; marks: [string, number][] });
    for (const command of ["service ADD", "service DEL"]) {
      const phases = new Map<string, number[]>();
      for (const line of lines.filter((l) => l.command === command)) {
        for (let i = 1; i < line.marks.length; i++) {
          const name = `${line.marks[i - 1]![0]} → ${line.marks[i]![0]}`;
          phases.set(name, [...(phases.get(name) ?? []), line.marks[i]![1] - line.marks[i - 1]![1]]);
        }
      }
      console.log(`\n${command} (${lines.filter((l) => l.command === command).length} requests)\n\n| phase | median ms | sum ms |\n|---|---|---|`);
      for (const [name, values] of phases) console.log(`| ${name} | ${median(values).toFixed(2)} | ${values.reduce((a, b) => a + b, 0).toFixed(0)} |`);
    }
  } finally {
    await service.kill();
    node.delete();
    pods.delete();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (error) {
  console.error(`burst profile: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
} finally {
  cleanupAll();
}
