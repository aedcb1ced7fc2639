import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { NftChain, NftMap, NftRule, NftTable, NftVerdict } from "../kernel/nft/model.ts";
import { diffTables } from "../kernel/nft/diff.ts";
import { renderRuleBody, renderTable, renderTransaction } from "../kernel/nft/render.ts";
import { withDefaults } from "../k8s/defaults.ts";
import type { Endpoint, EndpointSlice, Service } from "../k8s/types.ts";
import { chainName, compileProxyTable, EndpointBlocks, ENDPOINT_MAP_SHARDS, ENDPOINT_MAP_STRIDE, HAIRPIN_PAIRS, IncrementalProxyCompiler, MASQUERADE_MARK, ProxyCompiler, PROXY_TABLE, type ProxyNodeFacts } from "./proxy-compiler.ts";
import { planProxyTransaction, staleUdpFlows } from "./proxy-plan.ts";

// Most cases check kube-proxy's layout (a chain per endpoint); "inline balancing" below checks the default.
const node: ProxyNodeFacts = { nodeName: "n1", nodeIps: ["192.168.1.11"], podCidr: "10.244.1.0/24", clusterCidr: "10.244.0.0/16", endpointChains: true };

function service(name: string, spec: Partial<Service["spec"]>, status?: Service["status"]): Service {
  return withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default" }, spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }], ...spec }, ...(status ? { status } : {}) });
}
function ep(ip: string, nodeName: string, conditions: Endpoint["conditions"] = { ready: true, serving: true, terminating: false }): Endpoint {
  return { addresses: [ip], nodeName, conditions };
}
function slice(serviceName: string, endpoints: Endpoint[], ports: EndpointSlice["ports"] = [{ port: 8080, protocol: "TCP", name: "" }], sliceName = `${serviceName}-abc`): EndpointSlice {
  return { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: sliceName, namespace: "default", labels: { "kubernetes.io/service-name": serviceName } }, addressType: "IPv4", endpoints, ports };
}

const chain = (t: NftTable, name: string): NftChain => {
  const c = t.chains.find((x) => x.name === name);
  assert.ok(c, `chain ${name} exists`);
  return c;
};
const map = (t: NftTable, name: string): NftMap => t.maps.find((m) => m.name === name)!;
const element = (t: NftTable, mapName: string, key: (string | number)[]): NftVerdict | undefined =>
  map(t, mapName).elements.find((e) => JSON.stringify(e.key) === JSON.stringify(key))?.verdict;
const gotoTarget = (v: NftVerdict | undefined): string => {
  assert.ok(v && v.verdict === "goto", `a goto verdict, got ${JSON.stringify(v)}`);
  return (v as { chain: string }).chain;
};
/** The chains a balancing chain spreads over: its numgen vmap's verdicts, or its numgen cascade's gotos. */
const numgenTargets = (c: NftChain): string[] => {
  const vmap = c.rules.find((x) => x.statements.some((s) => "numgenVmap" in s));
  if (vmap) return (vmap.statements.find((x) => "numgenVmap" in x) as { numgenVmap: NftVerdict[] }).numgenVmap.map(gotoTarget);
  const cascade = c.rules.filter((r) => (r.statements.length === 2 && "numgenMatch" in r.statements[0]!) || (r.statements.length === 1 && "verdict" in r.statements[0]! && r.statements[0].verdict === "goto"));
  return cascade.map((r) => gotoTarget(r.statements.at(-1) as NftVerdict));
};
/** The probability the cascade (or vmap) gives each target, computed from the rules. */
const shares = (c: NftChain): number[] => {
  if (c.rules.some((x) => x.statements.some((s) => "numgenVmap" in s))) return numgenTargets(c).map((_, __, all) => 1 / all.length);
  let reach = 1;
  const out: number[] = [];
  for (const r of c.rules) {
    const first = r.statements[0]!;
    if ("numgenMatch" in first) {
      out.push(reach / first.numgenMatch.mod);
      reach -= reach / first.numgenMatch.mod;
    } else if (r.statements.length === 1 && "verdict" in first && first.verdict === "goto") {
      out.push(reach);
      reach = 0;
    }
  }
  return out;
};
const dnatOf = (c: NftChain) => {
  for (const r of c.rules) for (const s of r.statements) if ("dnat" in s) return `${s.dnat.address}:${s.dnat.port}`;
  return undefined;
};
const hasMasqJump = (rules: readonly NftRule[]) => rules.some((r) => r.statements.some((s) => "verdict" in s && s.verdict === "jump" && s.chain === "mark-for-masquerade"));

describe("proxy compiler: dispatch", () => {
  const web = service("web", { clusterIP: "10.96.0.20" });
  const eps = slice("web", [ep("10.244.1.5", "n1"), ep("10.244.2.5", "n2"), ep("10.244.2.6", "n2", { ready: false, serving: false, terminating: false })]);
  const { table } = compileProxyTable([web], [eps], node);

  it("builds the table in kube-proxy's layout", () => {
    assert.equal(table.family, "ip");
    assert.equal(table.name, PROXY_TABLE);
    const services = chain(table, "services");
    assert.deepEqual(services.rules[0]!.statements, [{ vmapLookup: ["ip daddr", "meta l4proto", "th dport"], map: "service-ips" }]);
    assert.ok(services.rules[1]!.statements.some((s) => "match" in s && s.match === "fib daddr type" && s.value === "local"));
    assert.deepEqual(map(table, "service-ips").keyType, ["ipv4_addr", "inet_proto", "inet_service"]);
    assert.deepEqual(map(table, "service-nodeports").keyType, ["inet_proto", "inet_service"]);
    assert.equal(chain(table, "nat-prerouting").base?.hook, "prerouting");
    assert.deepEqual(chain(table, "masquerading").rules[0]!.statements[0], { match: "meta mark", value: MASQUERADE_MARK });
  });
  it("sends a ClusterIP to a per-service chain that spreads over ready endpoints with numgen", () => {
    const svcChain = chain(table, gotoTarget(element(table, "service-ips", ["10.96.0.20", "tcp", 80])));
    assert.match(svcChain.name, /^service-[0-9A-F]{8}-default\/web\/tcp\/80$/);
    const targets = numgenTargets(svcChain);
    assert.deepEqual(targets.map((t) => dnatOf(chain(table, t))), ["10.244.1.5:8080", "10.244.2.5:8080"], "the not-ready endpoint is left out");
  });
  it("marks hairpin traffic (source = endpoint) and off-cluster sources, not pod-to-service traffic", () => {
    const svcChain = chain(table, gotoTarget(element(table, "service-ips", ["10.96.0.20", "tcp", 80])));
    assert.deepEqual(svcChain.rules[0]!.statements, [{ match: "ip saddr", op: "!=", value: "10.244.0.0/16" }, { verdict: "jump", chain: "mark-for-masquerade" }]);
    assert.equal(hasMasqJump(svcChain.rules.slice(1)), false);
    const endpointChain = chain(table, numgenTargets(svcChain)[0]!);
    assert.deepEqual(endpointChain.rules[0]!.statements, [{ match: "ip saddr", value: "10.244.1.5" }, { verdict: "jump", chain: "mark-for-masquerade" }]);
    assert.deepEqual(endpointChain.rules.at(-1)!.statements, [{ match: "meta l4proto", value: "tcp" }, { dnat: { family: "ip", address: "10.244.1.5", port: 8080 } }]);
  });
  it("lists every ClusterIP so unserved ports are rejected", () => {
    assert.deepEqual(table.sets.find((s) => s.name === "cluster-ips")!.elements, [["10.96.0.20"]]);
    const check = chain(table, "cluster-ips-check");
    assert.ok(check.rules.some((r) => r.statements.some((s) => "reject" in s && s.reject === "tcp reset")));
    assert.ok(chain(table, "filter-forward").rules.some((r) => r.statements.some((s) => "verdict" in s && s.verdict === "jump" && s.chain === "cluster-ips-check")));
  });
  it("renders with the nft layer's renderer", () => {
    const text = renderTable(table);
    assert.match(text, /numgen random mod 2 0 goto endpoint-/);
    assert.match(text, /dnat ip to 10\.244\.1\.5:8080/);
  });
  it("keeps names within nft's limit however long the service name", () => {
    const long = service("a".repeat(63), { clusterIP: "10.96.0.30", ports: [{ name: "p".repeat(63), port: 80 }] });
    const t = compileProxyTable([long], [slice("a".repeat(63), [ep("10.244.1.9", "n1")], [{ name: "p".repeat(63), port: 80, protocol: "TCP" }])], node).table;
    for (const c of t.chains) assert.ok(c.name.length <= 200, c.name);
    assert.doesNotThrow(() => renderTable(t));
    assert.notEqual(chainName("x", "a".repeat(300)), chainName("x", `${"a".repeat(299)}b`));
  });
});

describe("proxy compiler: balancing", () => {
  for (const n of [1, 2, 3, 5, 16, 17, 40]) {
    it(`gives each of ${n} endpoints 1/${n} of new connections${n > 16 ? " (one numgen vmap)" : " (a numgen cascade)"}`, () => {
      const eps = Array.from({ length: n }, (_, i) => ep(`10.244.${1 + (i >> 8)}.${(i & 255) + 1}`, "n1"));
      const t = compileProxyTable([service("web", { clusterIP: "10.96.0.20" })], [slice("web", eps)], node).table;
      const c = chain(t, gotoTarget(element(t, "service-ips", ["10.96.0.20", "tcp", 80])));
      assert.equal(new Set(numgenTargets(c)).size, n);
      for (const share of shares(c)) assert.ok(Math.abs(share - 1 / n) < 1e-12, `share ${share} for ${n}`);
      assert.equal(c.rules.some((r) => r.statements.some((s) => "numgenVmap" in s)), n > 16);
      assert.doesNotThrow(() => renderTable(t));
    });
  }
});

describe("proxy compiler: endpoints", () => {
  it("rejects a service with no endpoints from the filter hooks (ct state new) and skips headless and ExternalName", () => {
    const t = compileProxyTable([service("empty", { clusterIP: "10.96.0.21", type: "NodePort", ports: [{ port: 53, protocol: "UDP", nodePort: 30053 }] }), service("hl", { clusterIP: "None" }), service("ext", { type: "ExternalName", externalName: "x.example.com", ports: [] })], [], node).table;
    assert.equal(gotoTarget(element(t, "no-endpoint-services", ["10.96.0.21", "udp", 53])), "reject-chain");
    assert.equal(gotoTarget(element(t, "no-endpoint-nodeports", ["udp", 30053])), "reject-chain");
    assert.equal(map(t, "service-ips").elements.length, 0);
    const rejects = chain(t, "reject-chain").rules.flatMap((r) => r.statements.filter((s) => "reject" in s).map((s) => (s as { reject: string }).reject));
    assert.deepEqual(rejects, ["tcp reset", "icmp port-unreachable"]);
    assert.deepEqual(chain(t, "filter-input").rules.map((r) => r.statements[0]), [{ match: "ct state", value: "new" }, { match: "ct state", value: "new" }]);
    assert.deepEqual(t.sets.find((s) => s.name === "cluster-ips")!.elements, [["10.96.0.21"]]);
  });
  it("uses serving terminating endpoints only when none is ready", () => {
    const terminating = { ready: false, serving: true, terminating: true };
    const t1 = compileProxyTable([service("web", { clusterIP: "10.96.0.20" })], [slice("web", [ep("10.244.1.5", "n1", terminating), ep("10.244.1.6", "n1")])], node).table;
    assert.deepEqual(numgenTargets(chain(t1, gotoTarget(element(t1, "service-ips", ["10.96.0.20", "tcp", 80])))).map((c) => dnatOf(chain(t1, c))), ["10.244.1.6:8080"]);
    const t2 = compileProxyTable([service("web", { clusterIP: "10.96.0.20" })], [slice("web", [ep("10.244.1.5", "n1", terminating), ep("10.244.1.7", "n1", { ready: false, serving: false, terminating: true })])], node).table;
    assert.deepEqual(numgenTargets(chain(t2, gotoTarget(element(t2, "service-ips", ["10.96.0.20", "tcp", 80])))).map((c) => dnatOf(chain(t2, c))), ["10.244.1.5:8080"]);
  });
  it("maps service ports to slice ports by name and protocol, merging slices", () => {
    const svc = service("dns", { clusterIP: "10.96.0.10", ports: [{ name: "dns", port: 53, protocol: "UDP", targetPort: "dns" }, { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 5353 }] });
    const ports = [{ name: "dns", port: 1053, protocol: "UDP" as const }, { name: "dns-tcp", port: 5353, protocol: "TCP" as const }];
    const t = compileProxyTable([svc], [slice("dns", [ep("10.244.1.2", "n1")], ports, "dns-a"), slice("dns", [ep("10.244.2.2", "n2")], ports, "dns-b")], node).table;
    const udp = chain(t, gotoTarget(element(t, "service-ips", ["10.96.0.10", "udp", 53])));
    assert.deepEqual(numgenTargets(udp).map((c) => dnatOf(chain(t, c))), ["10.244.1.2:1053", "10.244.2.2:1053"]);
    const tcp = chain(t, gotoTarget(element(t, "service-ips", ["10.96.0.10", "tcp", 53])));
    assert.deepEqual(numgenTargets(tcp).map((c) => dnatOf(chain(t, c))), ["10.244.1.2:5353", "10.244.2.2:5353"]);
  });
});

describe("proxy compiler: external traffic", () => {
  const eps = slice("web", [ep("10.244.1.5", "n1"), ep("10.244.2.5", "n2")]);
  it("NodePort and LoadBalancer IP with externalTrafficPolicy Cluster: masquerade, then the cluster-wide chain", () => {
    const svc = service("web", { type: "LoadBalancer", clusterIP: "10.96.0.20", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], externalIPs: ["192.168.1.50"] }, { loadBalancer: { ingress: [{ ip: "192.168.1.240" }] } });
    const t = compileProxyTable([svc], [eps], node).table;
    const external = gotoTarget(element(t, "service-nodeports", ["tcp", 30080]));
    assert.equal(gotoTarget(element(t, "service-ips", ["192.168.1.240", "tcp", 80])), external);
    assert.equal(gotoTarget(element(t, "service-ips", ["192.168.1.50", "tcp", 80])), external);
    assert.match(external, /^external-/);
    const rules = chain(t, external).rules;
    assert.deepEqual(rules[0]!.statements, [{ verdict: "jump", chain: "mark-for-masquerade" }]);
    assert.equal(gotoTarget(rules[1]!.statements[0] as NftVerdict), gotoTarget(element(t, "service-ips", ["10.96.0.20", "tcp", 80])));
  });
  it("externalTrafficPolicy Local: only local endpoints for outside traffic, no masquerade; pods take the cluster path", () => {
    const svc = service("web", { type: "NodePort", clusterIP: "10.96.0.20", externalTrafficPolicy: "Local", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] });
    const t = compileProxyTable([svc], [eps], node).table;
    const external = chain(t, gotoTarget(element(t, "service-nodeports", ["tcp", 30080])));
    assert.equal(hasMasqJump(external.rules), false);
    assert.deepEqual(external.rules[0]!.statements[0], { match: "ip saddr", value: "10.244.0.0/16" });
    const local = chain(t, gotoTarget(external.rules[1]!.statements[0] as NftVerdict));
    assert.match(local.name, /^local-/);
    assert.deepEqual(numgenTargets(local).map((c) => dnatOf(chain(t, c))), ["10.244.1.5:8080"]);
    // On a node without local endpoints, outside traffic is dropped.
    const t3 = compileProxyTable([svc], [eps], { ...node, nodeName: "n3" }).table;
    const ext3 = chain(t3, gotoTarget(element(t3, "service-nodeports", ["tcp", 30080])));
    assert.deepEqual(ext3.rules.at(-1)!.statements, [{ verdict: "drop" }]);
  });
  it("internalTrafficPolicy Local: ClusterIP uses local endpoints, drops when there are none here", () => {
    const svc = service("web", { clusterIP: "10.96.0.20", internalTrafficPolicy: "Local" });
    const t = compileProxyTable([svc], [eps], node).table;
    const target = chain(t, gotoTarget(element(t, "service-ips", ["10.96.0.20", "tcp", 80])));
    assert.deepEqual(numgenTargets(target).map((c) => dnatOf(chain(t, c))), ["10.244.1.5:8080"]);
    const t3 = compileProxyTable([svc], [eps], { ...node, nodeName: "n3" }).table;
    assert.deepEqual(element(t3, "no-endpoint-services", ["10.96.0.20", "tcp", 80]), { verdict: "drop" });
  });
  it("enforces loadBalancerSourceRanges on the LoadBalancer IP", () => {
    const svc = service("web", { type: "LoadBalancer", clusterIP: "10.96.0.20", loadBalancerSourceRanges: ["192.168.1.0/28", "10.0.0.0/8"], ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] }, { loadBalancer: { ingress: [{ ip: "192.168.1.240" }] } });
    const t = compileProxyTable([svc], [eps], node).table;
    const firewall = chain(t, gotoTarget(element(t, "firewall-ips", ["192.168.1.240", "tcp", 80])));
    assert.deepEqual(firewall.rules[0]!.statements, [{ match: "ip saddr", op: "!=", value: ["192.168.1.0/28", "10.0.0.0/8"] }, { verdict: "drop" }]);
    assert.ok(chain(t, "filter-prerouting").rules.some((r) => r.statements.some((s) => "verdict" in s && s.verdict === "jump" && s.chain === "firewall-check")));
  });
});

describe("proxy compiler: session affinity", () => {
  it("keeps a client on its endpoint through per-endpoint dynamic sets with the timeout", () => {
    const svc = service("web", { clusterIP: "10.96.0.20", sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } });
    const t = compileProxyTable([svc], [slice("web", [ep("10.244.1.5", "n1"), ep("10.244.2.5", "n2")])], node).table;
    const svcChain = chain(t, gotoTarget(element(t, "service-ips", ["10.96.0.20", "tcp", 80])));
    const endpoints = numgenTargets(svcChain);
    const stickRules = svcChain.rules.filter((r) => r.statements.some((s) => "lookup" in s));
    assert.equal(stickRules.length, 2);
    for (const [i, r] of stickRules.entries()) {
      const lookup = r.statements[0] as { lookup: string[]; set: string };
      assert.deepEqual(lookup.lookup, ["ip saddr"]);
      assert.equal(gotoTarget(r.statements[1] as NftVerdict), endpoints[i]);
      const set = t.sets.find((s) => s.name === lookup.set)!;
      assert.deepEqual([set.flags, set.timeoutSeconds, set.keyType], [["dynamic", "timeout"], 60, ["ipv4_addr"]]);
      const update = chain(t, endpoints[i]!).rules.find((x) => x.statements.some((s) => "updateSet" in s))!;
      assert.deepEqual(update.statements[0], { updateSet: set.name, key: ["ip saddr"] });
    }
    assert.ok(svcChain.rules.findIndex((r) => r.statements.some((s) => "lookup" in s)) < svcChain.rules.findIndex((r) => r.statements.some((s) => "numgenMatch" in s)));
  });
});

describe("incremental planning", () => {
  const many = Array.from({ length: 50 }, (_, i) => service(`s${i}`, { clusterIP: `10.96.1.${i + 1}` }));
  const slices = many.map((s, i) => slice(s.metadata.name, [ep(`10.244.1.${i + 10}`, "n1"), ep(`10.244.2.${i + 10}`, "n2")]));
  const names = (tx: ReturnType<typeof planProxyTransaction>) =>
    tx.changes.map((c) => ("chain" in c ? `${c.op} ${c.chain.name}` : "name" in c ? `${c.op} ${c.name}` : "setOrMap" in c ? `${c.op} ${c.setOrMap}` : c.op));

  it("the first sync creates everything in one transaction, replacing what was there", () => {
    const compiler = new ProxyCompiler();
    const first = compiler.compile(many, slices, node);
    const tx = planProxyTransaction(undefined, first);
    assert.deepEqual(tx.changes.slice(0, 3).map((c) => c.op), ["ensureTable", "deleteTable", "ensureTable"]);
    assert.equal(tx.changes.filter((c) => c.op === "addChain").length, first.table.chains.length);
    assert.doesNotThrow(() => renderTransaction(tx));
  });
  it("no change → an empty transaction", () => {
    const compiler = new ProxyCompiler();
    const a = compiler.compile(many, slices, node);
    const b = compiler.compile(many, slices.map((s) => structuredClone(s)), node);
    assert.deepEqual(planProxyTransaction(a, b).changes, []);
  });
  it("an endpoint removed touches only that service's chains and no map", () => {
    const compiler = new ProxyCompiler();
    const a = compiler.compile(many, slices, node);
    const changed = slices.map((s, i) => (i === 7 ? { ...s, endpoints: s.endpoints.slice(0, 1) } : s));
    const b = compiler.compile(many, changed, node);
    const tx = planProxyTransaction(a, b);
    const svcChain = gotoTarget(element(b.table, "service-ips", ["10.96.1.8", "tcp", 80]));
    const goneEndpoint = a.table.chains.find((c) => dnatOf(c) === "10.244.2.17:8080")!.name;
    assert.deepEqual(names(tx), [`replaceChain ${svcChain}`, `replaceChain ${goneEndpoint}`, `deleteChain ${goneEndpoint}`]);
  });
  it("a service added: its chains and map elements only; removed: the reverse, elements out before chains go", () => {
    const compiler = new ProxyCompiler();
    const a = compiler.compile(many, slices, node);
    const extra = service("new", { clusterIP: "10.96.2.1" });
    const b = compiler.compile([...many, extra], [...slices, slice("new", [ep("10.244.1.99", "n1")])], node);
    const added = planProxyTransaction(a, b);
    assert.deepEqual(added.changes.filter((c) => c.op === "addChain").length, 2);
    assert.deepEqual(added.changes.filter((c) => c.op === "addElements").map((c) => (c as { elements: readonly unknown[] }).elements), [[["10.96.2.1"]], [{ key: ["10.96.2.1", "tcp", 80], verdict: { verdict: "goto", chain: gotoTarget(element(b.table, "service-ips", ["10.96.2.1", "tcp", 80])) } }]]);
    const newChains = new Set(added.changes.filter((c) => c.op === "addChain").map((c) => (c as { chain: NftChain }).chain.name));
    // The nft layer creates chains empty and then fills them; nothing else is touched.
    assert.ok(added.changes.every((c) => c.op !== "replaceChain" || newChains.has(c.chain.name)));
    assert.equal(added.changes.some((c) => c.op === "deleteChain"), false);
    const c = compiler.compile(many, slices, node);
    const removed = names(planProxyTransaction(b, c));
    assert.ok(removed.indexOf("deleteElements service-ips") < removed.findIndex((n) => n.startsWith("deleteChain")));
    assert.equal(removed.filter((n) => n.startsWith("deleteChain")).length, 2);
  });
  it("a service losing all endpoints moves from service-ips to no-endpoint-services", () => {
    const compiler = new ProxyCompiler();
    const a = compiler.compile(many, slices, node);
    const b = compiler.compile(many, slices.map((s, i) => (i === 3 ? { ...s, endpoints: [] } : s)), node);
    const tx = planProxyTransaction(a, b);
    const ops = names(tx);
    assert.ok(ops.includes("deleteElements service-ips"));
    assert.ok(ops.includes("addElements no-endpoint-services"));
    assert.equal(ops.filter((n) => n.startsWith("deleteChain")).length, 3);
    assert.doesNotThrow(() => renderTransaction(tx));
  });
});

describe("stale UDP flows", () => {
  const dns = service("dns", { clusterIP: "10.96.0.10", type: "NodePort", ports: [{ port: 53, protocol: "UDP", nodePort: 30053 }] });
  const ports = [{ port: 53, protocol: "UDP" as const }];
  it("lists endpoints that went away per frontend, and frontends that regained endpoints", () => {
    const compiler = new ProxyCompiler();
    const a = compiler.compile([dns], [slice("dns", [ep("10.244.1.2", "n1"), ep("10.244.2.2", "n2")], ports)], node);
    const b = compiler.compile([dns], [slice("dns", [ep("10.244.1.2", "n1")], ports)], node);
    assert.deepEqual(staleUdpFlows(a, b), [
      { frontendIp: "10.96.0.10", port: 53, endpointIp: "10.244.2.2" },
      { port: 30053, endpointIp: "10.244.2.2" },
    ]);
    const empty = compiler.compile([dns], [slice("dns", [], ports)], node);
    assert.equal(staleUdpFlows(b, empty).length, 2);
    const back = compiler.compile([dns], [slice("dns", [ep("10.244.1.3", "n1")], ports)], node);
    assert.deepEqual(staleUdpFlows(empty, back), [{ frontendIp: "10.96.0.10", port: 53 }, { port: 30053 }]);
    assert.deepEqual(staleUdpFlows(back, back), []);
  });
});

describe("contested external IPs", () => {
  it("two services naming one external IP: the first by name wins; when it goes, the other takes over incrementally", () => {
    const a = service("a", { clusterIP: "10.96.0.31", externalIPs: ["192.168.1.50"] });
    const b = service("b", { clusterIP: "10.96.0.32", externalIPs: ["192.168.1.50"] });
    const slices = [slice("a", [ep("10.244.1.5", "n1")]), slice("b", [ep("10.244.1.6", "n1")])];
    const compiler = new ProxyCompiler();
    const both = compiler.compile([b, a], slices, node);
    const external = (t: NftTable) => gotoTarget(element(t, "service-ips", ["192.168.1.50", "tcp", 80]));
    assert.match(external(both.table), /default\/a\//);
    assert.equal(map(both.table, "service-ips").elements.filter((e) => e.key[0] === "192.168.1.50").length, 1);
    const onlyB = compiler.compile([b], slices, node);
    const tx = planProxyTransaction(both, onlyB);
    const added = tx.changes.filter((c) => c.op === "addElements" && c.setOrMap === "service-ips").flatMap((c) => (c as { elements: readonly { key: readonly unknown[] }[] }).elements);
    assert.ok(added.some((e) => e.key[0] === "192.168.1.50"), "b's element for the shared IP is added although b did not change");
    assert.match(external(onlyB.table), /default\/b\//);
    assert.doesNotThrow(() => renderTransaction(tx));
  });
});

describe("incremental compiler (event by event)", () => {
  it("produces the same table as a full compile, and a one-service plan after one event", () => {
    const services = Array.from({ length: 20 }, (_, i) => service(`s${i}`, { clusterIP: `10.96.3.${i + 1}`, ...(i % 5 === 0 ? { externalIPs: ["192.168.1.60"] } : {}) }));
    const slices = services.map((s, i) => slice(s.metadata.name, [ep(`10.244.1.${i + 10}`, "n1"), ep(`10.244.2.${i + 10}`, "n2")]));
    const incremental = new IncrementalProxyCompiler();
    incremental.replaceAll(services, slices);
    const first = incremental.compile(node);
    const same = (a: NftTable, b: NftTable) => assert.deepEqual(diffTables(a, b).changes, []);
    same(first.table, compileProxyTable(services, slices, node).table);
    // One slice loses an endpoint; a slice moves to another service; a service goes.
    incremental.upsertSlice({ ...slices[3]!, endpoints: slices[3]!.endpoints.slice(0, 1) });
    const second = incremental.compile(node);
    const tx = planProxyTransaction(first, second);
    assert.ok(tx.changes.length > 0);
    for (const c of tx.changes) if ("chain" in c) assert.match(c.chain.name, /default\/s3\//);
    incremental.deleteService("default", "s0");
    const third = incremental.compile(node);
    const expected = compileProxyTable(services.slice(1), [{ ...slices[3]!, endpoints: slices[3]!.endpoints.slice(0, 1) }, ...slices.filter((_, i) => i !== 3)], node);
    same(third.table, expected.table);
    assert.match(gotoTarget(element(third.table, "service-ips", ["192.168.1.60", "tcp", 80])), /default\/s10\//, "the shared external IP passes to the next service by name");
    assert.doesNotThrow(() => renderTransaction(planProxyTransaction(second, third)));
    // An earlier compilation is a snapshot.
    assert.equal(first.fragments.size, 20);
    incremental.deleteSlice("default", slices[5]!.metadata.name);
    const fourth = incremental.compile(node).table;
    assert.equal(element(fourth, "service-ips", ["10.96.3.6", "tcp", 80]), undefined);
    assert.equal(gotoTarget(element(fourth, "no-endpoint-services", ["10.96.3.6", "tcp", 80])), "reject-chain", "no endpoints left: rejected");
  });
});

describe("incremental compiler: fragments kept as their inputs", () => {
  it("compiles a collected fragment again to the same output, and keeps contested ones whole", async () => {
    // A real collection: only then is a fragment's output recompiled rather than dereferenced.
    setFlagsFromString("--expose-gc");
    const collect = runInNewContext("gc") as () => void;
    const services = [service("a", { clusterIP: "10.96.4.1" }), service("b", { clusterIP: "10.96.4.2", sessionAffinity: "ClientIP" }), service("c", { clusterIP: "10.96.4.3", externalIPs: ["192.168.1.61"] })];
    const slices = services.map((s, i) => slice(s.metadata.name, [ep(`10.244.1.${i + 20}`, "n1"), ep(`10.244.2.${i + 20}`, "n2")]));
    const incremental = new IncrementalProxyCompiler();
    incremental.replaceAll(services, slices);
    const compiled = incremental.compile(node);
    const fresh = compileProxyTable(services, slices, node);
    const snapshot = (f: NonNullable<ReturnType<typeof compiled.fragments.get>>) => JSON.stringify([f.chains, f.sets, f.serviceIps, f.nodePorts, f.noEndpointServices, f.noEndpointNodePorts, f.firewallIps, f.clusterIps, f.udpFrontends, [...f.contested]]);
    const before = [...compiled.fragments.values()].map(snapshot);
    const firstChains = compiled.fragments.get("default/a")!.chains;
    // A new job, then a full collection: nothing holds a's fragment object but the WeakRef (the test
    // keeps only its chains array, to tell a recompiled output from the first).
    await new Promise((r) => setTimeout(r, 0));
    collect();
    const after = [...compiled.fragments.values()].map(snapshot);
    assert.deepEqual(after, before, "the same output after recompiling");
    assert.deepEqual(after, [...fresh.fragments.values()].map(snapshot));
    assert.notEqual(compiled.fragments.get("default/a")!.chains, firstChains, "the output was collected and compiled again");
    assert.ok(compiled.fragments.get("default/c")!.contested.size > 0, "a contested fragment is kept whole");
    assert.deepEqual(diffTables(compiled.table, fresh.table).changes, []);
  });
});

describe("full sync ordering", () => {
  it("writes every chain once, after the chains it jumps to, and map elements after all chains", () => {
    const svcs = [
      service("lb", { type: "LoadBalancer", clusterIP: "10.96.0.40", externalTrafficPolicy: "Local", sessionAffinity: "ClientIP", loadBalancerSourceRanges: ["10.0.0.0/8"], ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] }, { loadBalancer: { ingress: [{ ip: "192.168.1.241" }] } }),
      service("big", { clusterIP: "10.96.0.41" }),
      service("itp", { clusterIP: "10.96.0.42", internalTrafficPolicy: "Local" }),
    ];
    const eps = (n: number) => Array.from({ length: n }, (_, i) => ep(`10.244.${1 + (i % 2)}.${i + 1}`, i % 2 ? "n2" : "n1"));
    const compiled = compileProxyTable(svcs, [slice("lb", eps(3)), slice("big", eps(20)), slice("itp", eps(4))], node);
    const tx = planProxyTransaction(undefined, compiled);
    const added = new Set<string>();
    let elementsStarted = false;
    for (const change of tx.changes) {
      if (change.op === "addElements") elementsStarted = true;
      if (change.op !== "addChain") continue;
      assert.equal(elementsStarted, false, "map elements come after every chain");
      assert.ok(!added.has(change.chain.name), `${change.chain.name} written once`);
      for (const r of change.chain.rules) {
        for (const s of r.statements) {
          const targets = "verdict" in s && (s.verdict === "jump" || s.verdict === "goto") ? [s.chain] : "numgenVmap" in s ? s.numgenVmap.map(gotoTarget) : [];
          for (const t of targets) assert.ok(added.has(t), `${change.chain.name} jumps to ${t}, written before it`);
        }
      }
      added.add(change.chain.name);
    }
    assert.equal(added.size, compiled.table.chains.length);
    assert.ok(tx.changes.some((c) => c.op === "addSet" && c.set.name.startsWith("affinity-")));
  });
});

describe("proxy compiler: endpoints as map elements (the default layout)", () => {
  const inline: ProxyNodeFacts = { ...node, endpointChains: false };
  const web = service("web", { clusterIP: "10.96.0.20" });
  const ips = ["10.244.1.5", "10.244.2.5", "10.244.2.6", "10.244.3.7", "10.244.3.8"];
  const { table } = compileProxyTable([web], [slice("web", ips.map((ip) => ep(ip, "n2")))], inline);
  const svcChain = chain(table, gotoTarget(element(table, "service-ips", ["10.96.0.20", "tcp", 80])));
  const dnatMapOf = (c: NftChain) => {
    const found = c.rules.flatMap((r) => r.statements).find((s) => "dnatMap" in s) as { dnatMap: { mod: number; offset: number; map: string } } | undefined;
    assert.ok(found, `${c.name} DNATs through a map`);
    return found.dnatMap;
  };
  /** What `numgen random mod N offset O map @M` can reach: the element for each number it draws. */
  const reachable = (t: NftTable, d: { mod: number; offset: number; map: string }) =>
    Array.from({ length: d.mod }, (_, i) => map(t, d.map).elements.find((e) => e.key[0] === d.offset + i)?.value?.join(":"));

  it("has no endpoint chains: one rule DNATs through a shared map, each endpoint one of N keys (1/N each)", () => {
    assert.equal(table.chains.filter((c) => c.name.startsWith("endpoint-")).length, 0);
    const d = dnatMapOf(svcChain);
    assert.equal(d.mod, ips.length);
    assert.equal(d.offset % ENDPOINT_MAP_STRIDE, 0);
    assert.match(d.map, /^endpoints-tcp-[0-9a-f]{2}$/);
    assert.deepEqual(reachable(table, d).sort(), ips.map((ip) => `${ip}:8080`).sort(), "every draw finds an endpoint, each endpoint exactly once");
    const rule = svcChain.rules.find((r) => r.statements.some((s) => "dnatMap" in s))!;
    assert.deepEqual(rule.statements[0], { match: "meta l4proto", value: "tcp" }, "dnat with a port needs the l4 protocol");
    assert.equal(table.maps.filter((m) => m.name.startsWith("endpoints-")).length, ENDPOINT_MAP_SHARDS.tcp + ENDPOINT_MAP_SHARDS.udp + ENDPOINT_MAP_SHARDS.sctp, "every shard exists, full or empty");
  });
  it("masquerades hairpin after DNAT: no per-endpoint rule, a fixed (pod, pod) set of this node's pod CIDR", () => {
    assert.equal(svcChain.rules.filter((r) => hasMasqJump([r])).length, 1, "only the off-cluster rule marks");
    assert.deepEqual(svcChain.rules[0]!.statements[0], { match: "ip saddr", op: "!=", value: node.clusterCidr });
    const pairs = table.sets.find((x) => x.name === HAIRPIN_PAIRS);
    assert.ok(pairs);
    assert.equal(pairs.elements.length, 256);
    assert.ok(pairs.elements.every((e) => e.length === 2 && e[0] === e[1] && String(e[0]).startsWith("10.244.1.")));
    const masq = chain(table, "masquerading").rules.find((r) => r.statements.some((s) => "lookup" in s && s.set === HAIRPIN_PAIRS));
    assert.ok(masq);
    assert.deepEqual(masq.statements[0], { match: "ct status", value: "dnat" });
  });
  it("keeps endpoint chains for session affinity and for more than ENDPOINT_MAP_STRIDE endpoints", () => {
    const sticky = service("sticky", { clusterIP: "10.96.0.21", sessionAffinity: "ClientIP" });
    const big = service("big", { clusterIP: "10.96.0.22" });
    const many = Array.from({ length: ENDPOINT_MAP_STRIDE + 1 }, (_, i) => ep(`10.245.${i >> 8}.${i & 255}`, "n2"));
    const t = compileProxyTable([sticky, big], [slice("sticky", [ep("10.244.1.5", "n2")]), slice("big", many)], inline).table;
    assert.equal(t.chains.filter((c) => c.name.startsWith("endpoint-")).length, ENDPOINT_MAP_STRIDE + 2);
  });
  it("falls back to rules in the service chain when the pod CIDR is too wide to list its hairpin pairs", () => {
    const t = compileProxyTable([web], [slice("web", ips.map((ip) => ep(ip, "n2")))], { ...inline, podCidr: "10.244.0.0/16" }).table;
    assert.equal(t.sets.some((x) => x.name === HAIRPIN_PAIRS), false);
    const c = chain(t, gotoTarget(element(t, "service-ips", ["10.96.0.20", "tcp", 80])));
    assert.equal(c.rules.some((r) => r.statements.some((s) => "dnatMap" in s)), false);
    assert.equal(c.rules.filter((r) => r.statements.some((s) => "dnat" in s)).length, ips.length);
  });
  it("endpoints replaced by as many others are element changes only; a new count rewrites that one chain", () => {
    const compiler = new ProxyCompiler();
    const before = compiler.compile([web], [slice("web", ips.map((ip) => ep(ip, "n2")))], inline);
    const moved = ["10.244.1.5", "10.244.2.5", "10.244.9.1", "10.244.9.2", "10.244.3.8"];
    const same = compiler.compile([web], [slice("web", moved.map((ip) => ep(ip, "n2")))], inline);
    const tx = planProxyTransaction(before, same);
    assert.ok(tx.changes.length > 0);
    for (const c of tx.changes) {
      assert.ok(c.op === "addElements" || c.op === "deleteElements", `element op only, got ${c.op}`);
      assert.match(c.setOrMap, /^endpoints-/);
    }
    const fewer = compiler.compile([web], [slice("web", moved.slice(1).map((ip) => ep(ip, "n2")))], inline);
    const tx2 = planProxyTransaction(same, fewer);
    assert.deepEqual(tx2.changes.filter((c) => c.op !== "addElements" && c.op !== "deleteElements").map((c) => c.op), ["replaceChain"]);
    const d = dnatMapOf(chain(fewer.table, svcChain.name));
    assert.deepEqual(reachable(fewer.table, d).sort(), moved.slice(1).map((ip) => `${ip}:8080`).sort());
    assert.equal(d.offset, dnatMapOf(svcChain).offset, "the service keeps its block");
  });
  it("gives every endpoint group its own block; deleting one service and adding another leaves every map as compiled", () => {
    const compiler = new IncrementalProxyCompiler();
    const names = Array.from({ length: 300 }, (_, i) => `s${i}`);
    compiler.replaceAll(names.map((n, i) => service(n, { clusterIP: `10.96.1.${i % 250}`, ...(i >= 250 ? { clusterIP: `10.96.2.${i - 250}` } : {}) })), names.map((n, i) => slice(n, [ep(`10.244.${1 + (i >> 8)}.${i & 255}`, "n2")])));
    const first = compiler.compile(inline);
    const blocks = [...first.fragments.values()].map((f) => { const d = dnatMapOf(first.table.chains.find((c) => c.name === chainName("service", `default/${f.key.split("/")[1]}/tcp/80`))!); return `${d.map}@${d.offset}`; });
    assert.equal(new Set(blocks).size, names.length, "no two groups share a block");
    // Delete one and add another in the same compile: the newcomer may take the block; the plan must delete and add consistently.
    compiler.deleteService("default", "s7");
    compiler.upsertService(service("fresh", { clusterIP: "10.96.3.1" }));
    compiler.upsertSlice(slice("fresh", [ep("10.244.9.9", "n2")]));
    const second = compiler.compile(inline);
    const tx = planProxyTransaction(first, second);
    const live = new Map<string, Map<string, string>>();
    const entries = (t: NftTable, name: string) => {
      const m = t.maps.find((x) => x.name === name);
      return new Map(m ? m.elements.map((e) => [e.key.join(" "), JSON.stringify(e.value ?? e.verdict)]) : t.sets.find((x) => x.name === name)!.elements.map((e) => [e.join(" "), ""]));
    };
    for (const name of [...first.table.maps, ...first.table.sets].map((x) => x.name)) live.set(name, entries(first.table, name));
    for (const c of tx.changes) {
      assert.ok(c.op === "addElements" || c.op === "deleteElements" || c.op === "replaceChain" || c.op === "addChain" || c.op === "deleteChain", c.op);
      if (c.op === "deleteElements") for (const k of c.keys) assert.ok(live.get(c.setOrMap)!.delete(k.join(" ")), `deletes ${c.setOrMap} ${k.join(" ")}, which exists`);
      if (c.op === "addElements") for (const e of c.elements) {
        const [key, value] = Array.isArray(e) ? [e.join(" "), ""] : [(e as { key: (string | number)[] }).key.join(" "), JSON.stringify((e as { value?: unknown }).value ?? (e as { verdict?: unknown }).verdict)];
        assert.ok(!live.get(c.setOrMap)!.has(key), `adds ${c.setOrMap} ${key}, which is free`);
        live.get(c.setOrMap)!.set(key, value);
      }
    }
    for (const name of live.keys()) assert.deepEqual(live.get(name), entries(second.table, name), `${name} ends as compiled`);
  });
  it("a full sync (replaceAll) lays the table out as a fresh compiler does: the agent's and its child's full syncs are one table", () => {
    // The agent compiles a full sync with its long-lived compiler while the child (services-child.ts)
    // compiles the same objects with a fresh one; the kernel gets the child's table, the agent keeps
    // its own as what the kernel holds. Blocks assigned since the last full sync must not survive it.
    // 400 groups over 128 maps: many maps hold several blocks, so the order blocks were given in shows.
    const svc = (i: number) => service(`s${i}`, { clusterIP: `10.96.${i >> 8}.${i & 255}` });
    const sl = (i: number) => slice(`s${i}`, [ep(`10.244.2.${i & 255}`, "n2")]);
    const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
    const running = new IncrementalProxyCompiler();
    running.replaceAll(range(0, 300).map(svc), range(0, 300).map(sl));
    running.compile(inline);
    // Services come and go; then an apply fails and the agent starts over with a full sync.
    for (const i of range(0, 150)) running.deleteService("default", `s${i}`);
    running.compile(inline);
    const services = range(150, 400).map(svc);
    const slices = range(150, 400).map(sl);
    running.replaceAll(services, slices);
    const agent = running.compile(inline);
    const fresh = new IncrementalProxyCompiler();
    fresh.replaceAll(services, slices);
    const child = fresh.compile(inline);
    assert.deepEqual(planProxyTransaction(undefined, agent), planProxyTransaction(undefined, child));
  });
});

describe("compiled output pinned for a varied set of services", () => {
  // What the compiler made for these objects before its full compile was made faster (commit
  // ab1e903): the agent's and its child's compiles must keep agreeing with the kernel's table and
  // with each other, so any change to the output has to be deliberate. The map layout is listed; the
  // other layouts and every transaction (order included) are pinned by a hash of their JSON.
  const ready = { ready: true, serving: true, terminating: false };
  const tcp = (port: number, name = "") => ({ name, protocol: "TCP" as const, port });
  const services = [
    // Two ports (one UDP), a named targetPort; endpoints merged from two slices, out of order both as numbers and as text.
    service("web", { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: "http" }, { name: "dns", port: 53, protocol: "UDP", targetPort: 5353 }] }),
    service("nodeport-local", { type: "NodePort", clusterIP: "10.96.0.11", externalTrafficPolicy: "Local", ports: [{ port: 8080, targetPort: 8080, nodePort: 30080 }] }),
    service("lb", { type: "LoadBalancer", clusterIP: "10.96.0.12", loadBalancerSourceRanges: ["10.0.0.0/8", " 192.168.0.0/16 "], ports: [{ port: 443, targetPort: 8443, nodePort: 30443 }] }, { loadBalancer: { ingress: [{ ip: "192.0.2.10" }] } }),
    // Both claim 203.0.113.5: ext-a wins it.
    service("ext-a", { clusterIP: "10.96.0.13", externalIPs: ["203.0.113.5"], ports: [{ port: 80, targetPort: 80 }] }),
    service("ext-b", { clusterIP: "10.96.0.14", externalIPs: ["203.0.113.5", "203.0.113.6"], ports: [{ port: 80, targetPort: 80 }] }),
    service("sticky", { clusterIP: "10.96.0.15", sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }, ports: [{ port: 80, targetPort: 80 }] }),
    service("empty", { clusterIP: "10.96.0.16", ports: [{ port: 80, targetPort: 80 }] }),
    service("internal-local", { clusterIP: "10.96.0.17", internalTrafficPolicy: "Local", ports: [{ port: 80, targetPort: 80 }] }),
    service("terminating", { clusterIP: "10.96.0.18", ports: [{ port: 80, targetPort: 80 }] }),
    service("headless", { clusterIP: "None", ports: [{ port: 80, targetPort: 80 }] }),
    service("alias", { type: "ExternalName", externalName: "example.com" }),
  ];
  const webPorts = [tcp(8080, "http"), { name: "dns", protocol: "UDP" as const, port: 5353 }];
  const slices = [
    slice("web", [ep("10.244.2.9", "n2"), ep("10.244.10.3", "n3"), ep("10.244.1.7", "n1", { ready: false, serving: false, terminating: false })], webPorts, "web-a"),
    slice("web", [ep("10.244.1.7", "n1"), ep("10.244.1.20", "n1", ready)], webPorts, "web-b"),
    slice("nodeport-local", [ep("10.244.1.30", "n1"), ep("10.244.2.30", "n2")], [tcp(8080)]),
    slice("lb", [ep("10.244.2.40", "n2")], [tcp(8443)]),
    slice("ext-a", [ep("10.244.1.50", "n1")], [tcp(80)]),
    slice("ext-b", [ep("10.244.2.51", "n2")], [tcp(80)]),
    slice("sticky", [ep("10.244.2.60", "n2"), ep("10.244.1.60", "n1")], [tcp(80)]),
    slice("empty", [], [tcp(80)]),
    slice("internal-local", [ep("10.244.2.70", "n2")], [tcp(80)]),
    slice("terminating", [ep("10.244.2.80", "n2", { ready: false, serving: true, terminating: true }), ep("10.244.2.81", "n2", { ready: false, serving: false, terminating: true })], [tcp(80)]),
  ];
  const facts = { nodeName: "n1", nodeIps: ["192.168.1.11"], clusterCidr: "10.244.0.0/16" };
  const layouts: Record<string, ProxyNodeFacts> = {
    map: { ...facts, podCidr: "10.244.1.0/24" },
    inline: { ...facts, podCidr: "10.244.0.0/16", serviceCidr: "10.96.0.0/12" },
    chains: { ...facts, podCidr: "10.244.1.0/24", endpointChains: true },
  };
  const pinnedHashes: Record<string, string> = { map: "e7c83d49f947d70f", inline: "7a45108a8f3f73d8", chains: "2f315a88c1cb2d4f" };
  const pinnedMapLayout = `
service-73E42F94-default/web/tcp/http
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/web:http from outside the pod network"
  meta l4proto tcp dnat ip to numgen random mod 4 map @endpoints-tcp-7d
service-26170EB7-default/web/udp/dns
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/web:dns from outside the pod network"
  meta l4proto udp dnat ip to numgen random mod 4 map @endpoints-udp-16
service-234CE9EF-default/nodeport-local/tcp/8080
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/nodeport-local:8080 from outside the pod network"
  meta l4proto tcp dnat ip to numgen random mod 2 map @endpoints-tcp-5e
local-234CE9EF-default/nodeport-local/tcp/8080
  meta l4proto tcp dnat ip to numgen random mod 1 map @endpoints-tcp-2f
external-234CE9EF-default/nodeport-local/tcp/8080
  ip saddr 10.244.0.0/16 goto service-234CE9EF-default/nodeport-local/tcp/8080 comment "default/nodeport-local:8080 pods take the cluster path"
  goto local-234CE9EF-default/nodeport-local/tcp/8080
service-CA41C74F-default/lb/tcp/443
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/lb:443 from outside the pod network"
  meta l4proto tcp dnat ip to numgen random mod 1 map @endpoints-tcp-3e
external-CA41C74F-default/lb/tcp/443
  jump mark-for-masquerade comment "default/lb:443 external traffic is masqueraded"
  goto service-CA41C74F-default/lb/tcp/443
firewall-CA41C74F-default/lb/tcp/443
  ip saddr != { 10.0.0.0/8, 192.168.0.0/16 } drop comment "default/lb:443 loadBalancerSourceRanges"
service-DB1FCBBD-default/ext-a/tcp/80
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/ext-a:80 from outside the pod network"
  meta l4proto tcp dnat ip to numgen random mod 1 map @endpoints-tcp-7c
external-DB1FCBBD-default/ext-a/tcp/80
  jump mark-for-masquerade comment "default/ext-a:80 external traffic is masqueraded"
  goto service-DB1FCBBD-default/ext-a/tcp/80
service-F0776C52-default/ext-b/tcp/80
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/ext-b:80 from outside the pod network"
  meta l4proto tcp dnat ip to numgen random mod 1 map @endpoints-tcp-3b
external-F0776C52-default/ext-b/tcp/80
  jump mark-for-masquerade comment "default/ext-b:80 external traffic is masqueraded"
  goto service-F0776C52-default/ext-b/tcp/80
endpoint-B0A0AA52-default/sticky/tcp/80__10.244.1.60/80
  ip saddr 10.244.1.60 jump mark-for-masquerade
  update @affinity-7FE22CE7-default/sticky/tcp/80__10.244.1.60/80 { ip saddr }
  meta l4proto tcp dnat ip to 10.244.1.60:80
endpoint-2D13433B-default/sticky/tcp/80__10.244.2.60/80
  ip saddr 10.244.2.60 jump mark-for-masquerade
  update @affinity-78BBEE2A-default/sticky/tcp/80__10.244.2.60/80 { ip saddr }
  meta l4proto tcp dnat ip to 10.244.2.60:80
service-6D07F491-default/sticky/tcp/80
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/sticky:80 from outside the pod network"
  ip saddr @affinity-7FE22CE7-default/sticky/tcp/80__10.244.1.60/80 goto endpoint-B0A0AA52-default/sticky/tcp/80__10.244.1.60/80
  ip saddr @affinity-78BBEE2A-default/sticky/tcp/80__10.244.2.60/80 goto endpoint-2D13433B-default/sticky/tcp/80__10.244.2.60/80
  numgen random mod 2 0 goto endpoint-B0A0AA52-default/sticky/tcp/80__10.244.1.60/80
  goto endpoint-2D13433B-default/sticky/tcp/80__10.244.2.60/80
service-102FB235-default/internal-local/tcp/80
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/internal-local:80 from outside the pod network"
  meta l4proto tcp dnat ip to numgen random mod 1 map @endpoints-tcp-04
service-AB048C52-default/terminating/tcp/80
  ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment "default/terminating:80 from outside the pod network"
  meta l4proto tcp dnat ip to numgen random mod 1 offset 1024 map @endpoints-tcp-3b
set cluster-ips: 10.96.0.10, 10.96.0.11, 10.96.0.12, 10.96.0.13, 10.96.0.14, 10.96.0.15, 10.96.0.16, 10.96.0.17, 10.96.0.18
set affinity-7FE22CE7-default/sticky/tcp/80__10.244.1.60/80 timeout 600: 
set affinity-78BBEE2A-default/sticky/tcp/80__10.244.2.60/80 timeout 600: 
service-ips: 10.96.0.10 . tcp . 80 : goto service-73E42F94-default/web/tcp/http
service-ips: 10.96.0.10 . udp . 53 : goto service-26170EB7-default/web/udp/dns
service-ips: 10.96.0.11 . tcp . 8080 : goto service-234CE9EF-default/nodeport-local/tcp/8080
service-ips: 10.96.0.12 . tcp . 443 : goto service-CA41C74F-default/lb/tcp/443
service-ips: 192.0.2.10 . tcp . 443 : goto external-CA41C74F-default/lb/tcp/443
service-ips: 10.96.0.13 . tcp . 80 : goto service-DB1FCBBD-default/ext-a/tcp/80
service-ips: 203.0.113.5 . tcp . 80 : goto external-DB1FCBBD-default/ext-a/tcp/80
service-ips: 10.96.0.14 . tcp . 80 : goto service-F0776C52-default/ext-b/tcp/80
service-ips: 203.0.113.6 . tcp . 80 : goto external-F0776C52-default/ext-b/tcp/80
service-ips: 10.96.0.15 . tcp . 80 : goto service-6D07F491-default/sticky/tcp/80
service-ips: 10.96.0.18 . tcp . 80 : goto service-AB048C52-default/terminating/tcp/80
service-nodeports: tcp . 30080 : goto external-234CE9EF-default/nodeport-local/tcp/8080
service-nodeports: tcp . 30443 : goto external-CA41C74F-default/lb/tcp/443
no-endpoint-services: 10.96.0.16 . tcp . 80 : goto reject-chain
no-endpoint-services: 10.96.0.17 . tcp . 80 : drop
firewall-ips: 192.0.2.10 . tcp . 443 : goto firewall-CA41C74F-default/lb/tcp/443
endpoints-tcp-04: 0 : 10.244.2.70 . 80
endpoints-tcp-2f: 0 : 10.244.1.30 . 8080
endpoints-tcp-3b: 0 : 10.244.2.51 . 80
endpoints-tcp-3b: 1024 : 10.244.2.80 . 80
endpoints-tcp-3e: 0 : 10.244.2.40 . 8443
endpoints-tcp-5e: 0 : 10.244.1.30 . 8080
endpoints-tcp-5e: 1 : 10.244.2.30 . 8080
endpoints-tcp-7c: 0 : 10.244.1.50 . 80
endpoints-tcp-7d: 0 : 10.244.1.7 . 8080
endpoints-tcp-7d: 1 : 10.244.1.20 . 8080
endpoints-tcp-7d: 2 : 10.244.2.9 . 8080
endpoints-tcp-7d: 3 : 10.244.10.3 . 8080
endpoints-udp-16: 0 : 10.244.1.7 . 5353
endpoints-udp-16: 1 : 10.244.1.20 . 5353
endpoints-udp-16: 2 : 10.244.2.9 . 5353
endpoints-udp-16: 3 : 10.244.10.3 . 5353`;
  const fixedChains = new Set(["nat-prerouting", "nat-output", "nat-postrouting", "filter-prerouting", "filter-input", "filter-forward", "filter-output", "filter-output-post-dnat", "services", "mark-for-masquerade", "masquerading", "service-endpoints-check", "nodeport-endpoints-check", "cluster-ips-check", "firewall-check", "reject-chain"]);
  const valueText = (v: NftVerdict | readonly (string | number)[]) => ("verdict" in v ? ("chain" in v ? `${v.verdict} ${v.chain}` : v.verdict) : v.join(" . "));
  /** The services' chains (rules as nft writes them), the sets but the hairpin pairs, and every map element, in table order. */
  const summary = (table: NftTable): string[] => {
    const lines: string[] = [];
    for (const c of table.chains) {
      if (fixedChains.has(c.name)) continue;
      lines.push(c.name);
      c.rules.forEach((r, i) => lines.push(`  ${renderRuleBody(`${c.name}[${i}]`, r)}`));
    }
    for (const s of table.sets) if (s.name !== HAIRPIN_PAIRS) lines.push(`set ${s.name}${s.timeoutSeconds ? ` timeout ${s.timeoutSeconds}` : ""}: ${s.elements.map((e) => e.join(" . ")).join(", ")}`);
    for (const m of table.maps) for (const e of m.elements) lines.push(`${m.name}: ${e.key.join(" . ")} : ${valueText(e.verdict ?? e.value!)}`);
    return lines;
  };
  const fullSync = (node: ProxyNodeFacts) => {
    const compiler = new IncrementalProxyCompiler();
    compiler.replaceAll(services, slices);
    const compiled = compiler.compile(node);
    return { compiled, tx: planProxyTransaction(undefined, compiled) };
  };

  it("lays out the services' chains, sets and map elements as before (map layout)", () => {
    assert.deepEqual(summary(fullSync(layouts.map!).compiled.table), pinnedMapLayout.trim().split("\n"));
  });
  for (const [name, node] of Object.entries(layouts)) {
    it(`plans the same full-sync transaction and UDP frontends as before (${name} layout)`, () => {
      const { compiled, tx } = fullSync(node);
      assert.equal(createHash("sha256").update(JSON.stringify([tx, compiled.udpFrontends])).digest("hex").slice(0, 16), pinnedHashes[name]);
    });
  }
});

describe("endpoint blocks", () => {
  it("gives a group the lowest free block of its map, so freed blocks are reused first", () => {
    // Groups that hash to one map: found by trying names (the map is the group's hash modulo the shard count).
    const blocks = new EndpointBlocks();
    const mapOf = (group: string) => new EndpointBlocks().blockOf("probe", group, "tcp").map;
    const target = mapOf("g0");
    const groups = Array.from({ length: 2000 }, (_, i) => `g${i}`).filter((g) => mapOf(g) === target).slice(0, 5);
    assert.equal(groups.length, 5, "five groups share a map");
    const [a, b, c, d, e] = groups as [string, string, string, string, string];
    assert.deepEqual([a, b, c].map((g, i) => blocks.blockOf(`svc-${i}`, g, "tcp").index), [0, 1, 2]);
    blocks.release("svc-1");
    blocks.release("svc-0");
    assert.equal(blocks.blockOf("svc-3", d, "tcp").index, 0, "the lowest freed block first");
    assert.equal(blocks.blockOf("svc-4", e, "tcp").index, 1);
    assert.equal(blocks.blockOf("svc-5", b, "tcp").index, 3, "then past the blocks in use");
    assert.equal(blocks.blockOf("svc-2", c, "tcp").index, 2, "a group keeps its block");
  });
});
