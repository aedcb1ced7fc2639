// Benchmark of `podnet dns` beside dnsmasq: `npm run bench:dns` (builds the CLI bundle first).
//
//   1. etcd gets 10,000 ClusterIP Services svcN.default and 10,000 EndpointSlices (one endpoint each);
//      `podnet dns` loads them through the watch; dnsmasq serves the same 10,000 names from a hosts
//      file (--addn-hosts, --no-resolv, --cache-size=10000). Both single processes, in one private
//      namespace, on 127.0.0.1 and 127.0.0.2.
//   2. dnsperf -c 4 -T 1 -Q 200000 -l 10 against each, alternating, twice (the NOTES baseline method):
//      QPS and average latency; then a -v run of each for the latency distribution (p50, p99), at
//      saturation and at a fixed 20,000 q/s.
//      Two CPU placements, side by side, for podnet dns and dnsmasq alike:
//      - pinned (the headline): the server's threads on CPU 1, dnsperf on CPU 0 (taskset). A cluster DNS
//        server has CPUs of its own and its clients are elsewhere; on a 2-CPU machine where dnsperf
//        shares the server's CPUs, a saturated server's thread waits runnable for a CPU (24% of the
//        time in the 05:23 quiet run) while dnsperf's threads run, and that wait, the scheduler's,
//        is most of the tail. dnsperf -T 1 (one sending and one receiving thread) on one CPU must
//        still saturate the server: the report gives dnsperf's own CPU share (from its rusage, through
//        a shell's cutime/cstime) beside the server's, so a client-bound run shows as such. (-T 2 on
//        the same CPU gave no more QPS and a worse p99: bench/RESULTS.md, "p99 with the CPUs placed".)
//      - shared: both free to run on either CPU (the scheduler decides), as before.
//      Pinning gives the server a CPU of its own only when nothing else runs there: other processes on
//      the machine still share CPU 1. So every latency run reports the server's threads' time on a CPU
//      and waiting for one (/proc/PID/task/*/schedstat): waiting is the neighbours' doing, not service time.
//      - isolated (the -v runs only; --no-isolated skips them): pinned, and the server's threads and
//        dnsperf under SCHED_FIFO (chrt -f 10), so that ordinary processes (other work on a shared
//        machine) cannot take their CPUs: the nearest a shared machine gets to a CPU of the server's
//        own. The kernel's RT throttling (sched_rt_runtime_us, 95%) still gives other tasks 50 ms
//        of each second on that CPU, which shows in the max, not the p99. 5 s per run.
//   3. Resident memory of podnet dns with the 10,000 + 10,000 loaded, before and after the load runs.
//   4. A Service committed to etcd → the time until a query answers it (20 times).
//   5. The ndots:5 search walk: glibc `getent ahosts` through a pod's resolv.conf, for external names
//      (served by a local upstream dnsmasq) and a short service name, with and without server-side
//      search-path answering: client queries and upstream queries per lookup.
//
// The measuring half runs inside the namespace (the script re-executes itself there); the outer half
// creates the namespace and /etc/netns/<ns>/resolv.conf and removes both however the run ends.
// NODE_EXTRA_CA_CERTS is removed from every child's environment. The machine is shared: compare the
// two servers within this run only.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import dgram from "node:dgram";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import * as dnsPacket from "dns-packet";
import { startEtcd, type EtcdServer } from "../src/supervise/etcd-server.ts";
import { EtcdDatastore } from "../src/datastore/etcd-datastore.ts";
import { clusterIPService } from "../src/dns/fixtures.ts";
import { ipOf, loadDnsBenchServices, parseDnsperfVerbose } from "./dns-cluster.ts";
import { DNS_ENV, DNS_NODE_FLAGS } from "../src/dns/node-flags.ts";

const REPO = resolve(import.meta.dirname, "..");
const { values } = parseArgs({
  options: {
    services: { type: "string", default: "10000" },
    seconds: { type: "string", default: "10" },
    /** Skip the "isolated" (SCHED_FIFO) latency runs. */
    "no-isolated": { type: "boolean", default: false },
    inner: { type: "string" },
  },
});
const SERVICES = Number(values.services);
const SECONDS = Number(values.seconds);
const ISOLATED = !values["no-isolated"];
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (values.inner === undefined) {
  // ---- outer half: the namespace and the resolv.conf glibc will read in it
  const ns = `pntbdns${process.pid.toString(16)}`;
  const etcNetns = "/etc/netns";
  const createdEtcNetns = !existsSync(etcNetns);
  let status = 1;
  try {
    execFileSync("ip", ["netns", "add", ns]);
    execFileSync("ip", ["-n", ns, "link", "set", "lo", "up"]);
    if (createdEtcNetns) mkdirSync(etcNetns);
    mkdirSync(join(etcNetns, ns));
    const run = spawnSync("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", join(REPO, "bench/dns.ts"), "--inner", ns, "--services", String(SERVICES), "--seconds", String(SECONDS), ...(ISOLATED ? [] : ["--no-isolated"])], { stdio: "inherit", env });
    status = run.status ?? 1;
  } finally {
    rmSync(join(etcNetns, ns), { recursive: true, force: true });
    if (createdEtcNetns && existsSync(etcNetns) && readdirSync(etcNetns).length === 0) rmdirSync(etcNetns);
    spawnSync("ip", ["netns", "del", ns]);
  }
  process.exit(status);
}

// ---- inner half: everything below runs inside the namespace
const nsName = values.inner;
const dir = mkdtempSync(join(tmpdir(), "pnt-bench-dns-"));
const children: ChildProcess[] = [];
let etcd: EtcdServer | undefined;
let writer: EtcdDatastore | undefined;

function start(cmd: string, args: string[], logName: string): ChildProcess {
  const child = spawn(cmd, args, { env: args.includes("dns") ? { ...env, ...DNS_ENV } : env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout?.on("data", (d: Buffer) => (log += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (log += d.toString()));
  // A child that outlives the run (killed at teardown) finds the directory gone: nothing to keep then.
  child.on("exit", () => existsSync(dir) && writeFileSync(join(dir, `${logName}.log`), log));
  children.push(child);
  return child;
}

/** Proportional set size and its anonymous part (/proc/pid/smaps_rollup), MiB: shared file pages counted by share. */
function pssMiB(pid: number): { pss: number; pssAnon: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? "NaN");
  return { pss: kb("Pss") / 1024, pssAnon: kb("Pss_Anon") / 1024 };
}

function rssMiB(pid: number, field = "VmRSS"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? "0");
  return kb / 1024;
}

async function query(port: number, host: string, name: string): Promise<{ rcode: string; answers: number }> {
  const socket = dgram.createSocket("udp4");
  try {
    return await new Promise((resolveReply, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply for ${name}`)), 2000);
      socket.on("message", (msg) => {
        clearTimeout(timer);
        const p = dnsPacket.decode(msg) as dnsPacket.DecodedPacket & { rcode: string };
        resolveReply({ rcode: p.rcode, answers: p.answers?.length ?? 0 });
      });
      socket.send(dnsPacket.encode({ type: "query", id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: "A" }] }), port, host);
    });
  } finally {
    socket.close();
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}; logs in ${dir}`);
}

interface PerfRun {
  qps: number;
  avgMs: number;
  lostPct: number;
  /** CPU time (user + system, every thread) the server spent per answered query, in microseconds. */
  cpuUsPerQuery: number;
  /** dnsperf's CPU time over the run's length: near 1.0 pinned (one CPU), the client is the limit. */
  clientCpuShare: number;
}

/** utime + stime of a process, all threads, in clock ticks (proc(5) /proc/pid/stat fields 14 and 15). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}
const TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

type Placement = "pinned" | "isolated" | "shared";
const SERVER_CPU = "1";
const CLIENT_CPU = "0";

/**
 * Set the CPUs of every thread of `pid` (taskset -a: the server's threads exist already); "isolated"
 * adds SCHED_FIFO (chrt), undone by placing it "shared" again.
 */
function place(pid: number, placement: Placement): void {
  execFileSync("taskset", ["-a", "-p", "-c", placement === "shared" ? "0,1" : SERVER_CPU, String(pid)], { stdio: "ignore" });
  execFileSync("chrt", ["-a", ...(placement === "isolated" ? ["-f", "-p", "10"] : ["-o", "-p", "0"]), String(pid)], { stdio: "ignore" });
}

/**
 * dnsperf, on CLIENT_CPU unless shared, through a shell that prints its own /proc/PID/stat to stderr
 * once dnsperf has been waited for: fields cutime and cstime are then dnsperf's CPU time (proc(5)).
 */
function dnsperfCommand(args: string[], placement: Placement): [string, string[]] {
  const cpus = placement === "shared" ? "0,1" : CLIENT_CPU;
  const rt = placement === "isolated" ? "chrt -f 10 " : "";
  return ["sh", ["-c", `taskset -c "$0" ${rt}dnsperf "$@"; s=$?; cat /proc/$$/stat >&2; exit $s`, cpus, "-T", "1", ...args]];
}

/** dnsperf's CPU seconds (user + system), from the shell's stat line in `stderr`. */
function clientCpuSeconds(stderr: string): number {
  const line = stderr.split("\n").find((l) => /^\d+ \(sh\) /.test(l));
  if (!line) return NaN;
  const fields = line.slice(line.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND;
}

function dnsperf(server: string, queryFile: string, pid: number, placement: Placement): PerfRun {
  place(pid, placement);
  const before = cpuTicks(pid);
  const [cmd, args] = dnsperfCommand(["-s", server, "-d", queryFile, "-c", "4", "-Q", "200000", "-l", String(SECONDS)], placement);
  const run = spawnSync(cmd, args, { encoding: "utf8", env });
  const cpuSeconds = (cpuTicks(pid) - before) / TICKS_PER_SECOND;
  place(pid, "shared");
  if (run.status !== 0) throw new Error(`dnsperf failed: ${run.stderr}`);
  const out = run.stdout;
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1]);
  const completed = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1]);
  const avg = Number(/Average Latency \(s\):\s+([\d.]+)/.exec(out)?.[1]);
  const lost = Number(/Queries lost:\s+\d+ \(([\d.]+)%\)/.exec(out)?.[1] ?? "0");
  return { qps, avgMs: avg * 1000, lostPct: lost, cpuUsPerQuery: (cpuSeconds * 1e6) / completed, clientCpuShare: clientCpuSeconds(run.stderr) / SECONDS };
}

/**
 * dnsperf -v prints one line per answer with its latency. They go to a file and are read afterwards,
 * so that parsing them does not take CPU from the server being measured.
 */
/**
 * The server's threads' time on a CPU and waiting on a run queue, summed, ns (/proc/PID/task/TID/schedstat,
 * Documentation/scheduler/sched-stats.rst). Summed because --workers 2 answers on worker threads;
 * a single-threaded server's other threads (V8's platform worker, libuv's pool) are near idle.
 */
function schedstat(pid: number): { running: number; waiting: number } {
  let running = 0;
  let waiting = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const [r, w] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").trim().split(" ").map(Number);
    running += r ?? NaN;
    waiting += w ?? NaN;
  }
  return { running, waiting };
}

interface LatencyRun {
  qps: number;
  p50: number;
  p99: number;
  n: number;
  /** Of the run's wall time, the share the server's threads spent runnable but not running (summed). */
  waitShare: number;
  /** ... and the share it spent on a CPU. */
  runShare: number;
  /** dnsperf's CPU time over the run's wall time. */
  clientCpuShare: number;
}

async function latencyRun(server: string, queryFile: string, pid: number, placement: Placement, rate = 200_000): Promise<LatencyRun> {
  const outFile = join(dir, "dnsperf-v.out");
  place(pid, placement);
  const before = schedstat(pid);
  const startedAt = performance.now();
  const fd = openSync(outFile, "w");
  const [cmd, args] = dnsperfCommand(["-s", server, "-d", queryFile, "-c", "4", "-Q", String(rate), "-l", String(Math.max(3, Math.floor(SECONDS / 2))), "-v"], placement);
  const child = spawn(cmd, args, { env, stdio: ["ignore", fd, "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  await new Promise((r) => child.on("close", r));
  const wallNs = (performance.now() - startedAt) * 1e6;
  const after = schedstat(pid);
  place(pid, "shared");
  closeSync(fd);
  const { latenciesMs: latencies, qps } = parseDnsperfVerbose(readFileSync(outFile, "utf8"));
  rmSync(outFile);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    qps,
    p50: at(0.5),
    p99: at(0.99),
    n: latencies.length,
    waitShare: (after.waiting - before.waiting) / wallNs,
    runShare: (after.running - before.running) / wallNs,
    clientCpuShare: (clientCpuSeconds(stderr) * 1e9) / wallNs,
  };
}

function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

async function metrics(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return res.text();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
}

const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });

async function main(): Promise<void> {
  // 1. the cluster in etcd, then the two servers
  etcd = await startEtcd({ dataDir: join(dir, "etcd") });
  writer = new EtcdDatastore({ endpoints: etcd.endpoints, prefix: "/podnet/" });
  const loadStarted = performance.now();
  await loadDnsBenchServices(writer.objects, SERVICES);
  const loadSeconds = (performance.now() - loadStarted) / 1000;

  // The upstream for external names: any name under example.test is 192.0.2.10; it logs queries.
  const upstreamLog = join(dir, "upstream-queries.log");
  start("dnsmasq", ["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.3", "--port=53", "--user=root", "--pid-file=", "--address=/example.test/192.0.2.10", "--address=/example.test/2001:db8::10", "--log-queries", `--log-facility=${upstreamLog}`], "upstream");

  const podnetStarted = performance.now();
  const podnet = start(process.execPath, [...DNS_NODE_FLAGS, join(REPO, "bin/podnet.js"), "dns", "--etcd", etcd.endpoints.join(","), "--etcd-insecure", "--listen", "127.0.0.1:53", "--upstream", "127.0.0.3:53", "--metrics", "127.0.0.1:9153"], "podnet-dns");
  await waitFor("podnet dns ready", async () => (await fetch("http://127.0.0.1:9153/ready")).status === 200);
  const syncSeconds = (performance.now() - podnetStarted) / 1000;

  // The same server on two threads sharing the UDP port (--workers 2), for the throughput comparison.
  const podnet2 = start(process.execPath, [...DNS_NODE_FLAGS, join(REPO, "bin/podnet.js"), "dns", "--etcd", etcd.endpoints.join(","), "--etcd-insecure", "--listen", "127.0.0.5:53", "--upstream", "127.0.0.3:53", "--metrics", "127.0.0.1:9155", "--workers", "2"], "podnet-dns-2");
  await waitFor("podnet dns --workers 2 ready", async () => (await fetch("http://127.0.0.1:9155/ready")).status === 200);
  // The same server moving UDP one datagram at a time through dgram (the design before batching).
  const podnetSingle = start(process.execPath, [...DNS_NODE_FLAGS, join(REPO, "bin/podnet.js"), "dns", "--etcd", etcd.endpoints.join(","), "--etcd-insecure", "--listen", "127.0.0.6:53", "--upstream", "127.0.0.3:53", "--metrics", "127.0.0.1:9156", "--no-batch"], "podnet-dns-single");
  await waitFor("podnet dns --no-batch ready", async () => (await fetch("http://127.0.0.1:9156/ready")).status === 200);
  // What Node itself costs before any DNS work: the same modules loaded, nothing else.
  const bare = spawn(process.execPath, ["--max-semi-space-size=1", "--input-type=module", "-e", "await import('etcd3'); await import('prom-client'); await import('dns-packet'); setTimeout(() => {}, 60000);"], { env, cwd: REPO, stdio: "ignore" });
  children.push(bare);

  const hosts = join(dir, "hosts");
  writeFileSync(hosts, Array.from({ length: SERVICES }, (_, i) => `${ipOf(96, i)} svc${i}.default.svc.cluster.local`).join("\n") + "\n");
  const dnsmasq = start("dnsmasq", ["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", `--addn-hosts=${hosts}`, "--cache-size=10000", "--bind-interfaces", "--listen-address=127.0.0.2", "--port=53", "--user=root", "--pid-file="], "dnsmasq");
  await waitFor("dnsmasq", async () => (await query(53, "127.0.0.2", "svc1.default.svc.cluster.local")).answers === 1);
  await waitFor("podnet dns answers", async () => (await query(53, "127.0.0.1", `svc${SERVICES - 1}.default.svc.cluster.local`)).answers === 1);
  await waitFor("podnet dns --workers 2 answers", async () => (await query(53, "127.0.0.5", `svc${SERVICES - 1}.default.svc.cluster.local`)).answers === 1);
  await waitFor("podnet dns --no-batch answers", async () => (await query(53, "127.0.0.6", `svc${SERVICES - 1}.default.svc.cluster.local`)).answers === 1);

  const queryFile = join(dir, "queries.txt");
  const order = Array.from({ length: SERVICES }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  writeFileSync(queryFile, order.map((i) => `svc${i}.default.svc.cluster.local A`).join("\n") + "\n");

  // 3a. memory with everything loaded, before any load
  await sleep(2000);
  const rssLoaded = rssMiB(podnet.pid as number);
  const anonLoaded = rssMiB(podnet.pid as number, "RssAnon");
  const fileLoaded = rssMiB(podnet.pid as number, "RssFile");
  const pssLoaded = pssMiB(podnet.pid as number);
  const heapText = await metrics(9153);
  const mib = (name: string) => metricSum(heapText, name) / 1048576;
  const heap = { used: mib("podnet_dns_nodejs_heap_size_used_bytes"), total: mib("podnet_dns_nodejs_heap_size_total_bytes"), external: mib("podnet_dns_nodejs_external_memory_bytes") };
  const rssDnsmasq = rssMiB(dnsmasq.pid as number);
  const rssTwo = rssMiB(podnet2.pid as number);
  const rssBare = rssMiB(bare.pid as number);
  const anonBare = rssMiB(bare.pid as number, "RssAnon");
  const fileBare = rssMiB(bare.pid as number, "RssFile");

  const loadAtStart = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  // 2. throughput, alternating
  // Server label, address, process, placement. --workers 2 is two threads: pinning it to one CPU
  // would measure something else, so it and --no-batch run shared only.
  const variants = [
    ["dnsmasq", "127.0.0.2", dnsmasq, "pinned"],
    ["podnet dns", "127.0.0.1", podnet, "pinned"],
    ["dnsmasq", "127.0.0.2", dnsmasq, "shared"],
    ["podnet dns", "127.0.0.1", podnet, "shared"],
    ["podnet dns --no-batch", "127.0.0.6", podnetSingle, "shared"],
    ["podnet dns --workers 2", "127.0.0.5", podnet2, "shared"],
  ] as const;
  const runs: { server: string; placement: Placement; run: PerfRun }[] = [];
  for (let round = 0; round < 2; round++) {
    for (const [server, addr, child, placement] of variants) runs.push({ server, placement, run: dnsperf(addr, queryFile, child.pid as number, placement) });
  }
  const latency = new Map<string, LatencyRun>();
  // "isolated" (-v runs only, ISOLATED): pinned, and the server and dnsperf under SCHED_FIFO, so
  // that other processes on this shared machine do not take their CPUs (see the header).
  const latencyVariants = [...(ISOLATED ? ([["dnsmasq", "127.0.0.2", dnsmasq, "isolated"], ["podnet dns", "127.0.0.1", podnet, "isolated"]] as const) : []), ...variants];
  for (const [server, addr, child, placement] of latencyVariants) latency.set(`${server}|${placement}`, await latencyRun(addr, queryFile, child.pid as number, placement));
  // The same at a fixed offered rate both servers keep up with: latency without a saturated queue
  // (at saturation dnsperf keeps up to 100 queries outstanding, so its latency is mostly
  // outstanding queries / throughput, Little's law, whatever the server's own service time).
  const FIXED_RATE = 20_000;
  const fixed = new Map<string, LatencyRun>();
  for (const [server, addr, child, placement] of latencyVariants.slice(0, latencyVariants.length - 2)) fixed.set(`${server}|${placement}`, await latencyRun(addr, queryFile, child.pid as number, placement, FIXED_RATE));
  const rssAfter = rssMiB(podnet.pid as number);
  const anonAfter = rssMiB(podnet.pid as number, "RssAnon");
  const pssAfter = pssMiB(podnet.pid as number);

  // 4. commit → resolvable
  const delays: number[] = [];
  for (let i = 0; i < 20; i++) {
    const name = `fresh${i}`;
    const t0 = performance.now();
    await writer.objects.commit([{ op: "create", object: clusterIPService("default", name, [ipOf(150, i)]) }]);
    for (;;) {
      if ((await query(53, "127.0.0.1", `${name}.default.svc.cluster.local`)).answers === 1) break;
      if (performance.now() - t0 > 10_000) throw new Error(`${name} never resolved`);
    }
    delays.push(performance.now() - t0);
  }

  // 5. the search walk through glibc, with and without server-side answering
  start(process.execPath, [...DNS_NODE_FLAGS, join(REPO, "bin/podnet.js"), "dns", "--etcd", etcd.endpoints.join(","), "--etcd-insecure", "--listen", "127.0.0.4:53", "--upstream", "127.0.0.3:53", "--metrics", "127.0.0.1:9154", "--no-autopath"], "podnet-dns-plain");
  await waitFor("second podnet dns ready", async () => (await fetch("http://127.0.0.1:9154/ready")).status === 200);
  const resolvConf = join("/etc/netns", nsName, "resolv.conf");
  const walk: { mode: string; kind: string; clientPerLookup: number; upstreamPerLookup: number; ok: number }[] = [];
  const LOOKUPS = 50;
  for (const [mode, addr, port] of [["with search-path answering", "127.0.0.1", 9153], ["without (CoreDNS default)", "127.0.0.4", 9154]] as const) {
    writeFileSync(resolvConf, `nameserver ${addr}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n`);
    for (const kind of ["external", "short service name"] as const) {
      const before = metricSum(await metrics(port), "podnet_dns_queries_total");
      const upstreamBefore = existsSync(upstreamLog) ? (readFileSync(upstreamLog, "utf8").match(/query\[/g) ?? []).length : 0;
      let ok = 0;
      for (let i = 0; i < LOOKUPS; i++) {
        // Fresh names each time, so no cache on either side hides a step.
        const name = kind === "external" ? `h${i}-${mode.length}.example.test` : `svc${(i * 37 + mode.length) % SERVICES}`;
        const r = spawnSync("ip", ["netns", "exec", nsName, "getent", "ahosts", name], { encoding: "utf8", env });
        if (r.status === 0 && r.stdout.trim() !== "") ok++;
      }
      await sleep(300);
      const after = metricSum(await metrics(port), "podnet_dns_queries_total");
      const upstreamAfter = (readFileSync(upstreamLog, "utf8").match(/query\[/g) ?? []).length;
      walk.push({ mode, kind, clientPerLookup: (after - before) / LOOKUPS, upstreamPerLookup: (upstreamAfter - upstreamBefore) / LOOKUPS, ok });
    }
  }

  // ---- report (markdown, for bench/RESULTS.md)
  const of = (server: string, placement: Placement) => runs.filter((r) => r.server === server && r.placement === placement).map((r) => r.run);
  const qps = (server: string, placement: Placement) => of(server, placement).map((r) => r.qps);
  const qpsMedian = (server: string, placement: Placement) => median(qps(server, placement));
  const cpu = (server: string, placement: Placement) => median(of(server, placement).map((r) => r.cpuUsPerQuery));
  const lat = (server: string, placement: Placement) => latency.get(`${server}|${placement}`) as LatencyRun;
  const fix = (server: string, placement: Placement) => fixed.get(`${server}|${placement}`) as LatencyRun;
  const pct = (x: number) => `${fmt(x * 100)}%`;
  const ratio = (placement: Placement) => qpsMedian("podnet dns", placement) / qpsMedian("dnsmasq", placement);
  const labels: Record<string, string> = {
    dnsmasq: "dnsmasq (hosts file, cache 10,000)",
    "podnet dns": "podnet dns",
    "podnet dns --no-batch": "podnet dns --no-batch (one datagram per callback)",
    "podnet dns --workers 2": "podnet dns --workers 2 (two threads, one process)",
  };
  const lines = [
    `Run ${new Date().toISOString()} (node ${process.version}, NODE_EXTRA_CA_CERTS unset), ${SERVICES.toLocaleString("en-US")} services + ${SERVICES.toLocaleString("en-US")} endpoints, dnsperf -c 4 -T 1 -Q 200000 -l ${SECONDS}, each server a single process, alternating twice; load average ${loadAtStart} at the start, ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")} at the end. Loaded into etcd in ${fmt(loadSeconds, 1)} s; podnet dns started and synced in ${fmt(syncSeconds, 1)} s.`,
    "",
    "CPUs: **pinned** = the server's threads on CPU 1, dnsperf on CPU 0 (a DNS server with a CPU of its own, its client elsewhere); **isolated** = pinned, and both under SCHED_FIFO so that other processes on this shared machine cannot take those CPUs (-v runs only); **shared** = both on either CPU, as the scheduler likes. In the -v runs, the server's threads' time on a CPU / runnable but waiting for one, summed, over the run's wall time (/proc/PID/task/*/schedstat; waiting is time no server code can remove: other processes held the CPU), and dnsperf's CPU time over the run (pinned, near 100% means the client was the limit).",
    "",
    "| server | CPUs | QPS (each run) | QPS median | CPU µs per query (median) | avg latency ms (median) | lost | p50 / p99 ms (-v run, QPS) | server threads on CPU / waiting (-v) | dnsperf CPU (-v) |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...(ISOLATED
      ? (["dnsmasq", "podnet dns"] as const).map((server) => {
          const l = lat(server, "isolated");
          return `| ${labels[server]} | isolated | — | — | — | — | — | ${fmt(l.p50, 3)} / ${fmt(l.p99, 3)} (${fmt(l.qps)}) | ${pct(l.runShare)} / ${pct(l.waitShare)} | ${pct(l.clientCpuShare)} |`;
        })
      : []),
    ...variants.map(([server, , , placement]) => {
      const l = lat(server, placement);
      return `| ${labels[server]} | ${placement} | ${qps(server, placement).map((q) => fmt(q)).join(", ")} | ${fmt(qpsMedian(server, placement))} | ${fmt(cpu(server, placement), 2)} | ${fmt(median(of(server, placement).map((r) => r.avgMs)), 3)} | ${fmt(Math.max(...of(server, placement).map((r) => r.lostPct)), 2)}% | ${fmt(l.p50, 3)} / ${fmt(l.p99, 3)} (${fmt(l.qps)}) | ${pct(l.runShare)} / ${pct(l.waitShare)} | ${pct(l.clientCpuShare)} |`;
    }),
    `| CoreDNS, published (coredns/deployment Scaling_CoreDNS.md, 2 vCPU, internal names) | | — | 33,669 | — | — | — | — | | |`,
    "",
    `- p99 at saturation, podnet dns / dnsmasq: ${ISOLATED ? `**${fmt(lat("podnet dns", "isolated").p99, 3)} / ${fmt(lat("dnsmasq", "isolated").p99, 3)} ms isolated**, ` : ""}**${fmt(lat("podnet dns", "pinned").p99, 3)} / ${fmt(lat("dnsmasq", "pinned").p99, 3)} ms pinned**, ${fmt(lat("podnet dns", "shared").p99, 3)} / ${fmt(lat("dnsmasq", "shared").p99, 3)} ms shared (p50 ${ISOLATED ? `${fmt(lat("podnet dns", "isolated").p50, 3)} / ${fmt(lat("dnsmasq", "isolated").p50, 3)} isolated, ` : ""}${fmt(lat("podnet dns", "pinned").p50, 3)} / ${fmt(lat("dnsmasq", "pinned").p50, 3)} pinned, ${fmt(lat("podnet dns", "shared").p50, 3)} / ${fmt(lat("dnsmasq", "shared").p50, 3)} shared).`,
    `- At a fixed ${fmt(FIXED_RATE)} queries/s (-Q ${FIXED_RATE}, not saturated), p50 / p99 ms, server threads on CPU / waiting: ${[...(ISOLATED ? (["isolated"] as const) : []), ...(["pinned", "shared"] as const)].map((placement) => `${placement}: dnsmasq ${fmt(fix("dnsmasq", placement).p50, 3)} / ${fmt(fix("dnsmasq", placement).p99, 3)} (${pct(fix("dnsmasq", placement).runShare)} / ${pct(fix("dnsmasq", placement).waitShare)}), podnet dns ${fmt(fix("podnet dns", placement).p50, 3)} / ${fmt(fix("podnet dns", placement).p99, 3)} (${pct(fix("podnet dns", placement).runShare)} / ${pct(fix("podnet dns", placement).waitShare)})`).join("; ")}.`,
    `- CPU per query podnet dns / dnsmasq (medians; independent of how the CPUs were split): **${fmt(cpu("podnet dns", "pinned") / cpu("dnsmasq", "pinned"), 2)}x** pinned, ${fmt(cpu("podnet dns", "shared") / cpu("dnsmasq", "shared"), 2)}x shared (--no-batch: ${fmt(cpu("podnet dns --no-batch", "shared") / cpu("dnsmasq", "shared"), 2)}x).`,
    `- QPS ratio podnet dns / dnsmasq (medians, this run): ${ISOLATED ? `**${fmt(lat("podnet dns", "isolated").qps / lat("dnsmasq", "isolated").qps, 2)}x isolated** (the -v runs; dnsperf's CPU ${pct(lat("podnet dns", "isolated").clientCpuShare)} / ${pct(lat("dnsmasq", "isolated").clientCpuShare)}), ` : ""}**${fmt(ratio("pinned"), 2)}x pinned**, **${fmt(ratio("shared"), 2)}x shared** with one thread, ${fmt(qpsMedian("podnet dns --workers 2", "shared") / qpsMedian("dnsmasq", "shared"), 2)}x with two, ${fmt(qpsMedian("podnet dns --no-batch", "shared") / qpsMedian("dnsmasq", "shared"), 2)}x with --no-batch; podnet dns / CoreDNS's published figure: ${fmt(qpsMedian("podnet dns", "pinned") / 33669, 2)}x pinned (one CPU), ${fmt(qpsMedian("podnet dns", "shared") / 33669, 2)}x shared (different machine; CoreDNS's 2 vCPU were its own).`,
    `- Resident memory of podnet dns with ${SERVICES.toLocaleString("en-US")} + ${SERVICES.toLocaleString("en-US")} loaded: PSS **${fmt(pssLoaded.pss, 1)} MiB** idle (Pss_Anon ${fmt(pssLoaded.pssAnon, 1)}), RSS ${fmt(rssLoaded, 1)} MiB (RssAnon ${fmt(anonLoaded, 1)} MiB, RssFile ${fmt(fileLoaded, 1)} MiB, the node binary's pages, shared by every Node process); after the load runs PSS ${fmt(pssAfter.pss, 1)} MiB, RSS ${fmt(rssAfter, 1)} MiB, RssAnon ${fmt(anonAfter, 1)} MiB (dnsmasq: ${fmt(rssDnsmasq, 1)} MiB; podnet dns --workers 2: ${fmt(rssTwo, 1)} MiB; bare Node 20 with etcd3, prom-client and dns-packet loaded and nothing else: ${fmt(rssBare, 1)} MiB, RssAnon ${fmt(anonBare, 1)} MiB, RssFile ${fmt(fileBare, 1)} MiB).`,
    `- V8 heap of podnet dns when idle: ${fmt(heap.used, 1)} MiB used of ${fmt(heap.total, 1)} MiB, external (buffers) ${fmt(heap.external, 1)} MiB.`,
    `- Service committed to etcd → first answer, 20 services: median **${fmt(median(delays), 1)} ms**, max ${fmt(Math.max(...delays), 1)} ms.`,
    "",
    "| ndots:5 walk through glibc getent ahosts (A + AAAA) | lookup | client queries per lookup | upstream queries per lookup | resolved |",
    "|---|---|---|---|---|",
    ...walk.map((w) => `| ${w.mode} | ${w.kind} | ${fmt(w.clientPerLookup, 1)} | ${fmt(w.upstreamPerLookup, 1)} | ${w.ok}/${LOOKUPS} |`),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  throw err;
} finally {
  for (const child of children) if (child.exitCode === null && child.pid) process.kill(child.pid, "SIGTERM");
  await writer?.close().catch(() => undefined);
  await etcd?.stop();
  await sleep(300);
  if (failed) {
    for (const name of readdirSync(dir).filter((f) => f.endsWith(".log"))) process.stderr.write(`--- ${name}\n${readFileSync(join(dir, name), "utf8").slice(-3000)}\n`);
  }
  rmSync(dir, { recursive: true, force: true });
}
