// What sets the p99 of `podnet dns` under dnsperf: `node --import tsx bench/dns-tail.ts [--variants a,b]
// [--seconds N] [--rounds N]` (after `npm run build`). A tool for finding the tail, not the issue's
// benchmark (that is bench/dns.ts).
//
// etcd (private, loopback ports) gets the 10,000 Services + 10,000 EndpointSlices of bench:dns; each
// variant of the server (V8 flags, CLI options) is started on its own loopback port and synced; then
// dnsperf -v runs against it, with the server pinned to CPU 1 and dnsperf to CPU 0 (taskset), and with
// both free to use either CPU, alternating. Per run: QPS, p50 / p99 / p99.9, the server's main thread's
// time on a CPU and waiting for one (/proc/PID/task/PID/schedstat), and, when the variant runs with
// --trace-gc, V8's collections during the run (count, median and max pause, and how many answers
// took longer than the longest pause). PSS after the runs.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { setPriority, tmpdir } from "node:os";
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
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "1" },
    rate: { type: "string", default: "200000" },
    threads: { type: "string", default: "1" },
    modes: { type: "string", default: "pinned,shared" },
    /** Another CLI entry (a build of an earlier commit, say) for the variants named "base ...". */
    baseline: { type: "string" },
    /** Every query a distinct spelling (random 0x20 case) of a service name: no cached answer, the whole path. */
    uncached: { type: "boolean", default: false },
  },
});
const SERVICES = Number(values.services);
const TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
const env: NodeJS.ProcessEnv = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Variant {
  name: string;
  /** Node flags before the script (DNS_NODE_FLAGS replaced, not extended, when given). */
  node?: string[];
  args?: string[];
  dnsmasq?: boolean;
}

const without = (flag: string) => DNS_NODE_FLAGS.filter((f) => !f.startsWith(flag));
const VARIANTS: Variant[] = [
  { name: "dnsmasq", dnsmasq: true },
  { name: "podnet", node: [...DNS_NODE_FLAGS] },
  { name: "podnet trace-gc", node: [...DNS_NODE_FLAGS, "--trace-gc"] },
  { name: "semi2 trace-gc", node: [...without("--max-semi-space-size"), "--max-semi-space-size=2", "--trace-gc"] },
  { name: "semi4 trace-gc", node: [...without("--max-semi-space-size"), "--max-semi-space-size=4", "--trace-gc"] },
  { name: "semi8 trace-gc", node: [...without("--max-semi-space-size"), "--max-semi-space-size=8", "--trace-gc"] },
  { name: "semi16 trace-gc", node: [...without("--max-semi-space-size"), "--max-semi-space-size=16", "--trace-gc"] },
  { name: "semi1 min1 trace-gc", node: [...DNS_NODE_FLAGS, "--min-semi-space-size=1", "--trace-gc"] },
  { name: "podnet no-batch", node: [...DNS_NODE_FLAGS], args: ["--no-batch"] },
  { name: "base", node: [...DNS_NODE_FLAGS] },
  { name: "base trace-gc", node: [...DNS_NODE_FLAGS, "--trace-gc"] },
];

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** The main thread's time on a CPU and waiting for one, ns (Documentation/scheduler/sched-stats.rst). */
function schedstat(pid: number): { running: number; waiting: number } {
  const [running, waiting] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").trim().split(" ").map(Number);
  return { running: running ?? NaN, waiting: waiting ?? NaN };
}

function pss(pid: number): number {
  return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1]) / 1024;
}

/** Set the CPUs of every thread of `pid` (taskset -a: the threads exist already). */
function pin(pid: number, cpus: string): void {
  execFileSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
}

/** Nice value of every thread of `pid` (setpriority(2) on Linux applies to one thread id). */
function renice(pid: number, nice: number): void {
  for (const tid of readdirSync(`/proc/${pid}/task`)) setPriority(Number(tid), nice);
}

interface Run {
  qps: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  run: number;
  wait: number;
  gc?: { count: number; median: number; max: number; total: number };
  /** Answers that took longer than 1 ms. */
  over1ms: number;
  /** dnsperf's CPU time over the run's wall time. */
  client: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** Scavenge / Mark-Compact pauses (ms) in `--trace-gc` lines: "..., 0.26 / 0.00 ms ..." */
function gcPauses(text: string): number[] {
  const out: number[] = [];
  for (const line of text.split("\n")) {
    const m = /MB, ([\d.]+) \/ [\d.]+ ms/.exec(line);
    if (m) out.push(Number(m[1]));
  }
  return out;
}

async function dnsperfRun(port: number, queryFile: string, outFile: string, pid: number, mode: string, log: () => string): Promise<Run> {
  const pinned = mode !== "shared";
  const nice = mode === "reserved" ? -10 : 0;
  // "rt": pinned, and SCHED_FIFO for the server's threads and dnsperf, so that no ordinary process
  // takes their CPU (the kernel's RT throttling still leaves others 5% of each second: use it at a
  // fixed rate, not at saturation, where the server would be stopped for 50 ms every second).
  const rt = mode === "rt";
  pin(pid, pinned ? "1" : "0,1");
  renice(pid, nice);
  if (rt) execFileSync("chrt", ["-a", "-f", "-p", "10", String(pid)], { stdio: "ignore" });
  await sleep(200);
  const logBefore = log().length;
  const before = schedstat(pid);
  const t0 = performance.now();
  const fd = openSync(outFile, "w");
  const args = ["-s", "127.0.0.1", "-p", String(port), "-d", queryFile, "-c", "4", "-T", values.threads as string, "-Q", values.rate as string, "-l", values.seconds as string, "-v"];
  // Through a shell that prints its own stat once dnsperf is waited for: cutime + cstime are dnsperf's CPU.
  const shell = spawnSync("nice", ["-n", String(nice), "sh", "-c", `taskset -c "$0" ${rt ? "chrt -f 10 " : ""}dnsperf "$@"; cat /proc/$$/stat >&2`, pinned ? "0" : "0,1", ...args], { stdio: ["ignore", fd, "pipe"], env, encoding: "utf8" });
  const statLine = shell.stderr.split("\n").find((l) => /^\d+ \(sh\) /.test(l)) ?? "";
  const statFields = statLine.slice(statLine.lastIndexOf(")") + 2).split(" ");
  const clientCpu = (Number(statFields[13]) + Number(statFields[14])) / TICKS;
  closeSync(fd);
  const wall = (performance.now() - t0) * 1e6;
  const after = schedstat(pid);
  const gcText = log().slice(logBefore);
  if (rt) execFileSync("chrt", ["-a", "-o", "-p", "0", String(pid)], { stdio: "ignore" });
  pin(pid, "0,1");
  renice(pid, 0);
  const { latenciesMs: latencies, qps } = parseDnsperfVerbose(readFileSync(outFile, "utf8"));
  rmSync(outFile);
  const pauses = gcPauses(gcText).sort((a, b) => a - b);
  return {
    qps,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    p999: quantile(latencies, 0.999),
    max: latencies[latencies.length - 1] ?? NaN,
    run: (after.running - before.running) / wall,
    wait: (after.waiting - before.waiting) / wall,
    gc: pauses.length > 0 || gcText.includes("Scavenge") ? { count: pauses.length, median: quantile(pauses, 0.5), max: pauses[pauses.length - 1] ?? 0, total: pauses.reduce((a, b) => a + b, 0) } : undefined,
    over1ms: latencies.filter((l) => l > 1).length,
    client: (clientCpu * 1e9) / wall,
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pnt-dnsp99-tail-"));
  let etcd: EtcdServer | undefined;
  const children: ChildProcess[] = [];
  try {
    etcd = await startEtcd({ dataDir: join(dir, "etcd") });
    const writer = new EtcdDatastore({ endpoints: etcd.endpoints, prefix: "/podnet/" });
    await loadDnsBenchServices(writer.objects, SERVICES);
    await writer.close();
    const queryFile = join(dir, "queries.txt");
    const spell = (name: string) => (values.uncached ? [...name].map((c) => (Math.random() < 0.5 ? c.toUpperCase() : c)).join("") : name);
    const queryLines = values.uncached ? 400_000 : SERVICES;
    writeFileSync(queryFile, Array.from({ length: queryLines }, (_, i) => `${spell(`svc${(i * 7919) % SERVICES}.default.svc.cluster.local`)} A`).join("\n") + "\n");
    const hosts = join(dir, "hosts");
    writeFileSync(hosts, Array.from({ length: SERVICES }, (_, i) => `10.${96 + ((i + 1) >> 16)}.${((i + 1) >> 8) & 255}.${(i + 1) & 255} svc${i}.default.svc.cluster.local`).join("\n") + "\n");

    const wanted = values.variants?.split(",");
    const chosen = wanted ? VARIANTS.filter((v) => wanted.includes(v.name)) : VARIANTS.slice(0, 3);
    process.stdout.write(`load average ${readFileSync("/proc/loadavg", "utf8").trim()}; node ${process.version}; dnsperf -c 4 -T ${values.threads} -Q ${values.rate} -l ${values.seconds}\n`);
    const started: { v: Variant; child: ChildProcess; port: number; log: () => string }[] = [];
    for (const v of chosen) {
      const port = await freePort();
      let child: ChildProcess;
      // V8 prints --trace-gc with C stdio: into a file, read after each run.
      const logFile = join(dir, `${started.length}.log`);
      const logFd = openSync(logFile, "w");
      if (v.dnsmasq) {
        child = spawn("dnsmasq", ["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", `--addn-hosts=${hosts}`, "--cache-size=10000", "--bind-interfaces", "--listen-address=127.0.0.1", `--port=${port}`, "--user=root", "--pid-file="], { env, stdio: ["ignore", logFd, logFd] });
      } else {
        const metricsPort = await freePort();
        child = spawn(process.execPath, [...(v.node ?? DNS_NODE_FLAGS), v.name.startsWith("base") ? resolve(values.baseline as string) : CLI, "dns", "--etcd", etcd.endpoints.join(","), "--etcd-insecure", "--listen", `127.0.0.1:${port}`, "--upstream", "127.0.0.1:9", "--metrics", `127.0.0.1:${metricsPort}`, ...(v.args ?? [])], { env: { ...env, ...DNS_ENV }, cwd: REPO, stdio: ["ignore", logFd, logFd] });
        const t0 = performance.now();
        for (;;) {
          if (await fetch(`http://127.0.0.1:${metricsPort}/ready`).then((r) => r.status === 200, () => false)) break;
          if (performance.now() - t0 > 60_000 || child.exitCode !== null) throw new Error(`${v.name} never ready`);
          await sleep(100);
        }
      }
      closeSync(logFd);
      children.push(child);
      started.push({ v, child, port, log: () => readFileSync(logFile, "utf8") });
    }
    // Past the servers' start-up collections (the last 3 s after the watch is up); then one pass over
    // the names so that every answer is cached before anything is measured.
    await sleep(5000);
    if (!values.uncached) for (const s of started) spawnSync("dnsperf", ["-s", "127.0.0.1", "-p", String(s.port), "-d", queryFile, "-n", "1", "-c", "4"], { stdio: "ignore", env });
    const results = new Map<string, Run[]>();
    const modes = (values.modes as string).split(",");
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const s of started) {
        for (const mode of modes) {
          const r = await dnsperfRun(s.port, queryFile, join(dir, "out"), s.child.pid as number, mode, s.log);
          const key = `${s.v.name} | ${mode}`;
          results.set(key, [...(results.get(key) ?? []), r]);
          process.stderr.write(`${key}: ${JSON.stringify(r)}\n`);
        }
      }
    }
    const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : "—");
    const lines = ["| variant | CPUs | QPS | p50 ms | p99 ms | p99.9 ms | max ms | answers > 1 ms | main thread on CPU / waiting | dnsperf CPU | GCs: n, median / max / total ms | PSS MiB after |", "|---|---|---|---|---|---|---|---|---|---|---|---|"];
    for (const [key, runs] of results) {
      const name = key.split(" | ")[0];
      const s = started.find((x) => x.v.name === name);
      for (const r of runs) {
        lines.push(`| ${key} | ${f(r.qps, 0)} | ${f(r.p50, 3)} | ${f(r.p99, 3)} | ${f(r.p999, 3)} | ${f(r.max, 1)} | ${r.over1ms} | ${f(r.run * 100, 0)}% / ${f(r.wait * 100, 0)}% | ${f(r.client * 100, 0)}% | ${r.gc ? `${r.gc.count}, ${f(r.gc.median)} / ${f(r.gc.max)} / ${f(r.gc.total, 1)}` : ""} | ${s ? f(pss(s.child.pid as number), 1) : ""} |`);
      }
    }
    process.stdout.write(`${lines.join("\n")}\nload average at the end ${readFileSync("/proc/loadavg", "utf8").trim()}\n`);
  } finally {
    for (const c of children) if (c.exitCode === null && c.pid) c.kill("SIGTERM");
    await etcd?.stop();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}

await main();
