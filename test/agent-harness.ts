// A small cluster for the agent tests: a "switch" namespace with a bridge, a control-plane namespace
// running etcd at 192.168.1.10, and node namespaces 192.168.1.11, .12, … each running a real
// `podnet agent` process. Everything carries a unique prefix and is removed by destroy().

import { AGENT_NODE_FLAGS } from "../src/agent/node-flags.ts";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startEtcd, startEtcdCluster, stopProcess, type EtcdCluster, type EtcdServer } from "../src/supervise/etcd-server.ts";

const REPO = resolve(import.meta.dirname, "..");
export const CONTROL_PLANE_IP = "192.168.1.10";
export const ETCD_URL = `http://${CONTROL_PLANE_IP}:2379`;

export interface TestNode {
  name: string;
  ip: string;
  netns: string;
  confDir: string;
  socket: string;
  log: string;
  agent?: ChildProcess;
}

export function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8" });
}

export class AgentCluster {
  readonly prefix = `pnt-ag-${Math.random().toString(36).slice(2, 7)}`;
  readonly dir = mkdtempSync(join(tmpdir(), "pnt-agent-"));
  readonly namespaces: string[] = [];
  readonly nodes: TestNode[] = [];
  etcd: EtcdServer | undefined;
  etcdCluster: EtcdCluster | undefined;
  /** What agents are given: the single etcd, or every member of the cluster. */
  etcdUrls = ETCD_URL;
  readonly switchNs = `${this.prefix}-sw`;
  readonly controlNs = `${this.prefix}-cp`;

  /** The second underlay subnet's switch and the router joining the two, in the routed topology. */
  readonly switch2Ns = `${this.prefix}-sw2`;
  readonly routerNs = `${this.prefix}-rt`;

  /**
   * Build the underlay and start etcd; agents are started separately. `topology: "routed"` puts odd nodes
   * (and etcd) on 192.168.1.0/24 and even nodes on 192.168.2.0/24, joined by a router namespace (.1 on
   * each) that knows nothing of pod subnets: host-gw cannot cross it, an overlay can.
   */
  async create(nodeCount: number, opts: { etcdMembers?: number; topology?: "flat" | "routed" } = {}): Promise<void> {
    const routed = opts.topology === "routed";
    for (const sw of routed ? [this.switchNs, this.switch2Ns] : [this.switchNs]) {
      this.addNamespace(sw);
      ip("-n", sw, "link", "add", "br0", "type", "bridge");
      ip("-n", sw, "link", "set", "br0", "up");
    }
    if (routed) {
      this.addNamespace(this.routerNs);
      this.attachTo(this.switchNs, this.routerNs, "rt", "192.168.1.1", "eth1");
      this.attachTo(this.switch2Ns, this.routerNs, "rt", "192.168.2.1", "eth2");
      execFileSync("ip", ["netns", "exec", this.routerNs, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
    this.attach(this.controlNs, "cp", CONTROL_PLANE_IP);
    if (routed) ip("-n", this.controlNs, "route", "add", "default", "via", "192.168.1.1");
    for (let i = 1; i <= nodeCount; i++) {
      const name = `node${i}`;
      const netns = `${this.prefix}-n${i}`;
      const underlay = routed && i % 2 === 0 ? 2 : 1;
      const nodeIp = `192.168.${underlay}.${10 + i}`;
      this.attachTo(underlay === 2 ? this.switch2Ns : this.switchNs, netns, `n${i}`, nodeIp);
      if (routed) ip("-n", netns, "route", "add", "default", "via", `192.168.${underlay}.1`);
      const confDir = join(this.dir, name, "cni");
      this.nodes.push({ name, ip: nodeIp, netns, confDir, socket: join(this.dir, `${name}.sock`), log: join(this.dir, `${name}.log`) });
    }
    mkdirSync(join(this.dir, "etcd"));
    if ((opts.etcdMembers ?? 1) > 1) {
      this.etcdCluster = await startEtcdCluster({ dataDir: join(this.dir, "etcd"), members: opts.etcdMembers!, name: "test", host: CONTROL_PLANE_IP, netns: this.controlNs });
      this.etcdUrls = this.etcdCluster.endpoints.join(",");
    } else {
      await this.startEtcd();
    }
  }

  async startEtcd(): Promise<void> {
    this.etcd = await startEtcd({ dataDir: join(this.dir, "etcd"), name: "test", host: CONTROL_PLANE_IP, netns: this.controlNs, clientPort: 2379 });
  }

  async stopEtcd(): Promise<void> {
    await this.etcd?.stop();
    this.etcd = undefined;
  }

  private addNamespace(name: string): void {
    ip("netns", "add", name);
    this.namespaces.push(name);
    ip("-n", name, "link", "set", "lo", "up");
  }

  /** A host namespace whose eth0 is the peer of port `port` on the switch bridge. */
  private attach(netns: string, port: string, address: string): void {
    this.attachTo(this.switchNs, netns, port, address);
  }

  /** Namespace `netns` (created unless it exists) gets `ifname`, the peer of port `port` on switch `sw`. */
  private attachTo(sw: string, netns: string, port: string, address: string, ifname = "eth0"): void {
    if (!this.namespaces.includes(netns)) this.addNamespace(netns);
    ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", netns);
    ip("-n", sw, "link", "set", port, "master", "br0", "up");
    ip("-n", netns, "addr", "add", `${address}/24`, "dev", ifname);
    ip("-n", netns, "link", "set", ifname, "up");
  }

  /** A namespace of this cluster's prefix for a pod (removed by destroy()); returns its name. */
  podNamespace(label: string): string {
    const name = `${this.prefix}-${label}`;
    this.addNamespace(name);
    return name;
  }

  /** Start the node's agent; `env` adds variables (e.g. PODNET_AGENT_FAULTS) to its environment. */
  startAgent(node: TestNode, extraArgs: string[] = [], env: Record<string, string> = {}): void {
    const logFd = openSync(node.log, "a");
    try {
      node.agent = spawn(
        "ip",
        [
          "netns", "exec", node.netns,
          process.execPath, ...AGENT_NODE_FLAGS, join(REPO, "bin/podnet.js"), "agent",
          "--name", node.name,
          "--node-ip", node.ip,
          "--etcd", this.etcdUrls,
          "--cni-conf-dir", node.confDir,
          "--ipam-data-dir", join(this.dir, node.name, "ipam"),
          "--ready-file", join(this.dir, node.name, "agent.ready"),
          "--listen", node.socket,
          "--lease-ttl", "4",
          ...extraArgs,
        ],
        { stdio: ["ignore", logFd, logFd], env: { ...process.env, ...env } },
      );
    } finally {
      closeSync(logFd);
    }
  }

  async stopAgent(node: TestNode, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const agent = node.agent;
    if (!agent?.pid) return;
    await stopProcess(agent.pid, { child: agent, signal, graceMs: 5000 });
    node.agent = undefined;
  }

  /** etcdctl (v3 API) against the test's etcd, run in the control-plane namespace; returns stdout. */
  etcdctl(...args: string[]): string {
    return execFileSync("ip", ["netns", "exec", this.controlNs, "etcdctl", "--endpoints", this.etcdUrls, ...args], {
      encoding: "utf8",
      env: { ...process.env, ETCDCTL_API: "3" },
    });
  }

  /** Our routes in a node's main table, as "dst via gw" strings, sorted. */
  routes(node: TestNode): string[] {
    const json = JSON.parse(ip("-n", node.netns, "-j", "route", "show", "proto", "80")) as { dst: string; gateway?: string }[];
    return json.map((r) => `${r.dst} via ${r.gateway ?? "-"}`).sort();
  }

  /** GET a path of the agent's health and metrics server. */
  get(node: TestNode, path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolvePromise, reject) => {
      const req = request({ socketPath: node.socket, path, timeout: 2000 }, (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => (body += chunk.toString()));
        res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });
  }

  async health(node: TestNode): Promise<{ ready: boolean; podSubnet: string | null; [key: string]: unknown }> {
    return new Promise((resolvePromise, reject) => {
      const req = request({ socketPath: node.socket, path: "/status", timeout: 2000 }, (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => (body += chunk.toString()));
        res.on("end", () => {
          try {
            resolvePromise(JSON.parse(body));
          } catch (err) {
            reject(err);
          }
        });
      });
      req.on("error", reject);
      req.end();
    });
  }

  logOf(node: TestNode): string {
    try {
      return readFileSync(node.log, "utf8");
    } catch {
      return "";
    }
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.stopAgent(n, "SIGKILL")));
    await this.stopEtcd().catch(() => undefined);
    await this.etcdCluster?.stop().catch(() => undefined);
    for (const ns of this.namespaces.reverse()) {
      try {
        ip("netns", "del", ns);
      } catch {
        // Already gone.
      }
    }
    if (!process.env.PODNET_KEEP_TEST_DIR) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Poll `check` until it returns true or `timeoutMs` passes; returns the elapsed ms, or throws with `describe()`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, describe: () => string, intervalMs = 25): Promise<number> {
  const started = Date.now();
  for (;;) {
    let ok = false;
    try {
      ok = await check();
    } catch {
      ok = false;
    }
    if (ok) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
