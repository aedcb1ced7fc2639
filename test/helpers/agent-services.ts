// A small cluster for the agent-driven service tests (test/agent-services-*.test.ts): AgentCluster's
// underlay, etcd and real agents, plus pods routed to their node (a /32 over a veth each, as podnet
// routes them) running the lab's test server, Services and EndpointSlices committed through the
// object-writer process, and clients (curl, python3) inside pods or on the external host (the
// control-plane namespace at 192.168.1.10, on the underlay).

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { TEST_SERVER_SCRIPT } from "../../src/controlplane/test-server-ports.ts";
import type { ObjectWrite } from "../../src/datastore/objects.ts";
import { withDefaults } from "../../src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "../../src/k8s/types.ts";
import { AgentCluster, ip, waitFor, type TestNode } from "../agent-harness.ts";

const REPO = resolve(import.meta.dirname, "../..");

export interface Pod {
  name: string;
  netns: string;
  ip: string;
  node: TestNode;
  gateway: string;
}

export function service(name: string, clusterIP: string, spec: Partial<Service["spec"]> = {}, status?: Service["status"]): Service {
  return withDefaults({
    apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default" },
    spec: { clusterIP, selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }], ...spec },
    ...(status ? { status } : {}),
  });
}

export function slice(name: string, pods: readonly Pod[], protocol: "TCP" | "UDP" = "TCP"): EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { name: `${name}-x`, namespace: "default", labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4", ports: [{ name: "", protocol, port: 8080 }],
    endpoints: pods.map((p) => ({ addresses: [p.ip], nodeName: p.node.name, conditions: { ready: true, serving: true, terminating: false } })),
  };
}

/**
 * Wires the pod namespace `netns` to `node` as podnet routes pods: a veth `hostVeth` ↔ eth0, the pod's
 * address .`index` of `podSubnet` as a /32 routed to the veth, and a default route via the subnet's .1.
 */
export function wirePod(node: TestNode, netns: string, hostVeth: string, podSubnet: string, index: number): { ip: string; gateway: string } {
  const base = podSubnet.split("/")[0]!.split(".").map(Number);
  const gateway = `${base[0]}.${base[1]}.${base[2]}.1`;
  const podIp = `${base[0]}.${base[1]}.${base[2]}.${index}`;
  ip("-n", node.netns, "link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", netns);
  ip("-n", node.netns, "addr", "add", `${gateway}/32`, "dev", hostVeth);
  ip("-n", node.netns, "link", "set", hostVeth, "up");
  ip("-n", node.netns, "route", "add", `${podIp}/32`, "dev", hostVeth);
  ip("-n", netns, "addr", "add", `${podIp}/32`, "dev", "eth0");
  ip("-n", netns, "link", "set", "eth0", "up");
  ip("-n", netns, "route", "add", `${gateway}/32`, "dev", "eth0");
  ip("-n", netns, "route", "add", "default", "via", gateway, "dev", "eth0");
  return { ip: podIp, gateway };
}

export class ServiceCluster {
  readonly cluster = new AgentCluster();
  readonly pods = new Map<string, Pod>();
  private readonly processes: ChildProcess[] = [];
  private writer: ChildProcess | undefined;
  private writerLines: AsyncIterator<string> | undefined;
  readonly agentArgs = ["--resync-interval-ms", "300"];

  get nodes(): TestNode[] {
    return this.cluster.nodes;
  }

  async start(nodeCount: number): Promise<void> {
    await this.cluster.create(nodeCount);
    for (const node of this.cluster.nodes) {
      ip("netns", "exec", node.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1");
      this.cluster.startAgent(node, this.agentArgs);
    }
    for (const node of this.cluster.nodes) await this.waitReady(node);
    this.writer = spawn("ip", ["netns", "exec", this.cluster.controlNs, process.execPath, "--import", "tsx", join(REPO, "test/helpers/object-writer.ts"), this.cluster.etcdUrls], { stdio: ["pipe", "pipe", "inherit"], cwd: REPO });
    this.processes.push(this.writer);
    this.writerLines = createInterface({ input: this.writer.stdout! })[Symbol.asyncIterator]();
  }

  async waitReady(node: TestNode): Promise<void> {
    await waitFor(async () => (await this.cluster.health(node)).ready === true, 20_000, () => `${node.name} not ready: ${this.cluster.logOf(node).slice(-2000)}`);
  }

  async destroy(): Promise<void> {
    for (const child of this.processes) if (child.pid && child.exitCode === null) child.kill("SIGKILL");
    await this.cluster.destroy();
  }

  async commit(writes: ObjectWrite[]): Promise<number> {
    this.writer!.stdin!.write(`${JSON.stringify(writes)}\n`);
    const line = await this.writerLines!.next();
    const reply = JSON.parse(line.value as string) as { revision?: number; error?: string };
    if (reply.error) throw new Error(reply.error);
    return reply.revision!;
  }
  create(...objects: (Service | EndpointSlice)[]): Promise<number> {
    return this.commit(objects.map((object) => ({ op: "create", object }) as ObjectWrite));
  }
  apply(...objects: (Service | EndpointSlice)[]): Promise<number> {
    return this.commit(objects.map((object) => ({ op: "update", object }) as ObjectWrite));
  }

  /** Waits until `node`'s services reconciler reflects datastore revision `revision`. */
  async synced(node: TestNode, revision: number, timeoutMs = 10_000): Promise<void> {
    const seen = async () => ((await this.cluster.health(node)) as { reconcilers?: { services?: { revision?: number } } }).reconcilers?.services?.revision ?? 0;
    await waitFor(async () => (await seen()) >= revision, timeoutMs, () => `${node.name}'s services reconciler did not reach revision ${revision}: ${this.cluster.logOf(node).slice(-1500)}`);
  }

  /** A pod namespace on `node` with address .`index` of its pod subnet, routed as podnet routes pods. */
  async addPod(name: string, node: TestNode, index: number): Promise<Pod> {
    const health = await this.cluster.health(node);
    const netns = this.cluster.podNamespace(`p${name}`);
    const pod = { name, netns, node, ...wirePod(node, netns, `v${name}`, health.podSubnet!, index) };
    this.pods.set(name, pod);
    return pod;
  }

  /** The lab's test server in `pod` (answers /hostname with "pod-<name>", TCP and UDP on 8080); resolves to its process. */
  async startServer(pod: Pod): Promise<ChildProcess> {
    const ready = join(this.cluster.dir, `${pod.name}.ready`);
    const child = spawn("ip", ["netns", "exec", pod.netns, process.execPath, TEST_SERVER_SCRIPT, "--name", `pod-${pod.name}`, "--listen", "TCP:8080,UDP:8080", "--ready-file", ready], { stdio: "ignore" });
    this.processes.push(child);
    await waitFor(() => existsSync(ready), 10_000, () => `test server in ${pod.name} did not start`);
    return child;
  }

  /** Removes a pod as its deletion would: its server killed, its veth (and so its route) gone. */
  deletePod(pod: Pod, server: ChildProcess): void {
    server.kill("SIGKILL");
    ip("-n", pod.node.netns, "link", "del", `v${pod.name}`);
    this.pods.delete(pod.name);
  }

  curl(netns: string, url: string, maxTime = 2, extra: string[] = []): { status: number | null; stdout: string; stderr: string } {
    return spawnSync("ip", ["netns", "exec", netns, "curl", "-sS", "--max-time", String(maxTime), ...extra, url], { encoding: "utf8" });
  }

  /** curl from `netns` until it answers; its body. */
  async answers(netns: string, url: string, timeoutMs = 5000): Promise<string> {
    let out = "";
    await waitFor(() => {
      const run = this.curl(netns, url, 1);
      out = run.stdout;
      return run.status === 0;
    }, timeoutMs, () => `${url} from ${netns} never answered`);
    return out;
  }

  /**
   * A UDP client bound to a fixed source port, sending "hostname" to target:port whenever asked
   * (`send()`), or every `everyMs` when given; collects the answers with when they came.
   */
  udpClient(netns: string, target: string, port: number, sourcePort: number, everyMs?: number): { replies: { at: number; from: string }[]; send(): void; stop(): void } {
    const script = [
      "import socket, sys, threading, time",
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
      `s.bind(('0.0.0.0', ${sourcePort}))`,
      `dst = ('${target}', ${port})`,
      "def receive():",
      "    while True:",
      "        try:",
      "            data = s.recv(512)",
      "            print(data.decode(), flush=True)",
      "        except OSError:",
      "            pass",
      "threading.Thread(target=receive, daemon=True).start()",
      everyMs === undefined
        ? "for line in sys.stdin:\n    s.sendto(b'hostname', dst)"
        : `while True:\n    s.sendto(b'hostname', dst)\n    time.sleep(${everyMs / 1000})`,
    ].join("\n");
    const child = spawn("ip", ["netns", "exec", netns, "python3", "-c", script], { stdio: ["pipe", "pipe", "ignore"] });
    this.processes.push(child);
    const replies: { at: number; from: string }[] = [];
    createInterface({ input: child.stdout! }).on("line", (line) => replies.push({ at: Date.now(), from: line.trim() }));
    return { replies, send: () => void child.stdin!.write("go\n"), stop: () => void child.kill("SIGKILL") };
  }

  nft(node: TestNode, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
    return spawnSync("ip", ["netns", "exec", node.netns, "nft", ...args], { encoding: "utf8" });
  }
}

export { ip, waitFor, type TestNode };
