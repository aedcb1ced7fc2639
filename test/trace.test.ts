// `podnet trace` end to end on a real lab (2 nodes × 2 pods, podnet's agent and plugin): the paths it
// reports are checked against what the lab is known to have (its routes, bridges, masquerade), failures
// are made by breaking the lab on purpose, the JSON is validated against src/trace/trace.schema.json, and
// every lab namespace's routes and nft ruleset must be the same after a trace. Needs root and `npm run build`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import type { LabStateData } from "../src/lab/lab-state.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";
import { runCommand } from "../src/supervise/command.ts";
import { stopRecordedProcess } from "../src/supervise/process.ts";
import type { Hop, TraceResult } from "../src/trace/model.ts";
import { withDefaults } from "../src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "../src/k8s/types.ts";
import { compileProxyTable } from "../src/services/proxy-compiler.ts";
import { syncTable } from "../src/kernel/nft.ts";
import { namedNetnsPath } from "../src/kernel/named-netns-path.ts";
import { lab, newTestLab, readLabState, removeTestLab, type TestLab } from "./helpers/lab.ts";

let t: TestLab;
let state: LabStateData;
let upOutput: string;

before(async () => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
  t = newTestLab();
  const up = await lab(["up", "--explain", "--nodes", "2", "--pods-per-node", "2", ...t.flags], 180_000);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  upOutput = up.stdout;
  state = readLabState(t)!;
});
after(async () => {
  if (t) assert.deepEqual(await removeTestLab(t), [], "lab down left these behind");
});

async function trace(...args: string[]): Promise<{ code: number; result: TraceResult; stderr: string }> {
  const run = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", ...args, "-o", "json", ...t.flags], { timeoutMs: 60_000 });
  let result: TraceResult;
  try {
    result = JSON.parse(run.stdout) as TraceResult;
  } catch {
    throw new Error(`trace ${args.join(" ")} exited ${run.code} without JSON: ${run.stdout}${run.stderr}`);
  }
  return { code: run.code, result, stderr: run.stderr };
}

function sh(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  assert.equal(r.status, 0, `${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const pod = (name: string) => state.pods.find((p) => p.name === name)!;
const node = (name: string) => state.nodeRecords.find((n) => n.name === name)!;
const hopsOf = <K extends Hop["kind"]>(r: TraceResult, kind: K): Extract<Hop, { kind: K }>[] => r.hops.filter((h): h is Extract<Hop, { kind: K }> => h.kind === kind);
const subnetOf = (ip: string): string => ip.split(".").slice(0, 3).join(".") + ".0/24";

const validate = new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(readFileSync(join(REPO_ROOT, "src/trace/trace.schema.json"), "utf8")));
function assertSchema(r: TraceResult): void {
  assert.ok(validate(r), JSON.stringify(validate.errors, null, 2));
}

test("pod → pod on one node: the bridge forwards by its FDB entry straight to the other pod's port", async () => {
  const { code, result } = await trace("node1-pod1", "node1-pod2");
  assertSchema(result);
  assert.equal(code, 0);
  assert.equal(result.delivered, true);
  const bridge = hopsOf(result, "bridge");
  assert.equal(bridge.length, 1, JSON.stringify(result.hops));
  assert.equal(bridge[0]!.bridge, "cni0");
  assert.equal(bridge[0]!.delivery, "port");
  assert.equal(bridge[0]!.fdb?.mac, bridge[0]!.dstMac);
  // The FDB port is the host end of node1-pod2's veth: the next veth hop leads into that pod.
  const veths = hopsOf(result, "veth");
  assert.equal(veths.at(-1)!.from.dev, bridge[0]!.egressPort);
  assert.equal(veths.at(-1)!.to.netns, pod("node1-pod2").netns);
  assert.ok(!result.hops.some((h) => h.kind === "route" && h.netns === node("node1").netns), "no L3 hop on the node");
  const arrival = result.hops.at(-1)!;
  assert.equal(arrival.kind, "arrival");
  assert.equal(arrival.kind === "arrival" && arrival.saddr, pod("node1-pod1").ip);
  assert.equal(arrival.evidence, "nft-trace");
});

test("pod → pod across nodes: podnet's host-gw route on the source node, the underlay switch, the destination's bridge", async () => {
  const { code, result } = await trace("node1-pod1", "node2-pod1:7007", "--proto", "tcp");
  assertSchema(result);
  assert.equal(code, 0, JSON.stringify(result.hops, null, 1));
  const node1Route = hopsOf(result, "route").find((h) => h.netns === node("node1").netns)!;
  assert.equal(node1Route.podnet, true);
  assert.equal(node1Route.gateway, node("node2").ip);
  assert.equal(node1Route.dev, "eth0");
  assert.match(node1Route.entry!, new RegExp(`^${subnetOf(pod("node2-pod1").ip!).replaceAll(".", "\\.")} via ${node("node2").ip} dev eth0 proto 80`));
  assert.equal(node1Route.evidence, "route-lookup");
  const bridges = hopsOf(result, "bridge").map((b) => `${b.where}:${b.bridge}:${b.delivery}`);
  assert.deepEqual(bridges, ["node1:cni0:local", "switch:pnl-" + t.id + "-br:port", "node2:cni0:port"]);
  const node2Route = hopsOf(result, "route").find((h) => h.netns === node("node2").netns)!;
  assert.equal(node2Route.query.iif, "eth0");
  assert.equal(node2Route.dev, "cni0");
  const arrival = result.hops.at(-1)!;
  assert.ok(arrival.kind === "arrival" && arrival.nat === false && arrival.netns === pod("node2-pod1").netns);
});

test("pod → external is masqueraded by podnet's rule; the external host sees the node's address", async () => {
  const { code, result } = await trace("node2-pod2", "external:7007", "--proto", "udp");
  assertSchema(result);
  assert.equal(code, 0);
  const masq = hopsOf(result, "nft").find((h) => h.nat === "masquerade");
  assert.ok(masq, JSON.stringify(result.hops, null, 1));
  assert.equal(masq.netns, node("node2").netns);
  assert.equal(masq.table, "podnet");
  assert.equal(masq.evidence, "nft-trace");
  const arrival = result.hops.at(-1)!;
  assert.ok(arrival.kind === "arrival");
  assert.equal(arrival.where, "external");
  assert.equal(arrival.saddr, node("node2").ip);
  assert.equal(arrival.nat, true);
});

test("external → NODE:PORT arrives at the node; external → a pod IP has no route on the external host", async () => {
  const toNode = await trace("external", "node1:30080", "--proto", "tcp");
  assertSchema(toNode.result);
  assert.equal(toNode.code, 0);
  assert.ok(toNode.result.hops.at(-1)!.kind === "arrival" && toNode.result.hops.at(-1)!.netns === node("node1").netns);
  const toPod = await trace("external", pod("node1-pod1").ip!);
  assertSchema(toPod.result);
  assert.equal(toPod.code, 1);
  const last = toPod.result.hops.at(-1)!;
  assert.ok(last.kind === "drop" && last.reason === "no-route" && last.where === "external", JSON.stringify(last));
});

test("icmp, and --explain prints the command for every hop", async () => {
  const run = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", "node2-pod1", "node1-pod2", "--proto", "icmp", "--explain", ...t.flags], { timeoutMs: 60_000 });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /\$ ip -n \S+node2 route get \S+ from \S+ iif cni0 fibmatch/);
  assert.match(run.stdout, /\$ bridge -n \S+switch fdb show br /);
  assert.match(run.stdout, /\$ ip -n \S+node2-pod1 neigh show /);
  assert.match(run.stdout, /delivered to node1-pod2 eth0/);
});

test("bad input names the field and leaves nothing", async () => {
  const cases: [string[], RegExp][] = [
    [["nosuchpod", "node1-pod1"], /src: no pod, node or "external" named "nosuchpod"/],
    [["node1-pod1", "node2-pod1:99999"], /dst: port must be 1-65535/],
    [["node1-pod1", "node2-pod1", "--proto", "sctp"], /--proto must be tcp, udp or icmp/],
    [["10.9.9.9", "node1-pod1"], /src: 10\.9\.9\.9 is no pod's or node's address/],
  ];
  for (const [args, message] of cases) {
    const run = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", ...args, ...t.flags]);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.stderr, message);
  }
});

test("a DNAT before routing (as a Service's endpoint chain writes it) is followed to its target; an address nothing routes ends with no route", async () => {
  const ns = node("node1").netns;
  const endpoint = pod("node2-pod1");
  sh(["ip", "netns", "exec", ns, "nft", `add table ip pnt_svc; add chain ip pnt_svc pre { type nat hook prerouting priority dstnat; }; add rule ip pnt_svc pre ip daddr 10.200.0.10 udp dport 80 dnat ip to ${endpoint.ip}:7007`]);
  try {
    const { code, result } = await trace("node1-pod1", "10.200.0.10:80");
    assertSchema(result);
    assert.equal(code, 0, JSON.stringify(result.hops, null, 1));
    assert.equal(result.dst.kind, "address");
    const dnat = hopsOf(result, "nft").find((h) => h.nat === "dnat")!;
    assert.deepEqual(dnat.dnatTo, { address: endpoint.ip, port: 7007 });
    assert.equal(dnat.netns, ns);
    const route = hopsOf(result, "route").find((h) => h.netns === ns)!;
    assert.equal(route.query.dst, endpoint.ip, "the node routes the DNAT's target");
    const arrival = result.hops.at(-1)!;
    assert.ok(arrival.kind === "arrival" && arrival.netns === endpoint.netns && arrival.daddr === endpoint.ip && arrival.evidence === "nft-trace", JSON.stringify(arrival));
  } finally {
    sh(["ip", "netns", "exec", ns, "nft", "delete table ip pnt_svc"]);
  }
  // Without the rule, node1 sends it up its default route, to the external host standing in for the upstream
  // router, which does not forward: the trace ends there.
  const nowhere = await trace("node1-pod1", "10.200.0.10:80");
  assert.equal(nowhere.code, 1);
  const node1Route = hopsOf(nowhere.result, "route").find((h) => h.netns === ns)!;
  assert.match(node1Route.entry!, /^default via 192\.168\.1\.200 dev eth0/);
  const last = nowhere.result.hops.at(-1)!;
  assert.ok(last.kind === "drop" && last.reason === "no-route" && last.where === "external", JSON.stringify(last));
  assert.match(last.summary, /it does not forward/);
});

test("pod → ClusterIP through the service proxy's compiled table: the map element, the endpoint chain, the DNAT to the endpoint", async () => {
  // The proxy's compiled table (src/services, kube-proxy's nftables layout), under a name of the test's own: the
  // agent's services reconciler owns ip podnet-svc and would repair any change to it.
  const ns = node("node1").netns;
  const TEST_TABLE = "pnt_svctest";
  const endpoint = pod("node2-pod1");
  const web = withDefaults<Service>({ apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "default" }, spec: { clusterIP: "10.200.0.20", selector: { app: "web" }, ports: [{ port: 80, targetPort: 7007 }] } });
  const endpoints: EndpointSlice = {
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { name: "web-x", namespace: "default", labels: { "kubernetes.io/service-name": "web" } },
    addressType: "IPv4", ports: [{ name: "", protocol: "TCP", port: 7007 }],
    endpoints: [{ addresses: [endpoint.ip!], nodeName: "node2", conditions: { ready: true, serving: true, terminating: false } }],
  };
  const compiled = compileProxyTable([web], [endpoints], { nodeName: "node1", nodeIps: [node("node1").ip], podCidr: subnetOf(pod("node1-pod1").ip!), clusterCidr: "10.244.0.0/16" });
  await syncTable({ ...compiled.table, name: TEST_TABLE }, namedNetnsPath(ns));
  try {
    const { code, result } = await trace("node1-pod1", "10.200.0.20:80", "--proto", "tcp");
    assertSchema(result);
    assert.equal(code, 0, JSON.stringify(result.hops, null, 1));
    const service = hopsOf(result, "service")[0];
    assert.ok(service, JSON.stringify(result.hops, null, 1));
    assert.equal(service.where, "node1");
    assert.equal(service.table, TEST_TABLE);
    assert.equal(service.map, "service-ips");
    assert.equal(service.element, "10.200.0.20 . tcp . 80");
    assert.match(service.serviceChain, /^service-/);
    // With one endpoint the compiler may DNAT in the service chain itself; with more, an endpoint chain does.
    if (service.endpointChain !== undefined) assert.match(service.endpointChain, /^endpoint-/);
    assert.deepEqual(service.endpoint, { address: endpoint.ip, port: 7007 });
    const arrival = result.hops.at(-1)!;
    assert.ok(arrival.kind === "arrival" && arrival.netns === endpoint.netns && arrival.daddr === endpoint.ip && arrival.saddr === pod("node1-pod1").ip, JSON.stringify(arrival));
  } finally {
    sh(["ip", "netns", "exec", ns, "nft", `delete table ip ${TEST_TABLE}`]);
  }
});

/** Headless chromium on a file: a screenshot, or the DOM after its scripts ran. */
async function chromium(file: string, mode: { screenshot: string } | "dump-dom"): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), "podnet-chromium-"));
  try {
    const run = await runCommand([
      "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
      `--user-data-dir=${profile}`, "--window-size=1400,1000", ...(mode === "dump-dom" ? ["--dump-dom"] : [`--screenshot=${mode.screenshot}`]), `file://${file}`,
    ], { timeoutMs: 90_000 });
    assert.equal(run.code, 0, run.stderr);
    return run.stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

test("lab graph and trace --graph render in headless chromium: labels apart as the browser lays them out, screenshot not blank", async () => {
  const dir = mkdtempSync(join(tmpdir(), "podnet-graph-"));
  try {
    const graph = await lab(["graph", "-o", join(dir, "lab.svg"), ...t.flags]);
    assert.equal(graph.code, 0, graph.stderr);
    const svg = readFileSync(join(dir, "lab.svg"), "utf8");
    for (const p of state.pods) assert.ok(svg.includes(`>${p.name}<`) && svg.includes(`eth0 ${p.ip}<`), `${p.name} and its IP are drawn`);
    for (const n of state.nodeRecords) assert.ok(svg.includes(`eth0 ${n.ip}<`), `${n.name} is drawn`);
    // The services, read from the controllers, each with an edge to every endpoint pod, and the kubelet's pods.
    const services = JSON.parse((await lab(["get", "services", "-A", "-o", "json", ...t.flags])).stdout) as { items: { metadata: { namespace: string; name: string }; spec: { clusterIP: string } }[] };
    const slices = JSON.parse((await lab(["get", "endpointslices", "-n", "default", "-o", "json", ...t.flags])).stdout) as { items: { metadata: { labels: Record<string, string> }; endpoints: { addresses: string[]; targetRef?: { name: string } }[] }[] };
    assert.ok(services.items.length >= 2, "the example app and kube-dns are there");
    for (const s of services.items) assert.ok(svg.includes(`>service ${s.metadata.namespace}/${s.metadata.name}<`) && svg.includes(`ClusterIP ${s.spec.clusterIP}<`), `${s.metadata.name} is drawn`);
    const webEndpoints = slices.items.filter((sl) => sl.metadata.labels["kubernetes.io/service-name"] === "web-svc").flatMap((sl) => sl.endpoints);
    assert.ok(webEndpoints.length >= 2, "web-svc has endpoints");
    for (const e of webEndpoints) {
      assert.ok(svg.includes(`>default/${e.targetRef!.name}<`), `pod default/${e.targetRef!.name} is drawn`);
      assert.ok(svg.includes(`data-id="s-service:default/web-svc-default/${e.targetRef!.name}"`), `web-svc → ${e.targetRef!.name} is drawn`);
    }
    const html = await lab(["graph", "-o", join(dir, "lab.html"), ...t.flags]);
    assert.equal(html.code, 0, html.stderr);
    assert.match(readFileSync(join(dir, "lab.html"), "utf8"), /<!doctype html>[\s\S]*<svg/);

    const traced = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", "node1-pod1", "node2-pod2", "--graph", join(dir, "path.svg"), ...t.flags], { timeoutMs: 60_000 });
    assert.equal(traced.code, 0, traced.stdout + traced.stderr);
    const pathSvg = readFileSync(join(dir, "path.svg"), "utf8");
    assert.ok((pathSvg.match(/stroke="#d1495b" stroke-width="3"/g) ?? []).length >= 6, "the path's boxes and links are highlighted");

    // The browser's own text boxes: a page that measures every label with getBBox and lists overlapping pairs.
    for (const name of ["lab.svg", "path.svg"]) {
      const page = join(dir, `${name}.html`);
      writeFileSync(page, `<!doctype html><html><body style="margin:0">${readFileSync(join(dir, name), "utf8")}<pre id="result"></pre><script>
        const boxes = [...document.querySelectorAll("text")].map((t) => ({ text: t.textContent, b: t.getBBox(), m: t.getCTM() }))
          .map(({ text, b, m }) => ({ text, x: b.x + m.e, y: b.y + m.f, w: b.width, h: b.height }));
        const bad = [];
        for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
          const a = boxes[i], c = boxes[j];
          if (a.x < c.x + c.w - 0.5 && c.x < a.x + a.w - 0.5 && a.y < c.y + c.h - 0.5 && c.y < a.y + a.h - 0.5) bad.push(a.text + " / " + c.text);
        }
        document.getElementById("result").textContent = JSON.stringify({ labels: boxes.length, widest: Math.max(...boxes.map((b) => b.w)), overlaps: bad });
      </script></body></html>`);
      const dom = await chromium(page, "dump-dom");
      const result = JSON.parse(/<pre id="result">([^<]*)<\/pre>/.exec(dom)![1]!.replaceAll("&quot;", '"')) as { labels: number; widest: number; overlaps: string[] };
      assert.ok(result.labels > state.pods.length * 2, `${name}: labels measured (${result.labels})`);
      assert.ok(result.widest > 50, `${name}: text has width in the browser`);
      assert.deepEqual(result.overlaps, [], `${name}: labels overlap in the browser`);
    }

    // Non-blank: the screenshot of the graph is far larger than one of an empty page of the same size.
    writeFileSync(join(dir, "blank.html"), `<!doctype html><html><body style="margin:0;background:#fff"></body></html>`);
    await chromium(join(dir, "path.svg"), { screenshot: join(dir, "path.png") });
    await chromium(join(dir, "blank.html"), { screenshot: join(dir, "blank.png") });
    const drawn = statSync(join(dir, "path.png")).size;
    const blank = statSync(join(dir, "blank.png")).size;
    assert.ok(drawn > 5 * blank, `screenshot ${drawn} bytes against ${blank} for a blank page`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a Service as DST: by name its ClusterIP and first port, with that port's protocol; as SRC, refused by name", async () => {
  const { code, result } = await trace("node1-pod1", "web-svc");
  assertSchema(result);
  assert.equal(code, 0, JSON.stringify(result.hops));
  assert.equal(result.delivered, true);
  assert.equal(result.dst.kind, "service");
  assert.equal(result.dst.name, "default/web-svc");
  assert.equal(result.proto, "tcp");
  assert.equal(result.probe.dport, 80);
  const clusterIp = (JSON.parse((await lab(["get", "svc", "web-svc", "-o", "json", ...t.flags])).stdout) as { spec: { clusterIP: string } }).spec.clusterIP;
  assert.equal(result.dst.ip, clusterIp);
  const service = hopsOf(result, "service");
  assert.equal(service.length, 1, JSON.stringify(result.hops));
  assert.equal(service[0]!.element, `${clusterIp} . tcp . 80`);
  assert.equal(service[0]!.endpoint?.port, 8080, "DNAT to the pods' targetPort");
  assert.equal(result.hops.at(-1)!.kind, "arrival");
  assert.match(result.hops.at(-1)!.where, /^default\/web-/, "it arrives at one of web-svc's pods");

  // The DNS name of a Service in another namespace, and its UDP port.
  const dns = await trace("node2-pod1", "kube-dns.kube-system.svc.cluster.local");
  assert.equal(dns.result.dst.ip, "10.96.0.10");
  assert.equal(dns.result.proto, "udp");
  assert.equal(dns.result.probe.dport, 53);

  const asSource = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", "web-svc", "node1-pod1", ...t.flags], { timeoutMs: 60_000 });
  assert.equal(asSource.code, 2);
  assert.match(asSource.stderr, /src: default\/web-svc is a Service; a packet starts at a pod, a node or "external"/);
  const unknown = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", "node1-pod1", "no-such-svc", ...t.flags], { timeoutMs: 60_000 });
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /no pod, node or "external" named "no-such-svc".*; services: .*default\/web-svc/);
});

test("lab up --explain is derived from the live lab: namespaces, veths per pod, podnet's routes and nft table", async () => {
  const text = upOutput;
  assert.match(text, /^\[ *\d+\.\ds\] pod /m, "up's own progress comes first");
  assert.match(text, /derived from the live kernel state/);
  for (const ns of state.namespaces) assert.ok(text.includes(`ip netns add ${ns}\n`), ns);
  for (const p of state.pods) {
    assert.match(text, new RegExp(`type veth peer name eth0 netns ${p.netns}\\n`));
    assert.ok(text.includes(`ip -n ${p.netns} addr add ${p.ip}/24 dev eth0`), p.name);
  }
  for (const n of state.nodeRecords) {
    const others = state.nodeRecords.filter((o) => o !== n);
    for (const o of others) assert.match(text, new RegExp(`ip -n ${n.netns} route add 10\\.244\\.\\d+\\.0/24 via ${o.ip.replaceAll(".", "\\.")} dev eth0 proto 80`));
    assert.ok(text.includes(`ip netns exec ${n.netns} nft -f - <<'EOF'\ntable ip podnet {`), n.name);
  }
  // The order up works in: namespaces, underlay, agents, then pods.
  const at = (s: string): number => text.indexOf(s);
  assert.ok(at("ip netns add") < at("type bridge") && at("proto 80") < at("type veth peer name eth0 netns " + state.pods[0]!.netns));
});

/** Every lab namespace's routes (all tables) and nft ruleset. */
function snapshot(): Map<string, string> {
  const out = new Map<string, string>();
  for (const ns of state.namespaces) {
    out.set(`${ns} routes`, sh(["ip", "-n", ns, "route", "show", "table", "all"]));
    out.set(`${ns} nft`, sh(["ip", "netns", "exec", ns, "nft", "list", "ruleset"]));
  }
  return out;
}

test("the lab is unchanged after traces: same routes and nft ruleset in every namespace", async () => {
  const before = snapshot();
  await trace("node1-pod1", "node2-pod2");
  await trace("node2-pod1", "external", "--proto", "icmp");
  const afterwards = snapshot();
  assert.deepEqual(afterwards, before);
  for (const [key, text] of afterwards) assert.doesNotMatch(text, /pntrace_/, key);
});

test("Ctrl-C during a trace still removes its tables (exit 130)", async () => {
  const child = spawn(process.execPath, [join(REPO_ROOT, "bin/podnet.js"), "trace", "node1-pod1", "node2-pod1", ...t.flags], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const source = pod("node1-pod1").netns;
  const deadline = Date.now() + 30_000;
  // Interrupt once a trace table is there: the trace is then half-way.
  while (!sh(["ip", "netns", "exec", source, "nft", "list", "tables"]).includes("pntrace_")) {
    assert.ok(Date.now() < deadline, "no trace table appeared");
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill("SIGINT");
  assert.equal(await exited, 130);
  for (const ns of state.namespaces) assert.doesNotMatch(sh(["ip", "netns", "exec", ns, "nft", "list", "tables"]), /pntrace_/, ns);
});

test("an nft drop rule on the path ends the trace at that hop, naming the rule", async () => {
  const ns = node("node1").netns;
  const target = pod("node2-pod2").ip!;
  sh(["ip", "netns", "exec", ns, "nft", `add table inet pnt_break; add chain inet pnt_break forward { type filter hook forward priority 0; }; add rule inet pnt_break forward ip daddr ${target} drop`]);
  try {
    const { code, result } = await trace("node1-pod1", "node2-pod2");
    assertSchema(result);
    assert.equal(code, 1);
    const last = result.hops.at(-1)!;
    assert.ok(last.kind === "drop" && last.reason === "nft-drop" && last.netns === ns, JSON.stringify(result.hops, null, 1));
    assert.match(last.summary, new RegExp(`pnt_break forward: ip daddr ${target.replaceAll(".", "\\.")} drop`));
  } finally {
    sh(["ip", "netns", "exec", ns, "nft", "delete table inet pnt_break"]);
  }
});

test("a packet over the uplink's MTU (DF set) ends at the node whose link is too small", async () => {
  const ns = node("node1").netns;
  sh(["ip", "-n", ns, "link", "set", "dev", "eth0", "mtu", "1200"]);
  try {
    const { code, result } = await trace("node1-pod1", "node2-pod1", "--size", "1400");
    assertSchema(result);
    assert.equal(code, 1);
    const last = result.hops.at(-1)!;
    assert.ok(last.kind === "drop" && last.reason === "mtu" && last.netns === ns, JSON.stringify(last));
    assert.match(last.summary, /eth0 .* carries 1200 bytes, the probe is 1400/);
  } finally {
    sh(["ip", "-n", ns, "link", "set", "dev", "eth0", "mtu", "1500"]);
  }
});

// Last: it stops node1's agent, which would otherwise put the route back within a second.
test("a deleted host-gw route: the node falls back to its default route and the packet dies upstream", async () => {
  const agent = state.processes.find((p) => p.role === "agent node1")!;
  await stopRecordedProcess(agent);
  const ns = node("node1").netns;
  const subnet = subnetOf(pod("node2-pod1").ip!);
  sh(["ip", "-n", ns, "route", "del", subnet]);
  const { code, result } = await trace("node1-pod1", "node2-pod1");
  assertSchema(result);
  assert.equal(code, 1);
  // node1 falls back to its default route (the lab's upstream stand-in), not podnet's, and the packet dies there.
  const fallback = hopsOf(result, "route").find((h) => h.netns === ns)!;
  assert.equal(fallback.podnet, false);
  assert.match(fallback.entry!, /^default via /);
  const last = result.hops.at(-1)!;
  assert.ok(last.kind === "drop" && last.reason === "no-route" && last.where === "external", JSON.stringify(result.hops, null, 1));
  assert.equal(last.evidence, "route-lookup");

  // host-gw across subnets: a gateway outside every subnet of the uplink, forced with onlink, never answers ARP.
  sh(["ip", "-n", ns, "route", "add", subnet, "via", "10.9.9.9", "dev", "eth0", "onlink"]);
  const offLink = await trace("node1-pod1", "node2-pod1");
  assertSchema(offLink.result);
  assert.equal(offLink.code, 1);
  const route = hopsOf(offLink.result, "route").find((h) => h.netns === ns)!;
  assert.equal(route.gateway, "10.9.9.9");
  assert.match(route.entry!, /via 10\.9\.9\.9 dev eth0 onlink/);
  const end = offLink.result.hops.at(-1)!;
  assert.ok(end.kind === "drop" && end.reason === "not-on-link" && end.netns === ns, JSON.stringify(end));
  assert.match(end.summary, /gateway 10\.9\.9\.9 is not on-link: no address of eth0 covers it \(the route forces it with onlink\)/);
});
