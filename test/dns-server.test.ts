// `podnet dns` in a fresh network namespace, asked by real clients: dig over UDP and TCP, glibc's
// getent through a resolv.conf that `ip netns exec` mounts from /etc/netns/<ns>/, busybox nslookup.
// Its upstream is dnsmasq serving a small zone in the same namespace; a second server has an
// upstream that is down. Then 10,000 random and mutated packets, and the server must live on.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Netns, tempDir } from "./helpers/netns.ts";
import { clusterIPService, endpointSlice, externalNameService, headlessService, namespace } from "../src/dns/fixtures.ts";
import type { KubeObject } from "../src/k8s/types.ts";

const root = new URL("..", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const bigEndpoints = Array.from({ length: 60 }, (_, i) => ({ ip: `10.244.9.${i + 1}` }));
const objects: KubeObject[] = [
  namespace("default"),
  namespace("other"),
  clusterIPService("default", "web", ["10.96.0.20"], [{ name: "http", port: 80, protocol: "TCP" }, { port: 8080, protocol: "TCP" }]),
  clusterIPService("default", "web6", ["10.96.0.21", "fd00:96::21"]),
  headlessService("default", "db", [{ name: "pg", port: 5432, protocol: "TCP" }]),
  endpointSlice("default", "db", [{ ip: "10.244.1.10", hostname: "db-0" }, { ip: "10.244.2.11", hostname: "db-1" }, { ip: "10.244.3.12" }], [{ name: "pg", port: 5432 }]),
  headlessService("default", "empty"),
  externalNameService("default", "ext", "www.example.test"),
  headlessService("other", "big"),
  endpointSlice("other", "big", bigEndpoints),
];

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

describe("podnet dns with real clients, in a namespace", () => {
  let ns: Netns;
  let etcNetns: string;
  let createdEtcNetns = false;
  const children: ChildProcess[] = [];
  let twoThreads: ChildProcess | undefined;
  const logs = new Map<ChildProcess, string>();

  const inNs = (cmd: string, ...args: string[]): Run => {
    const started = performance.now();
    const r = spawnSync("ip", ["netns", "exec", ns.name, cmd, ...args], { encoding: "utf8", timeout: 20_000 });
    return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", ms: performance.now() - started };
  };
  const dig = (...args: string[]): Run => inNs("dig", "+time=3", "+tries=1", ...args);
  const start = (cmd: string, args: string[]): ChildProcess => {
    const child = spawn("ip", ["netns", "exec", ns.name, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE_EXTRA_CA_CERTS: "" } });
    let log = "";
    child.stdout?.on("data", (d: Buffer) => (log += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (log += d.toString()));
    child.on("exit", () => logs.set(child, log));
    const timer = setInterval(() => logs.set(child, log), 200);
    child.on("exit", () => clearInterval(timer));
    timer.unref();
    children.push(child);
    return child;
  };
  const waitForAnswer = async (server: string, what: string): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (/^\d+\.\d+\.\d+\.\d+$/m.test(dig(`@${server}`, "+short", what).stdout)) return;
      await sleep(200);
    }
    throw new Error(`${server} never answered ${what}: ${[...logs.values()].join("\n")}`);
  };

  before(async () => {
    ns = Netns.create("dns");
    ns.ip("addr", "add", "127.0.0.2/8", "dev", "lo");
    const dir = tempDir("dns");
    const file = join(dir, "objects.json");
    writeFileSync(file, JSON.stringify(objects));
    // The upstream: dnsmasq with one zone, authoritative for example.test (NXDOMAIN for the rest of it).
    start("dnsmasq", [
      "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
      "--listen-address=127.0.0.2", "--port=53", "--user=root", "--pid-file=",
      "--host-record=www.example.test,192.0.2.10", "--local=/example.test/",
    ]);
    start("node", [join(root, "bin/podnet.js"), "dns", "--objects", file, "--listen", "127.0.0.1:53", "--upstream", "127.0.0.2:53", "--forward-timeout", "800", "--metrics", "127.0.0.1:9153"]);
    // The same cluster, with an upstream nobody answers on.
    start("node", [join(root, "bin/podnet.js"), "dns", "--objects", file, "--listen", "127.0.0.3:53", "--upstream", "127.0.0.4:53", "--forward-timeout", "500", "--metrics", "none"]);
    // Two threads sharing the UDP port (--workers 2).
    twoThreads = start(join(root, "bin/podnet.js"), ["dns", "--objects", file, "--listen", "127.0.0.5:53", "--upstream", "127.0.0.2:53", "--metrics", "127.0.0.1:9155", "--workers", "2"]);
    // glibc in the namespace reads this as /etc/resolv.conf: what kubelet writes for a pod in "default".
    etcNetns = "/etc/netns";
    if (!existsSync(etcNetns)) {
      mkdirSync(etcNetns);
      createdEtcNetns = true;
    }
    mkdirSync(join(etcNetns, ns.name));
    writeFileSync(join(etcNetns, ns.name, "resolv.conf"), "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
    await waitForAnswer("127.0.0.1", "web.default.svc.cluster.local");
    await waitForAnswer("127.0.0.3", "web.default.svc.cluster.local");
    await waitForAnswer("127.0.0.5", "web.default.svc.cluster.local");
    await waitForAnswer("127.0.0.2", "www.example.test");
  });

  after(() => {
    for (const child of children) if (child.exitCode === null && child.pid) process.kill(child.pid, "SIGTERM");
    if (ns) rmSync(join("/etc/netns", ns.name), { recursive: true, force: true });
    if (createdEtcNetns && existsSync("/etc/netns") && readdirSync("/etc/netns").length === 0) rmdirSync("/etc/netns");
    ns?.delete();
  });

  const lines = (r: Run): string[] => r.stdout.trim().split("\n").filter((l) => l !== "");

  it("dig over UDP and TCP: A of a ClusterIP service, authoritative, TTL 5", () => {
    for (const proto of ["+notcp", "+tcp"]) {
      const r = dig("@127.0.0.1", proto, "+noall", "+answer", "+comments", "web.default.svc.cluster.local", "A");
      assert.match(r.stdout, /flags: qr aa rd ra;/, proto);
      assert.match(r.stdout, /^web\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.96\.0\.20$/m, proto);
    }
  });

  it("dig: AAAA, SRV, PTR, TXT", () => {
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "web6.default.svc.cluster.local", "AAAA")), ["fd00:96::21"]);
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "_http._tcp.web.default.svc.cluster.local", "SRV")), ["0 100 80 web.default.svc.cluster.local."]);
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "-x", "10.96.0.20")), ["web.default.svc.cluster.local."]);
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "-x", "10.244.1.10")), ["db-0.db.default.svc.cluster.local."]);
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "dns-version.cluster.local", "TXT")), ['"1.1.0"']);
  });

  it("dig: a headless service, its endpoint names and per-endpoint SRV", () => {
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "db.default.svc.cluster.local")).sort(), ["10.244.1.10", "10.244.2.11", "10.244.3.12"]);
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "DB-1.db.default.svc.Cluster.Local")), ["10.244.2.11"]);
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "10-244-3-12.db.default.svc.cluster.local")), ["10.244.3.12"]);
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "_pg._tcp.db.default.svc.cluster.local", "SRV")).sort(), [
      "0 33 5432 10-244-3-12.db.default.svc.cluster.local.",
      "0 33 5432 db-0.db.default.svc.cluster.local.",
      "0 33 5432 db-1.db.default.svc.cluster.local.",
    ]);
  });

  it("dig: ExternalName is a CNAME followed through the upstream", () => {
    const r = dig("@127.0.0.1", "+noall", "+answer", "ext.default.svc.cluster.local", "A");
    assert.match(r.stdout, /^ext\.default\.svc\.cluster\.local\.\s+5\s+IN\s+CNAME\s+www\.example\.test\.$/m);
    assert.match(r.stdout, /^www\.example\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.10$/m);
  });

  it("dig: NXDOMAIN and NODATA, with the SOA in authority", () => {
    const cases: [string, string, string, number][] = [
      ["nosuch.default.svc.cluster.local", "A", "NXDOMAIN", 0],
      ["empty.default.svc.cluster.local", "A", "NXDOMAIN", 0],
      ["web.missing.svc.cluster.local", "A", "NXDOMAIN", 0],
      ["missing.svc.cluster.local", "A", "NXDOMAIN", 0],
      ["default.svc.cluster.local", "A", "NOERROR", 0],
      ["svc.cluster.local", "A", "NOERROR", 0],
      ["cluster.local", "A", "NOERROR", 0],
      ["web.default.svc.cluster.local", "TXT", "NOERROR", 0],
      ["web.default.svc.cluster.local", "AAAA", "NOERROR", 0],
    ];
    for (const [name, type, rcode, answers] of cases) {
      const r = dig("@127.0.0.1", name, type);
      assert.match(r.stdout, new RegExp(`status: ${rcode},`), `${name} ${type}`);
      assert.match(r.stdout, new RegExp(`ANSWER: ${answers},`), `${name} ${type}`);
      assert.match(r.stdout, /AUTHORITY SECTION:\ncluster\.local\.\s+5\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\./, `${name} ${type}`);
    }
  });

  it("dig: too big for the client's UDP size → TC; the same over TCP is whole; a large EDNS size gets it over UDP", () => {
    const name = "big.other.svc.cluster.local";
    const small = dig("@127.0.0.1", "+ignore", "+bufsize=1232", name);
    assert.match(small.stdout, /flags: qr aa tc rd ra;/);
    assert.match(small.stdout, /ANSWER: 0,/);
    assert.match(dig("@127.0.0.1", "+ignore", "+noedns", name).stdout, /flags: qr aa tc rd ra;/);
    const retried = dig("@127.0.0.1", "+noedns", name);
    assert.match(retried.stdout, /Truncated, retrying in TCP mode/);
    assert.match(retried.stdout, /ANSWER: 60,/);
    // The same query bytes over UDP after the TCP answer: still truncated (no whole answer from a cache).
    assert.match(dig("@127.0.0.1", "+ignore", "+noedns", name).stdout, /flags: qr aa tc rd ra;/);
    assert.match(dig("@127.0.0.1", "+ignore", "+noedns", "+tcp", name).stdout, /ANSWER: 60,/);
    const large = dig("@127.0.0.1", "+bufsize=4096", name);
    assert.doesNotMatch(large.stdout, /Truncated/);
    assert.match(large.stdout, /ANSWER: 60,/);
    assert.match(large.stdout, /EDNS: version: 0, flags:; udp: 1232/);
  });

  it("forwards other names to the upstream, NXDOMAIN included", () => {
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "www.example.test")), ["192.0.2.10"]);
    assert.match(dig("@127.0.0.1", "nothere.example.test").stdout, /status: NXDOMAIN/);
  });

  it("an upstream that is down: SERVFAIL within the forward budget, and cluster names still answer", () => {
    const r = dig("@127.0.0.3", "www.example.test");
    assert.match(r.stdout, /status: SERVFAIL/);
    assert.ok(r.ms < 1500, `SERVFAIL took ${r.ms.toFixed(0)} ms`);
    assert.deepEqual(lines(dig("@127.0.0.3", "+short", "web.default.svc.cluster.local")), ["10.96.0.20"]);
  });

  it("glibc getent through the pod's resolv.conf: short, namespaced and full names, an upstream name, a missing one", () => {
    assert.match(inNs("getent", "hosts", "web").stdout, /^10\.96\.0\.20\s+web\.default\.svc\.cluster\.local$/m);
    assert.match(inNs("getent", "hosts", "web.default").stdout, /^10\.96\.0\.20\s/m);
    assert.match(inNs("getent", "hosts", "big.other").stdout, /^10\.244\.9\.\d+\s+big\.other\.svc\.cluster\.local$/m);
    assert.match(inNs("getent", "ahostsv4", "www.example.test").stdout, /^192\.0\.2\.10\s/m);
    assert.match(inNs("getent", "hosts", "fd00:96::21").stdout.concat(inNs("getent", "hosts", "10.96.0.20").stdout), /web\.default\.svc\.cluster\.local/);
    assert.equal(inNs("getent", "hosts", "nosuch").status, 2);
  });

  it("busybox nslookup", () => {
    const r = inNs("busybox", "nslookup", "web.default.svc.cluster.local", "127.0.0.1");
    assert.match(r.stdout, /Address:\s+10\.96\.0\.20/);
    const missing = inNs("busybox", "nslookup", "nosuch.default.svc.cluster.local", "127.0.0.1");
    assert.match(missing.stdout + missing.stderr, /NXDOMAIN/);
  });

  it("search-path answering: the first step of a walk gets a CNAME to the real name and its answer in one reply", () => {
    const r = dig("@127.0.0.1", "+noall", "+answer", "www.example.test.default.svc.cluster.local", "A");
    assert.match(r.stdout, /^www\.example\.test\.default\.svc\.cluster\.local\.\s+5\s+IN\s+CNAME\s+www\.example\.test\.$/m);
    assert.match(r.stdout, /^www\.example\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.10$/m);
    // A name whose last label is a namespace can be a cluster name further down the walk: no shortcut.
    assert.match(dig("@127.0.0.1", "web.other.default.svc.cluster.local").stdout, /status: NXDOMAIN/);
  });

  it("/metrics, /health and /ready", () => {
    const metrics = inNs("curl", "-sf", "http://127.0.0.1:9153/metrics").stdout;
    assert.match(metrics, /podnet_dns_queries_total\{type="A",rcode="NOERROR",proto="udp"\} \d+/);
    assert.match(metrics, /podnet_dns_request_duration_seconds_bucket/);
    assert.match(metrics, /podnet_dns_forward_cache_hits_total \d+/);
    assert.equal(inNs("curl", "-sf", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9153/ready").stdout, "200");
    assert.equal(inNs("curl", "-sf", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9153/health").stdout, "200");
  });

  it("--workers 2: both threads answer on one port, TCP on the first, /metrics counts both", async () => {
    // Each dig uses a new source port, so the kernel spreads them over the two sockets.
    for (let i = 0; i < 40; i++) assert.deepEqual(lines(dig("@127.0.0.5", "+short", "web.default.svc.cluster.local")), ["10.96.0.20"]);
    assert.deepEqual(lines(dig("@127.0.0.5", "+tcp", "+short", "db-0.db.default.svc.cluster.local")), ["10.244.1.10"]);
    await sleep(1500);
    const metrics = inNs("curl", "-sf", "http://127.0.0.1:9155/metrics").stdout;
    const log = twoThreads ? (logs.get(twoThreads) ?? "") : "";
    assert.match(log, /podnet-worker-dns: synced/, "the second thread loaded the cluster");
    assert.doesNotMatch(log, /EADDRINUSE/);
    const udp = Number(/podnet_dns_queries_total\{type="A",rcode="NOERROR",proto="udp"\} (\d+)/.exec(metrics)?.[1]);
    assert.ok(udp >= 40, `counted ${udp} of at least 40 (plus the readiness probes)`);
  });

  it("10,000 random and mutated packets: FORMERR or dropped or a proper answer, and the server lives on", () => {
    const seed = Date.now() % 100000;
    const r = inNs("node", "--import", "tsx", join(root, "test/helpers/dns-fuzz.ts"), "127.0.0.1", "53", "10000", String(seed));
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { sent: number; replies: number; badReplies: number; rcodes: Record<string, number>; badExamples: string[] };
    assert.equal(report.sent, 10000);
    assert.equal(report.badReplies, 0, `seed ${seed}: ${report.badExamples.join("; ")}`);
    assert.ok((report.rcodes.FORMERR ?? 0) > 500, `seed ${seed}: FORMERR for the malformed ones: ${JSON.stringify(report.rcodes)}`);
    assert.ok(report.replies > 3000, `seed ${seed}: ${JSON.stringify(report)}`);
    for (const child of children) assert.equal(child.exitCode, null, `a server exited: ${logs.get(child)}`);
    assert.deepEqual(lines(dig("@127.0.0.1", "+short", "web.default.svc.cluster.local")), ["10.96.0.20"]);
  });
});
