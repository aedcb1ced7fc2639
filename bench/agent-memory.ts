// The agent's memory with many services: `node --import tsx bench/agent-memory.ts [--services 10000]
// [--flags "a b;c d"]`.
//
// One private node namespace (an uplink veth holding the node IP, etcd on 127.0.0.1 inside it) and
// a real `podnet agent` whose services reconciler programs `ip podnet-svc` there. For each V8 flag
// set (default: AGENT_NODE_FLAGS, then the same without --lite-mode), side by side in one run:
//   1. the agent starts on an empty cluster, then N services × 5 endpoints are written (the
//      incremental path takes them as they arrive): peak RSS while it catches up, time to caught up;
//   2. RSS over the next 30 s (--settle): the last sample and the range;
//   3. SIGKILL, restart with the N services in etcd: time to the full sync, peak RSS, RSS over the next 30 s;
//   4. the agent's CPU time (user + sys, from /proc) over each phase.
// RSS is VmRSS sampled every 50 ms; the peak is VmHWM. NODE_EXTRA_CA_CERTS is removed from every
// child. The objects are the shapes bench/services.ts writes.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { AGENT_NODE_FLAGS } from "../src/agent/node-flags.ts";
import { EtcdDatastore } from "../src/datastore/etcd-datastore.ts";
import type { ObjectWrite } from "../src/datastore/objects.ts";
import { startEtcd } from "../src/supervise/etcd-server.ts";
import { benchService, benchSlice, runInBenchNode } from "./service-objects.ts";

const REPO = resolve(import.meta.dirname, "..");
const { values } = parseArgs({
  options: {
    services: { type: "string", default: "10000" },
    settle: { type: "string", default: "30" },
    flags: { type: "string" },
    inner: { type: "boolean", default: false },
    ns: { type: "string" },
  },
});
const COUNT = Number(values.services);
const SETTLE_SECONDS = Number(values.settle);
const FLAG_SETS: string[][] = values.flags !== undefined
  ? values.flags.split(";").map((set) => set.trim().split(/\s+/).filter((f) => f !== ""))
  : [[...AGENT_NODE_FLAGS], AGENT_NODE_FLAGS.filter((f) => f !== "--lite-mode")];
const NODE_IP = "192.168.78.11";
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8", env });

if (!values.inner) {
  const name = `pnb-mem-${Math.random().toString(36).slice(2, 6)}`;
  const argv = [process.execPath, "--import", "tsx", join(REPO, "bench/agent-memory.ts"), "--inner", "--ns", name, "--services", String(COUNT), "--settle", String(SETTLE_SECONDS), `--flags=${FLAG_SETS.map((s) => s.join(" ")).join(";")}`];
  process.exitCode = runInBenchNode(name, NODE_IP, argv, env);
} else {
  await inner();
}

async function inner(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pnb-mem-"));
  const etcd = await startEtcd({ dataDir: dir, name: "bench" });
  const datastore = new EtcdDatastore({ endpoints: [etcd.endpoints[0]!], prefix: "/podnet/" });
  const socket = join(dir, "agent.sock");
  const agents: ChildProcess[] = [];
  const startAgent = (flags: readonly string[]): ChildProcess => {
    const agent = spawn(process.execPath, [...flags, join(REPO, "bin/podnet.js"), "agent", "--name", "bench-node", "--node-ip", NODE_IP, "--etcd", etcd.endpoints[0]!, "--etcd-insecure",
      "--cni-conf-dir", join(dir, "cni"), "--ipam-data-dir", join(dir, "ipam"), "--ready-file", join(dir, "ready"), "--listen", socket, "--resync-interval-ms", "1000"],
      { stdio: ["ignore", "ignore", openSync(join(dir, "agent.log"), "a")], env });
    agents.push(agent);
    return agent;
  };
  const services = () => new Promise<{ revision: number; services: number; lastFullSync: { ms: number } | null } | undefined>((res) => {
    const req = request({ socketPath: socket, path: "/status", timeout: 5000, agent: false }, (r) => {
      let body = "";
      r.on("data", (c: Buffer) => (body += c.toString()));
      r.on("end", () => {
        try {
          res((JSON.parse(body) as { reconcilers?: { services?: never } }).reconcilers?.services);
        } catch {
          res(undefined);
        }
      });
    });
    req.on("error", () => res(undefined));
    req.end();
  });
  const proc = (pid: number) => {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    const ticks = Number(stat[11]) + Number(stat[12]);
    return { rssMiB: kib("VmRSS") / 1024, anonMiB: kib("RssAnon") / 1024, fileMiB: kib("RssFile") / 1024, hwmMiB: kib("VmHWM") / 1024, cpuS: ticks / 100 };
  };
  const resetHwm = (pid: number) => spawnSync("sh", ["-c", `echo 5 > /proc/${pid}/clear_refs`]);
  /** Waits until the agent's services reconciler reflects `revision` (and, if asked, a full sync of `count` services). */
  const waitFor = async (agent: ChildProcess, test: (s: NonNullable<Awaited<ReturnType<typeof services>>>) => boolean, timeoutMs: number) => {
    const started = performance.now();
    let peak = 0;
    for (;;) {
      peak = Math.max(peak, proc(agent.pid!).rssMiB);
      const s = await services();
      if (s && test(s)) return { ms: performance.now() - started, peakSampled: peak };
      if (performance.now() - started > timeoutMs) throw new Error(`agent did not get there in ${timeoutMs} ms: ${JSON.stringify(s)} (see ${dir}/agent.log)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  /** RSS over the next `seconds` (sampled every 250 ms): the last sample, and the range (a table read-back lands in it now and then). */
  const settle = async (agent: ChildProcess, seconds: number) => {
    let min = Infinity;
    let max = 0;
    const until = performance.now() + seconds * 1000;
    while (performance.now() < until) {
      await new Promise((r) => setTimeout(r, 250));
      const rss = proc(agent.pid!).rssMiB;
      min = Math.min(min, rss);
      max = Math.max(max, rss);
    }
    return { ...proc(agent.pid!), min, max };
  };
  const stop = async (agent: ChildProcess) => {
    if (agent.exitCode === null && agent.signalCode === null) {
      agent.kill("SIGKILL");
      await new Promise((r) => agent.once("exit", r));
    }
  };
  const lines: string[] = [];
  const note = (line: string) => {
    lines.push(line);
    console.log(line);
  };
  try {
    note(`# bench agent-memory — ${new Date().toISOString()}, node ${process.version}, ${COUNT} services × 5 endpoints, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
    note("\n| V8 flags | idle, no services: MiB (anon + file) | catch up with N new: s, CPU s, peak MiB | then: last MiB (anon + file), range over SETTLE s | restart full sync: s, CPU s, peak MiB | then: last MiB (anon + file), range |".replace("SETTLE", String(SETTLE_SECONDS)));
    note("|---|---|---|---|---|---|");
    for (const flags of FLAG_SETS) {
      // An empty cluster: delete what the previous flag set left.
      const existing = await datastore.objects.list("Service");
      for (let i = 0; i < existing.items.length; i += 50) {
        const writes: ObjectWrite[] = [];
        for (const s of existing.items.slice(i, i + 50)) {
          writes.push({ op: "delete", kind: "Service", namespace: s.metadata.namespace, name: s.metadata.name }, { op: "delete", kind: "EndpointSlice", namespace: s.metadata.namespace, name: `${s.metadata.name}-x` });
        }
        await datastore.objects.commit(writes);
      }
      let agent = startAgent(flags);
      await waitFor(agent, (s) => s.lastFullSync !== null, 60_000);
      const idle = await settle(agent, 3);
      const before = proc(agent.pid!);
      resetHwm(agent.pid!);
      let revision = 0;
      for (let i = 0; i < COUNT; i += 25) {
        const writes: ObjectWrite[] = [];
        for (let k = i; k < Math.min(COUNT, i + 25); k++) writes.push({ op: "create", object: benchService(k) }, { op: "create", object: benchSlice(k) });
        revision = await datastore.objects.commit(writes);
      }
      const caughtUp = await waitFor(agent, (s) => s.revision >= revision, 900_000);
      const afterCatchUp = proc(agent.pid!);
      const steady = await settle(agent, SETTLE_SECONDS);

      await stop(agent);
      agent = startAgent(flags);
      const restarted = await waitFor(agent, (s) => s.lastFullSync !== null && s.services >= COUNT, 900_000);
      const afterRestart = proc(agent.pid!);
      const steadyRestart = await settle(agent, SETTLE_SECONDS);
      const split = (p: ReturnType<typeof proc>) => `${p.rssMiB.toFixed(0)} (${p.anonMiB.toFixed(0)} + ${p.fileMiB.toFixed(0)})`;
      const range = (p: Awaited<ReturnType<typeof settle>>) => `${split(p)}, ${p.min.toFixed(0)}-${p.max.toFixed(0)}`;
      note(`| \`${flags.join(" ") || "(none)"}\` | ${split(idle)} | ${(caughtUp.ms / 1000).toFixed(1)} s, ${(afterCatchUp.cpuS - before.cpuS).toFixed(1)} s, ${afterCatchUp.hwmMiB.toFixed(0)} | ${range(steady)} | ${(restarted.ms / 1000).toFixed(1)} s, ${afterRestart.cpuS.toFixed(1)} s, ${afterRestart.hwmMiB.toFixed(0)} | ${range(steadyRestart)} |`);
      await stop(agent);
    }
  } finally {
    for (const agent of agents) await stop(agent);
    await datastore.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
