// The service proxy driven by the agent, end to end: Services and EndpointSlices committed to a
// real etcd, two real `podnet agent` processes in node namespaces on one underlay, pods routed to
// their node (a /32 over a veth each, as podnet routes them), the lab's test server in them, and
// real connections (curl, python3 sockets) from client pods and from an external host (the
// control-plane namespace, on the underlay). Covers issue 8 section 2 as the agent does it:
// load-balancing, client IP, hairpin, refusal with no endpoints, stale UDP flows when an endpoint
// goes (and scale 3 → 0 → 3), rules deleted by hand coming back, a long-lived connection across
// SIGKILL + restart of the agent, etcd down (rules stay), and LoadBalancer IPs announced by
// exactly one node, taken over when it leaves, with externalTrafficPolicy Local keeping the client IP.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { TEST_SERVER_SCRIPT } from "../src/controlplane/test-server-ports.ts";
import type { ObjectWrite } from "../src/datastore/objects.ts";
import { withDefaults } from "../src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "../src/k8s/types.ts";
import { AgentCluster, ip, waitFor, type TestNode } from "./agent-harness.ts";
import { wirePod } from "./helpers/agent-services.ts";

const root = process.getuid?.() === 0;
const REPO = resolve(import.meta.dirname, "..");
const LB_IP = "192.168.1.240";
const LB_LOCAL_IP = "192.168.1.241";

interface Pod {
  name: string;
  netns: string;
  ip: string;
  node: TestNode;
  gateway: string;
}

function service(name: string, clusterIP: string, spec: Partial<Service["spec"]> = {}, status?: Service["status"]): Service {
  return withDefaults({
    apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default" },
    spec: { clusterIP, selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }], ...spec },
    ...(status ? { status } : {}),
  });
}

function slice(name: string, pods: Pod[], protocol: "TCP" | "UDP" = "TCP"): EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { name: `${name}-x`, namespace: "default", labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4", ports: [{ name: "", protocol, port: 8080 }],
    endpoints: pods.map((p) => ({ addresses: [p.ip], nodeName: p.node.name, conditions: { ready: true, serving: true, terminating: false } })),
  };
}

describe("the agent's service proxy, end to end", { skip: root ? false : "needs root" }, () => {
  const cluster = new AgentCluster();
  const pods = new Map<string, Pod>();
  const processes: ChildProcess[] = [];
  let writer: ChildProcess;
  let writerLines: AsyncIterator<string>;
  let node1: TestNode;
  let node2: TestNode;

  const commit = async (writes: ObjectWrite[]): Promise<number> => {
    writer.stdin!.write(`${JSON.stringify(writes)}\n`);
    const line = await writerLines.next();
    const reply = JSON.parse(line.value as string) as { revision?: number; error?: string };
    if (reply.error) throw new Error(reply.error);
    return reply.revision!;
  };
  const apply = (...objects: (Service | EndpointSlice)[]) => commit(objects.map((object) => ({ op: "update", object }) as ObjectWrite));
  const create = (...objects: (Service | EndpointSlice)[]) => commit(objects.map((object) => ({ op: "create", object }) as ObjectWrite));

  const curlIn = (netns: string, url: string, maxTime = 3) => spawnSync("ip", ["netns", "exec", netns, "curl", "-sS", "--max-time", String(maxTime), url], { encoding: "utf8" });
  const get = (pod: string, url: string) => {
    const run = curlIn(pods.get(pod)!.netns, url);
    if (run.status !== 0) throw new Error(`curl ${url} from ${pod}: exit ${run.status} ${run.stderr}`);
    return run.stdout;
  };
  const answers = async (pod: string, url: string, timeoutMs = 5000) => {
    let out = "";
    await waitFor(() => {
      const run = curlIn(pods.get(pod)!.netns, url, 1);
      out = run.stdout;
      return run.status === 0;
    }, timeoutMs, () => `${url} from ${pod} never answered`);
    return out;
  };
  const nft = (node: TestNode, ...args: string[]) => spawnSync("ip", ["netns", "exec", node.netns, "nft", ...args], { encoding: "utf8" });

  async function addPod(name: string, node: TestNode, index: number): Promise<Pod> {
    const health = await cluster.health(node);
    const netns = `${cluster.prefix}-p${name}`;
    ip("netns", "add", netns);
    cluster.namespaces.push(netns);
    ip("-n", netns, "link", "set", "lo", "up");
    const pod = { name, netns, node, ...wirePod(node, netns, `v${name}`, health.podSubnet!, index) };
    pods.set(name, pod);
    return pod;
  }

  async function startServer(pod: Pod): Promise<void> {
    const ready = join(cluster.dir, `${pod.name}.ready`);
    processes.push(spawn("ip", ["netns", "exec", pod.netns, process.execPath, TEST_SERVER_SCRIPT, "--name", `pod-${pod.name}`, "--listen", "TCP:8080,UDP:8080", "--ready-file", ready], { stdio: "ignore" }));
    await waitFor(() => existsSync(ready), 10_000, () => `test server in ${pod.name} did not start`);
  }

  /** A UDP client with a fixed source port sending "hostname" every 100 ms; collects the answers. */
  function udpClient(pod: Pod, target: string): { replies: { at: number; from: string }[]; stop(): void } {
    const script = [
      "import socket, sys, time",
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
      "s.bind(('0.0.0.0', 40000))",
      "s.settimeout(0.1)",
      `dst = ('${target}', 8080)`,
      "while True:",
      "    try:",
      "        s.sendto(b'hostname', dst)",
      "        data = s.recv(512)",
      "        print(data.decode(), flush=True)",
      "        time.sleep(0.1)",
      "    except (socket.timeout, ConnectionRefusedError):",
      "        pass",
    ].join("\n");
    const child = spawn("ip", ["netns", "exec", pod.netns, "python3", "-c", script], { stdio: ["ignore", "pipe", "ignore"] });
    processes.push(child);
    const replies: { at: number; from: string }[] = [];
    createInterface({ input: child.stdout! }).on("line", (line) => replies.push({ at: Date.now(), from: line.trim() }));
    return { replies, stop: () => child.kill("SIGKILL") };
  }

  before(async () => {
    await cluster.create(2);
    [node1, node2] = cluster.nodes as [TestNode, TestNode];
    for (const node of cluster.nodes) {
      ip("netns", "exec", node.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1");
      cluster.startAgent(node, ["--resync-interval-ms", "300"]);
    }
    for (const node of cluster.nodes) await waitFor(async () => (await cluster.health(node)).ready === true, 20_000, () => `${node.name} not ready: ${cluster.logOf(node)}`);
    writer = spawn("ip", ["netns", "exec", cluster.controlNs, process.execPath, "--import", "tsx", join(REPO, "test/helpers/object-writer.ts"), cluster.etcdUrls], { stdio: ["pipe", "pipe", "inherit"], cwd: REPO });
    processes.push(writer);
    writerLines = createInterface({ input: writer.stdout! })[Symbol.asyncIterator]();
    await addPod("client", node1, 2);
    for (const [name, node, index] of [["a", node1, 3], ["b", node1, 4], ["c", node2, 3]] as const) await startServer(await addPod(name, node, index));
  });
  after(async () => {
    for (const child of processes) if (child.pid && child.exitCode === null) child.kill("SIGKILL");
    await cluster.destroy();
  });

  it("turns a Service and its EndpointSlice in etcd into rules: balanced over endpoints, client IP kept", async () => {
    await create(service("web", "10.96.0.20"), slice("web", [pods.get("a")!, pods.get("b")!, pods.get("c")!]));
    await answers("client", "http://10.96.0.20/hostname");
    const seen = new Set<string>();
    for (let i = 0; i < 40 && seen.size < 3; i++) seen.add(get("client", "http://10.96.0.20/hostname"));
    assert.ok(seen.size >= 2, `answers from at least 2 endpoints: ${[...seen]}`);
    assert.equal(get("client", "http://10.96.0.20/clientip").split(":")[0], pods.get("client")!.ip);
    // The agent writes the table with nf_tables netlink batches, not through nft (src/kernel/nft/netlink-writer.ts).
    for (const node of cluster.nodes) {
      assert.match(cluster.logOf(node), /full sync of table podnet-svc.* through netlink/);
      assert.doesNotMatch(cluster.logOf(node), /through libnftables/);
    }
  });

  it("masquerades hairpin traffic, and refuses a service with no endpoints in under a second", async () => {
    await create(service("solo", "10.96.0.21"), slice("solo", [pods.get("a")!]), service("empty", "10.96.0.22"));
    assert.equal(await answers("a", "http://10.96.0.21/hostname"), "pod-a");
    assert.equal(get("a", "http://10.96.0.21/clientip").split(":")[0], pods.get("a")!.gateway);
    const started = Date.now();
    const run = curlIn(pods.get("client")!.netns, "http://10.96.0.22/hostname");
    assert.equal(run.status, 7, `connection refused, got exit ${run.status} ${run.stderr}`);
    assert.ok(Date.now() - started < 1000);
  });

  it("clears a removed endpoint's UDP flows, so a running UDP client moves to the others", async () => {
    const [a, b, c] = ["a", "b", "c"].map((n) => pods.get(n)!) as [Pod, Pod, Pod];
    const udp = service("dns", "10.96.0.23", { ports: [{ port: 8080, targetPort: 8080, protocol: "UDP" }] });
    await create(udp, slice("dns", [a, b, c], "UDP"));
    const client = udpClient(pods.get("client")!, "10.96.0.23");
    try {
      await waitFor(() => client.replies.length >= 3, 5000, () => "no UDP answers");
      const first = client.replies.at(-1)!.from;
      // One source port, one conntrack entry: every answer comes from the same endpoint.
      assert.ok(client.replies.slice(-3).every((r) => r.from === first));
      const victim = [a, b, c].find((p) => `pod-${p.name}` === first)!;
      const removedAt = Date.now();
      await apply(slice("dns", [a, b, c].filter((p) => p !== victim), "UDP"));
      await waitFor(() => client.replies.some((r) => r.at > removedAt && r.from !== first), 3000, () => `still answered by ${first} only`);

      // Scale to 0: no answers; back to 3: answers resume at once (kubernetes#48370).
      await apply(slice("dns", [], "UDP"));
      await new Promise((r) => setTimeout(r, 800));
      const zeroAt = Date.now();
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(client.replies.filter((r) => r.at > zeroAt).length, 0, "no answers with no endpoints");
      const backAt = Date.now();
      await apply(slice("dns", [a, b, c], "UDP"));
      await waitFor(() => client.replies.some((r) => r.at > backAt), 3000, () => "UDP answers did not resume after scaling back to 3");
    } finally {
      client.stop();
    }
  });

  it("puts back rules deleted by hand", async () => {
    nft(node1, "flush", "chain", "ip", "podnet-svc", "services");
    assert.notEqual(curlIn(pods.get("client")!.netns, "http://10.96.0.20/hostname", 1).status, 0, "the flush broke the service");
    // The read-back runs at most every 20x its own duration (a few ms here, more on a loaded machine).
    await answers("client", "http://10.96.0.20/hostname", 15_000);
    assert.equal(nft(node1, "delete", "table", "ip", "podnet-svc").status, 0);
    await answers("client", "http://10.96.0.20/hostname", 15_000);
  });

  it("keeps an established connection across SIGKILL and restart of the agent", async () => {
    const script = [
      "import http.client, sys",
      "c = http.client.HTTPConnection('10.96.0.20', 80, timeout=5)",
      "for line in sys.stdin:",
      "    c.request('GET', '/hostname')",
      "    r = c.getresponse()",
      // The local port with each answer: http.client reconnects silently, and that must not pass.
      "    print(r.read().decode() + ' ' + str(c.sock.getsockname()[1]), flush=True)",
    ].join("\n");
    const child = spawn("ip", ["netns", "exec", pods.get("client")!.netns, "python3", "-c", script], { stdio: ["pipe", "pipe", "pipe"] });
    processes.push(child);
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const ask = async () => {
      child.stdin!.write("go\n");
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no answer on the open connection")), 6000));
      return (await Promise.race([lines.next(), timeout])).value as string;
    };
    const before = await ask();
    await cluster.stopAgent(node1, "SIGKILL");
    assert.equal(nft(node1, "list", "chain", "ip", "podnet-svc", "services").status, 0, "rules stay while the agent is down");
    assert.equal(await ask(), before);
    cluster.startAgent(node1, ["--resync-interval-ms", "300"]);
    // Keep the connection busy (the test server closes idle keep-alive connections after 5 s).
    let lastAsk = Date.now();
    await waitFor(async () => {
      if (Date.now() - lastAsk > 1500) {
        assert.equal(await ask(), before);
        lastAsk = Date.now();
      }
      const status = (await cluster.health(node1)) as { reconcilers?: { services?: { syncs?: number; healthy?: boolean } } };
      return (status.reconcilers?.services?.syncs ?? 0) >= 2 && status.reconcilers?.services?.healthy === true;
    }, 20_000, () => `services reconciler did not sync after restart: ${cluster.logOf(node1).slice(-2000)}`);
    assert.equal(await ask(), before, "the same connection, to the same endpoint, after the restart's full sync");
    child.kill("SIGKILL");
  });

  it("announces each LoadBalancer IP from exactly one node, reachable from the underlay, with Local keeping the client IP", async () => {
    const [a, c] = [pods.get("a")!, pods.get("c")!];
    await create(
      service("lb", "10.96.0.30", { type: "LoadBalancer", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] }, { loadBalancer: { ingress: [{ ip: LB_IP }] } }),
      slice("lb", [a, c]),
      service("lblocal", "10.96.0.31", { type: "LoadBalancer", externalTrafficPolicy: "Local", ports: [{ port: 80, targetPort: 8080, nodePort: 30081 }] }, { loadBalancer: { ingress: [{ ip: LB_LOCAL_IP }] } }),
      slice("lblocal", [c]),
    );
    const holders = (address: string) => cluster.nodes.filter((n) => ip("-n", n.netns, "-4", "addr", "show", "dev", "eth0").includes(`${address}/32`)).map((n) => n.name);
    await waitFor(() => holders(LB_IP).length === 1 && holders(LB_LOCAL_IP).length === 1, 5000, () => `holders ${holders(LB_IP)} / ${holders(LB_LOCAL_IP)}`);
    assert.deepEqual(holders(LB_LOCAL_IP), [node2.name], "a Local service is announced from the node with its endpoint");
    let out = "";
    await waitFor(() => {
      const run = curlIn(cluster.controlNs, `http://${LB_IP}/hostname`, 1);
      out = run.stdout;
      return run.status === 0;
    }, 5000, () => "LB IP unreachable from the underlay");
    assert.match(out, /^pod-[ac]$/);
    const local = curlIn(cluster.controlNs, `http://${LB_LOCAL_IP}/clientip`);
    assert.equal(local.status, 0, local.stderr);
    assert.equal(local.stdout.split(":")[0], "192.168.1.10", "externalTrafficPolicy Local keeps the external client's IP");
  });

  it("keeps the rules with etcd down, and still repairs them", async () => {
    await cluster.stopEtcd();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await answers("client", "http://10.96.0.20/hostname").then(() => "ok"), "ok");
    nft(node1, "flush", "chain", "ip", "podnet-svc", "services");
    await answers("client", "http://10.96.0.20/hostname", 15_000);
  });
  it("moves a LoadBalancer IP to another node when its announcer leaves", async () => {
    await cluster.startEtcd();
    const holders = () => cluster.nodes.filter((n) => ip("-n", n.netns, "-4", "addr", "show", "dev", "eth0").includes(`${LB_IP}/32`)).map((n) => n.name);
    await waitFor(() => holders().length === 1, 10_000, () => `holders ${holders()}`);
    const leaving = cluster.nodes.find((n) => n.name === holders()[0])!;
    const staying = cluster.nodes.find((n) => n !== leaving)!;
    // The node dies: its agent stops renewing the lease and its underlay goes dark.
    await cluster.stopAgent(leaving, "SIGKILL");
    ip("-n", leaving.netns, "link", "set", "eth0", "down");
    await waitFor(() => ip("-n", staying.netns, "-4", "addr", "show", "dev", "eth0").includes(`${LB_IP}/32`), 20_000, () => `${staying.name} did not take ${LB_IP} over`);
    // No gratuitous ARP here (arping is not installed): the external host asks again.
    ip("-n", cluster.controlNs, "neigh", "flush", "all");
    await waitFor(() => {
      const run = curlIn(cluster.controlNs, `http://${LB_IP}/hostname`, 1);
      return run.status === 0 && /^pod-[ac]$/.test(run.stdout);
    }, 10_000, () => `${LB_IP} unreachable after the takeover`);
  });
});
