// `podnet dns`: flag parsing and wiring only; the server is server.ts.

import { ETCD_CLIENT_FLAGS, ETCD_CLIENT_USAGE, EtcdFlagError, insecureWarning, parseEtcdConnection, type EtcdConnection } from "../datastore/etcd-client-options.ts";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { isMainThread, parentPort, Worker } from "node:worker_threads";
import type { ObjectStore } from "../datastore/objects.ts";
import type { KubeObject } from "../k8s/types.ts";
import { parseHostPort } from "../net/endpoint.ts";
import { nameserversFromResolvConf, parseUpstream, type Upstream } from "./forward.ts";
import type { PodsMode } from "./index.ts";
import { serveHttp } from "./metrics.ts";
import { DnsServer } from "./server.ts";

export const DNS_USAGE = `usage: podnet dns --etcd URLS [options]
       podnet dns --objects FILE [options]

Cluster DNS: answers Kubernetes service and pod names (DNS spec schema 1.1.0) from an in-memory
index fed by the datastore watch, over UDP and TCP, and forwards every other name upstream.

${ETCD_CLIENT_USAGE}  --etcd-prefix PREFIX   key prefix in etcd (default /podnet/)
  --objects FILE         serve a fixed JSON array of objects instead of etcd (tests, benchmarks)
  --listen ADDR:PORT     where to answer, UDP and TCP (default 0.0.0.0:53)
  --zone DOMAIN          cluster domain (default cluster.local)
  --ttl SECONDS          TTL of cluster records (default 5)
  --upstream ADDR[:PORT] upstream server, repeatable or comma-separated (default: nameservers of
                         --resolv-conf)
  --resolv-conf PATH     where default upstreams come from (default /etc/resolv.conf)
  --forward-timeout MS   budget for one forwarded name across upstreams, then SERVFAIL (default 2000)
  --pods MODE            disabled (default), insecure or verified: a-b-c-d.<ns>.pod.<zone> records
  --no-autopath          do not answer search-path walks on the server
  --node-search DOMAINS  search domains the node adds after <zone> (comma-separated)
  --metrics ADDR:PORT    /metrics, /health and /ready over HTTP (default 127.0.0.1:9153; "none" to disable)
  --no-batch             move UDP one datagram per callback and send (dgram only), not in batches
                         (recvmmsg/sendmmsg); for comparison
  --ready-file PATH      write PATH (the pid) once /ready would say ready, remove it on exit (a
                         supervisor's readiness check without HTTP)
  --workers N            answer UDP on N threads sharing the port (SO_REUSEPORT), each with its own
                         watch and index; TCP, metrics and the loop probe stay on the first (default 1)
`;

/** Messages between the main thread and UDP worker threads. */
type WorkerMessage =
  | { kind: "probes"; names: [string, { host: string; port: number }][] }
  | { kind: "probe-seen"; name: string }
  | { kind: "disable"; upstream: { host: string; port: number }; reason: string }
  | { kind: "counts"; entries: [string, number][] }
  | { kind: "ready" };

class UsageError extends Error {}

function hostPort(flag: string, text: string): { host: string; port: number } {
  try {
    return parseHostPort(text);
  } catch (err) {
    throw new UsageError(`--${flag}: ${(err as Error).message}`);
  }
}

/** An ObjectStore over a fixed list: the watch delivers it once and never changes. */
function fixedStore(objects: KubeObject[]): ObjectStore {
  const byKind = (kind: string): KubeObject[] => objects.filter((o) => o.kind === kind);
  return {
    get: async () => undefined,
    list: async (kind) => ({ items: byKind(kind) as never[], revision: 1 }),
    claims: async () => new Map(),
    commit: async () => {
      throw new Error("--objects: the store is read-only");
    },
    watchObjects: async (kinds, handler) => {
      const lists: Record<string, KubeObject[]> = {};
      for (const kind of kinds) lists[kind] = byKind(kind);
      handler.onSync(lists, 1);
      return { close: async () => undefined };
    },
  };
}

export async function runDnsCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        ...ETCD_CLIENT_FLAGS,
        "etcd-prefix": { type: "string", default: "/podnet/" },
        objects: { type: "string" },
        listen: { type: "string", default: "0.0.0.0:53" },
        zone: { type: "string", default: "cluster.local" },
        ttl: { type: "string", default: "5" },
        upstream: { type: "string", multiple: true },
        "resolv-conf": { type: "string", default: "/etc/resolv.conf" },
        "forward-timeout": { type: "string", default: "2000" },
        pods: { type: "string", default: "disabled" },
        "no-autopath": { type: "boolean", default: false },
        "node-search": { type: "string" },
        metrics: { type: "string", default: "127.0.0.1:9153" },
        workers: { type: "string", default: "1" },
        "no-batch": { type: "boolean", default: false },
        "ready-file": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`podnet dns: ${(err as Error).message}\n${DNS_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(DNS_USAGE);
    return 0;
  }
  let server: DnsServer;
  let pool: Worker[] = [];
  let closeStore: () => Promise<void> = async () => undefined;
  try {
    if (!values.etcd === !values.objects) throw new UsageError("give exactly one of --etcd and --objects");
    const listen = hostPort("listen", values.listen);
    const ttl = Number(values.ttl);
    if (!Number.isInteger(ttl) || ttl < 0) throw new UsageError(`--ttl: a whole number of seconds, got ${JSON.stringify(values.ttl)}`);
    const timeout = Number(values["forward-timeout"]);
    if (!Number.isInteger(timeout) || timeout < 10) throw new UsageError(`--forward-timeout: milliseconds >= 10, got ${JSON.stringify(values["forward-timeout"])}`);
    const workers = Number(values.workers);
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new UsageError(`--workers: 1-64, got ${JSON.stringify(values.workers)}`);
    const pods = values.pods as PodsMode;
    if (!["disabled", "insecure", "verified"].includes(pods)) throw new UsageError(`--pods: disabled, insecure or verified, got ${JSON.stringify(values.pods)}`);
    let upstreams: Upstream[];
    if (values.upstream && values.upstream.length > 0) {
      upstreams = values.upstream.flatMap((u) => u.split(",")).filter((u) => u !== "").map((u) => {
        try {
          return parseUpstream(u);
        } catch (err) {
          throw new UsageError(`--upstream: ${(err as Error).message}`);
        }
      });
    } else {
      let text = "";
      try {
        text = readFileSync(values["resolv-conf"], "utf8");
      } catch (err) {
        throw new UsageError(`--resolv-conf: cannot read ${values["resolv-conf"]}: ${(err as Error).message}`);
      }
      upstreams = nameserversFromResolvConf(text);
    }
    let store: ObjectStore;
    if (values.objects) {
      let objects: unknown;
      try {
        objects = JSON.parse(readFileSync(values.objects, "utf8"));
      } catch (err) {
        throw new UsageError(`--objects: cannot read ${values.objects}: ${(err as Error).message}`);
      }
      if (!Array.isArray(objects)) throw new UsageError(`--objects: ${values.objects} must hold a JSON array of Kubernetes objects`);
      store = fixedStore(objects as KubeObject[]);
    } else {
      let connection: EtcdConnection;
      try {
        connection = parseEtcdConnection(values);
      } catch (err) {
        if (err instanceof EtcdFlagError) throw new UsageError(err.message);
        throw err;
      }
      const warning = isMainThread ? insecureWarning(connection) : undefined;
      if (warning) process.stderr.write(`${new Date().toISOString()} podnet-dns: ${warning}\n`);
      const { ReloadingEtcdClient } = await import("../datastore/etcd-client.ts");
      const { EtcdObjectStore } = await import("../datastore/etcd-objects.ts");
      // Loaded only here: a server fed from --objects never pays for etcd3 and grpc-js. The store lists
      // in pages, so no reply nears gRPC's 4 MiB limit; the client follows rotated certificate files
      // and the object watch moves to the new one.
      const client = new ReloadingEtcdClient(connection, {
        base: { dialTimeout: 3000 },
        log: (line) => process.stderr.write(`${new Date().toISOString()} podnet-dns: ${line}\n`),
      });
      store = new EtcdObjectStore(client, values["etcd-prefix"]);
      closeStore = async () => client.close();
    }
    server = new DnsServer({
      store,
      host: listen.host,
      port: listen.port,
      zone: values.zone,
      ttl,
      pods,
      upstreams,
      forwardTimeoutMs: timeout,
      autopath: !values["no-autopath"],
      nodeSearch: values["node-search"] ? values["node-search"].split(",") : [],
      reusePort: workers > 1 || !isMainThread,
      tcp: isMainThread,
      probe: isMainThread,
      batch: !values["no-batch"],
      log: (line) => process.stderr.write(`${new Date().toISOString()} podnet-${isMainThread ? "" : "worker-"}${line}\n`),
    });
    if (!isMainThread) return await serveAsWorker(server, closeStore);
    const metricsAddr = values.metrics === "none" ? undefined : hostPort("metrics", values.metrics);
    await server.start();
    if (metricsAddr) {
      await serveHttp(metricsAddr.host, metricsAddr.port, server.metrics, () => ({ ready: server.ready, services: server.index.serviceCount, upstreams: server.forwarder.activeUpstreams.length }));
    }
    pool = await startWorkers(server, workers - 1, args);
    if (values["ready-file"]) watchReadiness(server, values["ready-file"]);
    const { host, port } = server.address;
    process.stderr.write(`${new Date().toISOString()} podnet-dns: listening on ${host}:${port} (udp, tcp), zone ${server.zone}, upstreams ${upstreams.map((u) => `${u.host}:${u.port}`).join(",") || "none"}\n`);
  } catch (err) {
    await closeStore();
    if (err instanceof UsageError) {
      process.stderr.write(`podnet dns: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`podnet dns: ${(err as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  if (values["ready-file"]) rmSync(values["ready-file"], { force: true });
  await Promise.all(pool.map((w) => w.terminate()));
  await server.stop();
  await closeStore();
  process.exit(0);
}

/**
 * Start `count` worker threads running this same command (bin/podnet.js with the same flags): each
 * binds the UDP port with SO_REUSEPORT, so the kernel spreads clients over the threads. They report
 * their query counts for /metrics, and probe sightings so the loop guard sees every thread.
 */
async function startWorkers(server: DnsServer, count: number, args: string[]): Promise<Worker[]> {
  if (count === 0) return [];
  const script = process.argv[1];
  if (!script || !/podnet(\.js|\.mjs)?$/.test(script)) throw new Error("--workers: run through bin/podnet.js");
  const pool: Worker[] = [];
  const broadcast = (message: WorkerMessage): void => {
    for (const w of pool) w.postMessage(message);
  };
  server.onProbeSeen = (name) => server.probeReturned(name);
  const ready: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const worker = new Worker(script, { argv: ["dns", ...args], stdout: false, stderr: false });
    pool.push(worker);
    ready.push(
      new Promise((resolve, reject) => {
        worker.once("error", reject);
        worker.on("message", (message: WorkerMessage) => {
          if (message.kind === "ready") resolve();
          else if (message.kind === "counts") server.metrics.mergeWorker(i, message.entries);
          else if (message.kind === "probe-seen") server.probeReturned(message.name);
        });
      }),
    );
  }
  await Promise.all(ready);
  // Workers must know the probe names to recognise them, and follow every upstream taken out.
  const disabledSent = new Set<string>();
  const sync = (): void => {
    broadcast({ kind: "probes", names: [...server.probeNames].map(([name, u]) => [name, { host: u.host, port: u.port }]) });
    for (const [key, reason] of server.forwarder.disabledReasons) {
      if (disabledSent.has(key)) continue;
      disabledSent.add(key);
      broadcast({ kind: "disable", upstream: parseUpstream(key), reason });
    }
  };
  sync();
  setInterval(sync, 500).unref();
  return pool;
}

/** The body of a worker thread: answer UDP until the main thread ends us. */
async function serveAsWorker(server: DnsServer, closeStore: () => Promise<void>): Promise<number> {
  const port = parentPort;
  if (!port) throw new Error("not a worker thread");
  await server.start();
  await server.whenSynced();
  server.onProbeSeen = (name) => port.postMessage({ kind: "probe-seen", name } satisfies WorkerMessage);
  port.on("message", (message: WorkerMessage) => {
    if (message.kind === "probes") for (const [name, u] of message.names) server.probeNames.set(name, u);
    else if (message.kind === "disable") server.forwarder.disable(message.upstream, message.reason);
  });
  setInterval(() => port.postMessage({ kind: "counts", entries: server.metrics.queryCountEntries() } satisfies WorkerMessage), 1000).unref();
  port.postMessage({ kind: "ready" } satisfies WorkerMessage);
  await new Promise<void>((resolve) => port.once("close", resolve));
  await server.stop();
  await closeStore();
  return 0;
}

/** Keep `path` in step with server.ready: present (holding the pid) while ready, absent otherwise. */
function watchReadiness(server: DnsServer, path: string): void {
  let written = false;
  const check = (): void => {
    if (server.ready === written) return;
    if (server.ready) writeFileSync(path, `${process.pid}\n`);
    else rmSync(path, { force: true });
    written = server.ready;
  };
  check();
  setInterval(check, 100).unref();
}
