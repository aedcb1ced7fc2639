// Anti-spoofing against the real kernel (issue 13 §2): a pod that sends from an address it was not
// given is dropped at its host veth and counted; ARP for another pod's address answers nothing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readCounters, readTable } from "../src/kernel/nft.ts";
import { AgentMetrics, SPOOFED_COUNTER_SOURCE } from "../src/agent/metrics.ts";
import { ANTISPOOF_FAMILY, ANTISPOOF_TABLE, SPOOFED_COUNTER } from "../src/plugin/podfilter.ts";
import { ipOf, podnetConfList, requireBuild, testNode, type TestNode } from "./helpers/cni.ts";
import { cleanupAll, type Netns } from "./helpers/netns.ts";

before(requireBuild);
after(cleanupAll);

const PORT = 9999;

function spoofedCount(node: TestNode): number {
  return readCounters(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, node.ns.path)?.find((c) => c.name === SPOOFED_COUNTER)?.packets ?? 0;
}

/** All elements of the anti-spoofing sets, as "set:key" strings. */
function elements(node: TestNode): string[] {
  const table = readTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, node.ns.path);
  return (table?.sets ?? []).flatMap((s) => s.elements.map((e) => `${s.name}:${e.join(" . ")}`));
}

/** A counter in the receiving pod's own namespace of UDP datagrams to PORT from `source`. */
function arrivalsCounter(pod: Netns, source: string): () => number {
  const family = source.includes(":") ? "ip6" : "ip";
  const counter = `from_${source.replace(/[.:]/g, "_")}`;
  const script = `add table inet antispooftest\nadd counter inet antispooftest ${counter}\nadd chain inet antispooftest input { type filter hook input priority 0; }\nadd rule inet antispooftest input ${family} saddr ${source} udp dport ${PORT} counter name ${counter}\n`;
  pod.exec("sh", "-c", `printf '${script.replace(/\n/g, "\\n")}' | nft -f -`);
  return () => {
    const out = JSON.parse(pod.exec("nft", "-j", "list", "counter", "inet", "antispooftest", counter)) as { nftables: { counter?: { packets: number } }[] };
    return out.nftables.find((o) => o.counter)?.counter?.packets ?? 0;
  };
}

/** Sends one UDP datagram from `source` (which must be on the pod) to `dest`:PORT. */
function sendFrom(pod: Netns, source: string, dest: string): void {
  const af = source.includes(":") ? "socket.AF_INET6" : "socket.AF_INET";
  pod.exec("python3", "-c", `import socket\ns=socket.socket(${af},socket.SOCK_DGRAM)\ns.bind(("${source}",0))\nfor _ in range(3): s.sendto(b"x",("${dest}",${PORT}))`);
}

function addSecondAddress(pod: Netns, address: string): void {
  pod.ip("addr", "add", address.includes(":") ? `${address}/128` : `${address}/32`, "dev", "eth0", ...(address.includes(":") ? ["nodad"] : []));
}

test("the agent reads the counter the plugin writes", () => {
  assert.deepEqual(SPOOFED_COUNTER_SOURCE, { family: ANTISPOOF_FAMILY, table: ANTISPOOF_TABLE, counter: SPOOFED_COUNTER });
});

describe("anti-spoofing", () => {
  let node: TestNode;
  before(async () => (node = await testNode()));
  after(() => node.destroy());

  test("a pod sending from another pod's IPv4 address is dropped and counted; its own address passes", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const [a, b, c] = [node.pod(), node.pod(), node.pod()];
    const [ra, rb, rc] = [await net.add(a.attachment), await net.add(b.attachment), await net.add(c.attachment)];
    const [ipA, ipB, ipC] = [ipOf(ra), ipOf(rb), ipOf(rc)];
    const fromA = arrivalsCounter(c.ns, ipA);
    const fromB = arrivalsCounter(c.ns, ipB);

    sendFrom(a.ns, ipA, ipC);
    assert.equal(fromA(), 3, "the pod's own address passes");
    a.ns.exec("ping", "-c", "1", "-W", "2", ipB);

    const before = spoofedCount(node);
    addSecondAddress(a.ns, ipB);
    sendFrom(a.ns, ipB, ipC);
    assert.equal(fromB(), 0, "nothing forged arrived");
    assert.ok(spoofedCount(node) >= before + 3, `the counter counted the drops (was ${before}, now ${spoofedCount(node)})`);
    // The agent exports the kernel's count.
    const scraped = await new AgentMetrics({ nftNetns: node.ns.path }).registry.getSingleMetricAsString("podnet_agent_spoofed_packets_dropped_total");
    assert.match(scraped, new RegExp(`^podnet_agent_spoofed_packets_dropped_total ${spoofedCount(node)}$`, "m"));
    // Routed through the node as well as bridged: to the gateway, from the forged address.
    const viaNode = spoofedCount(node);
    a.ns.try("ping", "-c", "1", "-W", "1", "-I", ipB, "10.244.1.1");
    assert.ok(spoofedCount(node) > viaNode, "a forged packet to the node is dropped too");

    // CHECK sees the pairs, and notices when one is gone.
    await net.check(c.attachment, rc);
    node.ns.exec("nft", "delete", "element", "bridge", ANTISPOOF_TABLE, "allowed4", `{ "${node.hostVeths().find((v) => elements(node).includes(`allowed4:${v} . ${ipC}`))}" . ${ipC} }`);
    await assert.rejects(net.check(c.attachment, rc), /anti-spoofing does not allow/);
    for (const [pod, r] of [[a, ra], [b, rb], [c, rc]] as const) await net.del(pod.attachment, r);
    assert.deepEqual(elements(node), [], "DEL leaves no element behind");
  });

  test("ARP for another pod's address answers nothing and poisons no cache", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const [a, b, c] = [node.pod(), node.pod(), node.pod()];
    const [ra, rb, rc] = [await net.add(a.attachment), await net.add(b.attachment), await net.add(c.attachment)];
    const ipB = ipOf(rb);
    // b is silent: only a could answer for b's address, and a must not be believed.
    b.ns.ip("link", "set", "eth0", "down");
    addSecondAddress(a.ns, ipB);
    const before = spoofedCount(node);
    c.ns.try("ping", "-c", "2", "-W", "1", ipB);
    const neigh = JSON.parse(c.ns.ip("-j", "neigh", "show", ipB)) as { lladdr?: string; state?: string[] }[];
    assert.equal(neigh[0]?.lladdr, undefined, `c learnt no MAC for ${ipB}: ${JSON.stringify(neigh)}`);
    assert.ok(spoofedCount(node) > before, "a's ARP replies were counted");
    // A gratuitous announcement (sender b's address) from a does not reach the node's cache either.
    a.ns.try("ping", "-c", "1", "-W", "1", "-I", ipB, "10.244.1.1");
    const nodeNeigh = JSON.parse(node.ns.ip("-j", "neigh", "show", ipB)) as { lladdr?: string }[];
    assert.equal(nodeNeigh[0]?.lladdr, undefined, "the node learnt no MAC for b's address from a");
    for (const [pod, r] of [[a, ra], [b, rb], [c, rc]] as const) await net.del(pod.attachment, r);
  });

  test("an ARP probe (sender 0.0.0.0, RFC 5227) passes and is not counted", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const a = node.pod();
    const ra = await net.add(a.attachment);
    const mac = JSON.parse(a.ns.ip("-j", "link", "show", "eth0"))[0].address as string;
    const before = spoofedCount(node);
    // An ARP request, sender IP 0.0.0.0, for the gateway, sent raw from the pod's eth0.
    const program = [
      "import socket",
      "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)",
      's.bind(("eth0",0))',
      `src=bytes.fromhex("${mac.replace(/:/g, "")}")`,
      "frame=b'\\xff'*6+src+b'\\x08\\x06'+bytes([0,1,8,0,6,4,0,1])+src+bytes(4)+bytes(6)+bytes([10,244,1,1])",
      "for _ in range(3): s.send(frame)",
    ].join("\n");
    a.ns.exec("python3", "-c", program);
    assert.equal(spoofedCount(node), before, "the probe was not dropped as spoofed");
    // The same frame claiming another pod's address as sender is dropped (the check above can fail).
    a.ns.exec("python3", "-c", program.replace("bytes(4)+bytes(6)", "bytes([10,244,1,200])+bytes(6)"));
    assert.ok(spoofedCount(node) >= before + 3, "an ARP request with a forged sender is counted");
    await net.del(a.attachment, ra);
  });

  test("dual-stack pods talk over both families; a forged IPv6 source is dropped", async () => {
    const conf = podnetConfList({
      dataDir: node.dataDir,
      subnet: "10.244.7.0/24",
      bridge: "cni7",
      ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.7.0/24" }], [{ subnet: "fd00:7::/64" }]], dataDir: node.dataDir },
    });
    const net = node.network(conf);
    const [a, b, c] = [node.pod(), node.pod(), node.pod()];
    const results = [await net.add(a.attachment), await net.add(b.attachment), await net.add(c.attachment)];
    const v6 = results.map((r) => ((r as { ips: { address: string }[] }).ips.find((ip) => ip.address.includes(":"))?.address ?? "").split("/")[0]!);
    const v4 = results.map((r) => ((r as { ips: { address: string }[] }).ips.find((ip) => !ip.address.includes(":"))?.address ?? "").split("/")[0]!);
    a.ns.exec("ping", "-c", "1", "-W", "2", v4[1]!);
    a.ns.exec("ping", "-6", "-c", "1", "-W", "2", v6[1]!);
    const fromA = arrivalsCounter(c.ns, v6[0]!);
    sendFrom(a.ns, v6[0]!, v6[2]!);
    assert.equal(fromA(), 3, "the pod's own IPv6 address passes");

    const fromB = arrivalsCounter(c.ns, v6[1]!);
    const before = spoofedCount(node);
    addSecondAddress(a.ns, v6[1]!);
    sendFrom(a.ns, v6[1]!, v6[2]!);
    assert.equal(fromB(), 0, "nothing forged arrived");
    assert.ok(spoofedCount(node) >= before + 3);
    for (const [pod, r] of [[a, results[0]], [b, results[1]], [c, results[2]]] as const) await net.del(pod.attachment, r);
    assert.deepEqual(elements(node), []);
  });

  test("antiSpoofing: false leaves a pod's forged packets alone (the check above can fail)", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir, extra: { antiSpoofing: false } }));
    const [a, b, c] = [node.pod(), node.pod(), node.pod()];
    const [ra, rb, rc] = [await net.add(a.attachment), await net.add(b.attachment), await net.add(c.attachment)];
    const fromB = arrivalsCounter(c.ns, ipOf(rb));
    addSecondAddress(a.ns, ipOf(rb));
    sendFrom(a.ns, ipOf(rb), ipOf(rc));
    assert.equal(fromB(), 3);
    assert.deepEqual(elements(node).filter((e) => e.startsWith("ports:")), [], "no veth of this network is checked");
    for (const [pod, r] of [[a, ra], [b, rb], [c, rc]] as const) await net.del(pod.attachment, r);
  });

  test("DEL removes exactly its pod's elements, in every set, and a second DEL succeeds and removes nothing more", async () => {
    const conf = podnetConfList({
      dataDir: node.dataDir,
      subnet: "10.244.8.0/24",
      bridge: "cni8",
      ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.8.0/24" }], [{ subnet: "fd00:8::/64" }]], dataDir: node.dataDir },
    });
    const net = node.network(conf);
    const [a, b] = [node.pod(), node.pod()];
    const before = elements(node);
    const ra = await net.add(a.attachment);
    const withA = elements(node);
    const rb = await net.add(b.attachment);
    const withBoth = elements(node);
    const ofA = withA.filter((e) => !before.includes(e));
    const ofB = withBoth.filter((e) => !withA.includes(e));
    // ports, allowed4 and allowed6: one element each per pod.
    assert.deepEqual(ofA.map((e) => e.split(":")[0]).sort(), ["allowed4", "allowed6", "ports"]);
    assert.deepEqual(ofB.map((e) => e.split(":")[0]).sort(), ["allowed4", "allowed6", "ports"]);

    await net.del(a.attachment, ra);
    assert.deepEqual(elements(node).sort(), [...before, ...ofB].sort(), "a's elements are gone, b's are all there");
    await net.del(a.attachment);
    assert.deepEqual(elements(node).sort(), [...before, ...ofB].sort(), "the repeated DEL changed nothing");
    await net.del(b.attachment, rb);
    assert.deepEqual(elements(node).sort(), [...before].sort());
  });

  test("a repeated DEL without prevResult succeeds; GC removes the elements of attachments the runtime forgot", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir }));
    const [a, b] = [node.pod(), node.pod()];
    const ra = await net.add(a.attachment);
    await net.add(b.attachment);
    await net.del(a.attachment, ra);
    await net.del(a.attachment);
    assert.ok(elements(node).length > 0, "b's elements are still there");
    await net.gc([]);
    assert.deepEqual(elements(node), [], "GC with no valid attachment leaves no element");
  });
});
