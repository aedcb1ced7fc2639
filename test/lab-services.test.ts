// The lab's control plane end to end: `lab apply/get/delete` through the controllers process, on a
// real etcd in the control-plane namespace; the Deployment controller, scheduler and EndpointSlice
// controller; the per-node kubelet that makes pods real (netns, CNI ADD through dist/cni/podnet,
// the test server). Needs root and `npm run build`; everything it creates is removed and the removal
// asserted.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EndpointSlice, Pod, Service } from "../src/k8s/types.ts";
import type { LabStateData } from "../src/lab/lab-state.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";
import { listNamedNetns } from "../src/kernel/named-netns.ts";
import { sleep } from "../src/supervise/process.ts";
import { runCommand } from "../src/supervise/command.ts";
import { lab, leftovers, newTestLab, readLabState, removeTestLab, type TestLab } from "./helpers/lab.ts";

const t = newTestLab();
const files = mkdtempSync(join(tmpdir(), "podnet-lab-svc-"));
let upState: LabStateData | undefined;

before(async () => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
  const up = await lab(["up", "--nodes", "2", "--pods-per-node", "0", "--app", "none", ...t.flags]);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  upState = readLabState(t);
});
after(async () => {
  rmSync(files, { recursive: true, force: true });
  const forced = await removeTestLab(t);
  assert.deepEqual(forced, [], "lab down left these behind; they were removed by force");
});

function controllersLog(): string {
  try {
    return readFileSync(join(t.stateRoot, t.id, "logs", "controllers.log"), "utf8").split("\n").slice(-30).join("\n");
  } catch {
    return "(none)";
  }
}

function manifest(name: string, text: string): string {
  const path = join(files, name);
  writeFileSync(path, text);
  return path;
}

async function getJson<T>(kind: string, namespace = "default"): Promise<T[]> {
  const got = await lab(["get", kind, "-n", namespace, "-o", "json", ...t.flags]);
  assert.equal(got.code, 0, got.stderr);
  const list = JSON.parse(got.stdout) as { apiVersion: string; kind: string; items: T[] };
  assert.equal(list.kind, "List");
  return list.items;
}

async function until<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T;
  for (;;) {
    last = await read();
    if (ok(last)) return last;
    if (Date.now() > deadline) assert.fail(`${what}: still not so after ${timeoutMs / 1000} s: ${JSON.stringify(last).slice(0, 2000)}\ncontrollers log:\n${controllersLog()}`);
    await sleep(200);
  }
}

const running = (pods: Pod[]): boolean => pods.every((p) => p.status?.phase === "Running" && p.status.podIP && (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"));
const readyAddresses = (slices: EndpointSlice[], service: string): string[] =>
  slices.filter((s) => s.metadata.labels?.["kubernetes.io/service-name"] === service).flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) => e.addresses)).sort();

const SHOP = JSON.stringify({
  apiVersion: "v1",
  kind: "List",
  items: [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "api", namespace: "shop" },
      spec: { replicas: 2, selector: { matchLabels: { app: "api" } }, template: { metadata: { labels: { app: "api" } }, spec: { containers: [{ name: "api", image: "agnhost", ports: [{ name: "http", containerPort: 8080 }] }] } } },
    },
    { apiVersion: "v1", kind: "Service", metadata: { name: "api", namespace: "shop" }, spec: { type: "NodePort", selector: { app: "api" }, ports: [{ port: 80, targetPort: "http" }] } },
  ],
});

test("apply a Kubernetes JSON List, get it back as Kubernetes JSON, apply again unchanged", async () => {
  const file = manifest("shop.json", SHOP);
  const applied = await lab(["apply", "-f", file, ...t.flags]);
  assert.equal(applied.code, 0, applied.stderr);
  assert.deepEqual(applied.stdout.trim().split("\n"), ["namespace/shop created", "deployment.apps/api created", "service/api created"]);
  const [service] = await getJson<Service>("services", "shop");
  assert.ok(service);
  assert.equal(service.apiVersion, "v1");
  assert.equal(service.kind, "Service");
  assert.ok(service.metadata.uid && service.metadata.resourceVersion && service.metadata.creationTimestamp);
  assert.match(service.spec.clusterIP ?? "", /^10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+$/, "ClusterIP from 10.96.0.0/12");
  const nodePort = service.spec.ports?.[0]?.nodePort ?? 0;
  assert.ok(nodePort >= 30000 && nodePort <= 32767, `nodePort ${nodePort}`);
  // `-f -` reads the manifest from stdin.
  const piped = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "lab", "apply", "-f", "-", ...t.flags], { input: SHOP, timeoutMs: 60_000 });
  assert.equal(piped.code, 0, piped.stderr);
  assert.deepEqual(piped.stdout.trim().split("\n"), ["namespace/shop unchanged", "deployment.apps/api unchanged", "service/api unchanged"]);
  const table = await lab(["get", "svc", "-n", "shop", ...t.flags]);
  assert.match(table.stdout, new RegExp(`^api\\s+NodePort\\s+${service.spec.clusterIP!.replace(/\./g, "\\.")}\\s+<none>\\s+80:${nodePort}/TCP`, "m"));
});

test("deployment pods get IPs, run the test server, and answer /hostname from another pod; EndpointSlices list the ready ones", async () => {
  const pods = await until("2 api pods Running and Ready", () => getJson<Pod>("pods", "shop"), (p) => p.length === 2 && running(p));
  for (const pod of pods) assert.match(pod.metadata.name, /^api-[a-z0-9]{6,10}-[a-z0-9]{5}$/, "name <deployment>-<hash>-<suffix>");
  assert.deepEqual(new Set(pods.map((p) => p.spec.nodeName)), new Set(["node1", "node2"]), "spread over both nodes");
  const [a, b] = pods as [Pod, Pod];
  const hostname = await lab(["exec", a.metadata.name, "-n", "shop", ...t.flags, "--", "curl", "-s", "-m", "5", `http://${b.status!.podIP}:8080/hostname`]);
  assert.equal(hostname.code, 0, hostname.stderr);
  assert.equal(hostname.stdout.trim(), b.metadata.name);
  const clientIp = await lab(["exec", a.metadata.name, "-n", "shop", ...t.flags, "--", "curl", "-s", "-m", "5", `http://${b.status!.podIP}:8080/clientip`]);
  assert.equal(clientIp.stdout.trim().replace(/:\d+$/, ""), a.status!.podIP, "pod → pod keeps the source IP");
  const slices = await until("the EndpointSlice lists both pods ready", () => getJson<EndpointSlice>("endpointslices", "shop"), (s) => readyAddresses(s, "api").length === 2);
  assert.deepEqual(readyAddresses(slices, "api"), pods.map((p) => p.status!.podIP!).sort());
  assert.equal(slices[0]?.ports?.[0]?.port, 8080, "named targetPort resolved");

  // A pod whose server dies turns NotReady and leaves the ready endpoints; once restarted it is back.
  const kubelet = JSON.parse(readFileSync(join(t.stateRoot, t.id, "kubelet", "state.json"), "utf8")) as LabStateData;
  const server = kubelet.processes.find((p) => p.role === `server shop/${a.metadata.name}`);
  assert.ok(server?.pid, "the test server is recorded");
  process.kill(server.pid, "SIGKILL");
  await until("the dead server's endpoint is not ready", () => getJson<EndpointSlice>("endpointslices", "shop"), (s) => !readyAddresses(s, "api").includes(a.status!.podIP!), 10_000);
  await until("the restarted server's endpoint is ready again", () => getJson<EndpointSlice>("endpointslices", "shop"), (s) => readyAddresses(s, "api").includes(a.status!.podIP!), 15_000);
});

test("a Deployment scales and replaces a deleted pod", async () => {
  const scaled = manifest("shop3.json", SHOP.replace('"replicas":2', '"replicas":3'));
  assert.equal((await lab(["apply", "-f", scaled, ...t.flags])).stdout.includes("deployment.apps/api configured"), true);
  const three = await until("3 pods", () => getJson<Pod>("pods", "shop"), (p) => p.length === 3 && running(p));
  const victim = three[0]!;
  const deleted = await lab(["delete", "pod", victim.metadata.name, "-n", "shop", ...t.flags]);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal(deleted.stdout.trim(), `pod "${victim.metadata.name}" deleted`);
  const replaced = await until("a replacement pod", () => getJson<Pod>("pods", "shop"), (p) => p.length === 3 && running(p) && !p.some((x) => x.metadata.name === victim.metadata.name));
  assert.equal(replaced.filter((p) => !three.some((o) => o.metadata.name === p.metadata.name)).length, 1);
  await until("the deleted pod's netns is gone", async () => listNamedNetns(), (names) => !names.includes(`pnl-${t.id}-shop.${victim.metadata.name}`));
  const one = manifest("shop1.json", SHOP.replace('"replicas":2', '"replicas":1'));
  assert.equal((await lab(["apply", "-f", one, ...t.flags])).code, 0);
  await until("1 pod", () => getJson<Pod>("pods", "shop"), (p) => p.length === 1 && running(p));
  await until("only one shop pod netns", async () => listNamedNetns().filter((n) => n.startsWith(`pnl-${t.id}-shop.`)), (n) => n.length === 1);
});

test("bad manifests are refused with the field named, and nothing of the file is applied", async () => {
  const [shopService] = await getJson<Service>("services", "shop");
  const takenNodePort = shopService!.spec.ports![0]!.nodePort!;
  const service = (name: string, spec: string): string => `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n${spec}`;
  const cases: [string, string, RegExp][] = [
    ["bad name", service("Web_1", "  ports: [{port: 80}]\n"), /metadata\.name: Invalid value: "Web_1"/],
    ["port out of range", service("p", "  ports: [{port: 70000}]\n"), /spec\.ports\[0\]\.port: Invalid value: 70000/],
    ["unknown type", service("ty", "  type: Weird\n  ports: [{port: 80}]\n"), /spec\.type: Unsupported value: "Weird"/],
    ["clusterIP outside the service CIDR", service("c", "  clusterIP: 10.0.0.1\n  ports: [{port: 80}]\n"), /spec\.clusterIPs?: Invalid value: .*10\.0\.0\.1.*not in the valid range/],
    ["NodePort already taken", service("np", `  type: NodePort\n  ports: [{port: 80, nodePort: ${takenNodePort}}]\n`), new RegExp(`spec\\.ports\\[0\\]\\.nodePort: Invalid value: ${takenNodePort}: provided port is already allocated`)],
    ["bad selector", service("sel", "  selector: {\"bad key!\": x}\n  ports: [{port: 80}]\n"), /spec\.selector/],
    ["one bad document of three", `${service("good1", "  ports: [{port: 80}]\n")}---\n${service("good2", "  ports: [{port: 81}]\n")}---\n${service("bad3", "  ports: [{port: 0}]\n")}`, /document 3: .*spec\.ports\[0\]\.port: Invalid value: 0/],
  ];
  for (const [what, text, error] of cases) {
    const result = await lab(["apply", "-f", manifest("bad.yaml", text), ...t.flags]);
    assert.equal(result.code, 1, `${what}: ${result.stdout}`);
    assert.match(result.stderr, error, what);
  }
  const names = (await getJson<Service>("services", "default")).map((s) => s.metadata.name);
  assert.deepEqual(names, [], "nothing of any rejected file was applied");
});

test("delete -f removes the objects and their pods; lab down leaves nothing", async () => {
  const deleted = await lab(["delete", "-f", join(files, "shop.json"), ...t.flags]);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.match(deleted.stdout, /namespace "shop" deleted/);
  await until("no shop pods", async () => listNamedNetns().filter((n) => n.startsWith(`pnl-${t.id}-shop.`)), (n) => n.length === 0);
  const none = await lab(["get", "pods", "-A", ...t.flags]);
  assert.match(none.stderr, /No resources found/);
  const missing = await lab(["delete", "svc", "nope", ...t.flags]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /services "nope" not found/);

  // A pod left running for down to remove.
  const client = manifest("client.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  containers: [{name: c}]\n");
  assert.equal((await lab(["apply", "-f", client, ...t.flags])).code, 0);
  await until("client Running", () => getJson<Pod>("pods"), (p) => p.length === 1 && running(p));
  const state = readLabState(t) ?? upState;
  const down = await lab(["down", ...t.flags]);
  assert.equal(down.code, 0, down.stdout + down.stderr);
  assert.deepEqual(await leftovers(t, state), { namespaces: [], stateDir: false, processes: [] });
  assert.deepEqual(listNamedNetns().filter((n) => n.startsWith(`pnl-${t.id}-`)), []);
  assert.equal(existsSync(`/etc/netns/pnl-${t.id}-default.client`), false);
});

// The default lab with the example app, proved by `lab check`'s services section. That section needs the
// agent's service proxy (src/agent/services-reconciler.ts, issue 8 section 2); without it the test is skipped.
const HAS_PROXY = existsSync(join(REPO_ROOT, "src/agent/services-reconciler.ts"));
test("the default lab with its example app passes lab check, services included", { skip: HAS_PROXY ? false : "the agent has no services reconciler yet" }, async () => {
  const d = newTestLab();
  try {
    const up = await lab(["up", ...d.flags], 180_000);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    assert.match(up.stdout, /app\s+4 pods Running and Ready/);
    const check = await lab(["check", ...d.flags], 180_000);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    // Clients: 6 probe pods, the client, 3 web pods and the 2 kube-system DNS pods (12); the 3 web pods
    // are backends of web-svc, so 9 reach it from elsewhere.
    for (const line of [
      /ok\s+default\/web-svc 10\.96\.\d+\.\d+:80: 9\/9 clients/,
      /ok\s+default\/web-svc 10\.96\.\d+\.\d+:80 clientip: 9\/9 clients/,
      /ok\s+default\/web-svc 10\.96\.\d+\.\d+:80 hairpin: 3\/3 clients/,
      /ok\s+default\/web-sticky 10\.96\.\d+\.\d+:80 affinity: 12\/12 clients/,
      /ok\s+default\/no-endpoints 10\.96\.\d+\.\d+:80 no endpoints: 12\/12 clients/,
      /ok\s+default\/web-svc LoadBalancer 192\.168\.1\.24\d:80/,
      /ok\s+default\/web-svc NodePort 192\.168\.1\.13:3\d{4}/,
      /services: PASS/,
      /dns: PASS/,
    ]) assert.match(check.stdout, line);
    const ip = /default\/web-svc (10\.\d+\.\d+\.\d+):80/.exec(check.stdout)![1]!;
    const walkthrough = await lab(["exec", "client", ...d.flags, "--", "wget", "-qO-", `http://${ip}/hostname`]);
    assert.match(walkthrough.stdout.trim(), /^web-[a-z0-9]+-[a-z0-9]{5}$/, "the README's walkthrough");
    const state = readLabState(d);
    const down = await lab(["down", ...d.flags]);
    assert.equal(down.code, 0, down.stdout + down.stderr);
    assert.deepEqual(await leftovers(d, state), { namespaces: [], stateDir: false, processes: [] });
  } finally {
    await removeTestLab(d);
  }
});
