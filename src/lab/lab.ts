// The lab's lifecycle: up builds the underlay, etcd, the nodes (agents) and the pods, recording each
// thing before it exists; down undoes exactly what the state file records, in reverse; status, run,
// exec and check work on a lab that is up.

import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { callApi } from "./api.ts";
import { apiSocketPath, controllersReadyFile, LAB_LOAD_BALANCER_CIDR, LAB_SERVICE_CIDR, labClusterConfig, loadKubeletState } from "./controllers.ts";
import type { EndpointSlice, Pod, Service } from "../k8s/types.ts";
import { formatServiceReport, planServiceProbes, podClients, runServiceCheck, type ServiceClient, type ServiceReport } from "./service-check.ts";
import { namedNetnsPath } from "../kernel/named-netns-path.ts";
import { listLinks } from "../kernel/link.ts";
import { deleteNamedNetns, listNamedNetns, namedNetnsInode } from "../kernel/named-netns.ts";
import { argvInNamedNetns, argvInNetnsPath } from "../kernel/netns-exec.ts";
import { listRoutes, RTPROT_BOOT, RTPROT_KERNEL, RTPROT_STATIC, RT_SCOPE_HOST, RT_SCOPE_LINK, type RouteSpec } from "../kernel/route.ts";
import { startEtcd } from "../supervise/etcd-server.ts";
import { runAttached } from "../supervise/command.ts";
import { isRecordedProcessAlive, pidsInNamespaces, processStartTime, sleep, spawnDetached, stopPids, stopRecordedProcess } from "../supervise/process.ts";
import { syncTable } from "../kernel/nft.ts";
import { ETCD_GUARDED_PORTS, etcdGuardTable, labEtcdServerTls, labPkiDir, makeLabPki, removeLabPki, secureLabEtcd } from "./etcd-security.ts";
import { formatReport, probeEnv, runCheck, type CheckPod, type CheckReport } from "./check.ts";
import { DEFAULT_STATE_ROOT, LabState, labDir, type NetworkMode, type NodeRecord, type PodRecord, type ProcessRecord } from "./lab-state.ts";
import { conditionLines, describeAgentNetwork, fetchAgentStatus, type AgentStatusView } from "./agent-status.ts";
import { configureReferenceNode, startAgent, startCniService, type LabClusterSettings } from "./node-network.ts";
import { judgeNode } from "./node-status.ts";
import { addPod, conflistSubnet, nodeNetworkState, removePod, waitForNodeReady } from "./pods.ts";
import { REPO_ROOT } from "./repo-root.ts";
import { etcNetnsDir, kubeDnsManifest, removeAllResolvConfs, writePodResolvConf } from "./pod-dns.ts";
import { formatDnsReport, planDnsProbes, runDnsCheck, type DnsReport } from "./dns-check.ts";
import { CONTROL_PLANE_IP, ETCD_CLIENT_PORT, ETCD_POD_CLIENT_PORT, EXTERNAL_IP, PROBE_PORT, etcdEndpoint, labPrefix, planLab, underlayHosts, type LabPlan, type LabTopology } from "./topology.ts";
import { createRouter, createSwitch, createUnderlayHost, inNamespace } from "./underlay.ts";

export interface LabTarget {
  id: string;
  stateRoot: string;
}

export interface UpOptions extends LabTarget {
  nodes: number;
  podsPerNode: number;
  network: NetworkMode;
  /** How long a node may stay NotReady (no conflist) before up fails. */
  readyTimeoutMs: number;
  /** Default "flat". */
  topology?: LabTopology;
  /** The cluster config's backend (podnet network); default host-gw. */
  backend?: string;
  /** vxlan's directRouting option. */
  directRouting?: boolean;
  /** podnet network: run `podnet serve` on every node and name it in the conflist (default true). */
  cniService?: boolean;
  log: (line: string) => void;
  /** A manifest applied once every node has its pods (the example app); none when undefined. */
  app?: string;
}

export const DEFAULT_TARGET: LabTarget = { id: "lab", stateRoot: DEFAULT_STATE_ROOT };
const PROBE_SERVER = join(REPO_ROOT, "src/lab/probe-server.mjs");

export function loadLab(target: LabTarget): LabState | undefined {
  return LabState.load(labDir(target.stateRoot, target.id));
}

function requireLab(target: LabTarget): LabState {
  const state = loadLab(target);
  if (!state) throw new Error(`no lab "${target.id}" (in ${target.stateRoot}); start one with: podnet lab up`);
  return state;
}

function planOf(state: LabState): LabPlan {
  return planLab({ id: state.data.id, nodes: state.data.nodes, podsPerNode: state.data.podsPerNode, topology: state.data.topology ?? "flat" });
}

export async function labUp(opts: UpOptions): Promise<LabState> {
  const started = performance.now();
  const plan = planLab({ id: opts.id, nodes: opts.nodes, podsPerNode: opts.podsPerNode, topology: opts.topology ?? "flat" });
  const backend = opts.backend ?? "host-gw";
  if (opts.directRouting && backend !== "vxlan") throw new Error("--direct-routing is an option of the vxlan backend; add --backend vxlan");
  const cluster: LabClusterSettings = { backend, ...(opts.directRouting ? { backendOptions: { directRouting: true } } : {}) };
  const dir = labDir(opts.stateRoot, opts.id);
  const existing = LabState.load(dir);
  if (existing) {
    throw new Error(`lab "${opts.id}" already exists (${existing.data.phase === "up" ? "up" : "half built"}); run: podnet lab down${opts.id === DEFAULT_TARGET.id ? "" : ` --id ${opts.id}`}`);
  }
  const strays = listNamedNetns({ includeStale: true }).filter((n) => n.startsWith(plan.prefix));
  if (strays.length > 0) {
    throw new Error(`namespaces named like lab "${opts.id}" exist but no lab records them: ${strays.join(" ")}\nremove them with: ip netns delete NAME`);
  }
  const step = (text: string): void => opts.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)}s] ${text}`);
  const state = LabState.create(dir, {
    id: opts.id,
    nodes: opts.nodes,
    podsPerNode: opts.podsPerNode,
    network: opts.network,
    topology: plan.topology,
    ...(opts.network === "podnet" ? { backend, ...(cluster.backendOptions ? { backendOptions: cluster.backendOptions } : {}) } : {}),
  });
  mkdirSync(join(dir, "logs"), { recursive: true });
  const backendText = opts.network === "podnet" ? ` (backend ${backend}${opts.directRouting ? ", directRouting" : ""})` : "";
  step(`lab ${opts.id}: ${opts.nodes} nodes × ${opts.podsPerNode} pods, ${opts.network} network${backendText}, ${plan.topology} underlay, state in ${dir}`);

  await createSwitch(state, plan);
  for (const sw of plan.switches) step(`switch    ${sw.netns} (bridge ${sw.bridge}, underlay ${sw.cidr})`);
  if (plan.router) {
    await createRouter(state, plan);
    step(`router    ${plan.router.netns} ${plan.router.uplinks.map((u) => u.ip).join(" ")} (no pod routes)`);
  }
  for (const host of underlayHosts(plan)) {
    await createUnderlayHost(state, plan, host);
    step(`${host.role === "node" ? "node" : "host"}      ${host.name.padEnd(13)} ${host.ip.padEnd(15)} netns ${host.netns}`);
  }

  const nodes: NodeRecord[] = plan.nodes.map((host) => {
    const nodeDir = join(dir, "nodes", host.name);
    const node: NodeRecord = {
      name: host.name,
      netns: host.netns,
      ip: host.ip,
      cniConfDir: join(nodeDir, "net.d"),
      ipamDataDir: join(nodeDir, "ipam"),
      statusSocket: join(nodeDir, "agent.sock"),
      ...(opts.network === "podnet" && opts.cniService !== false ? { cniServiceSocket: join(nodeDir, "cni.sock") } : {}),
    };
    mkdirSync(node.cniConfDir, { recursive: true });
    mkdirSync(node.ipamDataDir, { recursive: true });
    state.recordNode(node);
    return node;
  });

  // etcd and the controllers start together; the controllers store the cluster config (service CIDR,
  // LoadBalancer pool) as soon as etcd serves, and only then do agents start, since the first config
  // written wins and an agent would otherwise store the defaults.
  const etcdRecord = state.recordProcess({
    role: "etcd",
    netns: plan.controlPlane.netns,
    argv: argvInNamedNetns(plan.controlPlane.netns, ["etcd", "--name", "lab"]),
    log: join(dir, "etcd", "lab.log"),
  });
  const nodeNames = plan.nodes.map((n) => n.name);
  await makeLabPki(dir, nodeNames);
  step(`pki       CA and etcd certificates in ${labPkiDir(dir)} (server, peer, root, control plane, dns, ${nodeNames.length} nodes)`);
  const etcdStarting = startEtcd({
    dataDir: join(dir, "etcd"),
    name: "lab",
    host: CONTROL_PLANE_IP,
    netns: plan.controlPlane.netns,
    clientPort: ETCD_CLIENT_PORT,
    extraClientPorts: [ETCD_POD_CLIENT_PORT],
    detached: true,
    tls: labEtcdServerTls(dir),
  }).then(async (etcd) => {
    // The same config the controllers store (whichever lands first, it is this one): agents cannot.
    await secureLabEtcd(dir, plan.controlPlane.netns, nodeNames, labClusterConfig(backend, cluster.backendOptions));
    return etcd;
  });
  // If up fails before etcd is awaited, the rejection is reported there, not as an unhandled one.
  etcdStarting.catch(() => {});

  const controllers = startControllers(state, plan);
  step(`controllers pid ${controllers.pid} (log ${controllers.log})`);
  await waitForControllers(state, controllers);
  step(`config    services ${LAB_SERVICE_CIDR}, LoadBalancer IPs ${LAB_LOAD_BALANCER_CIDR}`);
  const agents = new Map<string, ProcessRecord>();
  if (opts.network === "podnet") {
    for (const node of nodes) {
      // Before the agent: its conflist names the service's socket. Until the service listens, the
      // forwarder runs the full plugin itself, so there is nothing to wait for.
      if (node.cniServiceSocket) {
        const service = startCniService(state, node);
        // Its socket appears within a fraction of a second; until then (or if it never does) pods are
        // wired by the full plugin, so this wait only makes the lab's pods go through the service.
        const deadline = Date.now() + 10_000;
        while (!existsSync(node.cniServiceSocket) && Date.now() < deadline && isRecordedProcessAlive(service)) await sleep(50);
        step(`cni       ${node.name} podnet serve pid ${service.pid} on ${node.cniServiceSocket}${existsSync(node.cniServiceSocket) ? "" : " (NOT listening yet)"} (log ${service.log})`);
      }
      const agent = startAgent(state, node, cluster);
      agents.set(node.name, agent);
      step(`agent     ${node.name} pid ${agent.pid} (log ${agent.log})`);
    }
  }
  const probes = [startProbeServer(state, "external", plan.external.netns)];
  const upstream = startUpstreamDns(state, plan.external.netns);
  step(`upstream  dnsmasq pid ${upstream.pid} on ${EXTERNAL_IP}:53 serving ${UPSTREAM_ZONE} (log ${upstream.log})`);

  const etcd = await etcdStarting;
  etcdRecord.pid = etcd.pid;
  etcdRecord.startTime = processStartTime(etcd.pid);
  state.save();
  step(`etcd      ${etcd.endpoints.join(",")} in ${plan.controlPlane.netns} (pid ${etcd.pid}): client certificates required, auth on, one role per client`);
  for (const node of nodes) await syncTable(etcdGuardTable(), namedNetnsPath(node.netns));
  step(`guard     pods on every node are kept from etcd's ports (${ETCD_GUARDED_PORTS.join(", ")})`);

  if (opts.network === "reference") {
    for (const node of nodes) {
      await configureReferenceNode(plan, node);
      step(`static    ${node.name}: routes, masquerade, reference conflist`);
    }
  }

  // Each node creates its pods as soon as it is Ready, as its kubelet would: nodes in parallel, pods on one
  // node one after another. A pod's probe server starts right after its ADD.
  await Promise.all(
    nodes.map(async (node) => {
      const list = await waitForNodeReady(node, opts.readyTimeoutMs, () => describeAgent(agents.get(node.name)));
      step(`ready     ${node.name} subnet ${conflistSubnet(list) ?? "?"}`);
      for (const pod of plan.pods.filter((p) => p.node === node.name)) {
        const t0 = performance.now();
        const record = await addPod(state, pod, list);
        if (opts.network === "podnet" && opts.app) {
          state.data.etcNetns ??= { createdRoot: false, dirs: [] };
          writePodResolvConf(state.data.etcNetns, () => state.save(), pod.netns, "default");
        }
        step(`pod       ${pod.name.padEnd(13)} ${(record.ip ?? "?").padEnd(15)} on ${node.name} (ADD ${Math.round(performance.now() - t0)} ms)`);
        probes.push(startProbeServer(state, pod.name, pod.netns));
      }
    }),
  );
  await waitForProbes(state, probes);
  step(`probes    ${probes.length} probe servers listening on :${PROBE_PORT}`);

  if (opts.app && opts.network === "podnet") {
    // Cluster DNS before the app, as kubeadm installs its addon before any workload.
    const dns = await callApi(apiSocketPath(dir), { verb: "apply", text: kubeDnsManifest(nodes.map((n) => n.name)), source: "kube-dns" });
    if (dns.exitCode !== 0) throw new Error(`applying kube-dns failed: ${dns.stderr.trim()}`);
    for (const line of dns.stdout.trim().split("\n")) step(`dns       ${line}`);
  }
  if (opts.app) {
    const applied = await callApi(apiSocketPath(dir), { verb: "apply", text: readFileSync(opts.app, "utf8"), source: opts.app });
    if (applied.exitCode !== 0) throw new Error(`applying ${opts.app} failed: ${applied.stderr.trim()}`);
    for (const line of applied.stdout.trim().split("\n")) step(`apply     ${line}`);
    const ready = await waitForKubePodsReady(dir, opts.readyTimeoutMs + 30_000);
    const dnsPods = ready.filter((p) => p.metadata.namespace === "kube-system").length;
    if (dnsPods > 0) step(`dns       ${dnsPods} podnet dns pods Running and Ready behind kube-dns 10.96.0.10`);
    const pods = ready.length - dnsPods;
    step(`app       ${pods} pods Running and Ready (podnet lab get pods -o wide${opts.id === DEFAULT_TARGET.id ? "" : ` --id ${opts.id}`})`);
  }

  state.data.phase = "up";
  state.save();
  step(`lab ${opts.id} is up — podnet lab status | check | down${opts.id === DEFAULT_TARGET.id ? "" : ` --id ${opts.id}`}`);
  return state;
}

/** The controllers process in the control-plane namespace, entered with nsenter only (see controllers.ts). */
function startControllers(state: LabState, plan: LabPlan): ProcessRecord {
  rmSync(controllersReadyFile(state.dir), { force: true });
  const record = state.recordProcess({
    role: "controllers",
    netns: plan.controlPlane.netns,
    argv: argvInNetnsPath(namedNetnsPath(plan.controlPlane.netns), [
      process.execPath, join(REPO_ROOT, "bin/podnet.js"), "lab", "controllers", "--id", state.data.id, "--state-root", dirname(state.dir),
    ]),
    log: join(state.dir, "logs", "controllers.log"),
  });
  spawnDetached(record, probeEnv());
  state.save();
  return record;
}

async function waitForControllers(state: LabState, record: ProcessRecord): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!existsSync(controllersReadyFile(state.dir)) || !existsSync(apiSocketPath(state.dir))) {
    if (!isRecordedProcessAlive(record)) throw new Error(`the controllers exited: ${tail(record.log)}`);
    if (Date.now() > deadline) throw new Error(`the controllers did not store the cluster config; see ${record.log}`);
    await sleep(50);
  }
}

/** Wait until every Pod object is Running and Ready; returns them. */
async function waitForKubePodsReady(dir: string, timeoutMs: number): Promise<Pod[]> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const got = await callApi(apiSocketPath(dir), { verb: "get", kind: "pods", allNamespaces: true, output: "json" });
    const items = got.exitCode === 0 ? ((JSON.parse(got.stdout) as { items: Pod[] }).items) : [];
    const notReady = items.filter((p) => !(p.status?.phase === "Running" && (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True")));
    if (items.length > 0 && notReady.length === 0) return items;
    last = notReady.map((p) => `${p.metadata.name} (${p.status?.phase ?? "Pending"}${p.spec.nodeName ? ` on ${p.spec.nodeName}` : ", unscheduled"})`).join(", ") || got.stderr.trim();
    if (Date.now() > deadline) throw new Error(`pods not Ready after ${timeoutMs / 1000} s: ${last}`);
    await sleep(100);
  }
}

/** The external host's upstream zone: what `podnet dns` forwards to, without leaving the machine. */
export const UPSTREAM_ZONE = "example.test";
export const UPSTREAM_RECORDS: readonly { name: string; ip: string }[] = [
  { name: `www.${UPSTREAM_ZONE}`, ip: EXTERNAL_IP },
  { name: `api.${UPSTREAM_ZONE}`, ip: "192.168.1.201" },
];

/**
 * dnsmasq (Debian dnsmasq-base) in the external host's namespace, authoritative for the upstream zone:
 * no config file, no /etc/hosts, no resolv.conf, so it answers only its own records, NXDOMAIN for
 * other names in the zone (--local) and REFUSED-free nothing else, and never queries outside.
 */
function startUpstreamDns(state: LabState, netns: string): ProcessRecord {
  const record = state.recordProcess({
    role: "upstream-dns",
    netns,
    argv: argvInNamedNetns(netns, [
      "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--pid-file=",
      `--listen-address=${EXTERNAL_IP}`, "--bind-interfaces", "--port=53", "--log-facility=-", "--user=root",
      `--local=/${UPSTREAM_ZONE}/`, ...UPSTREAM_RECORDS.map((r) => `--host-record=${r.name},${r.ip}`),
    ]),
    log: join(state.dir, "logs", "upstream-dns.log"),
  });
  spawnDetached(record);
  state.save();
  return record;
}

function readyFile(state: LabState, name: string): string {
  return join(state.dir, "logs", `probe-${name}.ready`);
}

function startProbeServer(state: LabState, name: string, netns: string): ProcessRecord {
  const ready = readyFile(state, name);
  rmSync(ready, { force: true });
  const record = state.recordProcess({
    role: `probe ${name}`,
    netns,
    argv: argvInNamedNetns(netns, [process.execPath, PROBE_SERVER, name, String(PROBE_PORT), ready]),
    log: join(state.dir, "logs", `probe-${name}.log`),
  });
  spawnDetached(record, probeEnv());
  state.save();
  return record;
}

async function waitForProbes(state: LabState, probes: readonly ProcessRecord[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (const probe of probes) {
    const name = probe.role.replace(/^probe /, "");
    while (!existsSync(readyFile(state, name))) {
      if (!isRecordedProcessAlive(probe)) throw new Error(`probe server ${name} exited: ${tail(probe.log)}`);
      if (Date.now() > deadline) throw new Error(`probe server ${name} did not start listening; see ${probe.log}`);
      await sleep(20);
    }
  }
}

function describeAgent(agent: ProcessRecord | undefined): string {
  if (!agent) return "";
  const alive = isRecordedProcessAlive(agent) ? "is running" : "has exited";
  return `agent (pid ${agent.pid ?? "?"}) ${alive}; last lines of ${agent.log}:\n${tail(agent.log)}`;
}

function tail(path: string, lines = 15): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

export interface DownReport {
  found: boolean;
  problems: string[];
}

/** Remove everything the lab recorded, in reverse order of creation, and then its state directory. */
export async function labDown(target: LabTarget, log: (line: string) => void): Promise<DownReport> {
  const dir = labDir(target.stateRoot, target.id);
  const state = LabState.load(dir);
  const prefix = labPrefix(target.id);
  if (!state) {
    const strays = listNamedNetns({ includeStale: true }).filter((n) => n.startsWith(prefix));
    const problems = strays.length > 0 ? [`namespaces named like lab "${target.id}" but not recorded by it were left alone: ${strays.join(" ")}`] : [];
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    log(`no lab "${target.id}" in ${target.stateRoot}`);
    return { found: false, problems };
  }
  const problems: string[] = [];

  // The controllers first, so nothing recreates a pod while it is taken down; then the kubelet's pods.
  for (const record of state.data.processes.filter((r) => r.role === "controllers")) await stopRecordedProcess(record);
  const kubelet = loadKubeletState(dir);
  if (kubelet) {
    await Promise.all(kubelet.data.processes.map((r) => stopRecordedProcess(r, 1000)));
    await stopPids(pidsInNamespaces(inodesOf(kubelet.data.namespaces)));
    for (const pod of [...kubelet.data.pods]) {
      try {
        problems.push(...(await removePod(kubelet, pod.name, undefined, pod.namespace)));
        log(`pod       ${pod.namespace ?? "default"}/${pod.name} deleted`);
      } catch (error) {
        problems.push(`pod ${pod.name}: ${(error as Error).message}`);
      }
    }
    const present = new Set(listNamedNetns({ includeStale: true }));
    for (const name of kubelet.data.namespaces) {
      if (!present.has(name)) continue;
      const problem = await deleteWithRetries(name);
      if (problem) problems.push(`netns ${name}: ${problem}`);
      else kubelet.forgetNamespace(name);
    }
    const kubeletEtc = kubelet.data.etcNetns ?? { createdRoot: false, dirs: [] };
    // The probe pods' directories may still be under /etc/netns: if the kubelet made /etc/netns, the
    // lab's own removal below takes it once they are gone too.
    if (kubeletEtc.createdRoot && state.data.etcNetns && state.data.etcNetns.dirs.length > 0) {
      state.data.etcNetns.createdRoot = true;
      state.save();
    }
    const etcProblems = removeAllResolvConfs(kubeletEtc);
    problems.push(...etcProblems);
    if (kubelet.data.etcNetns) kubelet.save();
    if (kubelet.data.namespaces.length > 0) state.data.namespaces.push(...kubelet.data.namespaces.filter((n) => !state.data.namespaces.includes(n)));
  }
  const podNamespaces = new Set(state.data.pods.map((p) => p.netns));
  const inPods = (r: ProcessRecord): boolean => podNamespaces.has(r.netns);

  // Pods first, as a kubelet would: stop their processes, CNI DEL, delete the netns.
  await Promise.all(state.data.processes.filter(inPods).map((r) => stopRecordedProcess(r)));
  await stopPids(pidsInNamespaces(inodesOf([...podNamespaces])));
  for (const pod of [...state.data.pods]) {
    try {
      problems.push(...(await removePod(state, pod.name)));
      log(`pod       ${pod.name} deleted`);
    } catch (error) {
      problems.push(`pod ${pod.name}: ${(error as Error).message}`);
    }
  }

  if (state.data.etcNetns) {
    problems.push(...removeAllResolvConfs(state.data.etcNetns));
    state.save();
  }

  // Then everything else that runs: probes, agents, etcd last so agents never see it vanish first.
  const rest = state.data.processes.filter((r) => !inPods(r));
  const etcd = rest.filter((r) => r.role === "etcd");
  await Promise.all(rest.filter((r) => r.role !== "etcd").map((r) => stopRecordedProcess(r)));
  for (const r of etcd) await stopRecordedProcess(r, 10_000);
  const leftovers = pidsInNamespaces(inodesOf(state.data.namespaces));
  if (leftovers.length > 0) log(`stopping  ${leftovers.length} unrecorded process(es) in lab namespaces: ${leftovers.join(" ")}`);
  await stopPids(leftovers);
  log(`processes stopped (${state.data.processes.length} recorded)`);
  // The keys go even if a namespace keeps the rest of the state dir below.
  if (removeLabPki(dir)) log(`pki       keys and certificates removed`);

  const present = new Set(listNamedNetns({ includeStale: true }));
  for (const name of [...state.data.namespaces].reverse()) {
    if (!present.has(name)) continue;
    const problem = await deleteWithRetries(name);
    if (problem) problems.push(`netns ${name}: ${problem}`);
  }
  log(`netns     ${state.data.namespaces.length} namespaces deleted`);
  const remaining = listNamedNetns({ includeStale: true }).filter((n) => state.data.namespaces.includes(n));
  if (remaining.length > 0) {
    problems.push(`namespaces still present: ${remaining.join(" ")}`);
    log(`kept      ${dir} because namespaces remain`);
  } else {
    rmSync(dir, { recursive: true, force: true });
    log(`removed   ${dir}`);
  }
  return { found: true, problems };
}

/**
 * Delete a lab namespace, trying again a few times: on a loaded machine `ip` can fail or time out once,
 * and a namespace left behind here would outlive the state that records it. Undefined when it is gone.
 */
async function deleteWithRetries(name: string, attempts = 3): Promise<string | undefined> {
  let last = "";
  for (let i = 0; i < attempts; i++) {
    try {
      await deleteNamedNetns(name);
      return undefined;
    } catch (error) {
      last = (error as Error).message;
      if (!listNamedNetns({ includeStale: true }).includes(name)) return undefined;
      await sleep(200 * (i + 1));
    }
  }
  return last;
}

function inodesOf(namespaces: readonly string[]): Set<number> {
  const inodes = new Set<number>();
  for (const name of namespaces) {
    const inode = namedNetnsInode(name);
    if (inode !== undefined) inodes.add(inode);
  }
  return inodes;
}

/** Pods by node, then by number (node2-pod1 before node10-pod1), whatever order they were created in. */
function podsInOrder(state: LabState): PodRecord[] {
  return [...state.data.pods].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
}

export async function labCheck(target: LabTarget, opts: { timeoutMs?: number } = {}): Promise<{ report: CheckReport; services?: ServiceReport; dns?: DnsReport; ok: boolean; text: string }> {
  const state = requireLab(target);
  if (state.data.phase !== "up") throw new Error(`lab "${target.id}" is not fully up; run podnet lab down, then up`);
  const pods: CheckPod[] = podsInOrder(state)
    .filter((p): p is PodRecord & { ip: string } => p.ip !== undefined)
    .map((p) => ({ name: p.name, node: p.node, netns: p.netns, ip: p.ip }));
  const nodeIps = new Map(state.data.nodeRecords.map((n) => [n.name, n.ip]));
  const report = await runCheck(pods, nodeIps, EXTERNAL_IP, opts);
  const labels = new Map(pods.map((p) => [p.name, `${p.ip}@${p.node}`]));
  let text = formatReport(report, labels);
  if (!report.ok) {
    // Say why, where the agents know: host-gw names the peers it cannot route to on a routed underlay.
    const why = conditionLines(await agentStatuses(state));
    if (why.length > 0) text += `\nwhy, as the agents report it:\n${why.map((l) => `  ${l}`).join("\n")}\n`;
  }
  const services = state.data.processes.some((p) => p.role === "controllers") ? await checkServices(state, pods) : undefined;
  if (services) text += formatServiceReport(services);
  const dns = state.data.processes.some((p) => p.role === "upstream-dns") ? await checkDns(state, pods) : undefined;
  if (dns) text += formatDnsReport(dns);
  return { report, ...(services ? { services } : {}), ...(dns ? { dns } : {}), ok: report.ok && (services?.ok ?? true) && (dns?.ok ?? true), text };
}

/** Each node's agent /status, or undefined where it cannot be read (no socket, agent down). */
async function agentStatuses(state: LabState): Promise<Map<string, AgentStatusView | undefined>> {
  const entries = await Promise.all(
    state.data.nodeRecords.map(async (node) => [node.name, node.statusSocket ? await fetchAgentStatus(node.statusSocket).catch(() => undefined) : undefined] as const),
  );
  return new Map(entries);
}

/** The services section: Services, EndpointSlices and Pods read through the lab's API, probed from every pod and the external host. */
/** The DNS section: every pod that has kubelet's resolv.conf (the kubelet's pods and the probe pods). */
async function checkDns(state: LabState, probePods: readonly CheckPod[]): Promise<DnsReport | undefined> {
  const got = await callApi(apiSocketPath(state.dir), { verb: "get", kind: "services", allNamespaces: true, output: "json" });
  if (got.exitCode !== 0) throw new Error(`lab get services: ${got.stderr.trim()}`);
  const services = (JSON.parse(got.stdout) as { items: Service[] }).items;
  if (!services.some((s) => s.metadata.name === "kube-dns")) return undefined;
  const kubelet = loadKubeletState(state.dir);
  const withResolvConf = (netns: string): boolean => existsSync(join(etcNetnsDir(netns), "resolv.conf"));
  const clients: ServiceClient[] = [
    ...(kubelet?.data.pods ?? []).map((p) => ({ name: `${p.namespace ?? "default"}/${p.name}`, netns: p.netns })),
    ...probePods.map((p) => ({ name: p.name, netns: p.netns })),
  ].filter((c) => withResolvConf(c.netns)).sort((a, b) => a.name.localeCompare(b.name));
  const probes = planDnsProbes(services, clients, { upstream: UPSTREAM_RECORDS[0]!, missingUpstream: `no-such-name.${UPSTREAM_ZONE}` });
  return runDnsCheck(probes);
}

async function checkServices(state: LabState, probePods: readonly CheckPod[]): Promise<ServiceReport> {
  const socket = apiSocketPath(state.dir);
  const list = async <T>(kind: string): Promise<T[]> => {
    const got = await callApi(socket, { verb: "get", kind, allNamespaces: true, output: "json" });
    if (got.exitCode !== 0) throw new Error(`lab get ${kind}: ${got.stderr.trim()}`);
    return (JSON.parse(got.stdout) as { items: T[] }).items;
  };
  const [services, slices, kubePods] = await Promise.all([list<Service>("services"), list<EndpointSlice>("endpointslices"), list<Pod>("pods")]);
  const kubelet = loadKubeletState(state.dir);
  const clients: ServiceClient[] = [
    ...podClients(kubePods, (pod) => kubelet?.pod(pod.metadata.name, pod.metadata.namespace ?? "default")?.netns),
    ...probePods.map((p) => ({ name: p.name, netns: p.netns, ip: p.ip })),
  ];
  const plan = planOf(state);
  const external: ServiceClient = { name: "external", netns: plan.external.netns };
  // kube-dns is served by podnet dns, not the test server the service probes speak to: the DNS section checks it.
  const testServerServices = services.filter((s) => !(s.metadata.name === "kube-dns" && s.metadata.namespace === "kube-system"));
  const probes = planServiceProbes(testServerServices, slices, clients, external, state.data.nodeRecords.map((n) => n.ip));
  return runServiceCheck(probes, [...clients, external]);
}

export async function labStatus(target: LabTarget): Promise<string> {
  const state = requireLab(target);
  const plan = planOf(state);
  const lines: string[] = [];
  const etcd = state.data.processes.find((p) => p.role === "etcd");
  lines.push(
    `lab ${state.data.id}: ${state.data.phase}, ${state.data.network} network${state.data.backend ? ` (backend ${state.data.backend}${state.data.backendOptions ? ` ${JSON.stringify(state.data.backendOptions)}` : ""})` : ""}, ${plan.topology} underlay (${plan.switches.map((s) => s.cidr).join(", ")}${plan.router ? ` via ${plan.router.netns}` : ""}), created ${state.data.createdAt}, state ${state.dir}`,
  );
  lines.push(`etcd ${etcdEndpoint()} in ${plan.controlPlane.netns}: ${etcd && isRecordedProcessAlive(etcd) ? `running (pid ${etcd.pid})` : "NOT running"}`);
  const controllers = state.data.processes.find((p) => p.role === "controllers");
  if (controllers) {
    const kubePods = loadKubeletState(state.dir)?.data.pods.length ?? 0;
    lines.push(`controllers (API ${apiSocketPath(state.dir)}): ${isRecordedProcessAlive(controllers) ? `running (pid ${controllers.pid})` : "NOT running"}, ${kubePods} pods from Pod objects (podnet lab get pods -A)`);
  }
  lines.push(`external ${EXTERNAL_IP} in ${plan.external.netns}`);
  lines.push("");
  lines.push(`${"NODE".padEnd(8)} ${"IP".padEnd(14)} ${"SUBNET".padEnd(16)} ${"STATUS".padEnd(9)} ${"AGENT".padEnd(12)} REASON`);
  const nodeStates = await Promise.all(state.data.nodeRecords.map((node) => nodeNetworkState(node)));
  state.data.nodeRecords.forEach((node, i) => {
    const network = nodeStates[i]!;
    const agent = state.data.processes.find((p) => p.role === `agent ${node.name}`);
    const verdict = judgeNode({ mode: state.data.network, agent: agent && { pid: agent.pid, alive: isRecordedProcessAlive(agent) }, network });
    const subnet = network.list ? (conflistSubnet(network.list) ?? "?") : "-";
    lines.push(`${node.name.padEnd(8)} ${node.ip.padEnd(14)} ${subnet.padEnd(16)} ${verdict.status.padEnd(9)} ${verdict.agent.padEnd(12)} ${verdict.reasons.join("; ")}`.trimEnd());
  });
  if (state.data.network === "podnet") {
    // The agents' own view: running backend, MTU, VTEP MAC and peers, conditions (from each agent's /status).
    lines.push("");
    const statuses = await agentStatuses(state);
    for (const [name, status] of statuses) {
      lines.push(...(status ? describeAgentNetwork(name, status) : [`${name}: agent /status not readable`]));
    }
  }
  lines.push("");
  lines.push(`${"POD".padEnd(14)} ${"IP".padEnd(14)} ${"NODE".padEnd(8)} PROCESSES`);
  for (const pod of podsInOrder(state)) {
    const procs = state.data.processes.filter((p) => p.netns === pod.netns);
    const procText = procs.map((p) => `${p.role.split(" ")[0]}:${isRecordedProcessAlive(p) ? p.pid : "exited"}`).join(" ");
    lines.push(`${pod.name.padEnd(14)} ${(pod.ip ?? "-").padEnd(14)} ${pod.node.padEnd(8)} ${procText}`);
  }
  for (const node of state.data.nodeRecords) {
    lines.push("");
    lines.push(`routes on ${node.name}:`);
    let text: string[];
    try {
      text = inNamespace(node.netns, (nl) => {
        const names = new Map(listLinks(nl).map((l) => [l.index, l.name]));
        return listRoutes(nl, { family: 4 }).map((r) => formatRoute(r, names));
      });
    } catch (error) {
      text = [`(cannot list routes: ${(error as Error).message})`];
    }
    lines.push(...text.map((l) => `  ${l}`));
  }
  return lines.join("\n") + "\n";
}

const PROTOCOL_NAMES = new Map([
  [RTPROT_KERNEL, "kernel"],
  [RTPROT_BOOT, "boot"],
  [RTPROT_STATIC, "static"],
]);
const SCOPE_NAMES = new Map([
  [RT_SCOPE_LINK, "link"],
  [RT_SCOPE_HOST, "host"],
]);

/** One route in the words of `ip route show`, e.g. "10.244.2.0/24 via 192.168.1.12 dev eth0 proto boot". */
export function formatRoute(route: RouteSpec, linkNames: ReadonlyMap<number, string>): string {
  const parts = [route.dst === "0.0.0.0/0" ? "default" : route.dst];
  if (route.gw) parts.push("via", route.gw);
  if (route.oifIndex !== undefined) parts.push("dev", linkNames.get(route.oifIndex) ?? `#${route.oifIndex}`);
  // Like `ip route`, which leaves out its own default protocol.
  if (route.protocol !== undefined && route.protocol !== RTPROT_BOOT) parts.push("proto", PROTOCOL_NAMES.get(route.protocol) ?? String(route.protocol));
  const scope = route.scope === undefined ? undefined : SCOPE_NAMES.get(route.scope);
  if (scope) parts.push("scope", scope);
  if (route.onlink) parts.push("onlink");
  if (route.metric !== undefined) parts.push("metric", String(route.metric));
  if (route.mtu !== undefined) parts.push("mtu", String(route.mtu));
  return parts.join(" ");
}

/** Where `lab exec` and `lab run` may run things: a pod, or an underlay host by its short name. */
export function resolveTarget(state: LabState, name: string, namespace?: string): { netns: string; isPod: boolean } {
  const kubePod = loadKubeletState(state.dir)?.pod(name, namespace ?? "default");
  if (kubePod) return { netns: kubePod.netns, isPod: true };
  if (namespace !== undefined) throw new Error(`no pod "${name}" in namespace ${namespace} of lab ${state.data.id}`);
  const pod = state.pod(name);
  if (pod) return { netns: pod.netns, isPod: true };
  const plan = planOf(state);
  const host = underlayHosts(plan).find((h) => h.name === name);
  if (host) return { netns: host.netns, isPod: false };
  if (name === "switch") return { netns: plan.switchNetns, isPod: false };
  const known = [...state.data.pods.map((p) => p.name), ...underlayHosts(plan).map((h) => h.name), "switch"];
  throw new Error(`no pod or host "${name}" in lab ${state.data.id}; known: ${known.join(", ")}`);
}

/** Run a command in a pod's (or host's) namespace with the terminal attached; resolves to its exit code. */
export async function labExec(target: LabTarget, name: string, command: readonly string[], namespace?: string): Promise<number> {
  const state = requireLab(target);
  const { netns } = resolveTarget(state, name, namespace);
  return runAttached(argvInNamedNetns(netns, command));
}

/** Start a long-lived process in a pod, sharing its netns with the pod's other processes (as with a pause container). */
export function labRun(target: LabTarget, podName: string, command: readonly string[]): ProcessRecord {
  const state = requireLab(target);
  const pod = state.pod(podName);
  if (!pod) throw new Error(`no pod "${podName}" in lab ${state.data.id}`);
  const n = state.data.processes.filter((p) => p.netns === pod.netns).length + 1;
  const record = state.recordProcess({
    role: `run ${pod.name} #${n}`,
    netns: pod.netns,
    argv: argvInNamedNetns(pod.netns, command),
    log: join(state.dir, "logs", `run-${pod.name}-${n}.log`),
  });
  spawnDetached(record);
  state.save();
  return record;
}
