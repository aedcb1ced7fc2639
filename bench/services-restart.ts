// The full-sync restart path alone: `node --import tsx bench/services-restart.ts [--services 10000] [--restarts 3]`.
// etcd and a real `podnet agent` (AGENT_NODE_FLAGS) in a private namespace; N services × 5 endpoints
// written to etcd, then the agent SIGKILLed and restarted `--restarts` times: time from the agent's
// start to /status reporting the full sync at the data's revision, the reconciler's phases, the
// agent log's timestamps (start-up steps), and the agent's RSS right after the sync and 10 s later.
// A smaller, quicker driver than bench/services.ts (no connection rates, no iptables layout).
// NODE_EXTRA_CA_CERTS is removed from every child's environment.

import { spawn, type ChildProcess } from "node:child_process";
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
const { values } = parseArgs({ options: { services: { type: "string", default: "10000" }, restarts: { type: "string", default: "3" }, inner: { type: "boolean", default: false }, settle: { type: "string", default: "10" }, "agent-flags": { type: "string" }, alternate: { type: "string" } } });
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const NODE_IP = "192.168.77.11";
// --agent-flags "..." replaces AGENT_NODE_FLAGS (to compare V8 flag sets side by side).
const AGENT_FLAGS = values["agent-flags"] !== undefined ? values["agent-flags"].split(" ").filter(Boolean) : AGENT_NODE_FLAGS;

if (!values.inner) {
  const name = `pnb-svcsync-${Math.random().toString(36).slice(2, 6)}`;
  const argv = [process.execPath, "--import", "tsx", join(REPO, "bench/services-restart.ts"), "--inner", "--services", values.services, "--restarts", values.restarts, "--settle", values.settle, ...(values["agent-flags"] !== undefined ? [`--agent-flags=${values["agent-flags"]}`] : []), ...(values.alternate !== undefined ? [`--alternate=${values.alternate}`] : [])];
  process.exitCode = runInBenchNode(name, NODE_IP, argv, env);
} else {
  await inner();
}

async function inner(): Promise<void> {
  const count = Number(values.services);
  const dir = mkdtempSync(join(tmpdir(), "pnb-svcsync-"));
  const etcd = await startEtcd({ dataDir: dir, name: "bench" });
  const datastore = new EtcdDatastore({ endpoints: [etcd.endpoints[0]!], prefix: "/podnet/" });
  const socket = join(dir, "agent.sock");
  let agent: ChildProcess | undefined;
  const logFile = join(dir, "agent.log");
  // --alternate PATH: every other restart runs that podnet (bin/podnet.js of another checkout), side by side.
  const startAgent = (script: string) => {
    agent = spawn(process.execPath, [...AGENT_FLAGS, script, "agent", "--name", "bench-node", "--node-ip", NODE_IP, "--etcd", etcd.endpoints[0]!, "--etcd-insecure",
      "--cni-conf-dir", join(dir, "cni"), "--ipam-data-dir", join(dir, "ipam"), "--ready-file", join(dir, "ready"), "--listen", socket, "--resync-interval-ms", "1000"],
      { stdio: ["ignore", "ignore", openSync(logFile, "a")], env });
  };
  type Svc = { revision: number; services: number; lastFullSync: { ms: number; phases?: Record<string, number>; startedAtMs?: number; appliedBy?: string; kernelAnsweredAt?: number; startupChild?: Record<string, number> } | null };
  const svcStatus = () => new Promise<Svc | undefined>((res) => {
    const req = request({ socketPath: socket, path: "/status", timeout: 5000, agent: false }, (r) => {
      let body = "";
      r.on("data", (c: Buffer) => (body += c.toString()));
      r.on("end", () => { try { res(JSON.parse(body).reconcilers?.services); } catch { res(undefined); } });
    });
    req.on("error", () => res(undefined));
    req.end();
  });
  const heap = () => new Promise<string>((res) => {
    const req = request({ socketPath: socket, path: "/metrics", timeout: 5000, agent: false }, (r) => {
      let body = "";
      r.on("data", (c: Buffer) => (body += c.toString()));
      r.on("end", () => {
        const get = (name: string) => Number(new RegExp(`^podnet_agent_${name}(?:\\{[^}]*\\})? (\\S+)`, "m").exec(body)?.[1] ?? NaN) / 1048576;
        res(`heap used ${get("nodejs_heap_size_used_bytes").toFixed(1)} / total ${get("nodejs_heap_size_total_bytes").toFixed(1)} MiB, external ${get("nodejs_external_memory_bytes").toFixed(1)} MiB`);
      });
    });
    req.on("error", () => res("no metrics"));
    req.end();
  });
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent!.pid}/status`, "utf8"))![1]) / 1024;
  const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  try {
    let revision = 0;
    for (let i = 0; i < count; i += 25) {
      const writes: ObjectWrite[] = [];
      for (let k = i; k < Math.min(count, i + 25); k++) writes.push({ op: "create", object: benchService(k) }, { op: "create", object: benchSlice(k) });
      revision = await datastore.objects.commit(writes);
    }
    for (let round = 0; round <= Number(values.restarts); round++) {
      const logStart = (() => { try { return readFileSync(logFile, "utf8").length; } catch { return 0; } })();
      const wall0 = Date.now();
      const started = performance.now();
      const script = values.alternate !== undefined && round % 2 === 1 ? values.alternate : join(REPO, "bin/podnet.js");
      startAgent(script);
      let s: Svc | undefined;
      for (;;) {
        if (performance.now() - started > 120_000) throw new Error("no full sync in 120 s");
        s = await svcStatus();
        if (s?.lastFullSync && s.revision >= revision) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      const total = performance.now() - started;
      const rssSynced = rss();
      await new Promise((r) => setTimeout(r, Number(values.settle) * 1000));
      const rssLater = rss();
      const heapLater = await heap();
      const later = (await svcStatus()) as { readBacks?: number; lastVerifyMs?: number } | undefined;
      const log = readFileSync(logFile, "utf8").slice(logStart).split("\n").filter(Boolean).map((line) => {
        const at = Date.parse(line.slice(0, 24));
        return Number.isNaN(at) ? line : `+${at - wall0} ms ${line.slice(25, 200)}`;
      });
      const kernelAt = s!.lastFullSync!.kernelAnsweredAt;
      console.log(`${round === 0 ? "first start (empty kernel)" : `restart ${round}`} [${script}]: table in the kernel ${kernelAt !== undefined ? `${kernelAt - wall0} ms` : "?"} after the agent's start (written by the ${s!.lastFullSync!.appliedBy ?? "?"}${s!.lastFullSync!.startupChild ? ` ${JSON.stringify(s!.lastFullSync!.startupChild)}` : ""}), ${total.toFixed(0)} ms to the agent's own full sync (load ${load()}); reconciler ${s!.lastFullSync!.ms} ms (started ${s!.lastFullSync!.startedAtMs ?? "?"} ms after the agent's process): ${JSON.stringify(s!.lastFullSync!.phases)}; RSS ${rssSynced.toFixed(1)} MiB right after, ${rssLater.toFixed(1)} MiB ${values.settle} s later (${heapLater}; read-backs of the table by then ${later?.readBacks ?? "?"}, the last one ${later?.lastVerifyMs ?? "?"} ms)`);
      for (const line of log) console.log(`    ${line}`);
      agent!.kill("SIGKILL");
      await new Promise((r) => agent!.once("exit", r));
    }
  } finally {
    if (agent?.exitCode === null) agent.kill("SIGKILL");
    await datastore.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
