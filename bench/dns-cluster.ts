// What the DNS benchmarks share. The cluster they load into etcd: `count` ClusterIP Services in `default`, each with one
// ready endpoint, committed in batches of 100 objects. Shared so that bench:dns and dns-memory measure
// the same index.
import type { ObjectStore, ObjectWrite } from "../src/datastore/objects.ts";
import { clusterIPService, endpointSlice, namespace } from "../src/dns/fixtures.ts";

/** The i-th address (0-based) of 10.<base>.0.0 onwards, skipping .0.0. */
export function ipOf(base: number, i: number): string {
  const n = i + 1;
  return `10.${base + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

/** Service svc<i> gets ClusterIP ipOf(96, i) and endpoint ipOf(200, i). */
export async function loadDnsBenchServices(objects: ObjectStore, count: number): Promise<void> {
  let batch: ObjectWrite[] = [{ op: "create", object: namespace("default") }];
  for (let i = 0; i < count; i++) {
    batch.push({ op: "create", object: clusterIPService("default", `svc${i}`, [ipOf(96, i)]) });
    batch.push({ op: "create", object: endpointSlice("default", `svc${i}`, [{ ip: ipOf(200, i) }]) });
    if (batch.length >= 100) {
      await objects.commit(batch);
      batch = [];
    }
  }
  if (batch.length > 0) await objects.commit(batch);
}

/**
 * dnsperf -v output: one "> ..." line per answered query ending with its latency in seconds, then
 * the summary. Returns the latencies in ms, sorted, and the summary's queries per second.
 */
export function parseDnsperfVerbose(text: string): { latenciesMs: number[]; qps: number } {
  const latenciesMs: number[] = [];
  let summary = "";
  for (const line of text.split("\n")) {
    if (line.startsWith("> ")) {
      const seconds = Number(line.slice(line.lastIndexOf(" ") + 1));
      if (Number.isFinite(seconds)) latenciesMs.push(seconds * 1000);
    } else summary += `${line}\n`;
  }
  latenciesMs.sort((a, b) => a - b);
  return { latenciesMs, qps: Number(/Queries per second:\s+([\d.]+)/.exec(summary)?.[1]) };
}
