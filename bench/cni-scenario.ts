// One benchmark scenario: a fresh node namespace, 100 pods ADDed and then DELeted through the
// shared CNI driver, either one at a time or several at once. Each operation is timed around
// CniNetwork.add/del, so both plugins pay exactly the same driver, nsenter and exec costs.
// A scenario also checks that the plugin did its job (distinct addresses on ADD, nothing left
// after DEL): timing a plugin that leaks or fails would be meaningless.
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CniNetwork, type Attachment } from "../src/runtime/cni-driver.ts";
import { startService } from "../test/helpers/cni-service.ts";
import { Netns, tempDir } from "../test/helpers/netns.ts";
import { BENCH_BRIDGE, BENCH_NETWORK, type BenchSide } from "./cni-sides.ts";

export type Mode = "sequential" | "concurrent";

export interface ScenarioResult {
  side: BenchSide["name"];
  mode: Mode;
  addMs: number[];
  delMs: number[];
  addWallMs: number;
  delWallMs: number;
  /** With a resident service: its CPU time over the ADDs and over the DELs, and its peak RSS. */
  service?: { addCpuMs: number; delCpuMs: number; peakRssKiB: number };
}

/** CPU time of every thread of a process so far, in ms, from the scheduler's ns counters. */
function processCpuMs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
  }
  return ns / 1e6;
}

function peakRssKiB(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) : 0;
}

export interface ScenarioOptions {
  mode: Mode;
  concurrency: number;
  /** Replaces the side's CNI_PATH, e.g. with a directory of measuring wrappers in front. */
  cniPath?: string[];
  /** Extra environment for the plugins; none in timed runs. */
  env?: Record<string, string>;
  /** The runtimeConfig the runtime passes for pod `index` (e.g. its portMappings); none when absent. */
  runtimeConfig?: (index: number) => Record<string, unknown>;
}

/** Pod namespaces shared by every scenario; each scenario must leave them as it found them. */
export class PodPool {
  private constructor(readonly pods: Netns[]) {}

  static create(count: number): PodPool {
    const pods: Netns[] = [];
    for (let i = 0; i < count; i++) pods.push(Netns.create("bp"));
    return new PodPool(pods);
  }

  attachments(tag: string): Attachment[] {
    return this.pods.map((pod, i) => ({ containerId: `${tag}-${i}`, netns: pod.path, ifname: "eth0" }));
  }

  delete(): void {
    for (const pod of this.pods) pod.delete();
  }
}

/** Runs fn over items with at most `limit` in flight, like a runtime starting a burst of pods. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await fn(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function addressOf(result: Record<string, unknown>): string {
  const ips = result.ips as { address?: string }[] | undefined;
  const address = ips?.[0]?.address;
  if (!address) throw new Error(`ADD result has no address: ${JSON.stringify(result)}`);
  return address;
}

function reservedAddresses(dataDir: string): string[] {
  const dir = join(dataDir, BENCH_NETWORK);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((name) => /^[0-9a-f.:]+$/.test(name) && /[.:]/.test(name));
}

function strayLinks(node: Netns): string[] {
  return node.links().filter((name) => name !== "lo" && name !== BENCH_BRIDGE);
}

export async function runScenario(side: BenchSide, pods: PodPool, tag: string, opts: ScenarioOptions): Promise<ScenarioResult> {
  const node = Netns.create("bn");
  const dataDir = tempDir("bench-ipam");
  const service = side.service ? await startService(side.mainBinary, node.path, side.serviceWorkers === undefined ? {} : { workers: side.serviceWorkers }) : undefined;
  try {
    const network = new CniNetwork(side.confList(dataDir, service?.socket), {
      cniPath: opts.cniPath ?? side.cniPath,
      nodeNetns: node.path,
      ...(opts.env ? { env: opts.env } : {}),
    });
    const attachments = pods.attachments(tag).map((att, i) => (opts.runtimeConfig ? { ...att, runtimeConfig: opts.runtimeConfig(i) } : att));
    const limit = opts.mode === "sequential" ? 1 : opts.concurrency;
    const results: Record<string, unknown>[] = [];
    const addMs: number[] = [];
    const delMs: number[] = [];

    const cpuAtStart = service ? processCpuMs(service.pid) : 0;
    const addStart = performance.now();
    await forEachLimited(attachments, limit, async (att, i) => {
      const started = performance.now();
      results[i] = await network.add(att);
      addMs.push(performance.now() - started);
    });
    const addWallMs = performance.now() - addStart;

    const addresses = results.map(addressOf);
    if (new Set(addresses).size !== attachments.length) throw new Error(`${side.name} ${opts.mode}: ADD gave duplicate addresses`);

    const cpuAfterAdd = service ? processCpuMs(service.pid) : 0;
    const delStart = performance.now();
    await forEachLimited(attachments, limit, async (att, i) => {
      const started = performance.now();
      await network.del(att, results[i]);
      delMs.push(performance.now() - started);
    });
    const delWallMs = performance.now() - delStart;
    const serviceUsage = service
      ? { addCpuMs: cpuAfterAdd - cpuAtStart, delCpuMs: processCpuMs(service.pid) - cpuAfterAdd, peakRssKiB: peakRssKiB(service.pid) }
      : undefined;

    const leftLinks = strayLinks(node);
    const leftReservations = reservedAddresses(dataDir);
    if (leftLinks.length > 0 || leftReservations.length > 0) {
      throw new Error(`${side.name} ${opts.mode}: DEL left links [${leftLinks.join(", ")}] and reservations [${leftReservations.join(", ")}]`);
    }
    return { side: side.name, mode: opts.mode, addMs, delMs, addWallMs, delWallMs, ...(serviceUsage ? { service: serviceUsage } : {}) };
  } finally {
    await service?.kill();
    node.delete();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
