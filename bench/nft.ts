// Applying nftables transactions: spawning `nft -f FILE` (sync and async, as the plugin and the
// agent do) against libnftables called in-process over FFI (koffi), side by side in one run, ways
// interleaved, in a namespace of its own. Usage (root):
//   node --import tsx bench/nft.ts [--runs N] [--tiny-runs N] [--json]
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { readTable, runNft, runNftAsync, syncTableSync, transactionScript } from "../src/kernel/nft.ts";
import { masqueradeTable } from "../src/agent/masquerade.ts";
import type { NftChain, NftRule, NftTable, NftTransaction } from "../src/kernel/nft/model.ts";
import { diffTables } from "../src/kernel/nft/diff.ts";
import { renderTable } from "../src/kernel/nft/render.ts";
import { runLibnftables } from "../src/kernel/nft/libnftables.ts";
import { withNetns } from "../src/kernel/netns.ts";
import { decodeTableJson } from "../src/kernel/nft/readback.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "40" }, "tiny-runs": { type: "string", default: "300" }, "process-runs": { type: "string", default: "60" }, json: { type: "boolean", default: false } } });
const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
const RUNS = Number(values.runs);
const TINY_RUNS = Number(values["tiny-runs"]);
const TABLE = "pnt-bench";
const ns = `pnt-bench-nft-${randomBytes(3).toString("hex")}`;
const nsPath = `/run/netns/${ns}`;

function sh(cmd: string, args: string[]): void {
  const run = spawnSync(cmd, args, { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${run.stderr}`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** 1,000 rules in one chain, replaced whole: the size of a service proxy's full sync of a small cluster. */
function bigTransaction(): NftTransaction {
  const rules: NftRule[] = Array.from({ length: 1000 }, (_, i) => ({
    statements: [{ match: "ip daddr", value: `10.96.${i >> 8}.${i & 255}` }, { match: "tcp dport", value: 80 }, { dnat: { family: "ip", address: `10.244.${i >> 8}.${i & 255}`, port: 8080 } }],
    comment: `svc-${i}`,
  }));
  return {
    family: "inet",
    table: TABLE,
    changes: [
      { op: "ensureTable" },
      { op: "addSet", set: { name: "endpoints", keyType: ["ipv4_addr", "inet_proto", "inet_service"], elements: [] } },
      { op: "replaceChain", chain: { name: "services", base: { type: "nat", hook: "prerouting", priority: "dstnat", policy: "accept" }, rules } },
    ],
  };
}

const tiny = (op: "addElements" | "deleteElements"): NftTransaction => ({
  family: "inet",
  table: TABLE,
  changes: [op === "addElements"
    ? { op, setOrMap: "endpoints", elements: [["10.244.9.9", "tcp", 8080]] }
    : { op, setOrMap: "endpoints", keys: [["10.244.9.9", "tcp", 8080]] }],
});

interface Way {
  name: string;
  apply(script: string): Promise<void> | void;
}

type Timings = Record<string, number[]>;

async function measure(ways: Way[], scripts: () => string, runs: number): Promise<Timings> {
  const out: Timings = Object.fromEntries(ways.map((w) => [w.name, []]));
  for (let i = 0; i < runs; i++) {
    // Rotate the order so no way always runs right after another.
    for (let j = 0; j < ways.length; j++) {
      const way = ways[(i + j) % ways.length]!;
      const script = scripts();
      const t0 = performance.now();
      await way.apply(script);
      out[way.name]!.push(performance.now() - t0);
    }
  }
  return out;
}

/** A kube-proxy-layout table: SERVICES services × ENDPOINTS endpoints, a dispatch map, per-service and per-endpoint chains. */
function proxyModel(services: number, endpoints: number, version = 0): NftTable {
  const chains: NftChain[] = [];
  const elements = [];
  for (let i = 0; i < services; i++) {
    const ip = `10.96.${i >> 8}.${i & 255}`;
    const eps = Array.from({ length: endpoints }, (_, e) => `ep-${i}-${e}`);
    chains.push({ name: `svc-${i}`, rules: [{ statements: [{ numgenVmap: eps.map((chain) => ({ verdict: "goto" as const, chain })) }], comment: `default/svc-${i}:http` }] });
    for (let e = 0; e < endpoints; e++) {
      const addr = `10.${(e + version) & 255}.${i >> 8}.${i & 255}`;
      chains.push({ name: eps[e]!, rules: [
        { statements: [{ match: "ip saddr", value: addr }, { setMarkOr: 0x4000 }] },
        { statements: [{ match: "meta l4proto", value: "tcp" }, { dnat: { family: "ip", address: addr, port: 8080 } }] },
      ] });
    }
    elements.push({ key: [ip, "tcp", 80], verdict: { verdict: "goto" as const, chain: `svc-${i}` } });
  }
  return {
    family: "inet", name: "pnt-proxy-model", sets: [], counters: [],
    maps: [{ name: "service-ips", keyType: ["ipv4_addr", "inet_proto", "inet_service"], valueType: ["verdict"], elements }],
    chains: [{ name: "services", base: { type: "nat", hook: "prerouting", priority: "dstnat", policy: "accept" }, rules: [{ statements: [{ vmapLookup: ["ip daddr", "meta l4proto", "th dport"], map: "service-ips" }] }] }, ...chains],
  };
}

/** In-memory work of an incremental sync at 10,000 services × 5 endpoints: no kernel involved. */
function modelAtScale(runs: number): Timings {
  const out: Timings = { "diff, fresh objects (every rule compared)": [], "diff, unchanged chains shared (as a memoising compiler would)": [], "render the full table (full sync script)": [] };
  const before = proxyModel(10000, 5);
  for (let i = 0; i < runs; i++) {
    // One endpoint of one service moved.
    const fresh = proxyModel(10000, 5);
    const moved = { ...fresh.chains[1 + 6 * 17 + 1]!, rules: [{ statements: [{ dnat: { family: "ip" as const, address: "10.200.0.1", port: 8080 } }] }] };
    const freshChanged = { ...fresh, chains: fresh.chains.map((c, j) => (j === 1 + 6 * 17 + 1 ? moved : c)) };
    let t = performance.now();
    const a = diffTables(freshChanged, before);
    out["diff, fresh objects (every rule compared)"]!.push(performance.now() - t);
    const shared = { ...before, chains: before.chains.map((c, j) => (j === 1 + 6 * 17 + 1 ? moved : c)) };
    t = performance.now();
    const b = diffTables(shared, before);
    out["diff, unchanged chains shared (as a memoising compiler would)"]!.push(performance.now() - t);
    if (a.changes.length !== 1 || b.changes.length !== 1) throw new Error(`expected one replaced chain, got ${a.changes.length} and ${b.changes.length}`);
    if (i < 5) {
      t = performance.now();
      renderTable(before);
      out["render the full table (full sync script)"]!.push(performance.now() - t);
    }
  }
  return out;
}

/**
 * Whole runs of a `bun build --compile --bytecode` binary (bench/nft-once.ts) that applies one
 * tiny transaction: what the plugin's ipMasq pays per ADD, start-up of each way included.
 */
function freshProcesses(nsPath: string, runs: number): Timings {
  const bun = join(REPO, "node_modules/@oven/bun-linux-x64/bin/bun");
  if (!existsSync(bun) || runs <= 0) return {};
  const dir = mkdtempSync(join(tmpdir(), "pnt-bench-nft-"));
  try {
    const binary = join(dir, "nft-once");
    const build = spawnSync(bun, ["build", "--compile", "--bytecode", "--minify", "--target=bun-linux-x64", join(REPO, "bench/nft-once.ts"), "--outfile", binary], { encoding: "utf8" });
    if (build.status !== 0) throw new Error(`bun build: ${build.stderr}`);
    const ways = ["none", "libnftables", "nft"];
    const out: Timings = Object.fromEntries(ways.map((w) => [`bun binary: ${w === "none" ? "start-up only" : w}`, []]));
    for (let i = 0; i < runs; i++) {
      for (let j = 0; j < ways.length; j++) {
        const way = ways[(i + j) % ways.length]!;
        const env = { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...(way === "none" ? {} : { PODNET_NFT: way }) };
        // Started from a thread inside the namespace, so no nsenter is timed.
        const t = performance.now();
        const run = withNetns(nsPath, () => spawnSync(binary, [way], { env, encoding: "utf8" }));
        const ms = performance.now() - t;
        if (run.status !== 0) throw new Error(`nft-once ${way}: ${run.stderr}`);
        out[`bun binary: ${way === "none" ? "start-up only" : way}`]!.push(ms);
      }
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  delete process.env["NODE_EXTRA_CA_CERTS"];
  // runNft and readTable spawn `nft`; the in-process way is called directly.
  process.env["PODNET_NFT"] = "nft";
  sh("ip", ["netns", "add", ns]);
  try {
    // The first in-process use: dlopen of libnftables through koffi and a context, as a fresh process would pay it.
    const t0 = performance.now();
    runLibnftables("list tables", nsPath);
    const openMs = performance.now() - t0;
    const ffi = (script: string): void => {
      const r = runLibnftables(script, nsPath);
      if (r.status !== 0) throw new Error(`libnftables: ${r.stderr}`);
    };
    const ways: Way[] = [
      { name: "nft -f FILE (spawnSync, via nsenter)", apply: (s) => runNft(s, nsPath) },
      { name: "nft -f FILE (spawnSync, thread in the netns: as the plugin)", apply: (s) => withNetns(nsPath, () => runNft(s)) },
      { name: "nft -f FILE (async, via nsenter: as the agent was)", apply: (s) => runNftAsync(s, nsPath) },
      { name: "libnftables (koffi, in-process)", apply: ffi },
    ];
    const big = transactionScript(bigTransaction());
    ffi(big);
    const bigTimes = await measure(ways, () => big, RUNS);
    let flip = false;
    const adds = transactionScript(tiny("addElements"));
    const dels = transactionScript(tiny("deleteElements"));
    // Each way's run alternates add and delete, so every run changes the kernel.
    const tinyTimes: Timings = {};
    for (const way of ways) tinyTimes[way.name] = [];
    for (let i = 0; i < TINY_RUNS; i++) {
      for (let j = 0; j < ways.length; j++) {
        const way = ways[(i + j) % ways.length]!;
        const script = (flip = !flip) ? adds : dels;
        const t = performance.now();
        await way.apply(script);
        tinyTimes[way.name]!.push(performance.now() - t);
      }
    }
    // Reading the 1,000-rule table back as JSON and decoding it.
    const readTimes: Timings = { "nft -j list (spawnSync)": [], "libnftables -j list (in-process)": [] };
    for (let i = 0; i < RUNS; i++) {
      let t = performance.now();
      readTable("inet", TABLE, nsPath);
      readTimes["nft -j list (spawnSync)"]!.push(performance.now() - t);
      t = performance.now();
      const r = runLibnftables(`list table inet ${TABLE}`, nsPath, true);
      decodeTableJson(r.stdout, "inet", TABLE);
      readTimes["libnftables -j list (in-process)"]!.push(performance.now() - t);
    }
    const modelTimes = modelAtScale(Math.min(RUNS, 20));
    const processTimes = freshProcesses(nsPath, Number(values["process-runs"]));
    // The agent's masquerade check on every resync: its table is current, so a listing and a diff.
    const masq = masqueradeTable("10.244.0.0/16");
    syncTableSync(masq, nsPath);
    const masqTimes: Timings = { "nft -j list (spawnSync) + diff": [], "libnftables -j list (in-process) + diff": [] };
    for (let i = 0; i < TINY_RUNS; i++) {
      let t = performance.now();
      if (syncTableSync(masq, nsPath).changes.length !== 0) throw new Error("masquerade table not current");
      masqTimes["nft -j list (spawnSync) + diff"]!.push(performance.now() - t);
      t = performance.now();
      const r = runLibnftables(`list table ip ${masq.name}`, nsPath, true);
      if (diffTables(masq, decodeTableJson(r.stdout, "ip", masq.name)).changes.length !== 0) throw new Error("masquerade table not current");
      masqTimes["libnftables -j list (in-process) + diff"]!.push(performance.now() - t);
    }
    const rows = (title: string, timings: Timings) => Object.entries(timings).map(([way, xs]) => ({ work: title, way, runs: xs.length, p50: median(xs), p90: percentile(xs, 90) }));
    const results = [
      ...rows("1,000 rules, one transaction", bigTimes),
      ...rows("one element (add or delete)", tinyTimes),
      ...rows("read back 1,000 rules (-j list + decode)", readTimes),
      ...rows("the agent's masquerade check, table current", masqTimes),
      ...rows("10,000 services × 5 endpoints (60,001 chains), one endpoint changed", modelTimes),
      ...rows("a fresh Bun-compiled process applying one element (whole run)", processTimes),
    ];
    if (values.json) {
      process.stdout.write(JSON.stringify({ openMs, results }, null, 2) + "\n");
      return;
    }
    const load = (await import("node:os")).loadavg().map((x) => x.toFixed(2)).join(" ");
    console.log(`Run ${new Date().toISOString()}, Node ${process.version}, nft ${spawnSync("nft", ["--version"], { encoding: "utf8" }).stdout.trim()}, load ${load}; NODE_EXTRA_CA_CERTS unset.`);
    console.log(`First in-process use (koffi, dlopen libnftables.so.1, a context, \`list tables\`): ${openMs.toFixed(2)} ms\n`);
    console.log("| work | way | runs | p50 ms | p90 ms |\n|---|---|---|---|---|");
    for (const r of results) console.log(`| ${r.work} | ${r.way} | ${r.runs} | ${r.p50.toFixed(2)} | ${r.p90.toFixed(2)} |`);
    const ratio = (work: string) => {
      const by = (w: string) => results.find((r) => r.work === work && r.way.startsWith(w))!.p50;
      return (by("nft -f FILE (spawnSync, thread") / by("libnftables")).toFixed(1);
    };
    console.log(`\nspawned nft in the netns / in-process, p50: 1,000 rules ${ratio("1,000 rules, one transaction")}×, one element ${ratio("one element (add or delete)")}×`);
  } finally {
    sh("ip", ["netns", "del", ns]);
  }
}

await main();
