// Starts and stops real etcd processes (Debian's /usr/bin/etcd) for the tests and the lab.
// Every process started here is tracked by the PID we got from spawn, and only that PID is ever signalled.
// etcd's own log goes to a file in its data dir so test and lab output stay readable.

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdirSync, openSync, closeSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { argvInNamedNetns } from "../kernel/netns-exec.ts";
import { sleep, stopProcess } from "./process.ts";

export { stopProcess };

const execFileAsync = promisify(execFile);

export const ETCD_BINARY = "/usr/bin/etcd";
export const ETCDCTL_BINARY = "/usr/bin/etcdctl";

export interface EtcdServer {
  /** Client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  pid: number;
  /** SIGTERM the process started here, then wait until it has exited (SIGKILL after a grace period). */
  stop(): Promise<void>;
}

export interface EtcdCluster {
  /** Client URLs of every member, in member order. */
  endpoints: string[];
  members: EtcdServer[];
  /** SIGKILL member i, as if its machine died; its data dir stays. */
  killMember(i: number): Promise<void>;
  /** Start member i again on the same ports and data dir, and wait until the cluster reports it healthy. */
  restartMember(i: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Run etcd as production does: TLS on client and peer URLs, and a client certificate required on both
 * (--client-cert-auth, --peer-client-cert-auth), each signed by `caFile`.
 */
export interface EtcdServerTls {
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  /** Peer certificate (server and client use); default: the server's. */
  peerCertFile?: string;
  peerKeyFile?: string;
  /** A client certificate the start-up health check presents (an administrator's). */
  healthCertFile: string;
  healthKeyFile: string;
}

export interface StartEtcdOptions {
  dataDir: string;
  tls?: EtcdServerTls;
  name?: string;
  /** Listen IP for client and peer URLs; default 127.0.0.1. */
  host?: string;
  /** Run etcd inside this named network namespace (/run/netns/NAME); health is checked from inside it too. */
  netns?: string;
  /** Default: a free port (root namespace) or 2379 (inside a fresh namespace, where every port is free). */
  clientPort?: number;
  /** Default: a free port (root namespace) or clientPort + 1. */
  peerPort?: number;
  /**
   * Let etcd outlive the calling process (its own process group, not waited on), for `lab up`,
   * which exits while the lab keeps running. Stop it later with stopProcess(pid).
   */
  detached?: boolean;
  /** How long to wait for /health; default 20 s. */
  startTimeoutMs?: number;
  /** More client ports on the same host (listened on, not advertised): a separately guarded way in. */
  extraClientPorts?: readonly number[];
}

export interface StartEtcdClusterOptions {
  dataDir: string;
  members: number;
  name?: string;
  host?: string;
  netns?: string;
  tls?: EtcdServerTls;
  /** Member i uses clientPort + 2i and clientPort + 2i + 1 (inside a namespace; default 2379). */
  clientPort?: number;
  detached?: boolean;
  startTimeoutMs?: number;
}

interface MemberPlan {
  name: string;
  dataDir: string;
  logPath: string;
  clientUrl: string;
  peerUrl: string;
  extraClientUrls?: string[];
}

/** Start one single-member etcd and wait until it answers /health. */
export async function startEtcd(opts: StartEtcdOptions): Promise<EtcdServer> {
  const name = opts.name ?? "podnet-etcd";
  const host = opts.host ?? "127.0.0.1";
  const [clientPort, peerPort] = await choosePorts(opts.netns, opts.clientPort, opts.peerPort);
  const scheme = opts.tls ? "https" : "http";
  const plan: MemberPlan = {
    name,
    dataDir: join(opts.dataDir, `${name}.etcd`),
    logPath: join(opts.dataDir, `${name}.log`),
    clientUrl: `${scheme}://${host}:${clientPort}`,
    peerUrl: `${scheme}://${host}:${peerPort}`,
    extraClientUrls: (opts.extraClientPorts ?? []).map((port) => `${scheme}://${host}:${port}`),
  };
  const initialCluster = `${name}=${plan.peerUrl}`;
  return launchMember(plan, initialCluster, `${name}-token`, "new", opts);
}

/** Start an N-member etcd cluster; resolves when every member is healthy (a leader exists). */
export async function startEtcdCluster(opts: StartEtcdClusterOptions): Promise<EtcdCluster> {
  if (!Number.isInteger(opts.members) || opts.members < 1) throw new Error(`members must be a positive integer, got ${opts.members}`);
  const baseName = opts.name ?? "podnet-etcd";
  const host = opts.host ?? "127.0.0.1";
  const plans: MemberPlan[] = [];
  const base = opts.clientPort ?? 2379;
  const loopbackPorts = opts.netns ? [] : await freeLoopbackPorts(2 * opts.members);
  for (let i = 0; i < opts.members; i++) {
    const clientPort = opts.netns ? base + 2 * i : loopbackPorts[2 * i]!;
    const peerPort = opts.netns ? base + 2 * i + 1 : loopbackPorts[2 * i + 1]!;
    const name = `${baseName}-${i}`;
    const scheme = opts.tls ? "https" : "http";
    plans.push({
      name,
      dataDir: join(opts.dataDir, `${name}.etcd`),
      logPath: join(opts.dataDir, `${name}.log`),
      clientUrl: `${scheme}://${host}:${clientPort}`,
      peerUrl: `${scheme}://${host}:${peerPort}`,
    });
  }
  const initialCluster = plans.map((p) => `${p.name}=${p.peerUrl}`).join(",");
  const token = `${baseName}-token`;
  const launchOpts = { netns: opts.netns, detached: opts.detached, startTimeoutMs: opts.startTimeoutMs, dataDir: opts.dataDir, tls: opts.tls };

  // Members must start together: none reports healthy until a quorum has elected a leader.
  const started = await Promise.allSettled(plans.map((p) => launchMember(p, initialCluster, token, "new", launchOpts)));
  const members: EtcdServer[] = [];
  const failures: unknown[] = [];
  for (const s of started) {
    if (s.status === "fulfilled") members.push(s.value);
    else failures.push(s.reason);
  }
  if (failures.length > 0) {
    await Promise.all(members.map((m) => m.stop()));
    throw new Error(`etcd cluster failed to start: ${failures.map(String).join("; ")}`);
  }

  const cluster: EtcdCluster = {
    endpoints: plans.map((p) => p.clientUrl),
    members,
    async killMember(i) {
      const member = memberAt(members, i);
      await stopProcess(member.pid, { signal: "SIGKILL" });
    },
    async restartMember(i) {
      const plan = plans[i];
      if (!plan) throw new RangeError(`no etcd member ${i}`);
      await stopProcess(memberAt(members, i).pid, { signal: "SIGKILL" });
      members[i] = await launchMember(plan, initialCluster, token, "existing", launchOpts);
    },
    async stop() {
      // One at a time: a member stopping while the others also go waits for a leader transfer that cannot happen.
      for (const m of members) await m.stop();
    },
  };
  return cluster;
}

function memberAt(members: EtcdServer[], i: number): EtcdServer {
  const member = members[i];
  if (!member) throw new RangeError(`no etcd member ${i}`);
  return member;
}

async function launchMember(
  plan: MemberPlan,
  initialCluster: string,
  token: string,
  clusterState: "new" | "existing",
  opts: { dataDir: string; netns?: string; detached?: boolean; startTimeoutMs?: number; tls?: EtcdServerTls | undefined },
): Promise<EtcdServer> {
  mkdirSync(opts.dataDir, { recursive: true });
  const args = [
    "--name", plan.name,
    "--data-dir", plan.dataDir,
    "--listen-client-urls", [plan.clientUrl, ...(plan.extraClientUrls ?? [])].join(","),
    "--advertise-client-urls", plan.clientUrl,
    "--listen-peer-urls", plan.peerUrl,
    "--initial-advertise-peer-urls", plan.peerUrl,
    "--initial-cluster", initialCluster,
    "--initial-cluster-token", token,
    "--initial-cluster-state", clusterState,
    "--logger", "zap",
    "--log-outputs", "stderr",
    ...(opts.tls ? tlsFlags(opts.tls) : []),
  ];
  const env: NodeJS.ProcessEnv = { ...process.env };
  // etcd 3.4 refuses to start on architectures other than amd64, arm64 and ppc64le unless told to.
  if (!["x64", "arm64", "ppc64"].includes(process.arch)) env.ETCD_UNSUPPORTED_ARCH = goArch(process.arch);
  // Inherited ETCD_* variables would silently override our flags.
  for (const key of Object.keys(env)) if (key.startsWith("ETCD_") && key !== "ETCD_UNSUPPORTED_ARCH") delete env[key];

  const logFd = openSync(plan.logPath, "a");
  let child: ChildProcess;
  try {
    // The netns prefix execs the command in place (no fork), so the PID we get is etcd's own.
    const [file, ...argv] = opts.netns ? argvInNamedNetns(opts.netns, [ETCD_BINARY, ...args]) : [ETCD_BINARY, ...args];
    child = spawn(file!, argv, { stdio: ["ignore", logFd, logFd], env, detached: opts.detached ?? false });
  } finally {
    closeSync(logFd);
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${ETCD_BINARY}`);
  if (opts.detached) child.unref();

  let exited = false;
  let exitDescription = "";
  child.on("exit", (code, signal) => {
    exited = true;
    exitDescription = signal ? `signal ${signal}` : `code ${code}`;
  });
  child.on("error", () => {
    exited = true;
  });

  const server: EtcdServer = {
    endpoints: [plan.clientUrl],
    pid,
    stop: () => stopProcess(pid, { child }),
  };

  const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000);
  for (;;) {
    if (exited) throw new Error(`etcd ${plan.name} exited during start-up (${exitDescription}); see ${plan.logPath}`);
    if (await isEtcdHealthy(plan.clientUrl, opts.netns, opts.tls && { caFile: opts.tls.caFile, certFile: opts.tls.healthCertFile, keyFile: opts.tls.healthKeyFile })) return server;
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`etcd ${plan.name} did not become healthy at ${plan.clientUrl} in time; see ${plan.logPath}`);
    }
    await sleep(100);
  }
}

/**
 * True when the member at `endpoint` answers /health with a leader. From inside `netns` when given,
 * since the endpoint is only reachable there.
 */
export async function isEtcdHealthy(endpoint: string, netns?: string, tls?: EtcdctlTls): Promise<boolean> {
  if (!netns && !tls) {
    try {
      const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
      if (!response.ok) return false;
      const body = (await response.json()) as { health?: unknown };
      return body.health === "true" || body.health === true;
    } catch {
      return false;
    }
  }
  try {
    const command = [ETCDCTL_BINARY, "--endpoints", endpoint, ...etcdctlTlsFlags(tls), "--command-timeout=1s", "--dial-timeout=1s", "endpoint", "health"];
    const [file, ...argv] = netns ? argvInNamedNetns(netns, command) : command;
    await execFileAsync(file!, argv, {
      timeout: 3000,
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    return true;
  } catch {
    return false;
  }
}

/** The files etcdctl presents to a TLS etcd (its --cacert, --cert, --key). */
export interface EtcdctlTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export function etcdctlTlsFlags(tls: EtcdctlTls | undefined): string[] {
  return tls ? ["--cacert", tls.caFile, "--cert", tls.certFile, "--key", tls.keyFile] : [];
}

function tlsFlags(tls: EtcdServerTls): string[] {
  return [
    "--client-cert-auth",
    "--trusted-ca-file", tls.caFile,
    "--cert-file", tls.serverCertFile,
    "--key-file", tls.serverKeyFile,
    "--peer-client-cert-auth",
    "--peer-trusted-ca-file", tls.caFile,
    "--peer-cert-file", tls.peerCertFile ?? tls.serverCertFile,
    "--peer-key-file", tls.peerKeyFile ?? tls.serverKeyFile,
  ];
}

async function choosePorts(netns: string | undefined, clientPort?: number, peerPort?: number): Promise<[number, number]> {
  if (netns) {
    const client = clientPort ?? 2379;
    return [client, peerPort ?? client + 1];
  }
  const [a, b] = await freeLoopbackPorts(2);
  return [clientPort ?? a!, peerPort ?? b!];
}

/**
 * `count` distinct ports the kernel just handed out for 127.0.0.1 (all held open together so they differ).
 * Another process could take one before etcd binds it; start-up then fails and says so.
 */
export async function freeLoopbackPorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<Server>((resolve, reject) => {
        const server = createServer();
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve(server));
      }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    return typeof address === "object" && address ? address.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  if (ports.some((p) => p === 0)) throw new Error("could not find free loopback ports");
  return ports;
}

function goArch(nodeArch: string): string {
  const map: Record<string, string> = { ia32: "386", arm: "arm", s390x: "s390x", riscv64: "riscv64", mips: "mips", mipsel: "mipsle" };
  return map[nodeArch] ?? nodeArch;
}
