// Times `podnet lab up` (and `lab down`) for the default lab, 3 nodes × 2 pods, as a user runs it:
// the CLI as a separate process, wall clock from start to exit. Target: up < 10 s.
// NODE_EXTRA_CA_CERTS is unset for the lab's processes: it adds ~40 ms to every Node start on these
// machines and real nodes do not have it.
// Usage: node --import tsx bench/lab.ts [--runs N] [--network podnet|reference] [--nodes N] [--pods-per-node M]
import { rmSync } from "node:fs";
import { lab, leftovers, newTestLab, readLabState } from "../test/helpers/lab.ts";

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : (process.argv[i + 1] ?? fallback);
}

const runs = Number(option("--runs", "5"));
const network = option("--network", "podnet");
const nodes = option("--nodes", "3");
const podsPerNode = option("--pods-per-node", "2");
delete process.env.NODE_EXTRA_CA_CERTS;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const upMs: number[] = [];
const downMs: number[] = [];
for (let i = 0; i < runs; i++) {
  const t = newTestLab();
  try {
    const t0 = performance.now();
    const up = await lab(["up", "--network", network, "--nodes", nodes, "--pods-per-node", podsPerNode, ...t.flags]);
    const t1 = performance.now();
    if (up.code !== 0) throw new Error(`lab up failed:\n${up.stdout}${up.stderr}`);
    const state = readLabState(t);
    const t2 = performance.now();
    const down = await lab(["down", ...t.flags]);
    const t3 = performance.now();
    if (down.code !== 0) throw new Error(`lab down failed:\n${down.stdout}${down.stderr}`);
    const left = await leftovers(t, state);
    if (left.namespaces.length > 0 || left.stateDir || left.processes.length > 0) throw new Error(`lab down left ${JSON.stringify(left)}`);
    upMs.push(t1 - t0);
    downMs.push(t3 - t2);
    console.log(`run ${i + 1}: up ${(upMs.at(-1)! / 1000).toFixed(2)} s, down ${(downMs.at(-1)! / 1000).toFixed(2)} s`);
  } finally {
    await lab(["down", ...t.flags]);
    rmSync(t.stateRoot, { recursive: true, force: true });
  }
}
const upMedian = median(upMs) / 1000;
console.log(
  `lab up ${nodes} nodes × ${podsPerNode} pods (${network} network), median of ${runs}: ${upMedian.toFixed(2)} s ` +
    `(min ${(Math.min(...upMs) / 1000).toFixed(2)}, max ${(Math.max(...upMs) / 1000).toFixed(2)}); ` +
    `lab down median ${(median(downMs) / 1000).toFixed(2)} s; target up < 10 s: ${upMedian < 10 ? "met" : "MISSED"}`,
);
console.log("(NODE_EXTRA_CA_CERTS unset for the lab's processes)");
