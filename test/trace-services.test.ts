// `podnet trace` through Services as the real agent programs them (its services reconciler owns
// `ip podnet-svc` on every node), on a lab with the example app (web-svc, web-sticky with ClientIP
// affinity) and a UDP echo Service applied here. What the trace reports is checked against what really
// answered: the test server's hostname, from a client in the same pod. Flows that conntrack already knows
// are followed with --sport: a long-lived TCP client and a UDP client hold their flows, and the trace
// shows the conntrack entry that decided, not a rule. Needs root and `npm run build`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv } from "ajv";
import type { EndpointSlice, Pod, Service } from "../src/k8s/types.ts";
import type { LabStateData } from "../src/lab/lab-state.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";
import { runCommand } from "../src/supervise/command.ts";
import type { Hop, TraceResult } from "../src/trace/model.ts";
import { lab, newTestLab, readLabState, removeTestLab, type TestLab } from "./helpers/lab.ts";

const t: TestLab = newTestLab();
let state: LabStateData;
let services: Map<string, Service>;
let pods: Pod[];

const ECHO = `apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers: [{name: echo, image: agnhost, ports: [{containerPort: 9000, protocol: UDP}]}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-udp}
spec:
  selector: {app: echo}
  ports: [{port: 53, protocol: UDP, targetPort: 9000}]
`;

async function getJson<T>(kind: string): Promise<T[]> {
  const got = await lab(["get", kind, "-A", "-o", "json", ...t.flags]);
  assert.equal(got.code, 0, got.stderr);
  return (JSON.parse(got.stdout) as { items: T[] }).items;
}

async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) assert.fail(`${what}: not so after ${timeoutMs / 1000} s: ${JSON.stringify(v).slice(0, 1500)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

before(async () => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
  const up = await lab(["up", "--nodes", "2", "--pods-per-node", "1", ...t.flags], 180_000);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  const applied = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "lab", "apply", "-f", "-", ...t.flags], { input: ECHO, timeoutMs: 60_000 });
  assert.equal(applied.code, 0, applied.stderr);
  await until("every echo and web endpoint ready", () => getJson<EndpointSlice>("endpointslices"), (slices) => {
    const ready = (svc: string) => slices.filter((s) => s.metadata.labels?.["kubernetes.io/service-name"] === svc).flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready)).length;
    return ready("echo-udp") === 2 && ready("web-svc") === 3;
  });
  services = new Map((await getJson<Service>("services")).map((s) => [s.metadata.name, s]));
  pods = await getJson<Pod>("pods");
  state = readLabState(t)!;
});
after(async () => {
  assert.deepEqual(await removeTestLab(t), [], "lab down left these behind");
});

const clusterIp = (name: string): string => services.get(name)!.spec.clusterIP!;
const podByIp = (ip: string | undefined): Pod | undefined => pods.find((p) => p.status?.podIP === ip);
const node = (name: string) => state.nodeRecords.find((n) => n.name === name)!;
const probePod = (name: string) => state.pods.find((p) => p.name === name)!;
const hopsOf = <K extends Hop["kind"]>(r: TraceResult, kind: K): Extract<Hop, { kind: K }>[] => r.hops.filter((h): h is Extract<Hop, { kind: K }> => h.kind === kind);
const validate = new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(readFileSync(join(REPO_ROOT, "src/trace/trace.schema.json"), "utf8")));

async function trace(...args: string[]): Promise<TraceResult> {
  const run = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", ...args, "-o", "json", ...t.flags], { timeoutMs: 60_000 });
  let result: TraceResult;
  try {
    result = JSON.parse(run.stdout) as TraceResult;
  } catch {
    throw new Error(`trace ${args.join(" ")} exited ${run.code} without JSON: ${run.stdout}${run.stderr}`);
  }
  assert.ok(validate(result), JSON.stringify(validate.errors, null, 2));
  assert.equal(run.code, 0, JSON.stringify(result.hops, null, 1));
  return result;
}

function sh(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  assert.equal(r.status, 0, `${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** A client process in a pod's namespace; every line it prints is one answer (a hostname). */
class PodClient {
  readonly answers: string[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  constructor(netns: string, script: string, args: string[]) {
    this.child = spawn("ip", ["netns", "exec", netns, "python3", "-c", script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let buffered = "";
    let stderr = "";
    this.child.stdout!.on("data", (c: Buffer) => {
      buffered += c.toString("utf8");
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      this.answers.push(...lines.filter((l) => l !== ""));
    });
    this.child.stderr!.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    this.exited = new Promise((resolve) => this.child.once("close", () => resolve()));
    void this.exited.then(() => {
      if (stderr) this.answers.push(`stderr: ${stderr.trim()}`);
    });
  }
  async answered(count: number): Promise<string[]> {
    const deadline = Date.now() + 15_000;
    while (this.answers.length < count) {
      assert.ok(Date.now() < deadline, `the client gave ${this.answers.length} of ${count} answers: ${this.answers.join(" | ")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return [...this.answers];
  }
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGTERM");
    await this.exited;
  }
}

// A keep-alive HTTP client on one connection from a fixed source port: GET /hostname once a second
// (the test server closes a connection idle for 5 s), one line per answer.
const TCP_CLIENT = `
import socket, sys, time
s = socket.socket(); s.bind(("", int(sys.argv[2]))); s.settimeout(5); s.connect((sys.argv[1], 80))
while True:
    s.sendall(b"GET /hostname HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"); data = b""
    while b"\\r\\n\\r\\n" not in data: data += s.recv(2000)
    head, body = data.split(b"\\r\\n\\r\\n", 1)
    n = int([l.split(b":")[1] for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < n: body += s.recv(2000)
    print(body.decode().strip(), flush=True); time.sleep(1)
`;

// A UDP client on a fixed source port: asks "hostname" once, prints the answer, then keeps its socket
// (and reads whatever else arrives on it, such as the echo of a trace's probe).
const UDP_CLIENT = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", int(sys.argv[2]))); s.settimeout(5)
s.sendto(b"hostname", (sys.argv[1], int(sys.argv[3]))); print(s.recvfrom(500)[0].decode(), flush=True)
s.settimeout(None)
while True: s.recvfrom(2000)
`;

test("pod → ClusterIP on the agent's own table: the service-ips element, the DNAT'd endpoint, and the endpoint that answers /hostname", async () => {
  // UDP: the probe's flow stays in conntrack, so a client from the probe's source port afterwards is
  // sent where the trace's rule chose, and the answer names that pod.
  const ip = clusterIp("echo-udp");
  const sport = 47_101;
  const src = probePod("node1-pod1");
  const result = await trace("node1-pod1", `${ip}:53`, "--proto", "udp", "--sport", String(sport));
  assert.equal(result.probe.sport, sport);
  assert.equal(result.probe.via, "socket");
  assert.equal(hopsOf(result, "conntrack").length, 0, "a new flow: the rules decide");
  const service = hopsOf(result, "service")[0];
  assert.ok(service, JSON.stringify(result.hops, null, 1));
  assert.equal(service.netns, node("node1").netns);
  assert.equal(service.table, "podnet-svc");
  assert.equal(service.map, "service-ips");
  assert.equal(service.element, `${ip} . udp . 53`);
  assert.match(service.serviceChain, /default\/echo-udp\/udp/);
  const endpoint = podByIp(service.endpoint?.address);
  assert.ok(endpoint?.metadata.labels?.app === "echo", `the DNAT chose an echo pod: ${JSON.stringify(service.endpoint)}`);
  assert.equal(service.endpoint!.port, 9000);
  // The endpoint map layout: the rule's draw and the element that holds the endpoint conntrack names.
  const drawn = service.endpointElement;
  assert.ok(drawn && /^endpoints-udp-/.test(drawn.map) && drawn.key >= drawn.offset && drawn.key < drawn.offset + drawn.mod, JSON.stringify(service));
  assert.match(service.summary, /element \d+ of @endpoints-udp-/);
  const arrival = result.hops.at(-1)!;
  assert.ok(arrival.kind === "arrival" && arrival.daddr === service.endpoint!.address && arrival.where === `default/${endpoint.metadata.name}` && arrival.saddr === src.ip, JSON.stringify(arrival));

  const client = new PodClient(src.netns, UDP_CLIENT, [ip, String(sport), "53"]);
  try {
    const [answer] = await client.answered(1);
    assert.equal(answer, endpoint.metadata.name, "the pod the trace named is the one that answered");
  } finally {
    await client.stop();
  }

  // TCP on web-svc: the element and an endpoint of the Deployment's; then the endpoint answers by name.
  const web = await trace("node2-pod1", `${clusterIp("web-svc")}:80`, "--proto", "tcp");
  const webService = hopsOf(web, "service")[0]!;
  assert.equal(webService.element, `${clusterIp("web-svc")} . tcp . 80`);
  assert.equal(webService.table, "podnet-svc");
  assert.equal(podByIp(webService.endpoint?.address)?.metadata.labels?.app, "web");
  assert.match(webService.endpointElement?.map ?? "", /^endpoints-tcp-/);
  assert.equal(webService.affinity, undefined, "web-svc has no session affinity");
});

test("an existing TCP flow, followed with --sport: its conntrack entry decides, no rule does, and it goes to the pod that answers it", async () => {
  const src = probePod("node2-pod1");
  const ip = clusterIp("web-svc");
  const sport = 47_102;
  const client = new PodClient(src.netns, TCP_CLIENT, [ip, String(sport)]);
  try {
    const [answer] = await client.answered(1);
    const serving = pods.find((p) => p.metadata.name === answer);
    assert.ok(serving?.status?.podIP, `a web pod answered: ${answer}`);
    const nodeNs = node("node2").netns;
    const entryBefore = sh(["ip", "netns", "exec", nodeNs, "conntrack", "-L", "-p", "tcp", "--orig-port-src", String(sport)]);

    const result = await trace("node2-pod1", `${ip}:80`, "--proto", "tcp", "--sport", String(sport));
    assert.equal(result.probe.via, "raw", "the client's socket holds the port: the probe is written as a packet of its flow");
    assert.equal(hopsOf(result, "service").length, 0, "no service rule ran for a packet of an existing flow");
    const [ct] = hopsOf(result, "conntrack");
    assert.ok(ct, JSON.stringify(result.hops, null, 1));
    assert.equal(ct.netns, nodeNs);
    assert.equal(ct.existing, true);
    assert.equal(ct.proto, "tcp");
    assert.equal(ct.state, "ESTABLISHED");
    assert.deepEqual(ct.original, { src: src.ip, dst: ip, sport, dport: 80 });
    assert.deepEqual(ct.dnatTo, { address: serving.status.podIP, port: 8080 });
    assert.equal(ct.reply.src, serving.status.podIP);
    assert.match(ct.summary, /no service rule chose the endpoint/);
    const arrival = result.hops.at(-1)!;
    assert.ok(arrival.kind === "arrival" && arrival.where === `default/${answer}` && arrival.daddr === serving.status.podIP, JSON.stringify(arrival));

    // The client's flow is untouched: same entry, still answered by the same pod.
    const entryAfter = sh(["ip", "netns", "exec", nodeNs, "conntrack", "-L", "-p", "tcp", "--orig-port-src", String(sport)]);
    const tuples = (text: string) => text.replace(/^tcp\s+6\s+\d+\s+/, "").replace(/\s+use=\d+/, "").trim();
    assert.equal(tuples(entryAfter), tuples(entryBefore));
    const seen = client.answers.length;
    const answers = await client.answered(seen + 2);
    assert.deepEqual(new Set(answers), new Set([answer]), "every answer on the flow from the same pod");

    // --explain prints the command that shows the entry by hand.
    const explained = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", "node2-pod1", `${ip}:80`, "--proto", "tcp", "--sport", String(sport), "--explain", ...t.flags], { timeoutMs: 60_000 });
    assert.equal(explained.code, 0, explained.stderr);
    assert.ok(explained.stdout.includes(`$ ip netns exec ${nodeNs} conntrack -L -f ipv4 -p tcp --orig-src ${src.ip} --orig-dst ${ip} --orig-port-src ${sport} --orig-port-dst 80`), explained.stdout);
    assert.match(explained.stdout, /conntrack +conntrack: existing tcp flow .* ESTABLISHED/);

    // Once the client has closed, its entry lingers in TIME_WAIT; a SYN there starts a new flow, so the
    // rules decide again and the trace says so (a service hop, no conntrack hop).
    await client.stop();
    const deadline = Date.now() + 15_000;
    while (!/TIME_WAIT|CLOSE /.test(sh(["ip", "netns", "exec", nodeNs, "conntrack", "-L", "-p", "tcp", "--orig-port-src", String(sport)]))) {
      assert.ok(Date.now() < deadline, "the closed flow's entry never reached TIME_WAIT");
      await new Promise((r) => setTimeout(r, 200));
    }
    const closed = await trace("node2-pod1", `${ip}:80`, "--proto", "tcp", "--sport", String(sport));
    assert.equal(hopsOf(closed, "conntrack").length, 0, JSON.stringify(closed.hops, null, 1));
    assert.equal(hopsOf(closed, "service").length, 1);
  } finally {
    await client.stop();
  }
});

test("two traces from one UDP source port, then a client on it: the second trace shows the conntrack entry and the same endpoint", async () => {
  const src = probePod("node1-pod1");
  const ip = clusterIp("echo-udp");
  const sport = 47_103;
  const first = await trace("node1-pod1", `${ip}:53`, "--proto", "udp", "--sport", String(sport));
  const chosen = hopsOf(first, "service")[0]!.endpoint!;
  const second = await trace("node1-pod1", `${ip}:53`, "--proto", "udp", "--sport", String(sport));
  assert.equal(hopsOf(second, "service").length, 0);
  const [ct] = hopsOf(second, "conntrack");
  assert.ok(ct && ct.existing && ct.netns === node("node1").netns, JSON.stringify(second.hops, null, 1));
  assert.deepEqual(ct.dnatTo, chosen);
  assert.equal(ct.state, undefined, "UDP has no state word");
  // Now a real client holds the port: the third trace is written as a packet of its flow and still goes there.
  const client = new PodClient(src.netns, UDP_CLIENT, [ip, String(sport), "53"]);
  try {
    const [answer] = await client.answered(1);
    assert.equal(answer, podByIp(chosen.address)?.metadata.name);
    const third = await trace("node1-pod1", `${ip}:53`, "--proto", "udp", "--sport", String(sport));
    assert.equal(third.probe.via, "raw");
    assert.deepEqual(hopsOf(third, "conntrack")[0]?.dnatTo, chosen);
    const arrival = third.hops.at(-1)!;
    assert.ok(arrival.kind === "arrival" && arrival.daddr === chosen.address, JSON.stringify(arrival));
  } finally {
    await client.stop();
  }
});

test("session affinity: a repeated trace to web-sticky keeps its endpoint, and names the set element that chose it; curl is answered there", async () => {
  const src = probePod("node1-pod1");
  const ip = clusterIp("web-sticky");
  const first = await trace("node1-pod1", `${ip}:80`, "--proto", "tcp");
  const s1 = hopsOf(first, "service")[0]!;
  assert.ok(s1.affinity, JSON.stringify(s1, null, 1));
  assert.equal(s1.affinity.decided, false, "a first connection: the rules chose, the endpoint chain recorded the client");
  assert.equal(s1.affinity.element, src.ip);
  assert.match(s1.affinity.expires ?? "", /^[23]h/, "timeoutSeconds defaults to 10800");
  for (let i = 0; i < 2; i++) {
    const again = await trace("node1-pod1", `${ip}:80`, "--proto", "tcp");
    const s = hopsOf(again, "service")[0]!;
    assert.deepEqual(s.endpoint, s1.endpoint, "the same endpoint");
    assert.equal(s.affinity?.decided, true, "the affinity rule matched");
    assert.equal(s.affinity?.set, s1.affinity.set);
    assert.equal(s.affinity?.element, src.ip);
    assert.match(s.summary, /chosen by session affinity: element \S+ of @affinity-/);
    assert.ok(s.explain.some((c) => c.includes(`nft get element ip podnet-svc ${s1.affinity!.set} '{ ${src.ip} }'`)), s.explain.join("\n"));
  }
  const curl = await lab(["exec", "node1-pod1", ...t.flags, "--", "curl", "-s", "-m", "5", `http://${ip}/hostname`]);
  assert.equal(curl.code, 0, curl.stderr);
  assert.equal(curl.stdout.trim(), podByIp(s1.endpoint?.address)?.metadata.name, "the client is answered by the endpoint the trace named");
});

/**
 * Routes, nft ruleset (affinity elements' countdown left out) and long-lived, open conntrack entries of every lab
 * namespace, but for the flows of this file's traces and clients (source ports 47000-47999, see `ignore`).
 */
function snapshot(ignore: (port: number) => boolean): Map<string, string> {
  const out = new Map<string, string>();
  for (const ns of state.namespaces) {
    out.set(`${ns} routes`, sh(["ip", "-n", ns, "route", "show", "table", "all"]));
    out.set(`${ns} nft`, sh(["ip", "netns", "exec", ns, "nft", "list", "ruleset"]).replace(/ expires \S+?(?=[,\s}])/g, ""));
    const flows = sh(["ip", "netns", "exec", ns, "conntrack", "-L"]).split("\n")
      // Closing TCP flows (TIME_WAIT lasts 120 s) are the lab's own short connections winding down, such
      // as the kubelet's readiness probes: they vanish on their own, so only live flows are compared.
      .filter((l) => Number(l.split(/\s+/)[2]) > 60 && !/\b(TIME_WAIT|CLOSE|CLOSE_WAIT|LAST_ACK|FIN_WAIT)\b/.test(l) && ![...l.matchAll(/\b[sd]port=(\d+)/g)].some((m) => ignore(Number(m[1]))))
      .map((l) => l.replace(/^(\S+\s+\d+)\s+\d+/, "$1").replace(/\s+use=\d+/, "")).sort();
    out.set(`${ns} conntrack`, flows.join("\n"));
  }
  return out;
}

test("external → a LoadBalancer IP and → a NodePort: the service hop on the node it reaches, DNAT to a web pod, the source masqueraded", async () => {
  const web = services.get("web-svc")!;
  const lbIp = web.status?.loadBalancer?.ingress?.[0]?.ip;
  assert.ok(lbIp, `web-svc has a LoadBalancer IP: ${JSON.stringify(web.status)}`);
  const viaLb = await trace("external", `${lbIp}:80`, "--proto", "tcp");
  const lbService = hopsOf(viaLb, "service")[0];
  assert.ok(lbService, JSON.stringify(viaLb.hops, null, 1));
  assert.equal(lbService.table, "podnet-svc");
  assert.equal(lbService.element, `${lbIp} . tcp . 80`);
  assert.ok(state.nodeRecords.some((n) => n.netns === lbService.netns), "decided on a node, the one that answers ARP for the IP");
  assert.equal(podByIp(lbService.endpoint?.address)?.metadata.labels?.app, "web");
  assert.equal(lbService.endpoint?.port, 8080);
  const lbArrival = viaLb.hops.at(-1)!;
  assert.ok(lbArrival.kind === "arrival" && lbArrival.daddr === lbService.endpoint!.address, JSON.stringify(lbArrival));
  // externalTrafficPolicy Cluster: the endpoint sees the node's address on the way out (its underlay address,
  // or its bridge's when the endpoint is local), not the external host's: kube-proxy masquerades it.
  const nodeSide = (ip: string | undefined) => state.nodeRecords.some((n) => n.ip === ip) || /^10\.244\.\d+\.1$/.test(ip ?? "");
  assert.ok(lbArrival.nat && lbArrival.saddr !== "192.168.1.200" && nodeSide(lbArrival.saddr), `masqueraded to a node address: ${JSON.stringify(lbArrival)}`);

  const nodePort = web.spec.ports![0]!.nodePort!;
  const viaNodePort = await trace("external", `node2:${nodePort}`, "--proto", "tcp");
  const npService = hopsOf(viaNodePort, "service")[0];
  assert.ok(npService, JSON.stringify(viaNodePort.hops, null, 1));
  assert.equal(npService.netns, node("node2").netns);
  assert.equal(npService.element, `tcp . ${nodePort}`);
  assert.equal(podByIp(npService.endpoint?.address)?.metadata.labels?.app, "web");
  assert.equal(viaNodePort.hops.at(-1)!.kind, "arrival");
});

test("the lab is unchanged after traces through services: routes, nft ruleset, and conntrack entries the trace did not create", async () => {
  const sports = [47_201, 47_202];
  const ours = (port: number): boolean => port >= 47_000 && port < 48_000;
  const beforeTrace = snapshot(ours);
  await trace("node1-pod1", `${clusterIp("web-svc")}:80`, "--proto", "tcp", "--sport", String(sports[0]));
  await trace("node2-pod1", `${clusterIp("echo-udp")}:53`, "--proto", "udp", "--sport", String(sports[1]));
  const afterTrace = snapshot(ours);
  // Conntrack entries of the lab's own traffic may come and go meanwhile (etcd, DNS): none of those that
  // were there may have gone or changed; the routes and rules must be exactly the same.
  for (const [key, text] of beforeTrace) {
    if (key.endsWith("conntrack")) {
      const now = new Set(afterTrace.get(key)!.split("\n"));
      for (const line of text.split("\n").filter((l) => l !== "")) assert.ok(now.has(line) || !/ESTABLISHED|ASSURED/.test(line), `${key}: gone or changed: ${line}`);
    } else assert.equal(afterTrace.get(key), text, key);
  }
});

test("--sport: bad values are named, icmp refused", async () => {
  for (const [args, message] of [
    [["--sport", "0"], /--sport must be a port 1-65535, got "0"/],
    [["--sport", "x1"], /--sport must be a port 1-65535, got "x1"/],
    [["--proto", "icmp", "--sport", "4000"], /--sport: icmp has no ports/],
  ] as [string[], RegExp][]) {
    const run = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", "node1-pod1", "node2-pod1", ...args, ...t.flags]);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.stderr, message);
  }
});
