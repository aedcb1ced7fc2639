// `lab check`'s DNS section: from every pod that has kubelet's resolv.conf, real resolvers ask the
// cluster DNS through 10.96.0.10 (the pod's /etc/resolv.conf, bind-mounted by `ip netns exec`):
// - glibc (`getent hosts`) resolves every service by its namespaced and full name, and by its short
//   name from pods in the same namespace (only there does the search path make it one);
// - GNU wget fetches http://web-svc/hostname by name (from other namespaces, web-svc.default);
// - an upstream name (the external host's zone) resolves through forwarding;
// - a missing name gets NXDOMAIN (dig's status), in the cluster zone and in the upstream zone;
// - web-svc over TCP, its AAAA as NODATA, the PTR of its ClusterIP, dns-version TXT (dig), and
//   busybox's own resolver (Debian busybox-static's nslookup).

import type { Service } from "../k8s/types.ts";
import { argvInNamedNetns } from "../kernel/netns-exec.ts";
import { runCommand } from "../supervise/command.ts";
import { CLUSTER_DOMAIN } from "./pod-dns.ts";
import type { ServiceClient } from "./service-check.ts";

export interface DnsProbe {
  client: ServiceClient;
  /** What is checked, the same for every client: "getent web-svc.default". */
  label: string;
  argv: string[];
  /** Judges the command's outcome: undefined when it passed, else why not. */
  judge: (result: { code: number; stdout: string; stderr: string }) => string | undefined;
}

export interface DnsCell {
  label: string;
  client: string;
  ok: boolean;
  problem?: string;
}

export interface DnsReport {
  cells: DnsCell[];
  ok: boolean;
}

export interface DnsCheckTargets {
  /** A name in the upstream zone and the address it has there. */
  upstream: { name: string; ip: string };
  /** A name the upstream zone does not have. */
  missingUpstream: string;
}

function expectAddress(ip: string) {
  return (r: { code: number; stdout: string; stderr: string }): string | undefined => {
    if (r.code !== 0) return `exit ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim()}` : " (not found)"}`;
    const got = r.stdout.trim().split(/\s+/)[0];
    return got === ip ? undefined : `got ${got}, want ${ip}`;
  };
}

function expectShort(want: string) {
  return (r: { code: number; stdout: string; stderr: string }): string | undefined => {
    const got = r.stdout.trim();
    return r.code === 0 && got === want ? undefined : `got ${JSON.stringify(got)} (exit ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ""}), want ${JSON.stringify(want)}`;
  };
}

/** NOERROR with no answer: the name exists, the type does not (RFC 2308 NODATA). */
function expectNodata(r: { code: number; stdout: string; stderr: string }): string | undefined {
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1];
  const answers = /ANSWER: (\d+)/.exec(r.stdout)?.[1];
  return status === "NOERROR" && answers === "0" ? undefined : `status ${status ?? `unknown (exit ${r.code})`} with ${answers ?? "?"} answers, want NOERROR with none`;
}

function expectStatus(status: string) {
  return (r: { code: number; stdout: string; stderr: string }): string | undefined => {
    const got = /status: ([A-Z]+)/.exec(r.stdout)?.[1];
    return got === status ? undefined : `status ${got ?? `unknown (exit ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ""})`}, want ${status}`;
  };
}

/** A pod's Kubernetes namespace from its client name ("ns/name"); the lab's probe pods are in default. */
function namespaceOf(client: ServiceClient): string {
  const slash = client.name.indexOf("/");
  return slash === -1 ? "default" : client.name.slice(0, slash);
}

/** Every probe, for every client; pure. Services without a ClusterIP (headless, ExternalName) are skipped. */
export function planDnsProbes(services: readonly Service[], clients: readonly ServiceClient[], targets: DnsCheckTargets): DnsProbe[] {
  const probes: DnsProbe[] = [];
  const withIp = services.filter((s) => s.spec.clusterIP && s.spec.clusterIP !== "None" && s.spec.type !== "ExternalName");
  const web = withIp.find((s) => s.metadata.name === "web-svc" && (s.metadata.namespace ?? "default") === "default");
  for (const client of clients) {
    const ns = namespaceOf(client);
    for (const svc of withIp) {
      const svcNs = svc.metadata.namespace ?? "default";
      const names = [`${svc.metadata.name}.${svcNs}`, `${svc.metadata.name}.${svcNs}.svc.${CLUSTER_DOMAIN}`];
      if (svcNs === ns) names.unshift(svc.metadata.name);
      for (const name of names) probes.push({ client, label: `getent ${name}`, argv: ["getent", "hosts", name], judge: expectAddress(svc.spec.clusterIP!) });
    }
    if (web) {
      const url = `http://${ns === "default" ? "web-svc" : "web-svc.default"}/hostname`;
      probes.push({
        client,
        label: `wget http://web-svc/hostname`,
        argv: ["wget", "-qO-", "-T", "5", "-t", "1", url],
        judge: (r) => (r.code === 0 && r.stdout.trim() !== "" ? undefined : `exit ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ""}`),
      });
    }
    if (web) {
      const full = `web-svc.default.svc.${CLUSTER_DOMAIN}`;
      const dig = ["dig", "+time=2", "+tries=2"];
      probes.push({ client, label: "dig +tcp web-svc A", argv: [...dig, "+tcp", "+short", full, "A"], judge: expectShort(web.spec.clusterIP!) });
      probes.push({ client, label: "dig web-svc AAAA NODATA", argv: [...dig, full, "AAAA"], judge: expectNodata });
      probes.push({ client, label: "dig PTR of web-svc's ClusterIP", argv: [...dig, "+short", "-x", web.spec.clusterIP!], judge: expectShort(`${full}.`) });
      probes.push({
        client,
        label: "busybox nslookup web-svc",
        argv: ["/bin/busybox", "nslookup", full],
        judge: (r) => (new RegExp(`^Address:\\s+${web.spec.clusterIP!.replaceAll(".", "\\.")}$`, "m").test(r.stdout) ? undefined : `no "Address: ${web.spec.clusterIP}" (exit ${r.code}): ${(r.stdout + r.stderr).trim().split("\n").pop()}`),
      });
    }
    probes.push({ client, label: "dig dns-version TXT", argv: ["dig", "+time=2", "+tries=2", "+short", `dns-version.${CLUSTER_DOMAIN}`, "TXT"], judge: expectShort('"1.1.0"') });
    probes.push({ client, label: `getent ${targets.upstream.name} (upstream)`, argv: ["getent", "hosts", targets.upstream.name], judge: expectAddress(targets.upstream.ip) });
    // dig reads the pod's resolv.conf; +search off: the name is asked exactly as written.
    for (const missing of [`no-such-service.${ns}.svc.${CLUSTER_DOMAIN}`, targets.missingUpstream]) {
      probes.push({ client, label: `dig ${missing.startsWith("no-such-service.") ? "no-such-service.<ns>.svc" : missing} NXDOMAIN`, argv: ["dig", "+time=2", "+tries=2", missing], judge: expectStatus("NXDOMAIN") });
    }
  }
  return probes;
}

/** After this many failed lookups from one pod its remaining cells fail unrun: a broken network stays quick to check. */
const MAX_FAILURES_PER_POD = 1;

/**
 * Run the probes, `concurrency` at a time. Each client is first asked one name with a short budget:
 * a pod that cannot reach cluster DNS at all fails its cells at once, rather than letting every glibc
 * lookup wait out its search path (ndots:5 × three domains × retries) on a broken network.
 */
export async function runDnsCheck(probes: readonly DnsProbe[], concurrency = 8): Promise<DnsReport> {
  const unreachable = new Map<string, string>();
  const clients = [...new Map(probes.map((p) => [p.client.netns, p.client])).values()];
  await pool(clients, concurrency, async (client) => {
    const argv = ["dig", "+time=1", "+tries=2", "@10.96.0.10", `kube-dns.kube-system.svc.${CLUSTER_DOMAIN}`, "A"];
    try {
      const r = await runCommand(argvInNamedNetns(client.netns, argv), { timeoutMs: 10_000 });
      if (!/status: NOERROR/.test(r.stdout)) unreachable.set(client.netns, `cluster DNS 10.96.0.10 does not answer: ${(r.stdout.match(/;; (.*timed out.*|.*no servers.*)/)?.[1] ?? `exit ${r.code}`).trim()}`);
    } catch (error) {
      unreachable.set(client.netns, `cluster DNS 10.96.0.10 does not answer: ${(error as Error).message}`);
    }
  });
  const cells: DnsCell[] = new Array(probes.length);
  const failures = new Map<string, number>();
  await pool(probes.map((probe, i) => ({ probe, i })), concurrency, async ({ probe, i }) => {
    const failedBefore = failures.get(probe.client.netns) ?? 0;
    let problem = unreachable.get(probe.client.netns) ?? (failedBefore >= MAX_FAILURES_PER_POD ? `not run: ${failedBefore} lookups from this pod failed already` : undefined);
    if (problem === undefined) {
      try {
        problem = probe.judge(await runCommand(argvInNamedNetns(probe.client.netns, probe.argv), { timeoutMs: 4000 }));
      } catch (error) {
        problem = (error as Error).message;
      }
      if (problem !== undefined) failures.set(probe.client.netns, (failures.get(probe.client.netns) ?? 0) + 1);
    }
    cells[i] = { label: probe.label, client: probe.client.name, ok: problem === undefined, ...(problem ? { problem } : {}) };
  });
  return { cells, ok: cells.every((c) => c.ok) };
}

async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export function formatDnsReport(report: DnsReport): string {
  const lines = ["", "dns"];
  if (report.cells.length === 0) lines.push("  (no pods with cluster DNS to check)");
  const byLabel = new Map<string, DnsCell[]>();
  for (const cell of report.cells) byLabel.set(cell.label, [...(byLabel.get(cell.label) ?? []), cell]);
  for (const [label, cells] of [...byLabel].sort(([a], [b]) => a.localeCompare(b))) {
    const passed = cells.filter((c) => c.ok).length;
    lines.push(`  ${passed === cells.length ? "ok  " : "FAIL"} ${label}: ${passed}/${cells.length} pods`);
    for (const c of cells.filter((x) => !x.ok)) lines.push(`       ${c.client}: ${c.problem ?? "?"}`);
  }
  const failures = report.cells.filter((c) => !c.ok).length;
  lines.push(report.ok ? "dns: PASS" : `dns: FAIL (${failures} of ${report.cells.length})`);
  return lines.join("\n") + "\n";
}
