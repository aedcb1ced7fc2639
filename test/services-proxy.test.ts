// The proxy compiler's table in a real kernel: a node namespace with three routed pods (a /32 each
// over a veth, as podnet's node routes them, so every packet between pods crosses the node's IP
// stack and its nftables hooks), the lab test server in two of them, and curl in the third.
// Checks the behaviours of issue 8 that the compiler owns: load-balancing over endpoints, no SNAT
// for pod → ClusterIP, hairpin masquerade, REJECT with no endpoints and on unserved ports,
// session affinity, and that after a full and several incremental transactions the kernel's table
// is exactly the model (read back with the nft layer and diffed).
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { diffTables } from "../src/kernel/nft/diff.ts";
import { decodeTableJson } from "../src/kernel/nft/readback.ts";
import { NftNetlinkWriter } from "../src/kernel/nft/netlink-writer.ts";
import { withDefaults } from "../src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "../src/k8s/types.ts";
import { TEST_SERVER_SCRIPT } from "../src/controlplane/test-server-ports.ts";
import { ProxyCompiler, PROXY_TABLE, type CompiledProxy, type ProxyNodeFacts } from "../src/services/proxy-compiler.ts";
import { planProxyTransaction } from "../src/services/proxy-plan.ts";
import { Netns, tempDir } from "./helpers/netns.ts";

const root = process.getuid?.() === 0;
const GATEWAY = "10.244.1.1";
const PODS = { client: "10.244.1.2", a: "10.244.1.3", b: "10.244.1.4" } as const;
const facts: ProxyNodeFacts = { nodeName: "n1", nodeIps: [GATEWAY], podCidr: "10.244.1.0/24", clusterCidr: "10.244.0.0/16", serviceCidr: "10.96.0.0/12" };

function service(name: string, clusterIP: string, spec: Partial<Service["spec"]> = {}): Service {
  return withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default" }, spec: { clusterIP, selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }], ...spec } });
}
function slice(name: string, ips: string[]): EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { name: `${name}-x`, namespace: "default", labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4", ports: [{ name: "", protocol: "TCP", port: 8080 }],
    endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: "n1", conditions: { ready: true, serving: true, terminating: false } })),
  };
}

describe("service proxy table in a real kernel", { skip: root ? false : "needs root" }, () => {
  let node: Netns;
  const pods = new Map<string, Netns>();
  const servers: ChildProcess[] = [];
  const compiler = new ProxyCompiler();
  let applied: CompiledProxy | undefined;
  let writer: NftNetlinkWriter | undefined;

  const sync = (services: Service[], slices: EndpointSlice[]) => {
    const next = compiler.compile(services, slices, facts);
    // Through the agent's path: nf_tables netlink batches (src/kernel/nft/netlink-writer.ts).
    writer ??= new NftNetlinkWriter(node.path);
    writer.apply(planProxyTransaction(applied, next));
    applied = next;
    return next;
  };
  const curl = (pod: string, url: string) => spawnSync("ip", ["netns", "exec", pods.get(pod)!.name, "curl", "-sS", "--max-time", "3", url], { encoding: "utf8" });
  const get = (pod: string, url: string) => {
    const run = curl(pod, url);
    assert.equal(run.status, 0, `curl ${url} from ${pod}: ${run.stderr}`);
    return run.stdout;
  };

  before(async () => {
    node = Netns.create("svcn");
    node.exec("sysctl", "-qw", "net.ipv4.ip_forward=1");
    for (const [name, ip] of Object.entries(PODS)) {
      const pod = Netns.create(`svc${name[0]}`);
      pods.set(name, pod);
      const host = `v${name}`;
      node.ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", pod.name);
      node.ip("addr", "add", `${GATEWAY}/32`, "dev", host);
      node.ip("link", "set", host, "up");
      node.ip("route", "add", `${ip}/32`, "dev", host);
      pod.ip("addr", "add", `${ip}/32`, "dev", "eth0");
      pod.ip("link", "set", "eth0", "up");
      pod.ip("route", "add", `${GATEWAY}/32`, "dev", "eth0");
      pod.ip("route", "add", "default", "via", GATEWAY, "dev", "eth0");
    }
    const dir = tempDir("svc");
    for (const name of ["a", "b"] as const) {
      const ready = join(dir, name);
      servers.push(spawn("ip", ["netns", "exec", pods.get(name)!.name, process.execPath, TEST_SERVER_SCRIPT, "--name", `pod-${name}`, "--listen", "TCP:8080", "--ready-file", ready], { stdio: "ignore" }));
      const deadline = Date.now() + 10_000;
      while (!existsSync(ready)) {
        if (Date.now() > deadline) throw new Error(`test server in pod ${name} did not start`);
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(JSON.parse(readFileSync(ready, "utf8")).pid > 0);
    }
  });
  after(() => {
    for (const server of servers) if (server.pid && server.exitCode === null) server.kill("SIGTERM");
    writer?.close();
    for (const pod of pods.values()) pod.delete();
    node?.delete();
  });

  const web = service("web", "10.96.0.20");
  const sticky = service("sticky", "10.96.0.21", { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } });
  const empty = service("empty", "10.96.0.22");
  const both = [PODS.a, PODS.b];

  it("spreads ClusterIP connections over the endpoints and keeps the client's IP", () => {
    sync([web, sticky, empty], [slice("web", both), slice("sticky", both)]);
    const seen = new Set<string>();
    for (let i = 0; i < 30 && seen.size < 2; i++) seen.add(get("client", "http://10.96.0.20/hostname"));
    assert.deepEqual([...seen].sort(), ["pod-a", "pod-b"]);
    assert.match(get("client", "http://10.96.0.20/clientip"), new RegExp(`^${PODS.client.replace(/\./g, "\\.")}:\\d+$`));
  });
  it("masquerades hairpin traffic, so a pod reaches itself through its service", () => {
    sync([web, sticky, empty], [slice("web", [PODS.a]), slice("sticky", both)]);
    assert.equal(get("a", "http://10.96.0.20/hostname"), "pod-a");
    assert.match(get("a", "http://10.96.0.20/clientip"), new RegExp(`^${GATEWAY.replace(/\./g, "\\.")}:\\d+$`));
  });
  it("masquerades only a true hairpin: a pod whose connection lands on the other endpoint keeps its IP", () => {
    sync([web, sticky, empty], [slice("web", both), slice("sticky", both)]);
    // Served by pod b, pod a's own address comes back; served by pod a itself, the node's (masqueraded:
    // without it the reply would go from a to a inside the pod and the connection would never finish).
    const seen = new Set<string>();
    for (let i = 0; i < 60 && seen.size < 2; i++) seen.add(get("a", "http://10.96.0.20/clientip").split(":")[0]!);
    assert.deepEqual([...seen].sort(), [GATEWAY, PODS.a].sort());
  });
  it("chooses every endpoint, about evenly, over many connections", () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const name = get("client", "http://10.96.0.20/hostname");
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    assert.deepEqual([...counts.keys()].sort(), ["pod-a", "pod-b"]);
    // Binomial(40, 1/2): fewer than 6 on one side happens about once in 10^5 runs.
    for (const [name, n] of counts) assert.ok(n >= 6, `${name} chosen ${n} times of 40`);
  });
  it("an endpoint replaced by another is one element-only batch (no rule, chain or jump), and traffic follows it", () => {
    sync([web, sticky, empty], [slice("web", [PODS.a]), slice("sticky", both)]);
    assert.equal(get("client", "http://10.96.0.20/hostname"), "pod-a");
    const next = compiler.compile([web, sticky, empty], [slice("web", [PODS.b]), slice("sticky", both)], facts);
    const tx = planProxyTransaction(applied, next);
    assert.ok(tx.changes.length > 0);
    for (const change of tx.changes) {
      assert.ok(change.op === "addElements" || change.op === "deleteElements", `an element op, got ${change.op}`);
      assert.match(change.setOrMap, /^endpoints-tcp-/);
    }
    writer!.apply(tx);
    applied = next;
    for (let i = 0; i < 5; i++) assert.equal(get("client", "http://10.96.0.20/hostname"), "pod-b");
  });
  it("refuses at once a service with no endpoints and a port a ClusterIP does not serve", () => {
    for (const url of ["http://10.96.0.22/hostname", "http://10.96.0.20:81/hostname"]) {
      const started = Date.now();
      const run = curl("client", url);
      assert.equal(run.status, 7, `curl exit 7 (connection refused) for ${url}: ${run.stderr}`);
      assert.ok(Date.now() - started < 1000, "refused in under a second, not timed out");
    }
  });
  it("keeps a client on one endpoint with sessionAffinity ClientIP", () => {
    const first = get("client", "http://10.96.0.21/hostname");
    for (let i = 0; i < 8; i++) assert.equal(get("client", "http://10.96.0.21/hostname"), first);
  });
  it("after full and incremental syncs the kernel holds exactly the model", () => {
    const next = sync([web, empty], [slice("web", both), slice("empty", [PODS.b])]);
    assert.equal(get("client", "http://10.96.0.22/hostname"), "pod-b", "the service that gained an endpoint answers");
    const listing = spawnSync("ip", ["netns", "exec", node.name, "nft", "-j", "list", "table", "ip", PROXY_TABLE], { encoding: "utf8" });
    assert.equal(listing.status, 0, listing.stderr);
    const current = decodeTableJson(listing.stdout, "ip", PROXY_TABLE);
    const drift = diffTables(next.table, current).changes;
    // The read-back decodes a dnat without "family" (nft 1.0.6 leaves it out in an ip table), so
    // every chain, endpoint chains included, must match the model exactly.
    assert.deepEqual(drift, [], JSON.stringify(drift).slice(0, 3000));
  });
});
