// `podnet agent …` and `podnet node …`: flag parsing and wiring only; the work is in agent.ts and the datastore.

import { hostname } from "node:os";
import { isAbsolute, resolve as resolvePath } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_CLUSTER_CONFIG, type ClusterConfig } from "../datastore/datastore.ts";
import { EtcdDatastore, etcdDatastoreFor } from "../datastore/etcd-datastore.ts";
import { ETCD_CLIENT_FLAGS, ETCD_CLIENT_USAGE, EtcdFlagError, explainEtcdError, insecureWarning, parseEtcdConnection, type EtcdConnection } from "../datastore/etcd-client-options.ts";
import { missingAcks } from "../datastore/node-lifecycle.ts";
import type { ObjectStore } from "../datastore/objects.ts";
import { isIpv4 } from "../net/address.ts";
import { NodeAgent } from "./agent.ts";
import { BACKEND_FACTORIES } from "./backends.ts";
import { DEFAULT_READY_FILE } from "./conflist.ts";
import { injectFaults, parseFaults } from "./faults.ts";
import type { AgentInputs } from "./inputs.ts";
import { EtcdGuardReconciler } from "./etcd-guard.ts";
import { MasqueradeReconciler } from "./masquerade-reconciler.ts";
import { NftMasquerade } from "./masquerade.ts";
import { AgentMetrics, serveHealthAndMetrics } from "./metrics.ts";
import { NetlinkOverlayKernel } from "./overlay-kernel.ts";
import { NetlinkRouteTable } from "./route-table.ts";
import { RoutesReconciler } from "./routes-reconciler.ts";
import { ServicesReconciler } from "./services-reconciler.ts";
import { StartupFullSync } from "./services-startup.ts";
import type { InputHub } from "./reconciler.ts";

const AGENT_USAGE = `usage: podnet agent --node-ip IP --etcd URL[,URL…] [options]

Runs in the node's network namespace: registers the node, leases its pod subnet, programs routes to
every other node, masquerades pod traffic leaving the cluster, and writes the CNI conflist when ready.

  --name NAME              node name (default: the host name)
  --node-ip IP             this node's underlay IP, the gateway peers route our pod subnet through
${ETCD_CLIENT_USAGE}  --etcd-prefix PREFIX     key prefix in etcd (default /podnet/)
  --allow-pods-to-etcd     do not drop pod traffic to the etcd endpoints (by default the node does)
  --cni-conf-dir DIR       where to write 10-podnet.conflist (default /etc/cni/net.d)
  --ipam-data-dir DIR      IPAM state dir written into the conflist (default /var/lib/cni/podnet)
  --ready-file PATH        kept while the node's network is in place; the plugin's STATUS is NotReady
                           (50) without it. On a tmpfs, so a reboot clears it (default /run/podnet/agent.ready)
  --cni-version V          cniVersion of the conflist: 1.1.0 (default), or 1.0.0 for runtimes whose
                           libcni predates CNI 1.1 (podman 4, containerd 1.6)
  --cni-service-socket P   the socket of this node's \`podnet serve\` (an absolute path), named in the
                           conflist: the plugin then hands its calls to that resident service, and does
                           the work itself whenever the service is not there
  --bridge NAME            pod bridge (default cni0)
  --mtu N                  pod MTU (default: the backend's; host-gw: the MTU of the interface holding --node-ip)
  --listen ADDR            health and metrics: HOST:PORT, /path/to/socket, or "none" (default 127.0.0.1:9650)
  --resync-interval-ms N   kernel resync period (default 500)
  --datastore-refresh-ms N full datastore re-read period without events (default 10000)
  cluster settings, used only if the cluster has none yet:
  --cluster-cidr CIDR      (default ${DEFAULT_CLUSTER_CONFIG.clusterCidr})
  --subnet-length N        (default ${DEFAULT_CLUSTER_CONFIG.subnetLength})
  --backend NAME           (default ${DEFAULT_CLUSTER_CONFIG.backend})
  --backend-options JSON   options of that backend, e.g. '{"vni":1,"directRouting":true}' for vxlan
  --lease-ttl SECONDS      liveness lease TTL = grace period before a silent node is removed (default ${DEFAULT_CLUSTER_CONFIG.nodeLeaseTtlSeconds})
`;

const NODE_USAGE = `usage: podnet node list --etcd URLS [etcd options] [--etcd-prefix P]
       podnet node remove NAME --etcd URLS [etcd options] [--etcd-prefix P] [--timeout SECONDS]

${ETCD_CLIENT_USAGE}
remove marks the node leaving; every live node withdraws its routes to it and acknowledges; then the
record is deleted and its subnet freed. It waits up to --timeout (default 30) for that; if the wait
runs out the removal stays in progress and the agents complete it.
`;

function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} podnet-agent: ${message}\n`);
}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(text)}`);
  return value;
}

class UsageError extends Error {}

function etcdConnection(values: Parameters<typeof parseEtcdConnection>[0]): EtcdConnection {
  try {
    return parseEtcdConnection(values);
  } catch (err) {
    if (err instanceof EtcdFlagError) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * `store`, whose watches start once `first` has settled: the agent's own list of every Service and
 * EndpointSlice waits for the services startup child's list of them (StartupFullSync.listed).
 */
function listingAfter(first: Promise<void>, store: ObjectStore): ObjectStore {
  return {
    get: (kind, namespace, name) => store.get(kind, namespace, name),
    list: (kind, namespace) => store.list(kind, namespace),
    claims: (pool) => store.claims(pool),
    commit: (writes) => store.commit(writes),
    watchObjects: async (kinds, handler) => {
      await first;
      return store.watchObjects(kinds, handler);
    },
  };
}

function withStartupSync(services: ServicesReconciler, startup: StartupFullSync | undefined, hub: InputHub<AgentInputs>): ServicesReconciler {
  if (startup) services.useStartupSync(startup, hub);
  return services;
}

/** `early`: the startup child `podnet agent` started from argv before loading this module (StartupFullSync.startForAgentArgs). */
export async function runAgentCommand(argv: string[], early?: StartupFullSync): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        name: { type: "string" },
        "node-ip": { type: "string" },
        ...ETCD_CLIENT_FLAGS,
        "etcd-prefix": { type: "string" },
        "allow-pods-to-etcd": { type: "boolean" },
        "cni-conf-dir": { type: "string" },
        "ipam-data-dir": { type: "string" },
        "ready-file": { type: "string" },
        "cni-version": { type: "string" },
        "cni-service-socket": { type: "string" },
        bridge: { type: "string" },
        mtu: { type: "string" },
        listen: { type: "string" },
        "resync-interval-ms": { type: "string" },
        "datastore-refresh-ms": { type: "string" },
        "cluster-cidr": { type: "string" },
        "subnet-length": { type: "string" },
        backend: { type: "string" },
        "backend-options": { type: "string" },
        "lease-ttl": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`podnet agent: ${(err as Error).message}\n${AGENT_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(AGENT_USAGE);
    return 0;
  }

  let agent: NodeAgent;
  let metrics: AgentMetrics;
  let listen: string;
  let connection: EtcdConnection;
  let datastore: EtcdDatastore;
  try {
    const nodeIp = values["node-ip"];
    if (!nodeIp || !isIpv4(nodeIp)) throw new UsageError("--node-ip must be an IPv4 address");
    const clusterDefaults: ClusterConfig = {
      clusterCidr: values["cluster-cidr"] ?? DEFAULT_CLUSTER_CONFIG.clusterCidr,
      subnetLength: positiveInt("subnet-length", values["subnet-length"], DEFAULT_CLUSTER_CONFIG.subnetLength),
      backend: values.backend ?? DEFAULT_CLUSTER_CONFIG.backend,
      nodeLeaseTtlSeconds: positiveInt("lease-ttl", values["lease-ttl"], DEFAULT_CLUSTER_CONFIG.nodeLeaseTtlSeconds),
    };
    if (values["backend-options"] !== undefined) {
      let options: unknown;
      try {
        options = JSON.parse(values["backend-options"]);
      } catch {
        throw new UsageError(`--backend-options must be a JSON object, got ${JSON.stringify(values["backend-options"])}`);
      }
      if (typeof options !== "object" || options === null || Array.isArray(options)) {
        throw new UsageError(`--backend-options must be a JSON object, got ${JSON.stringify(values["backend-options"])}`);
      }
      clusterDefaults.backendOptions = { [clusterDefaults.backend]: options as Record<string, unknown> };
    }
    const ipamDataDir = resolvePath(values["ipam-data-dir"] ?? "/var/lib/cni/podnet");
    const cniVersion = values["cni-version"] ?? "1.1.0";
    if (cniVersion !== "1.1.0" && cniVersion !== "1.0.0") throw new UsageError(`--cni-version must be 1.1.0 or 1.0.0, got ${JSON.stringify(cniVersion)}`);
    const cniServiceSocket = values["cni-service-socket"];
    if (cniServiceSocket !== undefined && !isAbsolute(cniServiceSocket)) throw new UsageError(`--cni-service-socket must be an absolute path, got ${JSON.stringify(cniServiceSocket)}`);
    const name = values.name ?? hostname();
    const mtuOverride = values.mtu === undefined ? undefined : positiveInt("mtu", values.mtu, 0);
    const resyncIntervalMs = positiveInt("resync-interval-ms", values["resync-interval-ms"], 500);
    let faults;
    try {
      faults = parseFaults(process.env.PODNET_AGENT_FAULTS);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    connection = etcdConnection(values);
    datastore = etcdDatastoreFor(connection, values["etcd-prefix"], log);
    const agentMetrics = (metrics = new AgentMetrics());
    listen = values.listen ?? "127.0.0.1:9650";
    // The child process that makes a large first full sync (src/agent/services-startup.ts) lists
    // etcd itself, so its start-up and list overlap the agent's own (module loading, registration,
    // its --lite-mode list of every object) instead of coming after them; with few services the
    // first sync ends it unused. `podnet agent` normally started it already (`early`), from a
    // lenient read of the same flags; it is kept only if it was told what the strict parse says.
    const prefix = values["etcd-prefix"] ?? "/podnet/";
    let startupSync = early;
    if (startupSync !== undefined && !startupSync.sameConnection(connection, prefix)) {
      void startupSync.end();
      startupSync = undefined;
    }
    startupSync ??= StartupFullSync.start(connection, prefix);
    agent = new NodeAgent(
      {
        name,
        nodeIp,
        cniConfDir: values["cni-conf-dir"] ?? "/etc/cni/net.d",
        ipamDataDir,
        readyFile: resolvePath(values["ready-file"] ?? DEFAULT_READY_FILE),
        cniVersion,
        ...(cniServiceSocket ? { cniServiceSocket } : {}),
        bridge: values.bridge ?? "cni0",
        clusterDefaults,
        datastoreRefreshMs: positiveInt("datastore-refresh-ms", values["datastore-refresh-ms"], 10_000),
        log,
      },
      {
        datastore,
        objects: startupSync ? listingAfter(startupSync.listed(), datastore.objects) : datastore.objects,
        metrics: agentMetrics,
        // One reconciler per job; the service proxy and policy join this list (src/agent/README.md).
        reconcilers: (hub) =>
          injectFaults<AgentInputs>(
            [
              new RoutesReconciler(
                { factories: BACKEND_FACTORIES, env: { nodeName: name, nodeIp, routeTable: new NetlinkRouteTable(), overlay: new NetlinkOverlayKernel() }, hub, metrics: agentMetrics, log, ...(mtuOverride !== undefined ? { mtuOverride } : {}) },
                resyncIntervalMs,
              ),
              new MasqueradeReconciler(new NftMasquerade(), resyncIntervalMs, log),
              withStartupSync(new ServicesReconciler(name, resyncIntervalMs, log), startupSync, hub),
              ...(values["allow-pods-to-etcd"] ? [] : [new EtcdGuardReconciler(connection.endpoints, resyncIntervalMs * 20, log)]),
            ],
            faults,
            log,
          ),
      },
    );
  } catch (err) {
    void early?.end();
    if (err instanceof UsageError) {
      process.stderr.write(`podnet agent: ${err.message}\n${AGENT_USAGE}`);
      return 2;
    }
    throw err;
  }

  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping; routes, masquerading and conflist stay in place for running pods`);
    stop.abort();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const warning = insecureWarning(connection);
  if (warning) log(warning);
  // One read before the loop, so a refused certificate or role is said plainly once at start (the loop
  // then retries quietly with backoff).
  await datastore.client
    .get(`${values["etcd-prefix"] ?? "/podnet/"}config`)
    .string()
    .catch((err: unknown) => log(`etcd: ${explainEtcdError(err, connection)}`));
  const server = listen === "none" ? undefined : await serveHealthAndMetrics(listen, metrics, () => agent.health());
  if (server) log(`health and metrics on ${listen}`);
  try {
    // Both ends are orderly: stopped by a signal, or this node was removed from the cluster (logged by the agent).
    await agent.run(stop.signal);
    return 0;
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

export async function runNodeCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        ...ETCD_CLIENT_FLAGS,
        "etcd-prefix": { type: "string" },
        timeout: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    process.stderr.write(`podnet node: ${(err as Error).message}\n${NODE_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [verb, name, ...extra] = positionals;
  if (values.help) {
    process.stdout.write(NODE_USAGE);
    return 0;
  }
  let connection: EtcdConnection;
  let timeoutSeconds: number;
  try {
    connection = etcdConnection(values);
    timeoutSeconds = positiveInt("timeout", values.timeout, 30);
    if (verb === "remove" && (!name || extra.length > 0)) throw new UsageError("node remove takes exactly one NAME");
    if (verb === "list" && name !== undefined) throw new UsageError("node list takes no arguments");
    if (verb !== "remove" && verb !== "list") throw new UsageError(`unknown node command ${JSON.stringify(verb ?? "")}`);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`podnet node: ${err.message}\n${NODE_USAGE}`);
      return 2;
    }
    throw err;
  }

  const warning = insecureWarning(connection);
  if (warning) process.stderr.write(`podnet node: ${warning}\n`);
  const datastore = etcdDatastoreFor(connection, values["etcd-prefix"], log);
  try {
    if (verb === "list") {
      const snapshot = await datastore.snapshot();
      if (values.json) {
        process.stdout.write(`${JSON.stringify(snapshot, null, 2)}\n`);
        return 0;
      }
      process.stdout.write(`${"NAME".padEnd(16)} ${"NODE IP".padEnd(15)} ${"POD SUBNET".padEnd(18)} ${"PHASE".padEnd(8)} ALIVE\n`);
      for (const n of snapshot.nodes) {
        const phase = n.phase === "leaving" ? `leaving(${n.leavingReason ?? "?"})` : n.phase;
        process.stdout.write(`${n.name.padEnd(16)} ${n.nodeIp.padEnd(15)} ${n.podSubnet.padEnd(18)} ${phase.padEnd(8)} ${n.alive ? "yes" : "no"}\n`);
      }
      return 0;
    }
    return await removeNode(datastore, name!, timeoutSeconds);
  } catch (err) {
    process.stderr.write(`podnet node ${verb}: ${explainEtcdError(err, connection)}\n`);
    return 1;
  } finally {
    await datastore.close();
  }
}

async function removeNode(datastore: EtcdDatastore, name: string, timeoutSeconds: number): Promise<number> {
  let snapshot = await datastore.snapshot();
  const node = snapshot.nodes.find((n) => n.name === name);
  if (!node) {
    process.stderr.write(`podnet node remove: no node named ${name}\n`);
    return 1;
  }
  if (node.phase !== "leaving" || node.leavingReason !== "removed") {
    if (!(await datastore.markNodeLeaving(name, "removed"))) throw new Error(`node ${name} changed while being marked; try again`);
  }
  process.stdout.write(`node ${name} (${node.podSubnet}) marked leaving; waiting for peers to withdraw their routes\n`);
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    snapshot = await datastore.snapshot();
    const current = snapshot.nodes.find((n) => n.name === name);
    if (!current) {
      process.stdout.write(`node ${name} removed; subnet ${node.podSubnet} is free\n`);
      return 0;
    }
    const missing = missingAcks(snapshot, current);
    if (missing.length === 0 && (await datastore.finalizeNodeRemoval(name, current.revision))) continue;
    if (Date.now() > deadline) {
      process.stderr.write(`podnet node remove: timed out; still waiting for ${missing.join(", ") || "a final update"} (the agents will complete the removal)\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
