// The vxlan backend with real agents, etcd, kernels and pods, on a routed underlay: node1 and node3 on
// 192.168.1.0/24, node2 on 192.168.2.0/24, joined by a router namespace that knows no pod subnet.
// Steps share one cluster and run in order; each says what it leaves for the next.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CniNetwork } from "../src/runtime/cni-driver.ts";
import { vtepMacFor } from "../src/agent/vxlan-plan.ts";
import { AgentCluster, ETCD_URL, ip, waitFor, type TestNode } from "./agent-harness.ts";

const REPO = resolve(import.meta.dirname, "..");
const DEVICE = "podnet.1";

interface Pod {
  ns: string;
  ip: string;
}

interface VxlanStatus {
  vtepMac: string;
  deviceMtu: number;
  peers: { name: string; nodeIp: string; via: string; vtepMac?: string }[];
}

describe("podnet agent, vxlan on a routed underlay", () => {
  const cluster = new AgentCluster();
  let n1: TestNode, n2: TestNode, n3: TestNode;
  const subnets = new Map<string, string>();
  const pods = new Map<string, Pod>();
  let baseConfig: Record<string, unknown>;

  const putConfig = (backend: string, options: Record<string, unknown> = {}) =>
    cluster.etcdctl("put", "/podnet/config", JSON.stringify({ ...baseConfig, backend, backendOptions: { [backend]: options } }));
  const explain = (node: TestNode) => () =>
    `${node.name}: ${ip("-n", node.netns, "route")}\n${bridge(node, "fdb", "show", "dev", DEVICE)}\n${ip("-n", node.netns, "neigh", "show", "dev", DEVICE)}--- log ---\n${cluster.logOf(node)}`;
  const routesStatus = async (node: TestNode) => ((await cluster.health(node)).reconcilers as Record<string, Record<string, unknown>>).routes!;
  const vxlanStatus = async (node: TestNode) => (await routesStatus(node)).backendStatus as VxlanStatus;
  const tunnel = (node: TestNode) => subnets.get(node.name)!.replace(/\/\d+$/, "");

  function bridge(node: TestNode, ...args: string[]): string {
    const run = spawnSync("bridge", ["-n", node.netns, ...args], { encoding: "utf8" });
    return run.stdout + run.stderr;
  }

  /** The device's FDB entries with a remote, as "mac dst", sorted. */
  function fdb(node: TestNode): string[] {
    const entries = JSON.parse(execFileSync("bridge", ["-n", node.netns, "-j", "fdb", "show", "dev", DEVICE], { encoding: "utf8" })) as { mac: string; dst?: string }[];
    return entries.filter((e) => e.dst).map((e) => `${e.mac} ${e.dst}`).sort();
  }

  /** The device's permanent neighbours, as "ip mac", sorted. */
  function neighbours(node: TestNode): string[] {
    const entries = JSON.parse(ip("-n", node.netns, "-j", "neigh", "show", "dev", DEVICE, "nud", "permanent")) as { dst: string; lladdr: string }[];
    return entries.map((e) => `${e.dst} ${e.lladdr}`).sort();
  }

  /** Our routes, as "dst via gw [dev onlink]", sorted. */
  function routes(node: TestNode): string[] {
    const json = JSON.parse(ip("-n", node.netns, "-j", "route", "show", "proto", "80")) as { dst: string; gateway: string; dev: string; flags: string[] }[];
    return json.map((r) => `${r.dst} via ${r.gateway}${r.flags.includes("onlink") ? ` dev ${r.dev} onlink` : ""}`).sort();
  }

  /** What a node should hold for `peers` reached over VXLAN. */
  function overlayEntries(peers: TestNode[]) {
    return {
      fdb: peers.map((p) => `${vtepMacFor(p.name, 1)} ${p.ip}`).sort(),
      neighbours: peers.map((p) => `${tunnel(p)} ${vtepMacFor(p.name, 1)}`).sort(),
      routes: peers.map((p) => `${subnets.get(p.name)} via ${tunnel(p)} dev ${DEVICE} onlink`).sort(),
    };
  }

  async function expectOverlay(node: TestNode, peers: TestNode[], timeoutMs = 5000): Promise<number> {
    const want = overlayEntries(peers);
    return waitFor(
      () => JSON.stringify(fdb(node)) === JSON.stringify(want.fdb) && JSON.stringify(neighbours(node)) === JSON.stringify(want.neighbours) && JSON.stringify(routes(node)) === JSON.stringify(want.routes),
      timeoutMs,
      () => `want ${JSON.stringify(want)}\n${explain(node)()}`,
    );
  }

  async function addPod(node: TestNode, label: string): Promise<Pod> {
    const ns = cluster.podNamespace(label);
    const net = CniNetwork.fromFile(join(node.confDir, "10-podnet.conflist"), { cniPath: [join(REPO, "dist/cni")], nodeNetns: `/run/netns/${node.netns}` });
    const result = (await net.add({ containerId: `${cluster.prefix}-${label}`, netns: `/run/netns/${ns}`, ifname: "eth0" })) as { ips: { address: string }[] };
    const pod = { ns, ip: result.ips[0]!.address.replace(/\/\d+$/, "") };
    pods.set(node.name, pod);
    return pod;
  }

  function ping(from: Pod, to: Pod, extra: string[] = []): boolean {
    return spawnSync("ip", ["netns", "exec", from.ns, "ping", "-c1", "-W1", ...extra, to.ip], { encoding: "utf8" }).status === 0;
  }

  async function expectPing(from: Pod, to: Pod, timeoutMs = 8000): Promise<void> {
    await waitFor(() => ping(from, to), timeoutMs, () => `ping ${from.ip} -> ${to.ip} fails`, 200);
  }

  before(async () => {
    await cluster.create(3, { topology: "routed" });
    [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode];
    baseConfig = { clusterCidr: "10.244.0.0/16", subnetLength: 24, backend: "vxlan", nodeLeaseTtlSeconds: 4 };
    putConfig("vxlan");
  });
  after(async () => {
    await cluster.destroy();
  });

  it("every node builds podnet.1 (VNI 1, port 8472, learning off, MTU underlay-50) and publishes its derived VTEP MAC", async () => {
    for (const node of cluster.nodes) cluster.startAgent(node);
    for (const node of cluster.nodes) {
      await waitFor(async () => (await cluster.health(node)).ready === true, 20_000, explain(node));
      subnets.set(node.name, String((await cluster.health(node)).podSubnet));
    }
    for (const node of cluster.nodes) {
      const details = ip("-n", node.netns, "-d", "link", "show", DEVICE);
      assert.match(details, /mtu 1450 /);
      assert.match(details, new RegExp(`link/ether ${vtepMacFor(node.name, 1)} `));
      assert.match(details, new RegExp(`vxlan id 1 local ${node.ip.replace(/\./g, "\\.")} dev eth0 .*dstport 8472 .*nolearning`, "s"));
      assert.match(ip("-n", node.netns, "addr", "show", "dev", DEVICE), new RegExp(`inet ${tunnel(node)}/32 `));
      const conflist = JSON.parse(readFileSync(join(node.confDir, "10-podnet.conflist"), "utf8"));
      assert.equal(conflist.plugins[0].mtu, 1450, "the conflist carries the overlay MTU");
      const status = await vxlanStatus(node);
      assert.equal(status.vtepMac, vtepMacFor(node.name, 1));
      assert.equal(status.deviceMtu, 1450);
      const record = JSON.parse(cluster.etcdctl("get", `/podnet/nodes/${node.name}`, "--print-value-only") || "{}") as { backendData?: Record<string, string> };
      if (record.backendData) assert.equal(record.backendData.vtepMac, vtepMacFor(node.name, 1));
    }
  });

  it("each node holds flannel's three entries per peer, and nothing of host-gw", async () => {
    await expectOverlay(n1, [n2, n3]);
    await expectOverlay(n2, [n1, n3]);
    await expectOverlay(n3, [n1, n2]);
    const s1 = await vxlanStatus(n1);
    assert.deepEqual(s1.peers.map((p) => [p.name, p.via, p.vtepMac]), [["node2", "vxlan", vtepMacFor("node2", 1)], ["node3", "vxlan", vtepMacFor("node3", 1)]]);
  });

  it("pods on different underlay subnets reach each other, with no NAT on the way", async () => {
    const p1 = await addPod(n1, "p1");
    const p2 = await addPod(n2, "p2");
    const p3 = await addPod(n3, "p3");
    assert.match(ip("-n", p1.ns, "link", "show", "eth0"), /mtu 1450 /, "the pod got the overlay MTU");
    await expectPing(p1, p2);
    await expectPing(p2, p3);
    await expectPing(p3, p1);
    // The source address the server sees is the pod's own (no masquerade on pod-to-pod traffic).
    const seen = execFileSync("ip", ["netns", "exec", p2.ns, "sh", "-c", `python3 -c "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',7777));s.listen(1);c,a=s.accept();print(a[0])" & sleep 0.4; ip netns exec ${p1.ns} python3 -c "import socket;socket.create_connection(('${p2.ip}',7777),3)"; wait`], { encoding: "utf8" }).trim();
    assert.equal(seen, p1.ip);
  });

  it("a full-size packet with DF set crosses nodes; one byte more is refused, not fragmented", () => {
    const p1 = pods.get("node1")!;
    const p2 = pods.get("node2")!;
    assert.ok(ping(p1, p2, ["-M", "do", "-s", String(1450 - 28)]), "ping -M do -s 1422 across the overlay");
    const tooBig = spawnSync("ip", ["netns", "exec", p1.ns, "ping", "-c1", "-W1", "-M", "do", "-s", String(1450 - 27), p2.ip], { encoding: "utf8" });
    assert.notEqual(tooBig.status, 0);
    assert.match(tooBig.stdout + tooBig.stderr, /message too long|mtu = 1450/i);
  });

  it("FDB, ARP and route entries deleted by hand come back within a resync", async () => {
    const mac2 = vtepMacFor("node2", 1);
    execFileSync("bridge", ["-n", n1.netns, "fdb", "del", mac2, "dev", DEVICE, "dst", n2.ip]);
    ip("-n", n1.netns, "neigh", "del", tunnel(n2), "dev", DEVICE);
    ip("-n", n1.netns, "route", "del", subnets.get("node2")!);
    assert.ok(!fdb(n1).some((e) => e.startsWith(mac2)));
    const ms = await expectOverlay(n1, [n2, n3], 3000);
    assert.ok(ms < 3000, `repaired in ${ms} ms`);
    await expectPing(pods.get("node1")!, pods.get("node2")!);
  });

  it("entries that are not ours are left alone", async () => {
    // A neighbour on the underlay and a route of someone else's protocol survive several resyncs.
    ip("-n", n1.netns, "neigh", "add", "192.168.1.99", "lladdr", "02:00:00:00:99:99", "dev", "eth0", "nud", "permanent");
    ip("-n", n1.netns, "route", "add", "10.99.0.0/24", "via", "192.168.1.13");
    await new Promise((r) => setTimeout(r, 1500));
    assert.match(ip("-n", n1.netns, "neigh", "show", "dev", "eth0"), /192\.168\.1\.99 lladdr 02:00:00:00:99:99 PERMANENT/);
    assert.match(ip("-n", n1.netns, "route"), /10\.99\.0\.0\/24 via 192\.168\.1\.13/);
    ip("-n", n1.netns, "route", "del", "10.99.0.0/24");
    ip("-n", n1.netns, "neigh", "del", "192.168.1.99", "dev", "eth0");
  });

  it("the device deleted by hand comes back, with its entries", async () => {
    ip("-n", n2.netns, "link", "del", DEVICE);
    await expectOverlay(n2, [n1, n3], 4000);
    assert.match(ip("-n", n2.netns, "-d", "link", "show", DEVICE), /vxlan id 1 .*nolearning/s);
    await expectPing(pods.get("node2")!, pods.get("node1")!);
    await expectPing(pods.get("node1")!, pods.get("node2")!);
  });

  it("an agent restart keeps its VTEP MAC, so peers' entries stay valid", async () => {
    const before = (await vxlanStatus(n2)).vtepMac;
    await cluster.stopAgent(n2);
    cluster.startAgent(n2);
    // Meanwhile node1 never drops node2's FDB entry (node2 re-registers before its backend runs).
    const missing: number[] = [];
    await waitFor(
      async () => {
        if (!fdb(n1).includes(`${before} ${n2.ip}`)) missing.push(Date.now());
        return (await cluster.health(n2).catch(() => ({ ready: false }))).ready === true;
      },
      20_000,
      explain(n2),
      50,
    );
    assert.deepEqual(missing, [], "node1 kept node2's FDB entry throughout the restart");
    assert.equal((await vxlanStatus(n2)).vtepMac, before);
    assert.match(ip("-n", n2.netns, "link", "show", DEVICE), new RegExp(`link/ether ${before} `));
    await expectOverlay(n1, [n2, n3]);
    await expectPing(pods.get("node1")!, pods.get("node2")!);
  });

  it("directRouting: a plain route to the same-subnet peer, VXLAN to the other", async () => {
    putConfig("vxlan", { directRouting: true });
    const direct = (from: TestNode, to: TestNode) => `${subnets.get(to.name)} via ${to.ip}`;
    const overlay = (to: TestNode) => `${subnets.get(to.name)} via ${tunnel(to)} dev ${DEVICE} onlink`;
    await waitFor(() => JSON.stringify(routes(n1)) === JSON.stringify([overlay(n2), direct(n1, n3)].sort()), 6000, explain(n1));
    await waitFor(() => JSON.stringify(routes(n3)) === JSON.stringify([direct(n3, n1), overlay(n2)].sort()), 6000, explain(n3));
    await waitFor(() => JSON.stringify(routes(n2)) === JSON.stringify([overlay(n1), overlay(n3)].sort()), 6000, explain(n2));
    assert.deepEqual(fdb(n1), [`${vtepMacFor("node2", 1)} ${n2.ip}`], "no FDB entry for the directly routed peer");
    const s1 = await vxlanStatus(n1);
    assert.deepEqual(s1.peers.map((p) => `${p.name}:${p.via}`).sort(), ["node2:vxlan", "node3:direct"]);
    await expectPing(pods.get("node1")!, pods.get("node3")!);
    await expectPing(pods.get("node1")!, pods.get("node2")!);
    await expectPing(pods.get("node3")!, pods.get("node2")!);
    putConfig("vxlan");
    await expectOverlay(n1, [n2, n3], 6000);
  });

  it("host-gw on the routed underlay reports the peers it cannot reach and routes none to them", async () => {
    putConfig("host-gw");
    await waitFor(async () => (await routesStatus(n1)).running === "host-gw", 6000, explain(n1));
    const condition = (await routesStatus(n1)).condition as { reason: string; message: string; peers: { name: string }[] };
    assert.equal(condition.reason, "PeersNotOnLink");
    assert.deepEqual(condition.peers.map((p) => p.name), ["node2"]);
    assert.match(condition.message, /node2 \(192\.168\.2\.12\).*vxlan/);
    assert.deepEqual(routes(n1), [`${subnets.get("node3")} via ${n3.ip}`], "no half-working route to node2");
    assert.equal(spawnSync("ip", ["-n", n1.netns, "link", "show", DEVICE]).status !== 0, true, "vxlan's device is gone");
    assert.match((await cluster.get(n1, "/metrics")).body, /^podnet_agent_unreachable_peers 1$/m);
    assert.match(cluster.logOf(n1), /PeersNotOnLink: host-gw cannot route to 1 peer .*node2/);
    const s2 = (await routesStatus(n2)).condition as { peers: { name: string }[] };
    assert.deepEqual(s2.peers.map((p) => p.name), ["node1", "node3"]);
    // Same-subnet pods keep talking; across the router they cannot.
    await expectPing(pods.get("node1")!, pods.get("node3")!);
    assert.equal(ping(pods.get("node1")!, pods.get("node2")!), false);
  });

  it("switching back to vxlan while pods run restores cross-subnet connectivity with no manual step", async () => {
    putConfig("vxlan");
    await expectOverlay(n1, [n2, n3], 8000);
    await expectOverlay(n2, [n1, n3], 8000);
    assert.equal((await routesStatus(n1)).condition, null);
    assert.match((await cluster.get(n1, "/metrics")).body, /^podnet_agent_unreachable_peers 0$/m);
    await expectPing(pods.get("node1")!, pods.get("node2")!);
    await expectPing(pods.get("node2")!, pods.get("node3")!);
  });

  it("a peer's node IP changes: peers replace its FDB entry", async () => {
    await cluster.stopAgent(n3);
    ip("-n", n3.netns, "addr", "del", `${n3.ip}/24`, "dev", "eth0");
    n3.ip = "192.168.1.23";
    ip("-n", n3.netns, "addr", "add", `${n3.ip}/24`, "dev", "eth0");
    ip("-n", n3.netns, "route", "replace", "default", "via", "192.168.1.1");
    cluster.startAgent(n3);
    await waitFor(async () => (await cluster.health(n3)).ready === true, 20_000, explain(n3));
    await expectOverlay(n1, [n2, n3], 8000);
    await expectOverlay(n2, [n1, n3], 8000);
    assert.ok(!fdb(n1).some((e) => e.endsWith(" 192.168.1.13")), "the old remote is gone");
    await expectPing(pods.get("node2")!, pods.get("node3")!);
  });

  it("a peer leaves: its FDB, ARP and route entries go everywhere", async () => {
    const output = execFileSync(
      "ip",
      ["netns", "exec", cluster.controlNs, process.execPath, join(REPO, "bin/podnet.js"), "node", "remove", n3.name, "--etcd", ETCD_URL, "--timeout", "20"],
      { encoding: "utf8" },
    );
    assert.match(output, /node3 removed/);
    await expectOverlay(n1, [n2]);
    await expectOverlay(n2, [n1]);
    await expectPing(pods.get("node1")!, pods.get("node2")!);
  });
});

describe("podnet agent, host-gw → vxlan → host-gw on a flat underlay while pods run", () => {
  const cluster = new AgentCluster();
  let baseConfig: Record<string, unknown>;
  const pods: Pod[] = [];
  const putConfig = (backend: string) => cluster.etcdctl("put", "/podnet/config", JSON.stringify({ ...baseConfig, backend }));
  const running = async (node: TestNode) => ((await cluster.health(node)).reconcilers as Record<string, { running?: string }>).routes?.running;

  /** 2 MB over TCP from pod a to pod b; returns the bytes b received (python3 on both ends). */
  function transfer(a: Pod, b: Pod): number {
    const server = `import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',7778));s.listen(1);c,_=s.accept();n=0\nwhile True:\n  d=c.recv(65536)\n  if not d: break\n  n+=len(d)\nprint(n)`;
    const client = `import socket;c=socket.create_connection(('${b.ip}',7778),5);c.sendall(b'x'*2000000);c.close()`;
    const out = execFileSync(
      "sh",
      ["-c", `ip netns exec ${b.ns} timeout 20 python3 -c "$SERVER" & sleep 0.4; ip netns exec ${a.ns} timeout 15 python3 -c "$CLIENT"; wait`],
      { encoding: "utf8", env: { ...process.env, SERVER: server, CLIENT: client } },
    );
    return Number(out.trim());
  }

  before(async () => {
    await cluster.create(2);
    baseConfig = { clusterCidr: "10.244.0.0/16", subnetLength: 24, backend: "host-gw", nodeLeaseTtlSeconds: 4 };
    putConfig("host-gw");
    for (const node of cluster.nodes) cluster.startAgent(node);
    for (const node of cluster.nodes) await waitFor(async () => (await cluster.health(node)).ready === true, 20_000, () => cluster.logOf(node));
    for (const [i, node] of cluster.nodes.entries()) {
      const ns = cluster.podNamespace(`q${i}`);
      const net = CniNetwork.fromFile(join(node.confDir, "10-podnet.conflist"), { cniPath: [join(REPO, "dist/cni")], nodeNetns: `/run/netns/${node.netns}` });
      const result = (await net.add({ containerId: `${cluster.prefix}-q${i}`, netns: `/run/netns/${ns}`, ifname: "eth0" })) as { ips: { address: string }[] };
      pods.push({ ns, ip: result.ips[0]!.address.replace(/\/\d+$/, "") });
    }
  });
  after(async () => {
    await cluster.destroy();
  });

  it("pods made under host-gw (MTU 1500) keep working over vxlan (1450), TCP by path MTU discovery, and back", async () => {
    const [a, b] = pods as [Pod, Pod];
    assert.match(ip("-n", a.ns, "link", "show", "eth0"), /mtu 1500 /);
    assert.equal(transfer(a, b), 2_000_000);
    putConfig("vxlan");
    for (const node of cluster.nodes) await waitFor(async () => (await running(node)) === "vxlan", 8000, () => cluster.logOf(node));
    await waitFor(() => spawnSync("ip", ["netns", "exec", a.ns, "ping", "-c1", "-W1", b.ip]).status === 0, 8000, () => cluster.logOf(cluster.nodes[0]!), 200);
    assert.match(ip("-n", cluster.nodes[0]!.netns, "route", "show", "proto", "80"), /via 10\.244\.\d+\.0 dev podnet\.1 onlink/);
    assert.equal(transfer(a, b), 2_000_000, "a full-size TCP stream gets through the smaller overlay MTU");
    const conflist = JSON.parse(readFileSync(join(cluster.nodes[0]!.confDir, "10-podnet.conflist"), "utf8"));
    assert.equal(conflist.plugins[0].mtu, 1450, "new pods get the overlay MTU");
    putConfig("host-gw");
    for (const node of cluster.nodes) await waitFor(async () => (await running(node)) === "host-gw", 8000, () => cluster.logOf(node));
    assert.equal(spawnSync("ip", ["-n", cluster.nodes[0]!.netns, "link", "show", "podnet.1"]).status !== 0, true, "vxlan's device is gone");
    await waitFor(() => spawnSync("ip", ["netns", "exec", a.ns, "ping", "-c1", "-W1", b.ip]).status === 0, 8000, () => cluster.logOf(cluster.nodes[0]!), 200);
    assert.equal(transfer(a, b), 2_000_000);
  });
});
