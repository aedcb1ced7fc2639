// The lab's control plane as one supervised process (`podnet lab controllers`, started by `lab up`
// inside the control-plane namespace with nsenter, so it reaches etcd over the underlay yet shares the
// host's mount namespace and can create pod namespaces):
// - an API server for `lab apply/get/delete` on a unix socket in the lab's state dir (a file, so the
//   CLI in the root namespace reaches it without any route into the lab);
// - the Deployment controller, the scheduler and the EndpointSlice controller (src/controlplane plans,
//   committed through ObjectStore.commit);
// - a kubelet for every node: each Pod bound to a node gets a netns, CNI ADD in the node's namespace
//   (src/runtime, hostPorts passed as runtimeConfig portMappings) and the built-in test server; its
//   status says Running/Ready once the server listens. A Pod that is gone is stopped, CNI DEL, removed.
// The kubelet's pods and processes are recorded in <lab>/kubelet/state.json before they exist, so
// `lab down` removes them even after a crash.
// Controllers are level-triggered, as kube-controller-manager's: any change schedules one pass over
// the whole (small) cluster, and each commit is waited for in the cache before the next plan is made.

import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { applyRequest, deleteRequest, getRequest } from "./api.ts";
import { apiSocketPath, type ApiRequest, type ApiResponse } from "./api-client.ts";
export { apiSocketPath };
import { isPodReady, planDeploymentWrites, planPodScheduling, type NodeInfo } from "../controlplane/deployment-controller.ts";
import { planEndpointSlices, planLoadBalancerStatus } from "../controlplane/endpoints-controller.ts";
import { NodeLifecycleController } from "../controlplane/node-lifecycle-controller.ts";
import { LOAD_BALANCER_IP_POOL } from "../controlplane/allocation.ts";
import { testServerArgs } from "../controlplane/test-server-ports.ts";
import { DEFAULT_CLUSTER_CONFIG, type ClusterConfig } from "../datastore/datastore.ts";
import { EtcdDatastore } from "../datastore/etcd-datastore.ts";
import { watchIntoCache, type ObjectCache } from "../datastore/object-cache.ts";
import { ConflictError, type ObjectWrite } from "../datastore/objects.ts";
import { OBJECT_KINDS, type Pod } from "../k8s/types.ts";
import { namedNetnsInode } from "../kernel/named-netns.ts";
import { argvInNamedNetns } from "../kernel/netns-exec.ts";
import { isRecordedProcessAlive, pidsInNamespaces, sleep, spawnDetached, stopPids, stopRecordedProcess } from "../supervise/process.ts";
import { probeEnv } from "./check.ts";
import { LabState, type PodRecord, type ProcessRecord } from "./lab-state.ts";
import { addPod, nodeNetworkState, removePod, type RuntimeConfig } from "./pods.ts";
import { CNI_PATH, REPO_ROOT } from "./repo-root.ts";
import { etcdGuardTable, labEtcdDatastoreOptions, labEtcdFlags } from "./etcd-security.ts";
import { CLUSTER_CIDR, EXTERNAL_IP, labPrefix } from "./topology.ts";
import { DNS_METRICS_PORT, isDnsPod, removePodResolvConf, writePodResolvConf, type EtcNetnsRecord } from "./pod-dns.ts";
import { ProbeState, probeCommand, probeOutcome, readinessProbeOf, type ReadinessProbe } from "./readiness.ts";
import { runCommand } from "../supervise/command.ts";
import { DNS_ENV, DNS_NODE_FLAGS } from "../dns/node-flags.ts";
import { syncTable } from "../kernel/nft.ts";
import { namedNetnsPath } from "../kernel/named-netns-path.ts";

/** ClusterIPs come from here (Kubernetes' default --service-cluster-ip-range). */
export const LAB_SERVICE_CIDR = "10.96.0.0/12";
/** LoadBalancer IPs: the top of the underlay, clear of the nodes (.11 up) and the external host (.200). */
export const LAB_LOAD_BALANCER_CIDR = "192.168.1.240/28";
export const KUBELET_DIR = "kubelet";
const TEST_SERVER = join(REPO_ROOT, "src/controlplane/test-server.mjs");
const PODNET_CLI = join(REPO_ROOT, "bin/podnet.js");
/** A test server that died is started again at most this often. */
const SERVER_RESTART_MS = 5000;

/** The config the lab stores before any agent starts: the agents' backend (as their --backend flags say) plus services. */
export function labClusterConfig(backend = DEFAULT_CLUSTER_CONFIG.backend, backendOptions?: Record<string, unknown>): ClusterConfig {
  return {
    ...DEFAULT_CLUSTER_CONFIG,
    clusterCidr: CLUSTER_CIDR,
    backend,
    backendOptions: backendOptions ? { [backend]: backendOptions } : {},
    serviceCidr: LAB_SERVICE_CIDR,
    loadBalancerCidrs: [LAB_LOAD_BALANCER_CIDR],
  };
}

/** Written once the cluster config is stored: agents may start after it. */
export function controllersReadyFile(labDir: string): string {
  return join(labDir, "controllers.ready");
}

export function kubeletDir(labDir: string): string {
  return join(labDir, KUBELET_DIR);
}

/** The netns of a Kubernetes pod; namespace names are DNS labels (no dots), so `ns.name` is unambiguous. */
export function kubePodNetns(labId: string, namespace: string, name: string): string {
  return `${labPrefix(labId)}${namespace}.${name}`;
}

/** hostPort requests as the CNI `portMappings` capability (CNI CONVENTIONS.md), one per declared hostPort. */
export function portMappings(pod: Pod): RuntimeConfig {
  const mappings: { hostPort: number; containerPort: number; protocol: string; hostIP: string }[] = [];
  for (const container of pod.spec.containers ?? []) {
    for (const port of container.ports ?? []) {
      if (!port.hostPort) continue;
      mappings.push({ hostPort: port.hostPort, containerPort: port.containerPort, protocol: (port.protocol ?? "TCP").toLowerCase(), hostIP: port.hostIP ?? "" });
    }
  }
  return mappings.length > 0 ? { portMappings: mappings } : {};
}

/** The status a pod gets once its test server listens (kubelet's generateAPIPodStatus, trimmed). */
export function runningStatus(pod: Pod, podIp: string, hostIp: string, now: string): Pod["status"] {
  const since = (type: string): string => pod.status?.conditions?.find((c) => c.type === type && c.status === "True")?.lastTransitionTime ?? now;
  return {
    ...pod.status,
    phase: "Running",
    hostIP: hostIp,
    podIP: podIp,
    podIPs: [{ ip: podIp }],
    startTime: pod.status?.startTime ?? now,
    conditions: ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({ type, status: "True" as const, lastTransitionTime: since(type) })),
  };
}

/** A running pod whose server is gone (or whose readiness probe fails): Ready and ContainersReady False. */
export function notReadyStatus(pod: Pod, now: string, message = "the test server is not running"): Pod["status"] {
  const conditions = (pod.status?.conditions ?? []).map((c) =>
    c.type === "Ready" || c.type === "ContainersReady" ? { type: c.type, status: "False" as const, lastTransitionTime: c.status === "False" ? (c.lastTransitionTime ?? now) : now, reason: "ContainersNotReady", message } : c,
  );
  return { ...pod.status, conditions };
}

/**
 * A pod whose server runs but whose readiness probe has not passed: Running with its IP (so its
 * endpoints exist, not ready), Ready and ContainersReady False (kubelet's status manager with a
 * failing readiness result).
 */
export function probeNotReadyStatus(pod: Pod, podIp: string, hostIp: string, now: string, message: string): Pod["status"] {
  return notReadyStatus({ ...pod, status: runningStatus(pod, podIp, hostIp, now) }, now, message);
}

function hasProbeNotReadyStatus(pod: Pod, podIp: string, hostIp: string): boolean {
  return pod.status?.phase === "Running" && pod.status.podIP === podIp && pod.status.hostIP === hostIp && (pod.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "False");
}

function hasRunningStatus(pod: Pod, podIp: string, hostIp: string): boolean {
  return pod.status?.phase === "Running" && pod.status.podIP === podIp && pod.status.hostIP === hostIp && isPodReady(pod);
}

export interface ControllersOptions {
  /** The lab's state dir, <state root>/<id>. */
  labDir: string;
  log: (line: string) => void;
}

export class LabControllers {
  private readonly datastore: EtcdDatastore;
  private readonly lab: LabState;
  private readonly kubelet: LabState;
  private cache?: ObjectCache;
  private closers: (() => Promise<void>)[] = [];
  private server?: Server;
  private running = false;
  private again = false;
  private stopped = false;
  /** Pod uid → the create or remove task working on it. */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Pod uid → earliest time a failed create is tried again. */
  private readonly backoff = new Map<string, number>();
  /** Pod uid → when its dead test server is started again. */
  private readonly restartAt = new Map<string, number>();
  /** Its own etcd identity (role nodeLifecycleRole): expires dead nodes and deletes removed ones. */
  private readonly lifecycleStore: EtcdDatastore;
  private readonly nodeLifecycle: NodeLifecycleController;
  private lifecycleRunning = false;
  private lifecycleError = "";
  /** Pod uid → its readiness probe's results (pods with a readinessProbe only), reset when its server restarts. */
  private readonly probes = new Map<string, ProbeState>();
  /** Pod netns → IP of the running cluster DNS pods, let through the etcd guard. */
  private readonly dnsPodIps = new Map<string, string>();

  constructor(private readonly opts: ControllersOptions) {
    const lab = LabState.load(opts.labDir);
    if (!lab) throw new Error(`no lab state in ${opts.labDir}`);
    this.lab = lab;
    // Its own certificate and role (etcd-security.ts): the cluster config, objects and claims.
    this.datastore = new EtcdDatastore({ ...labEtcdDatastoreOptions(opts.labDir, "control-plane"), log: opts.log });
    this.lifecycleStore = new EtcdDatastore({ ...labEtcdDatastoreOptions(opts.labDir, "node-lifecycle"), log: opts.log });
    this.nodeLifecycle = new NodeLifecycleController(this.lifecycleStore, opts.log);
    const dir = kubeletDir(opts.labDir);
    const existing = LabState.load(dir);
    this.kubelet = existing ?? LabState.create(dir, { id: lab.data.id, nodes: lab.data.nodes, podsPerNode: 0, network: lab.data.network });
    for (const node of lab.data.nodeRecords) if (!this.kubelet.node(node.name)) this.kubelet.recordNode(node);
    mkdirSync(join(dir, "logs"), { recursive: true });
    mkdirSync(join(dir, "ready"), { recursive: true });
  }

  async start(): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const config = await this.datastore.ensureClusterConfig(labClusterConfig(this.lab.data.backend, this.lab.data.backendOptions));
        this.opts.log(`cluster config: services ${config.serviceCidr}, load balancers ${(config.loadBalancerCidrs ?? []).join(",") || "none"}`);
        break;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`etcd did not answer: ${(error as Error).message}`);
        await sleep(200);
      }
    }
    writeFileSync(controllersReadyFile(this.opts.labDir), `${process.pid}\n`);
    await this.listen();
    const watch = await watchIntoCache(this.datastore.objects, OBJECT_KINDS, (cache) => {
      for (const kind of OBJECT_KINDS) cache.onChange(kind, () => this.trigger());
    });
    this.cache = watch.cache;
    this.closers.push(() => watch.close());
    const nodeWatch = await this.datastore.watch({
      onChange: () => {
        this.trigger();
        this.runNodeLifecycle();
      },
    });
    this.closers.push(() => nodeWatch.close());
    // A periodic pass catches what no event announces: a test server becoming ready, a dead server,
    // a node's liveness lease running out (etcd deletes the key; the timer notices within a second).
    const timer = setInterval(() => {
      this.trigger();
      this.runNodeLifecycle();
    }, 1000);
    this.closers.push(async () => clearInterval(timer));
    this.trigger();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.server?.close();
    for (const close of this.closers) await close().catch(() => {});
    await this.datastore.close();
    await this.lifecycleStore.close();
    rmSync(apiSocketPath(this.opts.labDir), { force: true });
  }

  private async listen(): Promise<void> {
    const path = apiSocketPath(this.opts.labDir);
    rmSync(path, { force: true });
    const server = createServer((req, res) => void this.serve(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    this.server = server;
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let response: ApiResponse;
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const request = JSON.parse(Buffer.concat(chunks).toString("utf8")) as ApiRequest;
      const deps = { datastore: this.datastore, store: this.datastore.objects };
      if (request.verb === "apply") response = await applyRequest(request, deps);
      else if (request.verb === "delete") response = await deleteRequest(request, deps);
      else if (request.verb === "get") response = await getRequest(request, deps);
      else response = { exitCode: 2, stdout: "", stderr: `unknown request\n` };
    } catch (error) {
      response = { exitCode: 1, stdout: "", stderr: `error: ${(error as Error).message}\n` };
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(response));
    this.trigger();
  }

  /** Schedule a pass; passes never overlap, and a trigger during one runs another right after. */
  /** One node lifecycle pass at a time; a failure is logged once per distinct error and retried on the next tick. */
  private runNodeLifecycle(): void {
    if (this.lifecycleRunning || this.stopped) return;
    this.lifecycleRunning = true;
    this.nodeLifecycle
      .reconcile()
      .then(() => {
        this.lifecycleError = "";
      })
      .catch((error: unknown) => {
        const text = error instanceof Error ? error.message : String(error);
        if (text !== this.lifecycleError) this.opts.log(`node lifecycle: ${text}`);
        this.lifecycleError = text;
      })
      .finally(() => {
        this.lifecycleRunning = false;
      });
  }

  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void (async () => {
      do {
        this.again = false;
        try {
          await this.pass();
        } catch (error) {
          this.opts.log(`pass failed: ${(error as Error).message}`);
          await sleep(500);
          this.again = true;
        }
      } while (this.again && !this.stopped);
      this.running = false;
    })();
  }

  private async pass(): Promise<void> {
    const cache = this.cache;
    if (!cache?.synced) return;
    const snapshot = await this.datastore.snapshot();
    const nodes: NodeInfo[] = snapshot.nodes.filter((n) => n.phase === "active").map((n) => ({ name: n.name, ready: n.alive }));
    await this.commit(planDeploymentWrites(cache.list("Deployment"), cache.list("Pod"), nodes), "deployments");
    await this.commit(planPodScheduling(cache.list("Pod"), nodes), "scheduler");
    const lbClaims = await this.datastore.objects.claims(LOAD_BALANCER_IP_POOL);
    await this.commit(
      [...planEndpointSlices(cache.list("Service"), cache.list("Pod"), cache.list("EndpointSlice")), ...planLoadBalancerStatus(cache.list("Service"), lbClaims)],
      "endpointslices",
    );
    await this.kubeletPass(cache.list("Pod"));
  }

  /** Commit one controller's writes and wait until the cache has them, so the next plan sees them. */
  private async commit(writes: readonly ObjectWrite[], who: string): Promise<boolean> {
    if (writes.length === 0) return true;
    try {
      const revision = await this.datastore.objects.commit(writes);
      const deadline = Date.now() + 5000;
      while ((this.cache?.revision ?? 0) < revision && Date.now() < deadline) await sleep(5);
      return true;
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      this.opts.log(`${who}: ${error.message}; planning again`);
      this.again = true;
      return false;
    }
  }

  private async kubeletPass(pods: readonly Pod[]): Promise<void> {
    const wanted = new Map<string, Pod>();
    for (const pod of pods) {
      if (!pod.metadata.uid || !pod.spec.nodeName || !this.kubelet.node(pod.spec.nodeName) || pod.metadata.deletionTimestamp) continue;
      wanted.set(pod.metadata.uid, pod);
    }
    // Pods that are gone (or were replaced by a new object of the same name) go first.
    for (const record of [...this.kubelet.data.pods]) {
      if (!record.uid || wanted.has(record.uid) || this.inFlight.has(record.uid)) continue;
      this.track(record.uid, this.removeKubePod(record));
    }
    const statusWrites: Promise<boolean>[] = [];
    for (const [uid, pod] of wanted) {
      if (this.inFlight.has(uid)) continue;
      const record = this.kubelet.data.pods.find((p) => p.uid === uid);
      if (!record) {
        if ((this.backoff.get(uid) ?? 0) > Date.now()) continue;
        const namespace = pod.metadata.namespace ?? "default";
        // A pod of the same name still being torn down holds the netns name: wait for it.
        if (this.kubelet.data.pods.some((p) => p.netns === kubePodNetns(this.lab.data.id, namespace, pod.metadata.name))) continue;
        this.track(uid, this.createKubePod(pod));
        continue;
      }
      const server = this.serverOf(record);
      if (!server || !isRecordedProcessAlive(server)) {
        // As a kubelet with a dead container: the pod is not Ready (its endpoints stop serving), and the
        // server is started again after a back-off.
        if (isPodReady(pod)) {
          this.opts.log(`pod ${namespace(pod)}/${pod.metadata.name}: NotReady (test server pid ${server?.pid ?? "?"} is gone)`);
          statusWrites.push(this.commit([{ op: "update", object: { ...pod, status: notReadyStatus(pod, new Date().toISOString()) } }], `status ${pod.metadata.name}`));
        }
        const due = this.restartAt.get(uid);
        if (due === undefined) {
          this.opts.log(`pod ${namespace(pod)}/${pod.metadata.name}: test server not running; starting it again in ${SERVER_RESTART_MS} ms`);
          this.restartAt.set(uid, Date.now() + SERVER_RESTART_MS);
          continue;
        }
        if (due > Date.now()) continue;
        this.restartAt.delete(uid);
        if (server) this.kubelet.forgetProcess(server);
        rmSync(this.readyFileOf(uid), { force: true });
        this.probes.delete(uid);
        this.startServer(pod, record);
        continue;
      }
      const probe = readinessProbeOf(pod);
      if (probe && record.ip) {
        const hostIp = this.kubelet.node(record.node)?.ip ?? "";
        const state = this.probeReadiness(uid, pod, record, probe);
        if (state.ready ? hasRunningStatus(pod, record.ip, hostIp) : hasProbeNotReadyStatus(pod, record.ip, hostIp)) continue;
        const now = new Date().toISOString();
        if (isPodReady(pod) && !state.ready) this.opts.log(`pod ${namespace(pod)}/${pod.metadata.name}: NotReady (${state.detail})`);
        const status = state.ready ? runningStatus(pod, record.ip, hostIp, now) : probeNotReadyStatus(pod, record.ip, hostIp, now, `readiness probe: ${state.detail}`);
        statusWrites.push(this.commit([{ op: "update", object: { ...pod, status } }], `status ${pod.metadata.name}`));
        continue;
      }
      if (!existsSync(this.readyFileOf(uid)) || !record.ip) continue;
      const hostIp = this.kubelet.node(record.node)?.ip ?? "";
      if (hasRunningStatus(pod, record.ip, hostIp)) continue;
      const updated: Pod = { ...pod, status: runningStatus(pod, record.ip, hostIp, new Date().toISOString()) };
      statusWrites.push(this.commit([{ op: "update", object: updated }], `status ${pod.metadata.name}`));
    }
    await Promise.all(statusWrites);
  }

  /**
   * The pod's probe state, running the probe in the background when it is due (from the pod's node,
   * as a kubelet probes: the node's namespace reaches its pods' IPs). A changed result triggers a pass.
   */
  private probeReadiness(uid: string, pod: Pod, record: PodRecord, probe: ReadinessProbe): ProbeState | { ready: false; detail: string } {
    if (probe.kind === "unsupported") return { ready: false, detail: probe.reason };
    let state = this.probes.get(uid);
    if (!state) this.probes.set(uid, (state = new ProbeState(probe, Date.now())));
    const node = this.kubelet.node(record.node);
    if (state.running || Date.now() < state.nextAt || !node || !record.ip) return state;
    state.running = true;
    const current = state;
    void runCommand(argvInNamedNetns(node.netns, probeCommand(probe, record.ip)), { timeoutMs: probe.timeoutMs + 2000 })
      .then(probeOutcome, (error: unknown) => ({ ok: false, detail: (error as Error).message }))
      .then(({ ok, detail }) => {
        current.running = false;
        if (current.observe(ok, detail, Date.now())) {
          this.opts.log(`pod ${namespace(pod)}/${pod.metadata.name}: readiness probe ${ok ? "passed" : "failed"} (${detail})`);
          this.trigger();
        }
      });
    return state;
  }

  private track(uid: string, task: Promise<void>): void {
    this.inFlight.set(uid, task);
    void task.finally(() => {
      this.inFlight.delete(uid);
      this.trigger();
    });
  }

  private serverOf(record: PodRecord): ProcessRecord | undefined {
    return this.kubelet.data.processes.find((p) => p.netns === record.netns && p.role.startsWith("server "));
  }

  private get etcNetns(): EtcNetnsRecord {
    this.kubelet.data.etcNetns ??= { createdRoot: false, dirs: [] };
    return this.kubelet.data.etcNetns;
  }

  /**
   * Pods are kept from etcd on every node (etcd-security.ts), but cluster DNS must watch it, as CoreDNS
   * watches the API server: its pods' addresses are let through, and only theirs.
   */
  private async syncEtcdGuards(): Promise<void> {
    for (const record of this.kubelet.data.pods) {
      const pod = this.cache?.list("Pod").find((p) => p.metadata.uid === record.uid);
      if (pod && isDnsPod(pod) && record.ip) this.dnsPodIps.set(record.netns, record.ip);
    }
    const allowed = [...this.dnsPodIps.values()].sort();
    for (const node of this.kubelet.data.nodeRecords) await syncTable(etcdGuardTable(allowed), namedNetnsPath(node.netns));
  }

  private readyFileOf(uid: string): string {
    return join(this.kubelet.dir, "ready", `${uid}.json`);
  }

  private async createKubePod(pod: Pod): Promise<void> {
    const ns = namespace(pod);
    const label = `${ns}/${pod.metadata.name}`;
    const node = this.kubelet.node(pod.spec.nodeName!)!;
    const uid = pod.metadata.uid!;
    try {
      const network = await nodeNetworkState(node);
      if (!network.ready) throw new Error(`node ${node.name} network not ready: ${network.reason}`);
      const started = performance.now();
      const record = await addPod(
        this.kubelet,
        { name: pod.metadata.name, namespace: ns, uid, node: node.name, netns: kubePodNetns(this.lab.data.id, ns, pod.metadata.name), containerId: uid },
        network.list,
        CNI_PATH,
        portMappings(pod),
      );
      this.opts.log(`pod ${label}: ${record.ip} on ${node.name} (ADD ${Math.round(performance.now() - started)} ms)`);
      writePodResolvConf(this.etcNetns, () => this.kubelet.save(), record.netns, ns);
      if (isDnsPod(pod)) await this.syncEtcdGuards();
      this.startServer(pod, record);
      this.backoff.delete(uid);
    } catch (error) {
      this.opts.log(`pod ${label}: ${(error as Error).message}`);
      this.backoff.set(uid, Date.now() + 2000);
      const record = this.kubelet.data.pods.find((p) => p.uid === uid);
      if (record) await this.removeKubePod(record).catch((e: unknown) => this.opts.log(`pod ${label}: cleanup: ${(e as Error).message}`));
    }
  }

  private startServer(pod: Pod, record: PodRecord): void {
    const readyFile = this.readyFileOf(record.uid!);
    // A `podnet/dns` pod runs cluster DNS on its pod IP with the lab's dns certificate, forwarding to
    // the external host's upstream zone. Its /ready (and /metrics) listens on the pod's IP, where the
    // pod's readinessProbe reaches it from the node, as CoreDNS's :8181/ready.
    const command = isDnsPod(pod)
      ? [
          process.execPath, ...DNS_NODE_FLAGS, PODNET_CLI, "dns", ...labEtcdFlags(this.opts.labDir, "dns", true),
          "--listen", `${record.ip}:53`, "--upstream", `${EXTERNAL_IP}:53`, "--metrics", `${record.ip}:${DNS_METRICS_PORT}`, "--ready-file", readyFile,
        ]
      : // The script by its place in the checkout: a bundled CLI has no test-server.mjs beside it.
        [process.execPath, TEST_SERVER, ...testServerArgs(pod, readyFile).slice(1)];
    const process_ = this.kubelet.recordProcess({
      role: `server ${namespace(pod)}/${pod.metadata.name}`,
      netns: record.netns,
      argv: argvInNamedNetns(record.netns, command),
      log: join(this.kubelet.dir, "logs", `${namespace(pod)}.${pod.metadata.name}.log`),
    });
    spawnDetached(process_, isDnsPod(pod) ? { ...probeEnv(), ...DNS_ENV } : probeEnv());
    this.kubelet.save();
  }

  /** Stop the pod's processes by PID (and anything else left in its netns), CNI DEL, delete the netns. */
  private async removeKubePod(record: PodRecord): Promise<void> {
    const label = `${record.namespace ?? "default"}/${record.name}`;
    for (const server of this.kubelet.data.processes.filter((p) => p.netns === record.netns)) {
      await stopRecordedProcess(server, 1000);
      this.kubelet.forgetProcess(server);
    }
    const inode = namedNetnsInode(record.netns);
    if (inode !== undefined) await stopPids(pidsInNamespaces(new Set([inode])));
    const problems = await removePod(this.kubelet, record.name, CNI_PATH, record.namespace);
    if (record.uid) {
      rmSync(this.readyFileOf(record.uid), { force: true });
      this.probes.delete(record.uid);
    }
    removePodResolvConf(this.etcNetns, () => this.kubelet.save(), record.netns);
    if (this.dnsPodIps.delete(record.netns)) await this.syncEtcdGuards();
    this.opts.log(`pod ${label}: removed${problems.length > 0 ? ` (${problems.join("; ")})` : ""}`);
  }
}

function namespace(pod: Pod): string {
  return pod.metadata.namespace ?? "default";
}

/** `podnet lab controllers`: run until SIGTERM/SIGINT. */
export async function runControllersProcess(labDir: string): Promise<number> {
  const log = (line: string): void => {
    process.stdout.write(`${new Date().toISOString()} ${line}\n`);
  };
  const controllers = new LabControllers({ labDir, log });
  await controllers.start();
  log(`controllers running (pid ${process.pid}), API on ${apiSocketPath(labDir)}`);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  log("stopping");
  await controllers.stop();
  return 0;
}

/** For `lab down` and tests: the kubelet's recorded state, if any. */
export function loadKubeletState(labDir: string): LabState | undefined {
  return LabState.load(kubeletDir(labDir));
}

/** Remove a stale API socket file (the controllers process died without cleaning up). */
export function removeApiSocket(labDir: string): void {
  try {
    unlinkSync(apiSocketPath(labDir));
  } catch {
    // gone already
  }
}

export function readControllersReady(labDir: string): number | undefined {
  try {
    return Number(readFileSync(controllersReadyFile(labDir), "utf8").trim());
  } catch {
    return undefined;
  }
}
