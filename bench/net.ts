// Pod-to-pod TCP throughput and latency over each path podnet gives, side by side in one run:
//   veth       a direct veth pair between two namespaces (the floor: no bridge, no routing)
//   bridge     two pods on one node, through the node's bridge (lab, host-gw)
//   host-gw    pods on two nodes of one underlay subnet, plain routes (lab --backend host-gw)
//   vxlan      the same two nodes over the overlay (lab --backend vxlan)
//   vxlan-routed  pods on two underlay subnets, across the lab's router (lab --topology routed --backend vxlan)
//   vxlan+snat    vxlan with the sender's outer UDP source port rewritten by `masquerade fully-random`:
//                 the trigger of the VXLAN checksum bug behind kubernetes#88986 (tx checksum offload on)
//   vxlan+snat, tx-csum off   the same with tx checksum offload off on both VXLAN devices (flannel's workaround)
// Per case: iperf3 one TCP stream (median Gbit/s over --runs, retransmits, sender CPU % per Gbit/s),
// ping p50 (200 pings at 10 ms), and the receiver's UDP/TCP checksum error counters over the case.
// NODE_EXTRA_CA_CERTS is unset for the lab's processes (real nodes do not have it).
// Usage: npm run bench:net [-- --runs N --seconds S]

import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { createNamedNetns, deleteNamedNetns } from "../src/kernel/named-netns.ts";
import { argvInNamedNetns } from "../src/kernel/netns-exec.ts";
import { runChecked, runCommand } from "../src/supervise/command.ts";
import { stopPids } from "../src/supervise/process.ts";
import { lab, newTestLab, readLabState, type TestLab } from "../test/helpers/lab.ts";

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : Number(process.argv[i + 1] ?? fallback);
}
const RUNS = option("--runs", 3);
const SECONDS = option("--seconds", 4);
delete process.env.NODE_EXTRA_CA_CERTS;

interface Endpoint {
  netns: string;
  ip: string;
}

interface CaseResult {
  name: string;
  gbps: number[];
  retransmits: number;
  cpuPerGbps: number;
  pingP50Ms: number;
  csumErrors: number;
  mtu: number;
}

const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const inNs = (netns: string, argv: string[]) => argvInNamedNetns(netns, argv);

async function checksumErrors(netns: string): Promise<number> {
  const snmp = await runChecked(inNs(netns, ["cat", "/proc/net/snmp"]));
  let total = 0;
  const lines = snmp.split("\n");
  for (let i = 0; i + 1 < lines.length; i++) {
    const [proto, ...names] = lines[i]!.split(/\s+/);
    if ((proto !== "Udp:" && proto !== "Tcp:") || !lines[i + 1]!.startsWith(proto)) continue;
    const values = lines[i + 1]!.split(/\s+/).slice(1);
    const at = names.indexOf("InCsumErrors");
    if (at >= 0) total += Number(values[at]);
    i++;
  }
  return total;
}

async function mtuOf(netns: string): Promise<number> {
  const out = await runChecked(inNs(netns, ["cat", "/sys/class/net/eth0/mtu"]));
  return Number(out.trim());
}

async function measure(name: string, client: Endpoint, server: Endpoint, receiverNodes: string[]): Promise<CaseResult> {
  const iperf: ChildProcess = spawn(inNs(server.netns, ["iperf3", "-s"])[0]!, inNs(server.netns, ["iperf3", "-s"]).slice(1), { stdio: "ignore" });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const before = (await Promise.all(receiverNodes.map(checksumErrors))).reduce((a, b) => a + b, 0);
    const gbps: number[] = [];
    let retransmits = 0;
    const cpu: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const out = await runChecked(inNs(client.netns, ["iperf3", "-c", server.ip, "-t", String(SECONDS), "-J"]), { timeoutMs: (SECONDS + 20) * 1000 });
      const json = JSON.parse(out) as { end: { sum_sent: { bits_per_second: number; retransmits: number }; cpu_utilization_percent: { host_total: number } } };
      const g = json.end.sum_sent.bits_per_second / 1e9;
      gbps.push(g);
      retransmits += json.end.sum_sent.retransmits;
      cpu.push(json.end.cpu_utilization_percent.host_total / g);
    }
    const detailed = await runCommand(inNs(client.netns, ["ping", "-c", "200", "-i", "0.01", "-W", "1", server.ip]), { timeoutMs: 30_000 });
    const times = [...detailed.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
    const after = (await Promise.all(receiverNodes.map(checksumErrors))).reduce((a, b) => a + b, 0);
    const result = { name, gbps, retransmits, cpuPerGbps: median(cpu), pingP50Ms: times.length > 0 ? median(times) : NaN, csumErrors: after - before, mtu: await mtuOf(client.netns) };
    console.error(`  ${name}: ${gbps.map((g) => g.toFixed(2)).join(" ")} Gbit/s, ${retransmits} retransmits, ping p50 ${result.pingP50Ms} ms, csum errors ${result.csumErrors}`);
    return result;
  } finally {
    if (iperf.pid) await stopPids([iperf.pid]);
  }
}

async function vethCase(): Promise<CaseResult> {
  const tag = Math.random().toString(36).slice(2, 6);
  const a = `pnb-${tag}-a`;
  const b = `pnb-${tag}-b`;
  await createNamedNetns(a);
  await createNamedNetns(b);
  try {
    await runChecked(["ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b]);
    for (const [ns, addr] of [[a, "10.250.0.1/30"], [b, "10.250.0.2/30"]] as const) {
      await runChecked(["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"]);
      await runChecked(["ip", "-n", ns, "link", "set", "eth0", "up"]);
    }
    return await measure("veth pair (floor)", { netns: a, ip: "10.250.0.1" }, { netns: b, ip: "10.250.0.2" }, [b]);
  } finally {
    await deleteNamedNetns(a).catch(() => undefined);
    await deleteNamedNetns(b).catch(() => undefined);
  }
}

async function withLab<T>(args: string[], fn: (pods: Map<string, Endpoint>, nodes: Map<string, string>) => Promise<T>): Promise<T> {
  const t: TestLab = newTestLab();
  try {
    const up = await lab(["up", "--nodes", "2", "--pods-per-node", "2", ...args, ...t.flags]);
    if (up.code !== 0) throw new Error(`lab up ${args.join(" ")} failed:\n${up.stdout}${up.stderr}`);
    const state = readLabState(t)!;
    const pods = new Map(state.pods.map((p) => [p.name, { netns: p.netns, ip: p.ip! }]));
    const nodes = new Map(state.nodeRecords.map((n) => [n.name, n.netns]));
    return await fn(pods, nodes);
  } finally {
    await lab(["down", ...t.flags]);
    rmSync(t.stateRoot, { recursive: true, force: true });
  }
}

const results: CaseResult[] = [];
console.error(`bench:net: ${RUNS} runs × ${SECONDS} s of iperf3 per case, one TCP stream`);
results.push(await vethCase());
await withLab(["--backend", "host-gw"], async (pods, nodes) => {
  results.push(await measure("same node, bridge", pods.get("node1-pod1")!, pods.get("node1-pod2")!, [nodes.get("node1")!]));
  results.push(await measure("host-gw, 2 nodes", pods.get("node1-pod1")!, pods.get("node2-pod1")!, [nodes.get("node2")!]));
});
await withLab(["--backend", "vxlan"], async (pods, nodes) => {
  const n1 = nodes.get("node1")!;
  const n2 = nodes.get("node2")!;
  results.push(await measure("vxlan, 2 nodes", pods.get("node1-pod1")!, pods.get("node2-pod1")!, [n2]));
  // kubernetes#88986: SNAT of the encapsulated packet with a random source port.
  await runChecked(inNs(n1, ["nft", "-f", "-"]), {
    input: "table ip pnbench {\n  chain post {\n    type nat hook postrouting priority srcnat;\n    udp dport 8472 counter masquerade fully-random\n  }\n}\n",
  });
  results.push(await measure("vxlan + SNAT of outer UDP", pods.get("node1-pod1")!, pods.get("node2-pod1")!, [n2]));
  // Evidence the rule applied: NAT chains see the first packet of each outer UDP flow.
  const counted = /counter packets (\d+)/.exec(await runChecked(inNs(n1, ["nft", "list", "table", "ip", "pnbench"])));
  console.error(`  SNAT rule matched ${counted?.[1] ?? "?"} outer UDP flow(s)`);
  for (const ns of [n1, n2]) await runChecked(inNs(ns, ["ethtool", "-K", "podnet.1", "tx", "off"]));
  results.push(await measure("vxlan + SNAT, tx-csum off", pods.get("node1-pod1")!, pods.get("node2-pod1")!, [n2]));
});
await withLab(["--backend", "vxlan", "--topology", "routed"], async (pods, nodes) => {
  results.push(await measure("vxlan, routed underlay", pods.get("node1-pod1")!, pods.get("node2-pod1")!, [nodes.get("node2")!]));
});

const byName = new Map(results.map((r) => [r.name, median(r.gbps)]));
const ratio = (a: string, b: string) => (byName.get(a)! / byName.get(b)!) * 100;
console.log(`| case | pod MTU | Gbit/s (median of ${RUNS}) | runs | retransmits | sender CPU %/Gbit/s | ping p50 ms | receiver csum errors |`);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of results) {
  console.log(`| ${r.name} | ${r.mtu} | ${median(r.gbps).toFixed(2)} | ${r.gbps.map((g) => g.toFixed(1)).join(", ")} | ${r.retransmits} | ${r.cpuPerGbps.toFixed(1)} | ${r.pingP50Ms.toFixed(3)} | ${r.csumErrors} |`);
}
console.log("");
console.log(`host-gw / same node: ${ratio("host-gw, 2 nodes", "same node, bridge").toFixed(0)}% (target ≥ 90%)`);
console.log(`vxlan / host-gw: ${ratio("vxlan, 2 nodes", "host-gw, 2 nodes").toFixed(0)}% (target ≥ 70%)`);
console.log(`vxlan routed / host-gw: ${ratio("vxlan, routed underlay", "host-gw, 2 nodes").toFixed(0)}%`);
console.log(`same node / veth: ${ratio("same node, bridge", "veth pair (floor)").toFixed(0)}%`);
