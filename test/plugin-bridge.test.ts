// The podnet plugin against the real kernel: pods in their own namespaces on a node namespace.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PluginError } from "../src/runtime/cni-driver.ts";
import { ipOf, PODNET, podnetConfList, requireBuild, ROOT, testNode, type TestNode } from "./helpers/cni.ts";
import { cleanupAll, Netns } from "./helpers/netns.ts";

before(requireBuild);
after(cleanupAll);

describe("ADD and DEL", () => {
  let node: TestNode;
  before(async () => (node = await testNode()));
  after(() => node.destroy());

  test("two pods get distinct IPs, a default route via the bridge, and reach each other", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir, extra: { hairpinMode: true, mtu: 1400 } }));
    const a = node.pod();
    const b = node.pod();
    const ra = await net.add(a.attachment);
    const rb = await net.add(b.attachment);
    const ipA = ipOf(ra);
    const ipB = ipOf(rb);
    assert.notEqual(ipA, ipB);
    assert.match(ipA, /^10\.244\.1\.\d+$/);

    assert.deepEqual(a.ns.addresses("eth0").filter((cidr) => !cidr.startsWith("fe80:")), [`${ipA}/24`]);
    const defaultRoute = a.ns.routes().find((r) => r.dst === "default");
    assert.equal(defaultRoute?.gateway, "10.244.1.1");
    assert.ok(node.ns.addresses("cni0").includes("10.244.1.1/24"), "the bridge holds the gateway address");
    assert.equal(node.ns.exec("cat", "/proc/sys/net/ipv4/ip_forward").trim(), "1");

    // MTU and hairpin reached the kernel.
    const link = JSON.parse(a.ns.ip("-j", "link", "show", "eth0")) as { mtu: number }[];
    assert.equal(link[0]?.mtu, 1400);
    const hostVeths = node.hostVeths();
    assert.equal(hostVeths.length, 2);
    const brport = JSON.parse(node.ns.exec("bridge", "-j", "-d", "link", "show", "dev", hostVeths[0] ?? "")) as { hairpin?: boolean }[];
    assert.equal(brport[0]?.hairpin, true);

    a.ns.exec("ping", "-c", "1", "-W", "2", ipB);
    b.ns.exec("ping", "-c", "1", "-W", "2", ipA);

    await net.del(a.attachment, ra);
    await net.del(b.attachment, rb);
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(), []);
    assert.ok(!a.ns.links().includes("eth0"), "the pod end went with the host end");
  });

  test("the result names the bridge, host veth and pod interface with its sandbox", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const pod = node.pod();
    const result = (await net.add(pod.attachment)) as {
      cniVersion: string;
      interfaces: { name: string; mac: string; sandbox?: string }[];
      ips: { address: string; gateway: string; interface: number }[];
      routes: { dst: string; gw?: string }[];
    };
    try {
      assert.equal(result.cniVersion, "1.1.0");
      assert.equal(result.interfaces.length, 3);
      assert.equal(result.interfaces[0]?.name, "cni0");
      assert.match(result.interfaces[1]?.name ?? "", /^pn[0-9a-f]{12}$/);
      assert.equal(result.interfaces[2]?.name, "eth0");
      assert.equal(result.interfaces[2]?.sandbox, pod.attachment.netns);
      const podLink = JSON.parse(pod.ns.ip("-j", "link", "show", "eth0")) as { address: string }[];
      assert.equal(result.interfaces[2]?.mac, podLink[0]?.address);
      assert.equal(result.ips[0]?.interface, 2);
      assert.equal(result.ips[0]?.gateway, "10.244.1.1");
      assert.deepEqual(result.routes, [{ dst: "0.0.0.0/0", gw: "10.244.1.1" }]);
    } finally {
      await net.del(pod.attachment, result);
    }
  });

  test("a fixed MAC from CNI_ARGS and a requested IP are honoured", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const pod = node.pod();
    const att = { ...pod.attachment, args: { MAC: "02:42:0a:f4:01:63", IP: "10.244.1.99" } };
    const result = await net.add(att);
    try {
      assert.equal(ipOf(result), "10.244.1.99");
      const podLink = JSON.parse(pod.ns.ip("-j", "link", "show", "eth0")) as { address: string }[];
      assert.equal(podLink[0]?.address, "02:42:0a:f4:01:63");
    } finally {
      await net.del(att, result);
    }
  });

  test("runtimeConfig mac, ips and dns (declared capabilities) reach the pod and the result; args.cni.mac too", async () => {
    const list = podnetConfList({ dataDir: node.dataDir, extra: { capabilities: { mac: true, ips: true, dns: true } } });
    const net = node.network(list);
    const pod = node.pod();
    const dns = { nameservers: ["10.96.0.10"], search: ["default.svc.cluster.local"], options: ["ndots:5"] };
    const att = { ...pod.attachment, runtimeConfig: { mac: "02:42:0a:f4:01:64", ips: ["10.244.1.100/24"], dns } };
    const result = await net.add(att);
    try {
      assert.equal(ipOf(result), "10.244.1.100");
      const podLink = JSON.parse(pod.ns.ip("-j", "link", "show", "eth0")) as { address: string }[];
      assert.equal(podLink[0]?.address, "02:42:0a:f4:01:64");
      const interfaces = result.interfaces as { name: string; mac: string; sandbox?: string }[];
      assert.equal(interfaces.find((i) => i.sandbox)?.mac, "02:42:0a:f4:01:64", "the result names the MAC the pod has");
      assert.deepEqual(result.dns, dns);
    } finally {
      await net.del(att, result);
    }

    const viaArgs = podnetConfList({ dataDir: node.dataDir, extra: { args: { cni: { mac: "02:42:0a:f4:01:65" } } } });
    const other = node.pod();
    const r2 = await node.network(viaArgs).add(other.attachment);
    try {
      assert.equal((JSON.parse(other.ns.ip("-j", "link", "show", "eth0")) as { address: string }[])[0]?.address, "02:42:0a:f4:01:65");
    } finally {
      await node.network(viaArgs).del(other.attachment, r2);
    }
  });

  test("runtimeConfig keys are matched in any case, as containerd sends them", async () => {
    // The driver filters by capability name, so this goes around it: a raw run with a Go-cased key.
    const list = podnetConfList({ dataDir: node.dataDir });
    const pod = node.pod();
    const plugin = { ...list.plugins[0], name: list.name, cniVersion: list.cniVersion, runtimeConfig: { Mac: "02:42:0a:f4:01:66", IPs: ["10.244.1.101"] } };
    const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: pod.attachment.containerId, CNI_NETNS: pod.attachment.netns, CNI_IFNAME: "eth0", CNI_PATH: "/nonexistent" };
    const run = await node.raw(PODNET, env, JSON.stringify(plugin));
    assert.equal(run.exitCode, 0, run.stdout);
    const result = JSON.parse(run.stdout) as Record<string, unknown>;
    try {
      assert.equal(ipOf(result), "10.244.1.101");
      assert.equal((JSON.parse(pod.ns.ip("-j", "link", "show", "eth0")) as { address: string }[])[0]?.address, "02:42:0a:f4:01:66");
    } finally {
      await node.network(list).del(pod.attachment, result);
    }
  });

  test("DEL succeeds when repeated, without prevResult, with an empty netns, and after the netns is gone", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const pod = node.pod();
    const result = await net.add(pod.attachment);
    await net.del(pod.attachment, result);
    await net.del(pod.attachment, result);
    await net.del(pod.attachment);
    await net.del({ ...pod.attachment, netns: "" });

    const other = node.pod();
    await net.add(other.attachment);
    other.ns.delete();
    await net.del(other.attachment);
    await net.del({ ...other.attachment, netns: "" });
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(), []);
  });
});

describe("CHECK", () => {
  let node: TestNode;
  before(async () => (node = await testNode()));
  after(() => node.destroy());

  test("passes on a healthy pod and fails once its address or route is removed", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const pod = node.pod();
    const result = await net.add(pod.attachment);
    try {
      await net.check(pod.attachment, result);
      pod.ns.ip("route", "del", "default");
      await assert.rejects(net.check(pod.attachment, result), (err: unknown) => err instanceof PluginError && /route/.test(err.msg));
      pod.ns.ip("route", "add", "default", "via", "10.244.1.1");
      await net.check(pod.attachment, result);
      pod.ns.ip("addr", "flush", "dev", "eth0");
      await assert.rejects(net.check(pod.attachment, result), (err: unknown) => err instanceof PluginError && /address/.test(err.msg));
    } finally {
      await net.del(pod.attachment, result);
    }
  });

  test("fails when the host veth is gone", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const pod = node.pod();
    const result = await net.add(pod.attachment);
    try {
      for (const veth of node.hostVeths()) node.ns.ip("link", "del", veth);
      await assert.rejects(net.check(pod.attachment, result), PluginError);
    } finally {
      await net.del(pod.attachment, result);
    }
  });
});

describe("IPAM through the plugin", () => {
  let node: TestNode;
  before(async () => (node = await testNode()));
  after(() => node.destroy());

  test("addresses are handed out round-robin, exhaustion is a clear error, and a freed address comes back last", async () => {
    // 10.244.9.2 - 10.244.9.4 minus nothing: the gateway .1 sits outside rangeStart..rangeEnd.
    const list = podnetConfList({
      dataDir: node.dataDir,
      ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.9.0/24", rangeStart: "10.244.9.2", rangeEnd: "10.244.9.4", gateway: "10.244.9.1" }]], dataDir: node.dataDir },
    });
    const net = node.network(list);
    const pods = [node.pod(), node.pod(), node.pod()];
    const results = [];
    for (const p of pods) results.push(await net.add(p.attachment));
    assert.deepEqual(results.map((r) => ipOf(r)), ["10.244.9.2", "10.244.9.3", "10.244.9.4"]);

    const extra = node.pod();
    await assert.rejects(net.add(extra.attachment), (err: unknown) => err instanceof PluginError && err.code === 100 && /no free address/i.test(err.msg));
    assert.deepEqual(node.hostVeths().length, 3, "the failed ADD left no veth");
    assert.equal(node.reservations().length, 3, "the failed ADD reserved nothing");

    await net.del(pods[0]!.attachment, results[0]);
    await net.del(pods[1]!.attachment, results[1]);
    // .2 and .3 are free; the cursor sits after .4, so the next is .2 (wrapping), then .3.
    const r1 = await net.add(extra.attachment);
    assert.equal(ipOf(r1), "10.244.9.2");
    await net.del(extra.attachment, r1);
    const again = node.pod();
    const r2 = await net.add(again.attachment);
    assert.equal(ipOf(r2), "10.244.9.3", "the address freed a moment ago is not reused at once");
    await net.del(again.attachment, r2);
    await net.del(pods[2]!.attachment, results[2]);
    assert.deepEqual(node.reservations(), []);
  });

  test("STATUS succeeds when the node can add and fails with 50 when it cannot", async () => {
    const okNet = node.network(podnetConfList({ dataDir: node.dataDir }));
    await okNet.status();
    const full = podnetConfList({
      dataDir: node.dataDir,
      ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.8.0/30" }]], dataDir: node.dataDir },
    });
    full.name = "podnet-full";
    const fullNet = node.network(full);
    await fullNet.status();
    const pods = [node.pod(), node.pod()];
    const results = [];
    for (const p of pods) {
      try {
        results.push(await fullNet.add(p.attachment));
      } catch {
        /* a /30 has one or two usable addresses depending on the gateway */
      }
    }
    await assert.rejects(fullNet.status(), (err: unknown) => err instanceof PluginError && err.code === 50);
    await fullNet.gc([]);
    await fullNet.status();
    assert.equal(node.reservations("podnet-full").length, 0);
    assert.deepEqual(node.hostVeths(), [], "GC removed the veths of attachments that are not valid");
  });

  test("STATUS is NotReady (50) while the node agent's ready file is missing", async () => {
    const readyFile = join(node.dataDir, "agent.ready");
    const net = node.network(podnetConfList({ dataDir: node.dataDir, extra: { readyFile } }));
    await assert.rejects(net.status(), (err: unknown) => err instanceof PluginError && err.code === 50 && /agent\.ready/.test(err.details));
    writeFileSync(readyFile, "");
    await net.status();
    rmSync(readyFile);
    await assert.rejects(net.status(), (err: unknown) => err instanceof PluginError && err.code === 50);
    const relative = node.network(podnetConfList({ dataDir: node.dataDir, extra: { readyFile: "agent.ready" } }));
    await assert.rejects(relative.status(), (err: unknown) => err instanceof PluginError && err.code === 7);
  });

  test("GC releases every reservation that is not a valid attachment", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const keep = node.pod();
    const leak1 = node.pod();
    const leak2 = node.pod();
    const rKeep = await net.add(keep.attachment);
    await net.add(leak1.attachment);
    await net.add(leak2.attachment);
    assert.equal(node.reservations().length, 3);
    await net.gc([{ containerID: keep.attachment.containerId, ifname: "eth0" }]);
    assert.deepEqual(node.reservations(), [ipOf(rKeep)]);
    assert.equal(node.hostVeths().length, 1);
    await net.del(keep.attachment, rKeep);
    assert.deepEqual(node.reservations(), []);
  });
});

describe("failure safety", () => {
  let node: TestNode;
  before(async () => (node = await testNode()));
  after(() => node.destroy());

  test("an ADD that fails halfway leaves no veth and no reservation", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const pod = node.pod();
    // eth0 already exists in the pod: the veth peer cannot be created, after IPAM has reserved.
    pod.ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer");
    await assert.rejects(net.add(pod.attachment), PluginError);
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(), []);
  });

  test("a kernel refusal late in ADD is code 101 with the errno, and undoes only that attachment", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const pod = node.pod();
    const first = await net.add(pod.attachment);
    // A second interface in the same pod: its default route collides with eth0's (EEXIST),
    // after IPAM reserved and the veth was made.
    const second = { ...pod.attachment, ifname: "net1" };
    await assert.rejects(net.add(second), (err: unknown) => {
      assert.ok(err instanceof PluginError);
      assert.equal(err.code, 101, err.message);
      assert.match(err.details ?? "", /EEXIST/);
      return true;
    });
    assert.deepEqual(node.reservations(), [ipOf(first)], "only the first attachment's address is held");
    assert.equal(node.hostVeths().length, 1, "only the first attachment's veth is left");
    assert.deepEqual(pod.ns.links().sort(), ["eth0", "lo"]);
    await net.del(pod.attachment, first);
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(), []);
  });
});

const PROBE_SERVER = join(ROOT, "src/lab/probe-server.mjs");
const PROBE_CLIENT = join(ROOT, "src/lab/probe-client.mjs");

/** The lab's probe server in a namespace: it answers each connection with its name and the peer address it saw. */
function probeServer(ns: Netns, name: string): { ready: Promise<void>; stop: () => void } {
  const readyFile = join(probeTempDir(), `${name}-${ns.name}.ready`);
  const child = spawn("ip", ["netns", "exec", ns.name, process.execPath, PROBE_SERVER, name, "7007", readyFile], { stdio: "ignore" });
  const ready = (async () => {
    for (let i = 0; i < 200 && !existsSync(readyFile); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(existsSync(readyFile), `probe server ${name} did not start`);
  })();
  return { ready, stop: () => child.kill("SIGKILL") };
}

function probeFrom(ns: Netns, targets: { label: string; host: string; port: number }[]): Record<string, string>[] {
  const run = spawnSync("ip", ["netns", "exec", ns.name, process.execPath, PROBE_CLIENT], { input: JSON.stringify({ timeoutMs: 3000, targets }), encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  return (JSON.parse(run.stdout) as Record<string, string>[]).map(({ ms: _ms, ...rest }) => rest);
}

let probeDir: string | undefined;
function probeTempDir(): string {
  probeDir ??= mkdtempSync(join(tmpdir(), "pnt-probe-"));
  return probeDir;
}
process.on("exit", () => probeDir && rmSync(probeDir, { recursive: true, force: true }));

describe("ipMasq", () => {
  let node: TestNode;
  before(async () => (node = await testNode()));
  after(() => node.destroy());

  test("masquerades pod traffic leaving the cluster CIDR and never pod-to-pod traffic", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir, extra: { ipMasq: true, clusterCIDR: "10.244.0.0/16" } }));
    const pod = node.pod();
    const result = await net.add(pod.attachment);
    const ip = ipOf(result);
    const ruleset = node.ns.exec("nft", "list", "table", "inet", "podnet_podnet_test");
    assert.match(ruleset, new RegExp(ip.replace(/\./g, "\\.")));
    assert.match(ruleset, /10\.244\.0\.0\/16/);
    assert.match(ruleset, /masquerade/);
    await net.del(pod.attachment, result);
    const after = node.ns.exec("nft", "list", "set", "inet", "podnet_podnet_test", "masq4");
    assert.doesNotMatch(after, new RegExp(`\\b${ip.replace(/\./g, "\\.")}\\b`));
  });

  test("traffic: a pod reaching outside is seen as the node, a pod reaching a pod keeps its own address", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir, extra: { ipMasq: true, clusterCIDR: "10.244.0.0/16" } }));
    // An "outside" host on the node's uplink, with no route back to the pod subnet: only a
    // masqueraded connection can be answered.
    const outside = Netns.create("ext");
    node.ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", outside.name);
    node.ns.ip("addr", "add", "192.168.77.1/24", "dev", "up0");
    node.ns.ip("link", "set", "up0", "up");
    outside.ip("addr", "add", "192.168.77.2/24", "dev", "eth0");
    outside.ip("link", "set", "eth0", "up");
    outside.ip("link", "set", "lo", "up");
    const [a, b] = [node.pod(), node.pod()];
    const [ra, rb] = [await net.add(a.attachment), await net.add(b.attachment)];
    const servers = [probeServer(outside, "outside"), probeServer(b.ns, "pod-b")];
    try {
      await Promise.all(servers.map((s) => s.ready));
      const answers = probeFrom(a.ns, [
        { label: "outside", host: "192.168.77.2", port: 7007 },
        { label: "pod-b", host: ipOf(rb), port: 7007 },
      ]);
      assert.deepEqual(answers.find((x) => x.label === "outside"), { label: "outside", self: "outside", peer: "192.168.77.1" }, "masqueraded to the node's address");
      assert.deepEqual(answers.find((x) => x.label === "pod-b"), { label: "pod-b", self: "pod-b", peer: ipOf(ra) }, "pod to pod is not NATed");
    } finally {
      for (const s of servers) s.stop();
      await net.del(a.attachment, ra);
      await net.del(b.attachment, rb);
      outside.delete();
    }
  });

  test("a DEL without prevResult, and GC, take the pod out of the masquerade set too", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir, extra: { ipMasq: true, clusterCIDR: "10.244.0.0/16" } }));
    const masq4 = () => node.ns.exec("nft", "list", "set", "inet", "podnet_podnet_test", "masq4");
    const has = (ip: string) => new RegExp(`\\b${ip.replace(/\./g, "\\.")}\\b`).test(masq4());
    const a = node.pod();
    const ipA = ipOf(await net.add(a.attachment));
    const b = node.pod();
    const ipB = ipOf(await net.add(b.attachment));
    assert.ok(has(ipA) && has(ipB));
    await net.del(a.attachment);
    assert.ok(!has(ipA), "DEL without prevResult left the address in the masquerade set");
    await net.gc([]);
    assert.ok(!has(ipB), "GC left the address in the masquerade set");
    assert.deepEqual(node.reservations(), []);
    assert.deepEqual(node.hostVeths(), []);
  });
});
