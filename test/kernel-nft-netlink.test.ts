// The nf_tables netlink writer against the real kernel, in namespaces this test creates: the
// service proxy compiler's real output (ClusterIP, NodePort, LoadBalancer with source ranges,
// Local traffic policies, affinity, more than 16 endpoints, no endpoints, UDP) is applied through
// the writer in one namespace and through libnftables (`nft -f` syntax) in another. Both tables
// must list identically, and the netlink-written one must read back (nft -j) with no difference
// from the model; then the same incremental transactions are applied both ways after each change.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { withDefaults } from "../src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "../src/k8s/types.ts";
import { nftListTable, readTable, runNft, transactionScript } from "../src/kernel/nft.ts";
import { diffTables } from "../src/kernel/nft/diff.ts";
import { encodeTransaction, NftNotEncodable } from "../src/kernel/nft/netlink-encode.ts";
import { NftNetlinkWriter } from "../src/kernel/nft/netlink-writer.ts";
import type { NftTransaction } from "../src/kernel/nft/model.ts";
import { ProxyCompiler, PROXY_TABLE, type CompiledProxy, type ProxyNodeFacts } from "../src/services/proxy-compiler.ts";
import { planProxyTransaction } from "../src/services/proxy-plan.ts";
import { Netns } from "./helpers/netns.ts";

const root = process.getuid?.() === 0;
const facts: ProxyNodeFacts = { nodeName: "n1", nodeIps: ["192.168.5.1"], podCidr: "10.244.1.0/24", clusterCidr: "10.244.0.0/16", serviceCidr: "10.96.0.0/12" };

function service(name: string, clusterIP: string, spec: Partial<Service["spec"]> = {}, status?: Service["status"]): Service {
  return withDefaults({
    apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default", resourceVersion: String(Math.random()) },
    spec: { clusterIP, selector: { app: name }, ports: [{ name: "http", port: 80, targetPort: 8080, protocol: "TCP" }], ...spec },
    ...(status ? { status } : {}),
  });
}

function slice(name: string, endpoints: { ip: string; node?: string; ready?: boolean }[], protocol: "TCP" | "UDP" = "TCP"): EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { name: `${name}-x`, namespace: "default", resourceVersion: String(Math.random()), labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4", ports: [{ name: "http", protocol, port: 8080 }],
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], nodeName: e.node ?? "n1", conditions: { ready: e.ready ?? true, serving: true, terminating: false } })),
  };
}

const range = (n: number, base: string) => Array.from({ length: n }, (_, i) => ({ ip: `${base}.${i + 10}`, node: i % 2 === 0 ? "n1" : "n2" }));

function cluster(): { services: Service[]; slices: EndpointSlice[] } {
  const services = [
    service("web", "10.96.0.10"),
    service("nodeport-local", "10.96.0.11", { type: "NodePort", externalTrafficPolicy: "Local", ports: [{ name: "http", port: 80, targetPort: 8080, protocol: "TCP", nodePort: 30080 }] }),
    service("lb", "10.96.0.12", {
      type: "LoadBalancer", loadBalancerSourceRanges: ["192.168.0.0/16", "172.16.0.0/12", "203.0.113.7/32"],
      ports: [{ name: "http", port: 80, targetPort: 8080, protocol: "TCP", nodePort: 30081 }],
    }, { loadBalancer: { ingress: [{ ip: "198.51.100.10" }] } }),
    service("internal-local", "10.96.0.13", { internalTrafficPolicy: "Local" }),
    service("sticky", "10.96.0.14", { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } }),
    service("wide", "10.96.0.15"),
    service("empty", "10.96.0.16"),
    service("dns", "10.96.0.17", { ports: [{ name: "http", port: 53, targetPort: 8080, protocol: "UDP" }], externalIPs: ["192.168.5.1"] }),
  ];
  const slices = [
    slice("web", range(3, "10.244.1")),
    slice("nodeport-local", range(2, "10.244.2")),
    slice("lb", range(4, "10.244.3")),
    slice("internal-local", [{ ip: "10.244.4.10", node: "n2" }]),
    slice("sticky", range(3, "10.244.5")),
    slice("wide", range(20, "10.244.6")),
    slice("empty", []),
    slice("dns", range(2, "10.244.7"), "UDP"),
  ];
  return { services, slices };
}

describe("nf_tables netlink writer against the real kernel", { skip: root ? false : "needs root" }, () => {
  let viaNetlink: Netns;
  let viaNft: Netns;
  let writer: NftNetlinkWriter;

  before(() => {
    viaNetlink = Netns.create("nlw");
    viaNft = Netns.create("nlf");
    writer = new NftNetlinkWriter(viaNetlink.path);
  });
  after(() => {
    writer?.close();
    viaNetlink?.delete();
    viaNft?.delete();
  });

  const applyBoth = (tx: NftTransaction) => {
    writer.apply(tx);
    runNft(transactionScript(tx), viaNft.path);
  };
  const assertSame = (model: CompiledProxy, label: string) => {
    const netlinkText = nftListTable("ip", PROXY_TABLE, viaNetlink.path);
    const nftText = nftListTable("ip", PROXY_TABLE, viaNft.path);
    assert.ok(netlinkText && netlinkText.length > 1000, `${label}: table missing`);
    assert.equal(netlinkText, nftText, `${label}: nft list differs between the netlink- and nft-written tables`);
    const readBack = readTable("ip", PROXY_TABLE, viaNetlink.path);
    assert.ok(readBack);
    assert.deepEqual(diffTables(model.table, readBack).changes, [], `${label}: read-back differs from the model`);
  };

  it("writes the compiler's full table exactly as nft does, and incremental changes too", () => {
    const compiler = new ProxyCompiler();
    let { services, slices } = cluster();
    let applied = compiler.compile(services, slices, facts);
    const full = planProxyTransaction(undefined, applied);
    encodeTransaction(full, () => undefined); // throws NftNotEncodable if any statement is outside the subset
    applyBoth(full);
    assertSame(applied, "full sync");

    const steps: [string, () => void][] = [
      ["endpoint removed", () => { slices = slices.map((s) => (s.metadata.name === "web-x" ? slice("web", range(2, "10.244.1")) : s)); }],
      ["endpoint added to the affinity service", () => { slices = slices.map((s) => (s.metadata.name === "sticky-x" ? slice("sticky", range(4, "10.244.5")) : s)); }],
      ["empty service gets endpoints", () => { slices = slices.map((s) => (s.metadata.name === "empty-x" ? slice("empty", range(1, "10.244.8")) : s)); }],
      ["wide service shrinks below 16", () => { slices = slices.map((s) => (s.metadata.name === "wide-x" ? slice("wide", range(5, "10.244.6")) : s)); }],
      ["service deleted", () => { services = services.filter((s) => s.metadata.name !== "lb"); slices = slices.filter((s) => s.metadata.name !== "lb-x"); }],
      ["service added", () => { services = [...services, service("late", "10.96.0.30")]; slices = [...slices, slice("late", range(2, "10.244.9"))]; }],
      ["all endpoints gone", () => { slices = slices.map((s) => (s.metadata.name === "web-x" ? slice("web", []) : s)); }],
    ];
    for (const [label, change] of steps) {
      change();
      const next = compiler.compile(services, slices, facts);
      const tx = planProxyTransaction(applied, next);
      assert.ok(tx.changes.length > 0, `${label}: no changes planned`);
      applyBoth(tx);
      applied = next;
      assertSame(applied, label);
    }

    // A second full sync over the existing table replaces it in one batch.
    const again = planProxyTransaction(undefined, applied);
    applyBoth(again);
    assertSame(applied, "second full sync");
  });

  it("the podnet command's child entry applies a transaction handed to it on stdin (the agent's full-sync path)", () => {
    const compiler = new ProxyCompiler();
    const { services, slices } = cluster();
    const compiled = compiler.compile(services, slices, facts);
    const viaChild = Netns.create("nlc");
    try {
      const run = spawnSync("ip", ["netns", "exec", viaChild.name, process.execPath, join(import.meta.dirname, "../bin/podnet.js"), "internal-nft-netlink-apply"], { input: JSON.stringify(planProxyTransaction(undefined, compiled)) });
      assert.equal(run.status, 0, run.stderr.toString());
      const stats = JSON.parse(run.stdout.toString()) as { messages: number; bytes: number };
      assert.ok(stats.messages > 50 && stats.bytes > 10_000, JSON.stringify(stats));
      const readBack = readTable("ip", PROXY_TABLE, viaChild.path);
      assert.ok(readBack);
      assert.deepEqual(diffTables(compiled.table, readBack).changes, []);
      // Not encodable: exit code 3, nothing applied.
      const refused = spawnSync("ip", ["netns", "exec", viaChild.name, process.execPath, join(import.meta.dirname, "../bin/podnet.js"), "internal-nft-netlink-apply"],
        { input: JSON.stringify({ family: "ip", table: "pnt-other", changes: [{ op: "ensureTable" }, { op: "addChain", chain: { name: "c", rules: [{ statements: [{ nftrace: true }] }] } }] }) });
      assert.equal(refused.status, 3, refused.stderr.toString());
      assert.equal(nftListTable("ip", "pnt-other", viaChild.path), undefined);
    } finally {
      viaChild.delete();
    }
  });

  it("the agent's full-sync child compiles the table from the objects handed over in a file, and a refused batch there leaves the table as it was", () => {
    const { services, slices } = cluster();
    const compiled = new ProxyCompiler().compile(services, slices, facts);
    const viaChild = Netns.create("nls");
    const dir = mkdtempSync(join(tmpdir(), "pnt-svcchild-"));
    const child = (payload: unknown) => {
      const file = join(dir, "payload.json");
      writeFileSync(file, JSON.stringify(payload));
      return spawnSync("ip", ["netns", "exec", viaChild.name, process.execPath, join(import.meta.dirname, "../bin/podnet.js"), "internal-services-apply"], { input: JSON.stringify({ payloadFile: file }) });
    };
    try {
      const run = child({ full: { node: facts, services, slices } });
      assert.equal(run.status, 0, run.stderr.toString());
      const stats = JSON.parse(run.stdout.toString()) as { messages: number; extra: { changes: number; compileMs: number } };
      assert.equal(stats.extra.changes, planProxyTransaction(undefined, compiled).changes.length);
      const readBack = readTable("ip", PROXY_TABLE, viaChild.path);
      assert.ok(readBack);
      assert.deepEqual(diffTables(compiled.table, readBack).changes, [], "the child's table is the compiler's");
      const before = nftListTable("ip", PROXY_TABLE, viaChild.path);
      const refused = child({ tx: { family: "ip", table: PROXY_TABLE, changes: [
        { op: "addChain", chain: { name: "pnt-new-chain", rules: [{ statements: [{ verdict: "accept" }] }] } },
        { op: "addChain", chain: { name: "pnt-bad", rules: [{ statements: [{ verdict: "jump", chain: "pnt-no-such-chain" }] }] } },
      ] } });
      assert.equal(refused.status, 4, "a kernel refusal has its own exit code: the agent must not redo it in-process");
      assert.match(refused.stderr.toString(), /pnt-bad/);
      assert.equal(nftListTable("ip", PROXY_TABLE, viaChild.path), before, "nothing of the refused batch applied");
    } finally {
      rmSync(dir, { recursive: true, force: true });
      viaChild.delete();
    }
  });

  it("a refused batch changes nothing (atomic), and names the failing change", () => {
    const before = nftListTable("ip", PROXY_TABLE, viaNetlink.path);
    const tx: NftTransaction = {
      family: "ip", table: PROXY_TABLE, changes: [
        { op: "addChain", chain: { name: "pnt-new-chain", rules: [{ statements: [{ verdict: "accept" }] }] } },
        { op: "addChain", chain: { name: "pnt-bad", rules: [{ statements: [{ verdict: "jump", chain: "pnt-no-such-chain" }] }] } },
      ],
    };
    assert.throws(() => writer.apply(tx), (err: Error) => err.name === "KernelError" && /pnt-bad/.test(err.message));
    assert.equal(nftListTable("ip", PROXY_TABLE, viaNetlink.path), before);
  });

  it("refuses what it cannot encode before sending anything", () => {
    const tx: NftTransaction = { family: "ip", table: PROXY_TABLE, changes: [{ op: "addChain", chain: { name: "traced", rules: [{ statements: [{ nftrace: true }] }] } }] };
    assert.throws(() => writer.apply(tx), NftNotEncodable);
    const elements: NftTransaction = { family: "ip", table: "pnt-unknown", changes: [{ op: "addElements", setOrMap: "some-set", elements: [["10.0.0.1"]] }] };
    assert.throws(() => writer.apply(elements), NftNotEncodable);
  });
});
