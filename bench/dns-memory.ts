// Where the memory of `podnet dns` goes, with 10,000 Services and 10,000 EndpointSlices in etcd:
// `node --import tsx bench/dns-memory.ts [--services N] [--variants a,b,...]` (after `npm run build`).
//
// etcd (a private one, loopback ports) gets the objects; then each variant of the server is started on
// its own loopback ports, synced, left idle, measured, put under a short dnsperf load, measured again,
// and stopped. Each figure comes from the kernel (/proc/PID/status, /proc/PID/smaps_rollup) and the
// server's own /metrics (V8 heap). Baselines: bare Node with the same libraries loaded.
// The figures are compared with the 60 MB target as PSS and as RssAnon + the process's private file pages:
// the node binary's file pages are shared by every Node process on a node (see bench/RESULTS.md).

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startEtcd, type EtcdServer } from "../src/supervise/etcd-server.ts";
import { EtcdDatastore } from "../src/datastore/etcd-datastore.ts";
import { loadDnsBenchServices, parseDnsperfVerbose } from "./dns-cluster.ts";
import { DNS_ENV, DNS_NODE_FLAGS } from "../src/dns/node-flags.ts";

const REPO = resolve(import.meta.dirname, "..");
const CLI = join(REPO, "bin/podnet.js");
const { values } = parseArgs({
  options: {
    services: { type: "string", default: "10000" },
    variants: { type: "string" },
    load: { type: "string", default: "5" },
  },
});
const SERVICES = Number(values.services);
const env: NodeJS.ProcessEnv = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Variant {
  name: string;
  /** Node flags before the script. */
  node: string[];
  /** Extra `podnet dns` arguments. */
  args?: string[];
  env?: Record<string, string>;
  /** Not the server: a bare Node process running this module code (no ports, no load). */
  bare?: string;
}

const DEFAULT_FLAGS = ["--max-semi-space-size=1"];
/**
 * A bare process's body: load the modules, then after a second collect garbage and trim the C heap,
 * as the server does after its first sync, so the baselines compare like with like.
 */
const bare = (modules: string[]): string =>
  `${modules.map((m) => `await import(${JSON.stringify(m)});`).join(" ")} setTimeout(() => { globalThis.gc(); createRequire(process.cwd() + "/package.json")("koffi").load("libc.so.6").func("int malloc_trim(size_t pad)")(0); }, 1000); setInterval(() => {}, 1000);`;
const BARE_FLAGS = [...DEFAULT_FLAGS, "--expose-gc"];
const VARIANTS: Variant[] = [
  { name: "bare node", node: BARE_FLAGS, bare: bare([]) },
  { name: "bare node + etcd3", node: BARE_FLAGS, bare: bare(["etcd3"]) },
  { name: "bare node + prom-client", node: BARE_FLAGS, bare: bare(["prom-client"]) },
  { name: "bare node + etcd3 + prom-client + dns-packet", node: BARE_FLAGS, bare: bare(["etcd3", "prom-client", "dns-packet"]) },
  { name: "podnet dns (as the lab starts it: DNS_NODE_FLAGS, DNS_ENV)", node: [...DNS_NODE_FLAGS], env: { ...DNS_ENV } },
  { name: "podnet dns, bin/podnet.js's flag only (no --v8-pool-size)", node: DEFAULT_FLAGS },
  { name: "podnet dns MALLOC_ARENA_MAX=2", node: DEFAULT_FLAGS, env: { MALLOC_ARENA_MAX: "2" } },
  { name: "podnet dns --max-old-space-size=48", node: [...DEFAULT_FLAGS, "--max-old-space-size=48"] },
  { name: "podnet dns --single-threaded UV_THREADPOOL_SIZE=1", node: [...DEFAULT_FLAGS, "--single-threaded"], env: { UV_THREADPOOL_SIZE: "1" } },
  { name: "podnet dns --optimize-for-size", node: [...DEFAULT_FLAGS, "--optimize-for-size"] },
  { name: "podnet dns --no-batch", node: DEFAULT_FLAGS, args: ["--no-batch"] },
];

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** kB fields of a /proc file of `key: N kB` lines, in MiB. */
function kbFields(path: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (m) out[m[1] as string] = Number(m[2]) / 1024;
  }
  return out;
}

interface Memory {
  rss: number;
  anon: number;
  file: number;
  pss: number;
  pssAnon: number;
  pssFile: number;
  privateFile: number;
  threads: number;
  heapUsed?: number;
  heapTotal?: number;
  external?: number;
}

function memoryOf(pid: number): Memory {
  const status = kbFields(`/proc/${pid}/status`);
  const rollup = kbFields(`/proc/${pid}/smaps_rollup`);
  const threads = Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return {
    rss: status.VmRSS ?? NaN,
    anon: status.RssAnon ?? NaN,
    file: status.RssFile ?? NaN,
    pss: rollup.Pss ?? NaN,
    pssAnon: rollup.Pss_Anon ?? NaN,
    pssFile: rollup.Pss_File ?? NaN,
    // Private file pages: mapped by this process alone (the rest of RssFile is shared with others).
    privateFile: (rollup.Private_Clean ?? 0) + (rollup.Private_Dirty ?? 0) - (rollup.Anonymous ?? 0),
    threads,
  };
}

function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

async function heapOf(metricsPort: number): Promise<Pick<Memory, "heapUsed" | "heapTotal" | "external">> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const mib = (n: string) => metricSum(text, n) / 1048576;
  return { heapUsed: mib("podnet_dns_nodejs_heap_size_used_bytes"), heapTotal: mib("podnet_dns_nodejs_heap_size_total_bytes"), external: mib("podnet_dns_nodejs_external_memory_bytes") };
}

const fmt = (n: number | undefined, d = 1) => (n === undefined || Number.isNaN(n) ? "—" : n.toFixed(d));

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pnt-bench-dnsmem-"));
  let etcd: EtcdServer | undefined;
  let writer: EtcdDatastore | undefined;
  const children: ChildProcess[] = [];
  try {
    etcd = await startEtcd({ dataDir: join(dir, "etcd") });
    writer = new EtcdDatastore({ endpoints: etcd.endpoints, prefix: "/podnet/" });
    await loadDnsBenchServices(writer.objects, SERVICES);
    await writer.close();
    writer = undefined;
    const queryFile = join(dir, "queries.txt");
    writeFileSync(queryFile, Array.from({ length: SERVICES }, (_, i) => `svc${(i * 7919) % SERVICES}.default.svc.cluster.local A`).join("\n") + "\n");

    const wanted = values.variants?.split(",");
    const chosen = wanted ? VARIANTS.filter((v, i) => wanted.includes(String(i)) || wanted.includes(v.name)) : VARIANTS;
    const rows: string[] = [];
    const perfRows: string[] = [];
    const out = (r: string) => {
      rows.push(r);
      process.stderr.write(`${r}\n`);
    };
    process.stdout.write(`load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}; node ${process.version}; ${SERVICES} services + ${SERVICES} endpoints\n`);
    for (const v of chosen) {
      if (v.bare !== undefined) {
        const child = spawn(process.execPath, [...v.node, "--input-type=module", "-e", `import { createRequire } from "node:module"; ${v.bare}`], { env: { ...env, ...v.env }, cwd: REPO, stdio: "ignore" });
        children.push(child);
        await sleep(3000);
        const m = memoryOf(child.pid as number);
        child.kill("SIGTERM");
        out(row(v.name, m));
        continue;
      }
      const port = await freePort();
      const metricsPort = await freePort();
      const args = [...v.node, CLI, "dns", "--etcd", etcd.endpoints.join(","), "--etcd-insecure", "--listen", `127.0.0.1:${port}`, "--upstream", "127.0.0.1:9", "--metrics", `127.0.0.1:${metricsPort}`, ...(v.args ?? [])];
      const child = spawn(process.execPath, args, { env: { ...env, ...v.env }, cwd: REPO, stdio: ["ignore", "ignore", "pipe"] });
      let log = "";
      child.stderr?.on("data", (d: Buffer) => (log += d.toString()));
      children.push(child);
      const started = performance.now();
      for (;;) {
        if (child.exitCode !== null) break;
        const ok = await fetch(`http://127.0.0.1:${metricsPort}/ready`).then((r) => r.status === 200, () => false);
        if (ok) break;
        if (performance.now() - started > 60_000) throw new Error(`${v.name} never ready: ${log}`);
        await sleep(100);
      }
      if (child.exitCode !== null) {
        out(`| ${v.name} | failed: ${log.split("\n").find((l) => /FATAL|Error/.test(l)) ?? "exited"} |`);
        continue;
      }
      const syncMs = performance.now() - started;
      // Past the server's last start-up collection (3 s after its watch is up).
      await sleep(5000);
      const idle = { ...memoryOf(child.pid as number), ...(await heapOf(metricsPort)) };
      const ticks = cpuTicks(child.pid as number);
      const perf = runDnsperf(port, queryFile, join(dir, "dnsperf.out"));
      perfRows.push(`| ${v.name} | ${perf.qps.toFixed(0)} | ${(((cpuTicks(child.pid as number) - ticks) / TICKS) * 1e6 / perf.n).toFixed(2)} | ${perf.p50.toFixed(3)} / ${perf.p99.toFixed(3)} |`);
      await sleep(1000);
      const loaded = { ...memoryOf(child.pid as number), ...(await heapOf(metricsPort)) };
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      out(row(`${v.name}, idle (synced in ${(syncMs / 1000).toFixed(1)} s)`, idle));
      out(row(`${v.name}, after ${values.load} s of dnsperf`, loaded));
    }
    process.stdout.write(
      [
        "| process | RSS | RssAnon | RssFile | PSS | Pss_Anon | Pss_File | private file | threads | V8 heap used / total | external |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        ...rows,
        "",
        `| variant | QPS (dnsperf -c 4 -Q 200000 -l ${values.load}) | CPU µs per query | p50 / p99 ms |`,
        "|---|---|---|---|",
        ...perfRows,
      ].join("\n") + "\n",
    );
  } finally {
    for (const c of children) if (c.exitCode === null && c.pid) c.kill("SIGTERM");
    await writer?.close().catch(() => undefined);
    await etcd?.stop();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}

const TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

/** utime + stime of a process, all threads, in clock ticks (proc(5) /proc/pid/stat fields 14 and 15). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** dnsperf -v into a file (parsed after the run, so parsing takes no CPU from the server): QPS, answers, p50, p99. */
function runDnsperf(port: number, queryFile: string, outFile: string): { qps: number; n: number; p50: number; p99: number } {
  const fd = openSync(outFile, "w");
  spawnSync("dnsperf", ["-s", "127.0.0.1", "-p", String(port), "-d", queryFile, "-c", "4", "-Q", "200000", "-l", values.load as string, "-v"], { stdio: ["ignore", fd, "ignore"] });
  closeSync(fd);
  const { latenciesMs: latencies, qps } = parseDnsperfVerbose(readFileSync(outFile, "utf8"));
  rmSync(outFile);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { qps, n: latencies.length, p50: at(0.5), p99: at(0.99) };
}

function row(name: string, m: Memory): string {
  return `| ${name} | ${fmt(m.rss)} | ${fmt(m.anon)} | ${fmt(m.file)} | ${fmt(m.pss)} | ${fmt(m.pssAnon)} | ${fmt(m.pssFile)} | ${fmt(m.privateFile)} | ${m.threads} | ${fmt(m.heapUsed)} / ${fmt(m.heapTotal)} | ${fmt(m.external)} |`;
}

await main();
