// Benchmark of the service proxy: `npm run bench:services`.
//
// Three copies of one small topology (client pod ─ node ─ server pod, /32 routes over veths, as
// podnet routes pods), each a set of private namespaces:
//   - "podnet": the node runs etcd (127.0.0.1) and a real `podnet agent`, whose services reconciler
//     programs the table from the Services and EndpointSlices this bench commits to etcd;
//   - "iptables": the node gets kube-proxy's iptables-mode layout (nat KUBE-SERVICES → KUBE-SVC-* →
//     KUBE-SEP-*, `-m statistic --probability`) for the same services, loaded with Debian's
//     iptables-legacy-restore (the legacy backend, as kube-proxy's iptables mode is mostly run);
//   - "plain": no service rules at all; the client connects to the server pod's IP (the floor).
// Measured, side by side in one run:
//   1. per-connection cost: new TCP connections per second to a ClusterIP (the podnet and iptables
//      nodes) or the pod IP (plain) at 100, 1,000, 10,000 and 30,000 services, 5 endpoints each.
//      Two measured services, each with the server as its single endpoint: s0 (10.96.0.10) and s2
//      (10.96.0.12). In the iptables layout a new connection walks KUBE-SERVICES rule by rule until
//      its ClusterIP matches, so where the measured service's rule sits is what is measured: s0's
//      rule is put in the MIDDLE of KUBE-SERVICES (where an average service sits: kube-proxy writes
//      the rules in its map's iteration order, so a given service is anywhere) and s2's at the END
//      (the worst case, as a service whose rule comes last); the iperf3 service s1 comes first.
//      podnet's dispatch is a verdict-map lookup, which has no order: both are measured there too,
//      to show that (s0 was created first, s2 third, with every other service between in neither
//      layout's order mattering);
//   2. one change with 10,000 services present: an EndpointSlice update committed to etcd → the
//      agent reports the kernel holds that revision, p50/p99 over 100 changes;
//   3. full sync: the agent SIGKILLed and restarted with 10,000 services in etcd → the table loaded;
//   4. the agent's RSS with 10,000 services;
//   5. iperf3 throughput through the ClusterIP against the pod IP.
// The measuring half runs inside the podnet node namespace (the script re-executes itself there).
// NODE_EXTRA_CA_CERTS is removed from every child's environment. The machine is shared (2 CPUs,
// other work running): compare within one run.

import { createHash } from "node:crypto";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { AGENT_NODE_FLAGS } from "../src/agent/node-flags.ts";
import { EtcdDatastore } from "../src/datastore/etcd-datastore.ts";
import type { ObjectWrite } from "../src/datastore/objects.ts";
import { withDefaults } from "../src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "../src/k8s/types.ts";
import { startEtcd } from "../src/supervise/etcd-server.ts";

const REPO = resolve(import.meta.dirname, "..");
const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "100,1000,10000,30000" },
    changes: { type: "string", default: "100" },
    seconds: { type: "string", default: "1" },
    // iptables-legacy-restore of 30,000 services × 5 endpoints (180,000 chains) takes minutes here.
    "iptables-max": { type: "string", default: "10000" },
    prefix: { type: "string" },
    inner: { type: "boolean", default: false },
  },
});
const SIZES = values.sizes.split(",").map(Number);
const CHANGES = Number(values.changes);
const SECONDS = Number(values.seconds);
// Thirteen interleaved rounds per size: with five, one busy second moved a median by 10-20%; with
// nine, the 30,000-against-100 comparison still moved by ±10% between runs (runs 10-13).
const ROUNDS = 13;
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;

const ROLES = ["podnet", "iptables", "plain"] as const;
type Role = (typeof ROLES)[number];
const NODE_IP = "192.168.77.11";
const GATEWAY = "10.244.1.1";
const CLIENT_IP = "10.244.1.2";
const SERVER_IP = "10.244.1.3";
const TARGET_IP = "10.96.0.10";
const IPERF_IP = "10.96.0.11";
const END_IP = "10.96.0.12";
/** The services whose only endpoint is the bench's server (s1 is iperf3's, on 5201). */
const MEASURED = 2;
const ns = (prefix: string, role: Role, part: "n" | "c" | "s") => `${prefix}-${role.slice(0, 2)}${part}`;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8", env, maxBuffer: 1 << 28 });

if (!values.inner) {
  const prefix = `pnb-svc-${Math.random().toString(36).slice(2, 6)}`;
  const made: string[] = [];
  try {
    for (const role of ROLES) {
      const [n, c, s] = (["n", "c", "s"] as const).map((p) => ns(prefix, role, p)) as [string, string, string];
      for (const name of [n, c, s]) {
        sh("ip", ["netns", "add", name]);
        made.push(name);
        sh("ip", ["-n", name, "link", "set", "lo", "up"]);
      }
      sh("ip", ["netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      sh("ip", ["-n", n, "link", "add", "uplink", "type", "veth", "peer", "name", "uplinkp"]);
      sh("ip", ["-n", n, "addr", "add", `${NODE_IP}/24`, "dev", "uplink"]);
      sh("ip", ["-n", n, "link", "set", "uplink", "up"]);
      sh("ip", ["-n", n, "link", "set", "uplinkp", "up"]);
      for (const [pod, podIp, host] of [[c, CLIENT_IP, "vc"], [s, SERVER_IP, "vs"]] as const) {
        sh("ip", ["-n", n, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", pod]);
        sh("ip", ["-n", n, "addr", "add", `${GATEWAY}/32`, "dev", host]);
        sh("ip", ["-n", n, "link", "set", host, "up"]);
        sh("ip", ["-n", n, "route", "add", `${podIp}/32`, "dev", host]);
        sh("ip", ["-n", pod, "addr", "add", `${podIp}/32`, "dev", "eth0"]);
        sh("ip", ["-n", pod, "link", "set", "eth0", "up"]);
        sh("ip", ["-n", pod, "route", "add", `${GATEWAY}/32`, "dev", "eth0"]);
        sh("ip", ["-n", pod, "route", "add", "default", "via", GATEWAY, "dev", "eth0"]);
      }
    }
    const run = spawnSync("ip", ["netns", "exec", ns(prefix, "podnet", "n"), process.execPath, "--import", "tsx", join(REPO, "bench/services.ts"), "--inner", "--prefix", prefix, "--sizes", values.sizes, "--changes", String(CHANGES), "--seconds", String(SECONDS), "--iptables-max", values["iptables-max"]], { stdio: "inherit", env });
    process.exitCode = run.status ?? 1;
  } finally {
    for (const name of made.reverse()) spawnSync("ip", ["netns", "del", name]);
  }
} else {
  await inner(values.prefix!);
}

// ---- objects

function serviceObject(i: number): Service {
  const clusterIP = i === 0 ? TARGET_IP : i === 1 ? IPERF_IP : i === MEASURED ? END_IP : `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  return withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name: `s${i}`, namespace: "default" }, spec: { clusterIP, selector: { app: `s${i}` }, ports: [{ port: 80, targetPort: i === 1 ? 5201 : 8080 }] } });
}
function endpointIps(i: number, generation = 0): string[] {
  if (i <= MEASURED) return [SERVER_IP];
  return [0, 1, 2, 3, 4].map((k) => {
    const n = i * 5 + k + generation;
    return `10.${200 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
  });
}
function sliceObject(i: number, generation = 0): EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { name: `s${i}-x`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } },
    addressType: "IPv4", ports: [{ name: "", protocol: "TCP", port: i === 1 ? 5201 : 8080 }],
    endpoints: endpointIps(i, generation).map((ip) => ({ addresses: [ip], nodeName: "bench-node", conditions: { ready: true, serving: true, terminating: false } })),
  };
}

// ---- kube-proxy iptables-mode layout (pkg/proxy/iptables/proxier.go), as iptables-restore input

function iptablesRestore(count: number): string {
  const lines = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]", ":KUBE-POSTROUTING - [0:0]"];
  const rules: string[] = [];
  // KUBE-SERVICES in its own list, ordered as the header says: s1 first, s0 in the middle, s2 last.
  const dispatch: string[] = [];
  let middle = "";
  let last = "";
  // kube-proxy names them by a hash of the service port (and endpoint): 16 characters of base32 of SHA-256.
  const chainId = (kind: string, text: string) => `${kind}-${createHash("sha256").update(text).digest("hex").slice(0, 16).toUpperCase()}`;
  for (let i = 0; i < count; i++) {
    const svc = serviceObject(i);
    const svcChain = chainId("KUBE-SVC", `s${i}tcp80`);
    lines.push(`:${svcChain} - [0:0]`);
    const dispatchRule = `-A KUBE-SERVICES -d ${svc.spec.clusterIP}/32 -p tcp -m comment --comment "default/s${i} cluster IP" -m tcp --dport 80 -j ${svcChain}`;
    if (i === 0) middle = dispatchRule;
    else if (i === MEASURED) last = dispatchRule;
    else dispatch.push(dispatchRule);
    const ips = endpointIps(i);
    rules.push(`-A ${svcChain} ! -s 10.244.0.0/16 -d ${svc.spec.clusterIP}/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ`);
    ips.forEach((ip, k) => {
      const sep = chainId("KUBE-SEP", `s${i}-${ip}`);
      lines.push(`:${sep} - [0:0]`);
      const left = ips.length - k;
      rules.push(left > 1 ? `-A ${svcChain} -m statistic --mode random --probability ${(1 / left).toFixed(11)} -j ${sep}` : `-A ${svcChain} -j ${sep}`);
      rules.push(`-A ${sep} -s ${ip}/32 -j KUBE-MARK-MASQ`);
      rules.push(`-A ${sep} -p tcp -m tcp -j DNAT --to-destination ${ip}:${i === 1 ? 5201 : 8080}`);
    });
  }
  dispatch.splice(Math.floor(count / 2) - 1, 0, middle);
  dispatch.push(last);
  rules.push(...dispatch);
  rules.push("-A PREROUTING -j KUBE-SERVICES", "-A OUTPUT -j KUBE-SERVICES", "-A POSTROUTING -j KUBE-POSTROUTING");
  rules.push("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000", "-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE");
  return [...lines, ...rules, "COMMIT", ""].join("\n");
}

// ---- measuring half, inside the podnet node namespace

async function inner(prefix: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pnb-svc-"));
  const children: ChildProcess[] = [];
  const results: string[] = [];
  const note = (line: string) => {
    results.push(line);
    console.log(line);
  };
  const etcd = await startEtcd({ dataDir: dir, name: "bench" });
  const datastore = new EtcdDatastore({ endpoints: [etcd.endpoints[0]!], prefix: "/podnet/" });
  const socket = join(dir, "agent.sock");
  let agent: ChildProcess | undefined;
  const startAgent = () => {
    agent = spawn(process.execPath, [...AGENT_NODE_FLAGS, join(REPO, "bin/podnet.js"), "agent", "--name", "bench-node", "--node-ip", NODE_IP, "--etcd", etcd.endpoints[0]!, "--etcd-insecure",
      "--cni-conf-dir", join(dir, "cni"), "--ipam-data-dir", join(dir, "ipam"), "--ready-file", join(dir, "ready"), "--listen", socket, "--resync-interval-ms", "1000"],
      { stdio: ["ignore", "ignore", openSync(join(dir, "agent.log"), "a")], env });
    children.push(agent);
  };
  type SyncStats = { ms: number; way?: string; scriptBytes?: number; phases?: Record<string, number>; appliedBy?: string; kernelAnsweredAt?: number };
  const status = () => new Promise<{ reconcilers?: { services?: { revision: number; services: number; lastFullSync: SyncStats | null; lastSync: SyncStats | null } } }>((res, rej) => {
    const req = request({ socketPath: socket, path: "/status", timeout: 5000, agent: false }, (r) => {
      let body = "";
      r.on("data", (c: Buffer) => (body += c.toString()));
      r.on("end", () => { try { res(JSON.parse(body)); } catch (e) { rej(e); } });
    });
    req.on("error", rej);
    req.end();
  });
  const svcStatus = async () => (await status().catch(() => ({}) as Awaited<ReturnType<typeof status>>)).reconcilers?.services;
  const waitRevision = async (revision: number, timeoutMs: number, pollMs = 2) => {
    const started = Date.now();
    for (;;) {
      const s = await svcStatus();
      if (s && s.revision >= revision) return;
      if (Date.now() - started > timeoutMs) throw new Error(`agent did not reach revision ${revision} in ${timeoutMs} ms: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };
  let written = 0;
  let revision = 0;
  const writeUpTo = async (count: number) => {
    for (let i = written; i < count; i += 25) {
      const writes: ObjectWrite[] = [];
      for (let k = i; k < Math.min(count, i + 25); k++) writes.push({ op: "create", object: serviceObject(k) }, { op: "create", object: sliceObject(k) });
      revision = await datastore.objects.commit(writes);
    }
    written = count;
  };
  const inNs = (role: Role, part: "n" | "c" | "s", argv: string[]) => ["ip", ["netns", "exec", ns(prefix, role, part), ...argv]] as const;

  // Servers: accept-and-close on 8080, iperf3 on 5201, in each server namespace.
  const serverJs = "require('net').createServer((s)=>{s.on('error',()=>{});s.destroy();}).listen(8080,'0.0.0.0')";
  for (const role of ROLES) {
    const [cmd, args] = inNs(role, "s", [process.execPath, "-e", serverJs]);
    children.push(spawn(cmd, args, { stdio: "ignore", env }));
    const [icmd, iargs] = inNs(role, "s", ["iperf3", "-s", "-p", "5201"]);
    children.push(spawn(icmd, iargs, { stdio: "ignore", env }));
  }
  await new Promise((r) => setTimeout(r, 500));

  const rateJs = (target: string, seconds: number) => `
    const net=require('net');let n=0,err=0;const end=Date.now()+${seconds}*1000;
    function one(){if(Date.now()>end)return;const s=net.connect({host:'${target}',port:${target === SERVER_IP ? 8080 : 80}});
      s.on('connect',()=>{n++;s.resetAndDestroy();one();});s.on('error',()=>{err++;one();});}
    for(let i=0;i<8;i++)one();setTimeout(()=>{console.log(JSON.stringify({rate:n/${seconds},err}));process.exit(0)},${seconds}*1000+200);`;
  const rate = (role: Role, target = role === "plain" ? SERVER_IP : TARGET_IP) => {
    const [cmd, args] = inNs(role, "c", [process.execPath, "-e", rateJs(target, SECONDS)]);
    return JSON.parse(sh(cmd, [...args]).trim()) as { rate: number; err: number };
  };
  const loadIptables = (count: number) => {
    const file = join(dir, "iptables.rules");
    writeFileSync(file, iptablesRestore(count));
    const started = performance.now();
    const [cmd, args] = inNs("iptables", "n", ["iptables-legacy-restore", file]);
    sh(cmd, [...args]);
    return performance.now() - started;
  };
  const rss = () => {
    const text = readFileSync(`/proc/${agent!.pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(text)![1]) / 1024;
  };

  try {
    note(`# bench:services — ${new Date().toISOString()}, node ${process.version}, ${sh("nft", ["--version"]).trim()}, ${sh("iptables-legacy", ["--version"]).trim()}, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
    await writeUpTo(SIZES[0]!);
    startAgent();
    await waitRevision(revision, 60_000, 20);

    note("\n| services | podnet conn/s, s0 | podnet conn/s, s2 | iptables conn/s, s0: middle of KUBE-SERVICES | iptables conn/s, s2: end of KUBE-SERVICES | plain routing conn/s | podnet sync after write (ms) | iptables-restore (ms) |");
    note("|---|---|---|---|---|---|---|---|");
    type Measured = "podnet" | "podnetEnd" | "iptables" | "iptablesEnd";
    const MEASURES: readonly { key: Measured; role: "podnet" | "iptables"; target: string }[] = [
      { key: "podnet", role: "podnet", target: TARGET_IP }, { key: "podnetEnd", role: "podnet", target: END_IP },
      { key: "iptables", role: "iptables", target: TARGET_IP }, { key: "iptablesEnd", role: "iptables", target: END_IP },
    ];
    const rates: Record<string, Record<Measured | "plain", number>> = {};
    /** Per size, the conntrack entries each node held before its tables were emptied for it. */
    const trackedBefore: string[] = [];
    /** Per size, each measured rate's median ratio to the plain-routing round beside it. */
    const toPlain: Record<string, Record<Measured, number>> = {};
    for (const size of SIZES) {
      const writeStarted = performance.now();
      await writeUpTo(size);
      const written = performance.now();
      await waitRevision(revision, 600_000, 20);
      const synced = performance.now();
      const withIptables = size <= Number(values["iptables-max"]);
      const iptMs = withIptables ? loadIptables(size) : NaN;
      // Every size starts from empty conntrack tables in the nodes: each earlier round left tens of
      // thousands of TIME_WAIT entries (120 s each), which a later size would pay for, not its rules.
      // And the agent gets a moment after its sync (it settles its memory a second after a burst).
      const tracked = ROLES.map((role) => {
        try {
          const [countCmd, countArgs] = inNs(role, "n", ["conntrack", "-C"]);
          const count = sh(countCmd, [...countArgs]).trim();
          const [flushCmd, flushArgs] = inNs(role, "n", ["conntrack", "-F"]);
          execFileSync(flushCmd, [...flushArgs], { stdio: "ignore", env });
          return `${role} ${count}`;
        } catch {
          return `${role} -`;
        }
      });
      await new Promise((r) => setTimeout(r, 2000));
      // Interleaved short rounds, each rate also as a ratio to the plain-routing round next to it,
      // and medians: the machine's load moves under a run far more than the rules change the rate.
      const rounds: Record<Measured | "plain", number[]> = { podnet: [], podnetEnd: [], iptables: [], iptablesEnd: [], plain: [] };
      const ratios: Record<Measured, number[]> = { podnet: [], podnetEnd: [], iptables: [], iptablesEnd: [] };
      for (let k = 0; k < ROUNDS; k++) {
        const plain = rate("plain").rate;
        rounds.plain.push(plain);
        for (const m of MEASURES) {
          if (m.role === "iptables" && !withIptables) continue;
          const got = rate(m.role, m.target).rate;
          rounds[m.key].push(got);
          ratios[m.key].push(got / plain);
        }
      }
      const median = (xs: number[]) => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);
      const r = { podnet: median(rounds.podnet), podnetEnd: median(rounds.podnetEnd), iptables: median(rounds.iptables), iptablesEnd: median(rounds.iptablesEnd), plain: median(rounds.plain) };
      rates[size] = r;
      toPlain[size] = { podnet: median(ratios.podnet), podnetEnd: median(ratios.podnetEnd), iptables: median(ratios.iptables), iptablesEnd: median(ratios.iptablesEnd) };
      const cell = (m: Measured) => `${r[m].toFixed(0)} (${median(ratios[m]).toFixed(2)}x plain)`;
      trackedBefore.push(`${size}: ${tracked.join(", ")}`);
      note(`| ${size} | ${cell("podnet")} | ${cell("podnetEnd")} | ${cell("iptables")} | ${cell("iptablesEnd")} | ${r.plain.toFixed(0)} | ${(synced - written).toFixed(0)} (write ${(written - writeStarted).toFixed(0)}) | ${iptMs.toFixed(0)} |`);

      if (size === 10_000) {
        const rssRightAfter = rss();
        // At rest: the agent settles its memory a second after a burst of syncs ends.
        await new Promise((r) => setTimeout(r, 3000));
        note(`\nagent RSS with 10,000 services × 5 endpoints: ${rss().toFixed(1)} MiB at rest (3 s after the catch-up sync; ${rssRightAfter.toFixed(1)} MiB right after it)`);
        // One change: an EndpointSlice moved to other endpoint IPs, datastore write → kernel.
        const latencies: number[] = [];
        const agentMs: number[] = [];
        const phases = new Map<string, number[]>();
        for (let k = 0; k < CHANGES; k++) {
          const i = MEASURED + 1 + Math.floor(Math.random() * (size - MEASURED - 1));
          const started = performance.now();
          const rev = await datastore.objects.commit([{ op: "update", object: sliceObject(i, k + 1) }]);
          await waitRevision(rev, 30_000);
          latencies.push(performance.now() - started);
          const own = (await svcStatus())?.lastSync;
          if (own?.ms !== undefined) agentMs.push(own.ms);
          for (const [phase, ms] of Object.entries(own?.phases ?? {})) phases.set(phase, [...(phases.get(phase) ?? []), ms]);
          await new Promise((r) => setTimeout(r, 20));
        }
        latencies.sort((a, b) => a - b);
        const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!;
        note(`one change with 10,000 services (slice update committed → kernel), ${CHANGES} changes: p50 ${pct(50).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms`);
        agentMs.sort((a, b) => a - b);
        note(`  of which the agent's own sync (compile, plan, encode, kernel, conntrack): p50 ${agentMs[Math.floor(agentMs.length / 2)] ?? NaN} ms, p99 ${agentMs[Math.min(agentMs.length - 1, Math.floor(0.99 * agentMs.length))] ?? NaN} ms`);
        const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
        note(`  the agent's phases, p50 ms: ${[...phases].map(([phase, xs]) => `${phase} ${p50(xs).toFixed(2)}`).join(", ")} (way: ${(await svcStatus())?.lastSync?.way ?? "?"})`);
        note(`agent RSS after the changes: ${rss().toFixed(1)} MiB`);
        // Full sync: SIGKILL and restart the agent; time to the table loaded.
        agent!.kill("SIGKILL");
        await new Promise((r) => agent!.once("exit", r));
        const restarted = performance.now();
        const restartedAt = Date.now();
        startAgent();
        for (;;) {
          if (performance.now() - restarted > 300_000) throw new Error("no full sync within 5 minutes of the restart (see the agent's log)");
          const s = await svcStatus();
          if (s?.lastFullSync && s.services >= size) {
            const f = s.lastFullSync;
            // The kernel's acknowledgement of the table's batch (wall clock, from whichever process sent it) is the end of the
            // full sync; the agent's own compile of the same objects (its incremental state) may end later.
            const inKernel = f.kernelAnsweredAt !== undefined ? `${f.kernelAnsweredAt - restartedAt} ms` : "?";
            note(`full sync after restart, 10,000 services × 5 endpoints in etcd → table in the kernel: ${inKernel} from agent start (written by the ${f.appliedBy ?? "?"}); the agent's own state ready ${(performance.now() - restarted).toFixed(0)} ms from start (reconciler ${f.ms} ms through ${f.way ?? "?"}, ${((f.scriptBytes ?? 0) / 1048576).toFixed(1)} MiB: ${Object.entries(f.phases ?? {}).map(([phase, ms]) => `${phase} ${ms.toFixed(0)}`).join(", ")} ms)`);
            break;
          }
          await new Promise((r) => setTimeout(r, 20));
        }
        const rssAfterRestart = rss();
        await new Promise((r) => setTimeout(r, 3000));
        note(`agent RSS after the restart's full sync: ${rss().toFixed(1)} MiB at rest (3 s later; ${rssAfterRestart.toFixed(1)} MiB right after it)\n`);

        // Throughput: iperf3 through the ClusterIP and to the pod IP, alternating.
        const iperf = (target: string) => {
          const [cmd, args] = inNs("podnet", "c", ["iperf3", "-c", target, "-p", target === SERVER_IP ? "5201" : "80", "-t", "4", "-J"]);
          return JSON.parse(sh(cmd, [...args])).end.sum_received.bits_per_second / 1e9;
        };
        // The agent reads its whole table back now and then (to repair rules deleted by hand: about
        // 20x its own duration apart, ~2 s of CPU at 10,000 services), the first time some 15-30 s
        // after a full sync. On two CPUs a read-back during a run slows that run's stream: the runs
        // start after the first read-back, and a pair during which one ran is reported and left out
        // of the clean ratio (this measures the datapath, not the agent's CPU use).
        const readBacks = async () => (await svcStatus() as { readBacks?: number } | undefined)?.readBacks ?? 0;
        const readBacksBefore = await readBacks();
        const waitStarted = performance.now();
        while ((await readBacks()) === readBacksBefore && performance.now() - waitStarted < 90_000) await new Promise((r) => setTimeout(r, 250));
        note(`first read-back after the restart ${((performance.now() - waitStarted) / 1000).toFixed(1)} s after the RSS reading (took ${((await svcStatus() as { lastVerifyMs?: number } | undefined)?.lastVerifyMs ?? NaN)} ms)`);
        // Six runs each, alternating, each ClusterIP run divided by the pod-IP run beside it: one
        // stream's rate moves by 10-20% between runs on this shared machine, more than the DNAT costs.
        const via: number[] = [];
        const direct: number[] = [];
        const pairRatios: number[] = [];
        const disturbed: boolean[] = [];
        const readBackCounts: string[] = [];
        for (let k = 0; k < 6; k++) {
          const before = await readBacks();
          via.push(iperf(IPERF_IP));
          direct.push(iperf(SERVER_IP));
          pairRatios.push(via.at(-1)! / direct.at(-1)!);
          const after = await readBacks();
          disturbed.push(after !== before);
          readBackCounts.push(`${before}→${after}`);
        }
        const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
        const middle = (xs: number[]) => { const sorted = [...xs].sort((a, b) => a - b); return (sorted[(sorted.length - 1) >> 1]! + sorted[sorted.length >> 1]!) / 2; };
        const clean = pairRatios.map((_, k) => k).filter((k) => !disturbed[k]);
        const cleanRatio = clean.length > 0 ? mean(clean.map((k) => via[k]!)) / mean(clean.map((k) => direct[k]!)) : NaN;
        note(`iperf3 (one TCP stream, 4 s, 6 runs each, alternating): ClusterIP ${mean(via).toFixed(2)} Gbit/s, pod IP ${mean(direct).toFixed(2)} Gbit/s (means), ratio of the means ${(mean(via) / mean(direct)).toFixed(3)}, median of the pairs' ratios ${middle(pairRatios).toFixed(3)} (${pairRatios.map((r, k) => `${r.toFixed(2)}${disturbed[k] ? "*" : ""}`).join(", ")}; * = the agent read its table back during the pair); pairs without a read-back: ${clean.length}, ratio of their means ${cleanRatio.toFixed(3)} (read-backs before→after each pair: ${readBackCounts.join(", ")})\n`);
      }
    }
    note(`conntrack entries in the nodes before each size's tables were emptied: ${trackedBefore.join("; ")}`);
    const first = rates[SIZES[0]!]!;
    const last = rates[SIZES.at(-1)!]!;
    note(`connection rate at ${SIZES.at(-1)} vs ${SIZES[0]} services: podnet s0 ${(last.podnet / first.podnet).toFixed(2)}x, s2 ${(last.podnetEnd / first.podnetEnd).toFixed(2)}x; iptables s0 (middle) ${(last.iptables / first.iptables).toFixed(2)}x, s2 (end) ${(last.iptablesEnd / first.iptablesEnd).toFixed(2)}x; plain ${(last.plain / first.plain).toFixed(2)}x`);
    // The same comparison through each size's ratios to plain routing: plain routing moves with the
    // machine's load between sizes (minutes apart), and the ratio takes that out.
    const firstRatio = toPlain[SIZES[0]!]!;
    const lastRatio = toPlain[SIZES.at(-1)!]!;
    note(`the same as ratios to plain routing (${SIZES.at(-1)} vs ${SIZES[0]}): podnet s0 ${(lastRatio.podnet / firstRatio.podnet).toFixed(2)}x, s2 ${(lastRatio.podnetEnd / firstRatio.podnetEnd).toFixed(2)}x; iptables s0 (middle) ${(lastRatio.iptables / firstRatio.iptables).toFixed(2)}x, s2 (end) ${(lastRatio.iptablesEnd / firstRatio.iptablesEnd).toFixed(2)}x`);
    const ipt = SIZES.filter((size) => size <= Number(values["iptables-max"])).at(-1);
    if (ipt !== undefined && ipt !== SIZES.at(-1)) {
      const at = rates[ipt]!;
      note(`iptables layout at ${ipt} vs ${SIZES[0]} services: s0 (middle) ${(at.iptables / first.iptables).toFixed(2)}x, s2 (end) ${(at.iptablesEnd / first.iptablesEnd).toFixed(2)}x; podnet s0 ${(at.podnet / first.podnet).toFixed(2)}x, s2 ${(at.podnetEnd / first.podnetEnd).toFixed(2)}x`);
    }
  } catch (error) {
    // The run's directory goes with it: show why the agent stopped answering first.
    const log = readFileSync(join(dir, "agent.log"), "utf8");
    console.error(`agent log (last 3,000 characters):\n${log.slice(-3000)}`);
    throw error;
  } finally {
    for (const child of children.reverse()) if (child.pid && child.exitCode === null) child.kill("SIGKILL");
    await datastore.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
