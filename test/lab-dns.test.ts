// Cluster DNS in the lab, end to end: `lab up` runs kube-dns (10.96.0.10) backed by two `podnet dns`
// pods on different nodes, an upstream zone on the external host (dnsmasq), and gives every pod
// kubelet's resolv.conf. Real clients in the pods: glibc (getent), GNU wget, dig over UDP and TCP.
// Needs root and `npm run build`; everything is removed and the removal asserted.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
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
  for (const line of [/ok\s+getent web-svc: \d+\/\d+ pods/, /ok\s+getent kube-dns\.kube-system\.svc\.cluster\.local: /, /ok\s+wget http:\/\/web-svc\/hostname: /, /ok\s+getent www\.example\.test \(upstream\): /, /ok\s+dig no-such-name\.example\.test NXDOMAIN: /, /ok\s+dig \+tcp web-svc A: /, /ok\s+dig web-svc AAAA NODATA: /, /ok\s+dig PTR of web-svc's ClusterIP: /, /ok\s+dig dns-version TXT: /, /ok\s+busybox nslookup web-svc: /]) {
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

/** Services that only DNS can tell apart: headless with and without endpoints, and an ExternalName. */
const EXTRA_SERVICES = `
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty-headless}
spec:
  clusterIP: None
  selector: {app: nothing-has-this-label}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: upstream-alias}
spec:
  type: ExternalName
  externalName: www.example.test
`;

const dashed = (ip: string): string => ip.replaceAll(".", "-");

test("real clients through 10.96.0.10: dig over UDP and TCP for A, AAAA, SRV, PTR, CNAME and TXT, headless and regular, NXDOMAIN and NODATA; getent; busybox nslookup", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pnt-lab-dns-"));
  try {
    writeFileSync(join(dir, "extra.yaml"), EXTRA_SERVICES);
    const applied = await lab(["apply", "-f", join(dir, "extra.yaml"), ...t.flags]);
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const [web] = (await getJson<Service>("services", "default")).filter((s) => s.metadata.name === "web-svc");
  const clusterIP = web!.spec.clusterIP!;
  const webIps = (await getJson<Pod>("pods", "default")).filter((p) => p.metadata.labels?.app === "web").map((p) => p.status!.podIP!).sort();
  assert.equal(webIps.length, 3);
  const dig = async (transport: string, ...args: string[]): Promise<string> => {
    const r = await exec("client", ["dig", transport, "+time=2", "+tries=2", "@10.96.0.10", ...args]);
    assert.equal(r.code, 0, `dig ${args.join(" ")}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const short = async (transport: string, ...args: string[]): Promise<string[]> => (await dig(transport, "+short", ...args)).trim().split("\n").filter((l) => l !== "");
  // The headless service resolves once its EndpointSlice (three ready pods) has reached the DNS pods.
  const deadline = Date.now() + 20_000;
  while ((await short("+notcp", "web-headless.default.svc.cluster.local", "A")).length !== 3) {
    assert.ok(Date.now() < deadline, "web-headless never answered its three endpoints");
    await sleep(200);
  }
  for (const transport of ["+notcp", "+tcp"]) {
    const at = `over ${transport === "+tcp" ? "TCP" : "UDP"}`;
    // Regular service: A, and NODATA for AAAA (IPv4 only): NOERROR, no answer, the zone's SOA.
    assert.deepEqual(await short(transport, "web-svc.default.svc.cluster.local", "A"), [clusterIP], `A ${at}`);
    const aaaa = await dig(transport, "web-svc.default.svc.cluster.local", "AAAA");
    assert.match(aaaa, /status: NOERROR/, `AAAA ${at}`);
    assert.match(aaaa, /ANSWER: 0, AUTHORITY: 1/, `AAAA ${at} is NODATA with the SOA`);
    assert.match(aaaa, /^cluster\.local\.\s+\d+\s+IN\s+SOA\s/m);
    // Headless: every ready endpoint; SRV per endpoint with its dashed-IP name; none ready: NXDOMAIN.
    assert.deepEqual((await short(transport, "web-headless.default.svc.cluster.local", "A")).sort(), webIps, `headless A ${at}`);
    const srv = (await short(transport, "_http._tcp.web-headless.default.svc.cluster.local", "SRV")).sort();
    assert.deepEqual(srv, webIps.map((ip) => `0 33 8080 ${dashed(ip)}.web-headless.default.svc.cluster.local.`).sort(), `headless SRV ${at}`);
    assert.deepEqual(await short(transport, `${dashed(webIps[0]!)}.web-headless.default.svc.cluster.local`, "A"), [webIps[0]], `endpoint name ${at}`);
    assert.match(await dig(transport, "empty-headless.default.svc.cluster.local", "A"), /status: NXDOMAIN/, `headless without endpoints ${at}`);
    // PTR for the ClusterIP and for an endpoint of the headless service.
    assert.deepEqual(await short(transport, "-x", clusterIP), ["web-svc.default.svc.cluster.local."], `PTR ClusterIP ${at}`);
    assert.ok((await short(transport, "-x", webIps[0]!)).includes(`${dashed(webIps[0]!)}.web-headless.default.svc.cluster.local.`), `PTR endpoint ${at}`);
    // ExternalName: the CNAME, followed through the upstream zone.
    assert.deepEqual(await short(transport, "upstream-alias.default.svc.cluster.local", "A"), ["www.example.test.", "192.168.1.200"], `CNAME ${at}`);
    assert.deepEqual(await short(transport, "dns-version.cluster.local", "TXT"), ['"1.1.0"'], `TXT ${at}`);
    // NXDOMAIN for a missing service and a missing namespace; NODATA for an existing namespace.
    assert.match(await dig(transport, "nothing.default.svc.cluster.local", "A"), /status: NXDOMAIN/);
    assert.match(await dig(transport, "web-svc.no-such-namespace.svc.cluster.local", "A"), /status: NXDOMAIN/);
    const ns = await dig(transport, "default.svc.cluster.local", "A");
    assert.match(ns, /status: NOERROR/);
    assert.match(ns, /ANSWER: 0, AUTHORITY: 1/);
  }
  // glibc through the pod's resolv.conf (search path, ndots:5): short names, headless, the ExternalName.
  const getent = async (name: string): Promise<string[]> => {
    const r = await exec("client", ["getent", "hosts", name]);
    assert.equal(r.code, 0, `getent hosts ${name}: ${r.stdout}${r.stderr}`);
    return r.stdout.trim().split("\n").map((l) => l.split(/\s+/)[0]!);
  };
  assert.deepEqual(await getent("web-svc"), [clusterIP]);
  assert.ok(webIps.includes((await getent("web-headless"))[0]!));
  assert.deepEqual(await getent("upstream-alias"), ["192.168.1.200"]);
  assert.deepEqual(await getent("kube-dns.kube-system"), ["10.96.0.10"]);
  const missing = await exec("client", ["getent", "hosts", "no-such-service"]);
  assert.equal(missing.code, 2, "getent exits 2 for a name that does not exist");
  // busybox's own resolver (Debian busybox-static), through the pod's resolv.conf and by server address.
  const bb = await exec("client", ["/bin/busybox", "nslookup", "web-svc.default.svc.cluster.local"]);
  assert.match(bb.stdout, /^Server:\s+10\.96\.0\.10$/m, bb.stdout + bb.stderr);
  assert.match(bb.stdout, new RegExp(`^Address: ${clusterIP.replaceAll(".", "\\.")}$`, "m"), bb.stdout + bb.stderr);
  const bbSrv = await exec("client", ["/bin/busybox", "nslookup", "-type=SRV", "_http._tcp.web-svc.default.svc.cluster.local", "10.96.0.10"]);
  assert.match(bbSrv.stdout, /web-svc\.default\.svc\.cluster\.local\s+service = 0 100 80 web-svc\.default\.svc\.cluster\.local/, bbSrv.stdout + bbSrv.stderr);
  const bbMissing = await exec("client", ["/bin/busybox", "nslookup", "nothing.default.svc.cluster.local"]);
  assert.notEqual(bbMissing.code, 0);
  assert.match(bbMissing.stdout + bbMissing.stderr, /NXDOMAIN/);
});

test("a DNS pod is an endpoint only while its readinessProbe (/ready) passes: stopped, NotReady with its process alive; continued, Ready again", async () => {
  const pods = kubelet().pods.filter((p) => p.namespace === "kube-system");
  const target = pods.find((p) => p.name === "podnet-dns-1")!;
  const server = kubelet().processes.find((p) => p.role === `server kube-system/${target.name}`);
  assert.ok(server?.pid, "no recorded DNS process");
  const endpointReady = async (): Promise<boolean | undefined> => {
    const slices = await getJson<EndpointSlice>("endpointslices", "kube-system");
    const ep = slices.flatMap((s) => s.endpoints).find((e) => e.addresses.includes(target.ip!));
    return ep ? ep.conditions?.ready !== false : undefined;
  };
  const podReady = async (): Promise<boolean> => {
    const pod = (await getJson<Pod>("pods", "kube-system")).find((p) => p.metadata.name === target.name)!;
    return pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
  };
  assert.equal(await endpointReady(), true);
  // The probe itself, as the kubelet runs it: from the node, to the pod IP's /ready.
  const node = upState!.nodeRecords.find((n) => n.name === target.node)!;
  const direct = await runCommand(["ip", "netns", "exec", node.netns, "curl", "-s", `http://${target.ip}:9153/ready`]);
  assert.match(direct.stdout, /"ready":true/);
  process.kill(server.pid, "SIGSTOP");
  try {
    const deadline = Date.now() + 20_000;
    while ((await endpointReady()) !== false || (await podReady())) {
      assert.ok(Date.now() < deadline, "the stopped DNS pod stayed ready for 20 s");
      await sleep(200);
    }
    assert.ok(processStartTime(server.pid) !== undefined, "the process is alive: readiness came from the probe, not from a dead process");
    // New flows go to the ready pod only: queries keep being answered.
    for (let i = 0; i < 3; i++) {
      const r = await exec("client", ["dig", "+short", "+time=2", "+tries=1", "@10.96.0.10", "web-svc.default.svc.cluster.local", "A"]);
      assert.equal(r.code, 0, `query ${i} with one DNS pod not ready: ${r.stdout}${r.stderr}`);
    }
  } finally {
    process.kill(server.pid, "SIGCONT");
  }
  const deadline = Date.now() + 20_000;
  while (!(await endpointReady()) || !(await podReady())) {
    assert.ok(Date.now() < deadline, "the continued DNS pod did not turn Ready again within 20 s");
    await sleep(200);
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
