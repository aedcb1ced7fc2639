// Cluster DNS in the lab, end to end: `lab up` runs kube-dns (10.96.0.10) backed by two `podnet dns`
// pods on different nodes, an upstream zone on the external host (dnsmasq), and gives every pod
// kubelet's resolv.conf. Real clients in the pods: glibc (getent), GNU wget, dig over UDP and TCP.
// Needs root and `npm run build`; everything is removed and the removal asserted.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { EndpointSlice, Pod, Service } from "../src/k8s/types.ts";
import type { LabStateData } from "../src/lab/lab-state.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";
import { runCommand } from "../src/supervise/command.ts";
import { processStartTime, sleep } from "../src/supervise/process.ts";
import { lab, leftovers, newTestLab, readLabState, removeTestLab } from "./helpers/lab.ts";

const t = newTestLab();
const hostResolvConf = (): string => createHash("sha256").update(existsSync("/etc/resolv.conf") ? readFileSync("/etc/resolv.conf") : "").digest("hex");
const resolvBefore = hostResolvConf();
let upState: LabStateData | undefined;

before(async () => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
  const up = await lab(["up", "--nodes", "2", "--pods-per-node", "1", ...t.flags], 240_000);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  upState = readLabState(t);
});
after(async () => {
  const forced = await removeTestLab(t);
  assert.deepEqual(forced, [], "lab down left these behind; they were removed by force");
});

async function exec(pod: string, argv: readonly string[], namespace = "default"): Promise<{ code: number; stdout: string; stderr: string }> {
  return lab(["exec", pod, "-n", namespace, ...t.flags, "--", ...argv], 60_000);
}

async function getJson<T>(kind: string, namespace: string): Promise<T[]> {
  const got = await lab(["get", kind, "-n", namespace, "-o", "json", ...t.flags]);
  assert.equal(got.code, 0, got.stderr);
  return (JSON.parse(got.stdout) as { items: T[] }).items;
}

interface KubeletState {
  pods: { name: string; namespace?: string; netns: string; ip?: string; node: string }[];
  processes: { role: string; pid?: number }[];
}

function kubelet(): KubeletState {
  return JSON.parse(readFileSync(join(t.stateRoot, t.id, "kubelet", "state.json"), "utf8")) as KubeletState;
}

test("kube-dns is 10.96.0.10 on 53/UDP and 53/TCP, backed by two podnet dns pods on different nodes", async () => {
  const [svc] = (await getJson<Service>("services", "kube-system")).filter((s) => s.metadata.name === "kube-dns");
  assert.ok(svc, "no kube-dns Service");
  assert.equal(svc.spec.clusterIP, "10.96.0.10");
  assert.deepEqual(svc.spec.ports?.map((p) => `${p.name} ${p.port}/${p.protocol}`), ["dns 53/UDP", "dns-tcp 53/TCP"]);
  assert.deepEqual(svc.spec.selector, { "k8s-app": "kube-dns" });
  const pods = (await getJson<Pod>("pods", "kube-system")).filter((p) => p.metadata.labels?.["k8s-app"] === "kube-dns");
  assert.equal(pods.length, 2);
  assert.equal(new Set(pods.map((p) => p.spec.nodeName)).size, 2, "the DNS pods share a node");
  for (const pod of pods) assert.ok(pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"), `${pod.metadata.name} not Ready`);
});

test("every pod has kubelet's resolv.conf; the host's is untouched", async () => {
  const client = await exec("client", ["cat", "/etc/resolv.conf"]);
  assert.equal(client.stdout, "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
  const dns = await exec("podnet-dns-1", ["cat", "/etc/resolv.conf"], "kube-system");
  assert.match(dns.stdout, /^search kube-system\.svc\.cluster\.local svc\.cluster\.local cluster\.local$/m);
  assert.equal(hostResolvConf(), resolvBefore);
});

test("lab check passes, with its DNS section", async () => {
  const check = await lab(["check", ...t.flags], 180_000);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /^dns: PASS$/m);
  for (const line of [/ok\s+getent web-svc: \d+\/\d+ pods/, /ok\s+getent kube-dns\.kube-system\.svc\.cluster\.local: /, /ok\s+wget http:\/\/web-svc\/hostname: /, /ok\s+getent www\.example\.test \(upstream\): /, /ok\s+dig no-such-name\.example\.test NXDOMAIN: /]) {
    assert.match(check.stdout, line);
  }
});

test("podnet lab exec client -- wget -qO- http://web-svc/hostname answers by name", async () => {
  const got = await exec("client", ["wget", "-qO-", "http://web-svc/hostname"]);
  assert.equal(got.code, 0, got.stderr);
  const web = (await getJson<Pod>("pods", "default")).filter((p) => p.metadata.labels?.app === "web").map((p) => p.metadata.name);
  assert.ok(web.includes(got.stdout.trim()), `"${got.stdout.trim()}" is not one of ${web.join(", ")}`);
});

test("dig through 10.96.0.10: A and SRV over UDP and TCP, upstream names, NXDOMAIN", async () => {
  const [web] = (await getJson<Service>("services", "default")).filter((s) => s.metadata.name === "web-svc");
  for (const transport of ["+notcp", "+tcp"]) {
    const a = await exec("client", ["dig", "+short", transport, "@10.96.0.10", "web-svc.default.svc.cluster.local", "A"]);
    assert.equal(a.stdout.trim(), web!.spec.clusterIP, `A over ${transport}: ${a.stdout}${a.stderr}`);
    const srv = await exec("client", ["dig", "+short", transport, "@10.96.0.10", "_http._tcp.web-svc.default.svc.cluster.local", "SRV"]);
    assert.equal(srv.stdout.trim(), "0 100 80 web-svc.default.svc.cluster.local.", `SRV over ${transport}`);
    const up = await exec("client", ["dig", "+short", transport, "@10.96.0.10", "www.example.test", "A"]);
    assert.equal(up.stdout.trim(), "192.168.1.200", `upstream over ${transport}`);
    const missing = await exec("client", ["dig", transport, "@10.96.0.10", "nothing.default.svc.cluster.local", "A"]);
    assert.match(missing.stdout, /status: NXDOMAIN/);
  }
});

test("a DNS pod killed while a client queries from one source port: the next query succeeds", async () => {
  const pods = kubelet().pods;
  const client = pods.find((p) => p.name === "client")!;
  const clientNode = upState!.nodeRecords.find((n) => n.name === client.node)!;
  const [web] = (await getJson<Service>("services", "default")).filter((s) => s.metadata.name === "web-svc");
  // A fixed source port keeps one conntrack entry, so the flow stays on its backend until that entry is cleared.
  const query = (): Promise<{ code: number; stdout: string; stderr: string }> =>
    exec("client", ["dig", "+short", "+time=2", "+tries=3", "-b", `${client.ip}#40053`, "@10.96.0.10", "web-svc.default.svc.cluster.local", "A"]);
  const first = await query();
  assert.equal(first.stdout.trim(), web!.spec.clusterIP);
  // Which DNS pod the flow went to: the reply's source in the node's conntrack table (read only).
  const ct = await runCommand(["ip", "netns", "exec", clientNode.netns, "conntrack", "-L", "-p", "udp", "--sport", "40053", "--dport", "53"]);
  const backend = pods.find((p) => p.namespace === "kube-system" && p.ip !== undefined && ct.stdout.includes(`src=${p.ip} `));
  assert.ok(backend, `no DNS pod in the flow:\n${ct.stdout}${ct.stderr}`);
  const server = kubelet().processes.find((p) => p.role === `server kube-system/${backend.name}`);
  assert.ok(server?.pid, `no recorded process for ${backend.name}`);
  process.kill(server.pid, "SIGKILL");
  for (let i = 0; i < 50 && processStartTime(server.pid) !== undefined; i++) await sleep(20);
  // The kubelet sees the dead process, the pod turns NotReady and its endpoint stops being ready; the
  // agent then clears the flow's conntrack entry. Until then the fixed-port flow is pinned to the dead pod.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const slices = await getJson<EndpointSlice>("endpointslices", "kube-system");
    const stillReady = slices.some((s) => s.endpoints.some((e) => e.addresses.includes(backend.ip!) && e.conditions?.ready !== false));
    if (!stillReady) break;
    assert.ok(Date.now() < deadline, `${backend.name}'s endpoint is still ready 20 s after its process was killed`);
    await sleep(100);
  }
  // The next query from the same source port, without retries, is answered by the other DNS pod.
  const next = await exec("client", ["dig", "+short", "+time=2", "+tries=1", "-b", `${client.ip}#40053`, "@10.96.0.10", "web-svc.default.svc.cluster.local", "A"]);
  assert.equal(next.code, 0, `after killing ${backend.name}: ${next.stdout}${next.stderr}`);
  assert.equal(next.stdout.trim(), web!.spec.clusterIP);
});

test("lab down leaves nothing, /etc/netns entries included", async () => {
  const down = await lab(["down", ...t.flags], 120_000);
  assert.equal(down.code, 0, down.stdout + down.stderr);
  assert.deepEqual(await leftovers(t, upState), { namespaces: [], stateDir: false, processes: [] });
  assert.equal(hostResolvConf(), resolvBefore);
});
