// Benchmark of the node agent: `node --import tsx bench/agent.ts [--nodes 1000] [--changes 100]`.
//
//   1. 999 peer node records written to etcd → time until all 999 routes are in the agent's kernel;
//   2. one peer's node IP changed, 100 times → time until the kernel route follows (p50, p99);
//   3. the agent's resident memory.
//
// Each mode runs in its own fresh namespaces, one after the other in one run (`--modes plain,tls`, the
// default): "plain" is etcd over http without auth; "tls" is etcd as the lab runs it (mutual TLS, client
// certificates required, auth on with the agent's least-privilege role, the user from the certificate's CN).
//
// Layout: a control-plane namespace running etcd (192.168.255.254) and one node namespace
// (192.168.0.1/16) running a real `podnet agent`, joined by a veth pair. The peers exist only as records:
// their node IPs are on the node's /16, so routes via them are valid without any host behind them.
// The measuring half of this script runs inside the control-plane namespace (it re-executes itself
// there) because that is where etcd is reachable. Nothing is changed in the root namespace.
// NODE_EXTRA_CA_CERTS is removed from the agent's environment (it only slows Node's start-up here).

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, openSync, closeSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Etcd3 } from "etcd3";
import { startEtcd, stopProcess, type EtcdServerTls } from "../src/supervise/etcd-server.ts";
import { createCertificateAuthority, issueCertificate } from "../src/supervise/certs.ts";
import { enableEtcdAuth } from "../src/supervise/etcd-auth.ts";
import { etcd3Options } from "../src/datastore/etcd-client-options.ts";
import { nodeAgentRole, nodeAgentUser } from "../src/datastore/etcd-roles.ts";
import { addToIp, formatIp, parseIp } from "../src/net/address.ts";
import { parseClusterCidr, subnetAt } from "../src/datastore/subnets.ts";
import { NetlinkSocket } from "../src/kernel/netlink/socket.ts";
import { listRoutes, RT_TABLE_MAIN } from "../src/kernel/route.ts";
import { PODNET_ROUTE_PROTOCOL } from "../src/agent/route-plan.ts";
import { AGENT_NODE_FLAGS } from "../src/agent/node-flags.ts";

const REPO = resolve(import.meta.dirname, "..");
const CP_IP = "192.168.255.254";
const NODE_IP = "192.168.0.1";
const CLUSTER_CIDR = "10.0.0.0/8";
const PREFIX = "/podnet/";

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "1000" },
    changes: { type: "string", default: "100" },
    inner: { type: "string" },
    modes: { type: "string", default: "plain,tls" },
    tls: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const nodeCount = Number(values.nodes);
const changeCount = Number(values.changes);

if (values.inner) {
  const [cpNs, nodeNs] = values.inner.split(",") as [string, string];
  process.exitCode = await measure(cpNs, nodeNs, values.tls);
} else {
  const modes = values.modes.split(",");
  for (const mode of modes) if (mode !== "plain" && mode !== "tls") throw new Error(`--modes: plain and/or tls, got ${JSON.stringify(mode)}`);
  let code = 0;
  for (const mode of modes) code ||= await outer(mode === "tls");
  process.exitCode = code;
}

async function outer(tls: boolean): Promise<number> {
  const id = Math.random().toString(36).slice(2, 7);
  const cpNs = `pnt-agb-${id}-cp`;
  const nodeNs = `pnt-agb-${id}-n`;
  const created: string[] = [];
  const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "inherit"] });
  try {
    for (const ns of [cpNs, nodeNs]) {
      ip("netns", "add", ns);
      created.push(ns);
      ip("-n", ns, "link", "set", "lo", "up");
    }
    ip("-n", cpNs, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nodeNs);
    ip("-n", cpNs, "addr", "add", `${CP_IP}/16`, "dev", "eth0");
    ip("-n", nodeNs, "addr", "add", `${NODE_IP}/16`, "dev", "eth0");
    ip("-n", cpNs, "link", "set", "eth0", "up");
    ip("-n", nodeNs, "link", "set", "eth0", "up");
    const child = spawn(
      "ip",
      ["netns", "exec", cpNs, process.execPath, "--import", "tsx", join(REPO, "bench/agent.ts"), "--inner", `${cpNs},${nodeNs}`, "--nodes", String(nodeCount), "--changes", String(changeCount), ...(values.json ? ["--json"] : []), ...(tls ? ["--tls"] : [])],
      { stdio: "inherit" },
    );
    return await new Promise<number>((resolvePromise) => child.on("exit", (code) => resolvePromise(code ?? 1)));
  } finally {
    for (const ns of created.reverse()) {
      try {
        ip("netns", "del", ns);
      } catch {
        // Already gone.
      }
    }
  }
}

async function measure(cpNs: string, nodeNs: string, tls: boolean): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "pnt-agent-bench-"));
  const pki = tls ? await makePki(join(dir, "pki")) : undefined;
  const etcd = await startEtcd({ dataDir: join(dir, "etcd"), name: "bench", host: CP_IP, netns: cpNs, clientPort: 2379, ...(pki ? { tls: pki.server } : {}) });
  if (pki) await enableEtcdAuth({ endpoint: etcd.endpoints[0]!, tls: pki.root, netns: cpNs }, [nodeAgentRole(PREFIX, "self")]);
  const client = new Etcd3(etcd3Options({ endpoints: etcd.endpoints, ...(pki ? { tls: pki.root } : {}) }));
  const etcdFlags = pki
    ? ["--etcd-cafile", pki.agent.caFile, "--etcd-certfile", pki.agent.certFile, "--etcd-keyfile", pki.agent.keyFile]
    : ["--etcd-insecure"];
  const nl = NetlinkSocket.open(`/run/netns/${nodeNs}`);
  const ownRoutes = () => listRoutes(nl, { family: 4, table: RT_TABLE_MAIN, protocol: PODNET_ROUTE_PROTOCOL });
  let agent: ChildProcess | undefined;
  const socket = join(dir, "agent.sock");
  try {
    await client.put(`${PREFIX}config`).value(JSON.stringify({ clusterCidr: CLUSTER_CIDR, subnetLength: 24, backend: "host-gw", nodeLeaseTtlSeconds: 60 }));
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const logFd = openSync(join(dir, "agent.log"), "a");
    agent = spawn(
      "ip",
      ["netns", "exec", nodeNs, process.execPath, ...AGENT_NODE_FLAGS, join(REPO, "bin/podnet.js"), "agent", "--name", "self", "--node-ip", NODE_IP,
        "--etcd", etcd.endpoints.join(","), ...etcdFlags, "--cni-conf-dir", join(dir, "cni"), "--ipam-data-dir", join(dir, "ipam"), "--ready-file", join(dir, "agent.ready"), "--listen", socket],
      { stdio: ["ignore", logFd, logFd], env },
    );
    closeSync(logFd);
    const agentStart = performance.now();
    await until(async () => (await status(socket)).ready === true, 30_000, () => readFileSync(join(dir, "agent.log"), "utf8"));
    const agentReadyMs = performance.now() - agentStart;

    // 1. Peers appear: records written in transactions of up to 42 nodes (3 keys each, under etcd's 128 ops).
    const lease = client.lease(60);
    const leaseId = await lease.grant();
    const cluster = parseClusterCidr(CLUSTER_CIDR);
    const peers = Array.from({ length: nodeCount - 1 }, (_, i) => ({
      name: `peer-${i}`,
      subnet: subnetAt(cluster, 24, i + 1),
      nodeIp: formatIp(addToIp(parseIp("192.168.1.0"), BigInt(i))),
    }));
    const t0 = performance.now();
    for (let i = 0; i < peers.length; i += 42) {
      const ops = peers.slice(i, i + 42).flatMap((p) => [
        client.put(`${PREFIX}subnets/${p.subnet.replace("/", "-")}`).value(p.name),
        client.put(`${PREFIX}nodes/${p.name}`).value(JSON.stringify({ name: p.name, nodeIp: p.nodeIp, podSubnet: p.subnet, backendData: {}, phase: "active" })),
        client.put(`${PREFIX}alive/${p.name}`).value(leaseId).lease(leaseId),
      ]);
      await client.if(`${PREFIX}config`, "Create", ">", 0).then(...ops).commit();
    }
    const written = performance.now() - t0;
    await until(() => ownRoutes().length === peers.length, 60_000, () => `${ownRoutes().length} routes`, 2);
    const allRoutesMs = performance.now() - t0;

    // 2. One change at a time: a peer's node IP moves; wait until the kernel route's gateway follows.
    const latencies: number[] = [];
    for (let c = 0; c < changeCount; c++) {
      const peer = peers[(c * 37) % peers.length]!;
      const newIp = formatIp(addToIp(parseIp("192.168.128.0"), BigInt(c)));
      const start = performance.now();
      await client.put(`${PREFIX}nodes/${peer.name}`).value(JSON.stringify({ name: peer.name, nodeIp: newIp, podSubnet: peer.subnet, backendData: {}, phase: "active" }));
      await until(() => ownRoutes().some((r) => r.dst === peer.subnet && r.gw === newIp), 10_000, () => `route ${peer.subnet} not via ${newIp}`, 1);
      latencies.push(performance.now() - start);
      peer.nodeIp = newIp;
    }
    latencies.sort((a, b) => a - b);

    // 3. Memory, after all of the above, with the agent's own view of where it goes.
    const metricsText = await httpGet(socket, "/metrics");
    const metric = (name: string, labels = "") => {
      const line = metricsText.split("\n").find((l) => l.startsWith(`podnet_agent_${name}${labels} `));
      return line ? Number(line.split(" ")[1]) / 1048576 : NaN;
    };
    const heap = {
      heapUsedMiB: round(metric("nodejs_heap_size_used_bytes")),
      heapTotalMiB: round(metric("nodejs_heap_size_total_bytes")),
      externalMiB: round(metric("nodejs_external_memory_bytes")),
    };
    if (process.env.PODNET_BENCH_HEAP_SPACES) process.stdout.write(metricsText.split("\n").filter((l) => (l.startsWith("podnet_agent_nodejs_heap_space_size_") || /sync_duration_seconds_(sum|count)|route_changes_total/.test(l))).join("\n") + "\n");
    const procStatus = readFileSync(`/proc/${agent.pid}/status`, "utf8");
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(procStatus)?.[1] ?? NaN);
    const result = {
      mode: tls ? "tls" : "plain",
      nodes: nodeCount,
      routes: peers.length,
      agentStartToReadyMs: round(agentReadyMs),
      recordsWrittenMs: round(written),
      recordsToAllRoutesMs: round(allRoutesMs),
      changeLatencyMs: { p50: round(percentile(latencies, 0.5)), p99: round(percentile(latencies, 0.99)), max: round(latencies.at(-1) ?? NaN), samples: latencies.length },
      agentRssMiB: round(kib("VmRSS") / 1024),
      agentPeakRssMiB: round(kib("VmHWM") / 1024),
      // RSS = private memory + pages of files (mostly /usr/bin/node itself, shared with every Node
      // process); the file part varies with what else has the node binary in the page cache.
      agentRssAnonMiB: round(kib("RssAnon") / 1024),
      agentRssFileMiB: round(kib("RssFile") / 1024),
      ...heap,
    };
    if (process.env.PODNET_BENCH_AGENT_LOG) process.stdout.write(readFileSync(join(dir, "agent.log"), "utf8"));
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      process.stdout.write(
        [
          `podnet agent benchmark (${nodeCount} nodes, etcd ${tls ? "with mutual TLS and auth" : "plain http"}; NODE_EXTRA_CA_CERTS unset for the agent)`,
          `  agent start → ready (no peers):            ${result.agentStartToReadyMs} ms`,
          `  ${peers.length} records written to etcd in:           ${result.recordsWrittenMs} ms`,
          `  first write → all ${peers.length} routes in the kernel: ${result.recordsToAllRoutesMs} ms   (target < 1000)`,
          `  one change → kernel, p50 / p99 / max:       ${result.changeLatencyMs.p50} / ${result.changeLatencyMs.p99} / ${result.changeLatencyMs.max} ms over ${latencies.length}   (target p50 < 100)`,
          `  agent RSS now / peak:                       ${result.agentRssMiB} / ${result.agentPeakRssMiB} MiB   (target < 80)`,
          `  of which private (anon) / file-backed:      ${result.agentRssAnonMiB} / ${result.agentRssFileMiB} MiB`,
          `  agent V8 heap used / total, external:       ${heap.heapUsedMiB} / ${heap.heapTotalMiB}, ${heap.externalMiB} MiB`,
          "",
        ].join("\n"),
      );
    }
    lease.release();
    return 0;
  } catch (err) {
    const tail = (path: string) => readFileSync(path, "utf8").split("\n").slice(-8).join("\n");
    process.stderr.write(`bench failed: ${(err as Error).stack}\n--- etcd log:\n${tail(join(dir, "etcd", "bench.log"))}\n--- agent log:\n${tail(join(dir, "agent.log"))}\n`);
    return 1;
  } finally {
    if (agent?.pid) await stopProcess(agent.pid, { child: agent, signal: "SIGKILL" });
    nl.close();
    client.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** etcd's certificates, an administrator's (the bench writes the peers) and the agent's (its own role). */
async function makePki(dir: string): Promise<{ server: EtcdServerTls; root: { caFile: string; certFile: string; keyFile: string }; agent: { caFile: string; certFile: string; keyFile: string } }> {
  const ca = await createCertificateAuthority(dir, "podnet-bench-ca");
  const server = await issueCertificate(ca, { name: "server", commonName: "etcd", usage: "peer", ips: [CP_IP] });
  const root = await issueCertificate(ca, { name: "root", commonName: "root", usage: "client" });
  const agent = await issueCertificate(ca, { name: "agent", commonName: nodeAgentUser("self"), usage: "client" });
  return {
    server: { caFile: ca.caFile, serverCertFile: server.certFile, serverKeyFile: server.keyFile, healthCertFile: root.certFile, healthKeyFile: root.keyFile },
    root: { caFile: ca.caFile, ...root },
    agent: { caFile: ca.caFile, ...agent },
  };
}

function httpGet(socket: string, path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ socketPath: socket, path, timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => resolvePromise(body));
    });
    req.on("error", reject);
    req.end();
  });
}

function status(socket: string): Promise<{ ready?: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ socketPath: socket, path: "/status", timeout: 2000, agent: false }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => {
        try {
          resolvePromise(JSON.parse(body) as { ready?: boolean });
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on("error", reject);
    req.end();
  });
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, describe: () => string, intervalMs = 20): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not yet.
    }
    if (performance.now() > deadline) throw new Error(`timed out: ${describe()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
