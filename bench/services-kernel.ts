// The service proxy's kernel path alone, side by side: `node --import tsx bench/services-kernel.ts`
// (root). 10,000 services × 5 endpoints (the bench:services objects' shape) compiled once, then
//   - full sync into a fresh private netns: the nf_tables netlink writer vs libnftables (nft -f
//     syntax, in-process), split into plan / encode or render / kernel;
//   - 100 one-EndpointSlice changes, each applied both ways into its own netns (same table),
//     split into compile / plan / encode / kernel.
// NODE_EXTRA_CA_CERTS does not matter here (no process start is timed).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { withDefaults } from "../src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "../src/k8s/types.ts";
import { runNft, transactionScript } from "../src/kernel/nft.ts";
import { encodeTransaction } from "../src/kernel/nft/netlink-encode.ts";
import { NftNetlinkWriter } from "../src/kernel/nft/netlink-writer.ts";
import { IncrementalProxyCompiler, type ProxyNodeFacts } from "../src/services/proxy-compiler.ts";
import { planProxyTransaction } from "../src/services/proxy-plan.ts";

const { values } = parseArgs({ options: { services: { type: "string", default: "10000" }, changes: { type: "string", default: "100" } } });
const COUNT = Number(values.services);
const CHANGES = Number(values.changes);
const facts: ProxyNodeFacts = { nodeName: "bench-node", nodeIps: ["192.168.77.11"], podCidr: "10.244.1.0/24", clusterCidr: "10.244.0.0/16" };

function serviceObject(i: number): Service {
  return withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name: `s${i}`, namespace: "default", resourceVersion: "1" }, spec: { clusterIP: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, selector: { app: `s${i}` }, ports: [{ port: 80, targetPort: 8080 }] } });
}
function sliceObject(i: number, generation = 0): EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { name: `s${i}-x`, namespace: "default", resourceVersion: String(generation + 1), labels: { "kubernetes.io/service-name": `s${i}` } },
    addressType: "IPv4", ports: [{ name: "", protocol: "TCP", port: 8080 }],
    endpoints: [0, 1, 2, 3, 4].map((k) => {
      const n = i * 5 + k + generation;
      return { addresses: [`10.${200 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`], nodeName: "bench-node", conditions: { ready: true, serving: true, terminating: false } };
    }),
  };
}

const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const ms = (t0: number) => performance.now() - t0;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;
const prefix = `pnb-svck-${Math.random().toString(36).slice(2, 6)}`;
const nsNetlink = `${prefix}-nl`;
const nsNft = `${prefix}-nft`;
for (const ns of [nsNetlink, nsNft]) execFileSync("ip", ["netns", "add", ns]);
const writer = new NftNetlinkWriter(`/run/netns/${nsNetlink}`);
try {
  console.log(`# services-kernel — ${new Date().toISOString()}, ${COUNT} services × 5 endpoints, load ${load()}`);
  const compiler = new IncrementalProxyCompiler();
  let t0 = performance.now();
  compiler.replaceAll(Array.from({ length: COUNT }, (_, i) => serviceObject(i)), Array.from({ length: COUNT }, (_, i) => sliceObject(i)));
  let applied = compiler.compile(facts);
  const compileMs = ms(t0);
  t0 = performance.now();
  const full = planProxyTransaction(undefined, applied);
  const planMs = ms(t0);
  t0 = performance.now();
  const encoded = encodeTransaction(full, () => undefined);
  const encodeOnlyMs = ms(t0);
  const messages = encoded.ops.length;
  t0 = performance.now();
  writer.apply(full);
  const netlinkMs = ms(t0);
  const stats = writer.last!;
  t0 = performance.now();
  const script = transactionScript(full);
  const renderMs = ms(t0);
  t0 = performance.now();
  runNft(script, `/run/netns/${nsNft}`);
  const nftMs = ms(t0);
  console.log(`full sync: compile ${compileMs.toFixed(0)} ms, plan ${planMs.toFixed(0)} ms`);
  console.log(`  netlink writer: ${netlinkMs.toFixed(0)} ms (encode ${stats.encodeMs.toFixed(0)} ms [alone ${encodeOnlyMs.toFixed(0)} ms], kernel ${stats.kernelMs.toFixed(0)} ms; ${messages} messages, ${(stats.bytes / 1048576).toFixed(1)} MiB)`);
  console.log(`  libnftables:    ${(renderMs + nftMs).toFixed(0)} ms (render ${renderMs.toFixed(0)} ms, ${(script.length / 1048576).toFixed(1)} MiB script; libnftables ${nftMs.toFixed(0)} ms)`);
  console.log(`  ratio libnftables / netlink: ${((renderMs + nftMs) / netlinkMs).toFixed(1)}x (load ${load()})`);

  const split = { compile: [] as number[], plan: [] as number[], encode: [] as number[], kernel: [] as number[], netlink: [] as number[], nft: [] as number[] };
  for (let k = 0; k < CHANGES; k++) {
    const i = Math.floor(Math.random() * COUNT);
    t0 = performance.now();
    compiler.upsertSlice(sliceObject(i, k + 1));
    const next = compiler.compile(facts);
    split.compile.push(ms(t0));
    t0 = performance.now();
    const tx = planProxyTransaction(applied, next);
    split.plan.push(ms(t0));
    t0 = performance.now();
    writer.apply(tx);
    split.netlink.push(ms(t0));
    split.encode.push(writer.last!.encodeMs);
    split.kernel.push(writer.last!.kernelMs);
    t0 = performance.now();
    runNft(transactionScript(tx), `/run/netns/${nsNft}`);
    split.nft.push(ms(t0));
    applied = next;
  }
  const row = (name: string, xs: number[]) => `${name} p50 ${median(xs).toFixed(2)} ms, p99 ${p99(xs).toFixed(2)} ms`;
  console.log(`one slice change × ${CHANGES}: ${row("compile", split.compile)}; ${row("plan", split.plan)}`);
  console.log(`  netlink writer: ${row("total", split.netlink)} (${row("encode", split.encode)}; ${row("kernel", split.kernel)})`);
  console.log(`  libnftables:    ${row("render + nft", split.nft)}; ratio of p50s ${(median(split.nft) / median(split.netlink)).toFixed(1)}x (load ${load()})`);
  const a = execFileSync("ip", ["netns", "exec", nsNetlink, "nft", "list", "table", "ip", "podnet-svc"], { maxBuffer: 1 << 30 });
  const b = execFileSync("ip", ["netns", "exec", nsNft, "nft", "list", "table", "ip", "podnet-svc"], { maxBuffer: 1 << 30 });
  console.log(`tables after the changes: ${a.equals(b) ? "identical" : "DIFFERENT"} (${(a.byteLength / 1048576).toFixed(1)} MiB listed)`);
} finally {
  writer.close();
  for (const ns of [nsNetlink, nsNft]) execFileSync("ip", ["netns", "del", ns]);
}
