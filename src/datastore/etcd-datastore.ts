// The Datastore on etcd v3, through the etcd3 client.
//
// Keys (all under one prefix, default /podnet/):
//   config                   JSON ClusterConfig (cluster-config.ts)
//   nodes/, subnets/, alive/, acks/   node state (etcd-subnet-registry.ts; the policy is subnet-policy.ts)
//   objects/, claims/        cluster objects (etcd-objects.ts); invisible to the node watch and snapshots
//
// Every multi-key change is one etcd transaction guarded by compare clauses, and the node keys are read
// in one transaction, so each snapshot is consistent at a single revision.

import type { Etcd3, Lease, Watcher } from "etcd3";
import { ReloadingEtcdClient } from "./etcd-client.ts";
import type { EtcdConnection, EtcdTlsFiles } from "./etcd-client-options.ts";
import {
  type ClusterConfig,
  type ClusterSnapshot,
  type Datastore,
  type DatastoreWatch,
  type LeavingReason,
  type NodeLease,
  type NodeRecord,
  type NodeRegistrationRequest,
  type NodeView,
  type WatchListener,
} from "./datastore.ts";
import { parseClusterConfig, resolveClusterConfig } from "./cluster-config.ts";
import { EtcdObjectStore } from "./etcd-objects.ts";
import { EtcdSubnetRegistry, parseNodeRecord } from "./etcd-subnet-registry.ts";
import { finalizeNodeRemoval, markNodeLeaving, registerNode } from "./subnet-policy.ts";
import { KeyMirror, type MirroredKey } from "./key-mirror.ts";

export interface EtcdDatastoreOptions {
  endpoints: string[];
  /** Key prefix; default "/podnet/". Tests use a unique one per case. */
  prefix?: string;
  /** Per-request deadline in ms; default 3000, so a dead etcd is noticed quickly and retried by the caller. */
  requestTimeoutMs?: number;
  /** How many times registerNode retries after losing an allocation race; default 50. */
  maxRegistrationAttempts?: number;
  /** Mutual TLS: the files are re-read when they change (etcd-client.ts). Without it, https uses the system CAs. */
  tls?: EtcdTlsFiles;
  /** Without `tls`: only the CA that verifies etcd's server certificate (password auth). */
  caFile?: string;
  /** etcd user and password file; without it, etcd takes the client certificate's CN as the user. */
  auth?: { username: string; passwordFile: string };
  /** How often the certificate files are checked for a rotation; default 2000 ms. */
  credentialCheckMs?: number;
  log?: (line: string) => void;
}

/** The datastore a command's etcd flags (parseEtcdConnection) describe, under `prefix` (default "/podnet/"). */
export function etcdDatastoreFor(connection: EtcdConnection, prefix: string | undefined, log?: (line: string) => void): EtcdDatastore {
  return new EtcdDatastore({
    endpoints: connection.endpoints,
    prefix: prefix ?? "/podnet/",
    ...(connection.tls ? { tls: connection.tls } : {}),
    ...(connection.caFile ? { caFile: connection.caFile } : {}),
    ...(connection.auth ? { auth: connection.auth } : {}),
    ...(log ? { log } : {}),
  });
}

export class EtcdDatastore implements Datastore {
  /** The connection; its client is replaced when the certificate files rotate. */
  readonly connection: ReloadingEtcdClient;
  /** Cluster objects (Kubernetes kinds) and claims, on the same client and prefix. */
  readonly objects: EtcdObjectStore;
  /** Node records and subnet claims; the policy over them is subnet-policy.ts. */
  private readonly registry: EtcdSubnetRegistry;
  private readonly prefix: string;
  private readonly maxAttempts: number;

  constructor(opts: EtcdDatastoreOptions) {
    this.prefix = opts.prefix ?? "/podnet/";
    this.maxAttempts = opts.maxRegistrationAttempts ?? 50;
    const timeout = opts.requestTimeoutMs ?? 3000;
    this.connection = new ReloadingEtcdClient(
      { endpoints: opts.endpoints, ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.caFile ? { caFile: opts.caFile } : {}), ...(opts.auth ? { auth: opts.auth } : {}) },
      {
        base: {
          dialTimeout: timeout,
          defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
          // gRPC's default 4 MiB cap on a received message is below one list of 10,000 Services and
          // their EndpointSlices (the agent's object watch starts with such a list): the call failed
          // with RESOURCE_EXHAUSTED and the client's circuit breaker then refused every retry.
          grpcOptions: { "grpc.max_receive_message_length": 512 * 1024 * 1024 },
        },
        ...(opts.credentialCheckMs !== undefined ? { checkIntervalMs: opts.credentialCheckMs } : {}),
        ...(opts.log ? { log: opts.log } : {}),
      },
    );
    this.objects = new EtcdObjectStore(this.connection, this.prefix);
    this.registry = new EtcdSubnetRegistry(this.connection, this.prefix, (result) => this.wrote(result));
  }

  /** The current etcd3 client (a new one after a certificate rotation). */
  get client(): Etcd3 {
    return this.connection.client;
  }

  /** The mirror the open watch keeps, if any. */
  private mirror: KeyMirror | undefined;
  /** Revision of this client's latest write: a mirror behind it would not show the write yet. */
  private lastWriteRevision = 0;

  private wrote(result: { header: { revision: string | number } }): void {
    this.lastWriteRevision = Math.max(this.lastWriteRevision, Number(result.header.revision));
  }

  private key(...parts: string[]): string {
    return this.prefix + parts.join("/");
  }

  async ensureClusterConfig(defaults: ClusterConfig): Promise<ClusterConfig> {
    const resolved = resolveClusterConfig(defaults);
    const configKey = this.key("config");
    // Read first: an agent's etcd role may read the config but not create it (the control plane does).
    const existing = await this.client.get(configKey).string();
    if (existing !== null) return parseClusterConfig(existing);
    this.wrote(await this.client.if(configKey, "Create", "==", 0).then(this.client.put(configKey).value(JSON.stringify(resolved))).commit());
    const stored = await this.client.get(configKey).string();
    if (stored === null) throw new Error("cluster config vanished right after it was written");
    return parseClusterConfig(stored);
  }

  async snapshot(options: { fresh?: boolean } = {}): Promise<ClusterSnapshot> {
    const mirror = this.mirror;
    if (!options.fresh && mirror?.servesReadsAfter(this.lastWriteRevision)) {
      return this.buildSnapshot(mirror.revision, mirror.entries());
    }
    const epoch = mirror?.epoch;
    // The node keys only (not the cluster objects beside them), read in one transaction: one revision.
    const response = await this.client
      .if(this.key("config"), "Create", ">", -1) // always holds: etcd3 starts a transaction with a compare
      .then(
        this.client.get(this.key("config")),
        ...SNAPSHOT_DIRS.map((dir) => this.client.getAll().prefix(this.key(dir))),
      )
      .commit();
    const revision = Number(response.header.revision);
    const kvs = response.responses
      .flatMap((r) => r.response_range?.kvs ?? [])
      .map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) }));
    // A full read is the mirror's new baseline: events up to its revision are already in it.
    if (mirror && epoch !== undefined) mirror.resetTo(revision, kvs, epoch);
    return this.buildSnapshot(revision, kvs);
  }

  private buildSnapshot(revision: number, kvs: Iterable<MirroredKey>): ClusterSnapshot {
    let config: ClusterConfig | undefined;
    const records = new Map<string, MirroredKey>();
    const alive = new Set<string>();
    const acks = new Map<string, string[]>();
    for (const kv of kvs) {
      const rest = kv.key.slice(this.prefix.length);
      const value = kv.value;
      const [kind, first, second] = rest.split("/");
      if (kind === "config" && first === undefined) config = parseClusterConfig(value);
      else if (kind === "nodes" && first !== undefined) records.set(first, kv);
      else if (kind === "alive" && first !== undefined) alive.add(first);
      else if (kind === "acks" && first !== undefined && second !== undefined) acks.set(first, [...(acks.get(first) ?? []), second]);
    }
    const nodes: NodeView[] = [...records.values()]
      .map((kv) => nodeView(kv, alive, acks))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { revision, config, nodes };
  }

  async registerNode(request: NodeRegistrationRequest): Promise<NodeLease> {
    const configText = await this.client.get(this.key("config")).string();
    if (configText === null) throw new Error("no cluster config in the datastore; call ensureClusterConfig first");
    const config = parseClusterConfig(configText);
    const lease = this.client.lease(config.nodeLeaseTtlSeconds, { autoKeepAlive: true });
    let leaseId: string;
    try {
      leaseId = await lease.grant();
    } catch (err) {
      lease.release();
      throw err;
    }
    try {
      const record = await registerNode(this.registry, config, request, leaseId, { maxAttempts: this.maxAttempts });
      return new EtcdNodeLease(record, lease);
    } catch (err) {
      await lease.revoke().catch(() => undefined);
      throw err;
    }
  }

  markNodeLeaving(name: string, reason: LeavingReason, expectedRevision?: number): Promise<boolean> {
    return markNodeLeaving(this.registry, name, reason, expectedRevision);
  }

  ackNodeLeaving(leaving: string, acker: string): Promise<void> {
    return this.registry.addAck(leaving, acker);
  }

  finalizeNodeRemoval(name: string, expectedRevision: number): Promise<boolean> {
    return finalizeNodeRemoval(this.registry, name, expectedRevision);
  }

  /**
   * Watches the node state (one stream over the prefix; cluster objects and claims on it are
   * dropped here, see watchObjects for those). The events also keep a local mirror of the keys current, so that a
   * snapshot after a change costs no round trip and no re-decoding of every node: with 1,000 nodes
   * that is what kept the agent's change latency and memory down. The mirror serves reads only
   * while the stream is up and after a full read gave it a baseline; etcd3 resumes a broken stream
   * from the last revision it saw, and a watch that etcd cancels (its revision was compacted away)
   * is created anew.
   */
  async watch(listener: WatchListener): Promise<DatastoreWatch> {
    const mirror = new KeyMirror();
    this.mirror = mirror;
    let closed = false;
    let current: Watcher | undefined;
    const open = async (): Promise<void> => {
      const watcher = await this.client.watch().prefix(this.prefix).create();
      if (closed) {
        await watcher.cancel();
        return;
      }
      current = watcher;
      mirror.connected();
      watcher.on("data", (res) => {
        if (current !== watcher) return; // a stream left behind by a certificate rotation
        let nodeChanges = 0;
        for (const event of res.events) {
          const key = event.kv.key.toString();
          // Cluster objects and claims share the prefix (and so the stream) but are no node state:
          // an EndpointSlice change must not make an agent re-plan its routes.
          const relativeKey = key.slice(this.prefix.length);
          if (!isNodeKey(relativeKey)) continue;
          nodeChanges++;
          // Subnet claims change only together with a node record; a snapshot does not read them.
          if (!isSnapshotKey(relativeKey)) continue;
          const modRevision = Number(event.kv.mod_revision);
          if (event.type === "Put") mirror.put(key, event.kv.value.toString(), modRevision);
          else mirror.delete(key, modRevision);
        }
        // A response's header names the store's current revision even while etcd is still catching a
        // slow watcher up in batches: only an empty response (a progress notice, sent to a watcher that
        // is caught up) says that nothing up to it is missing.
        if (res.events.length === 0) mirror.advance(Number(res.header.revision));
        if (nodeChanges > 0) listener.onChange();
      });
      watcher.on("connected", () => {
        if (current !== watcher) return;
        mirror.connected();
        listener.onConnection?.(true);
        listener.onChange();
      });
      watcher.on("disconnected", () => {
        if (current !== watcher) return;
        mirror.disconnected();
        listener.onConnection?.(false);
      });
      watcher.on("error", () => {
        // The watch is cancelled for good (e.g. compaction): make a new one and read afresh.
        mirror.disconnected();
        listener.onConnection?.(false);
        void watcher.cancel().catch(() => undefined);
        if (current === watcher) current = undefined;
        const retry = (delay: number) =>
          setTimeout(() => {
            if (closed) return;
            open().then(
              () => listener.onChange(),
              () => retry(Math.min(delay * 2, 5000)),
            );
          }, delay).unref();
        retry(500);
      });
    };
    await open();
    // New certificates: move the stream to the new client (the old one's would fail its next
    // reconnect); the mirror serves no reads until the new stream is up and a full read is done.
    const stopFollowing = this.connection.onReplaced(() => {
      const old = current;
      current = undefined;
      mirror.disconnected();
      void old?.cancel().catch(() => undefined);
      const reopen = (delay: number) =>
        setTimeout(() => {
          if (closed) return;
          open().then(
            () => listener.onChange(),
            () => reopen(Math.min(delay * 2, 5000)),
          );
        }, delay).unref();
      reopen(0);
    });
    return {
      close: async () => {
        closed = true;
        stopFollowing();
        if (this.mirror === mirror) this.mirror = undefined;
        await current?.cancel();
      },
    };
  }

  async close(): Promise<void> {
    this.connection.close();
  }
}

class EtcdNodeLease implements NodeLease {
  private lostListeners: ((reason: Error) => void)[] = [];
  private lost: Error | undefined;

  constructor(
    readonly node: NodeRecord,
    private readonly lease: Lease,
  ) {
    lease.on("lost", (err) => {
      this.lost = err;
      for (const listener of this.lostListeners) listener(err);
    });
  }

  onLost(listener: (reason: Error) => void): void {
    if (this.lost) listener(this.lost);
    else this.lostListeners.push(listener);
  }

  release(): void {
    this.lease.release();
  }
}

/** Key directories a snapshot is built from (with `config`); the mirror holds exactly these. */
const SNAPSHOT_DIRS = ["nodes/", "alive/", "acks/"] as const;
/** Every key directory of node state; a change in any of them fires the node watch. */
const NODE_DIRS = [...SNAPSHOT_DIRS, "subnets/"] as const;

function isNodeKey(relativeKey: string): boolean {
  return relativeKey === "config" || NODE_DIRS.some((dir) => relativeKey.startsWith(dir));
}

function isSnapshotKey(relativeKey: string): boolean {
  return relativeKey === "config" || SNAPSHOT_DIRS.some((dir) => relativeKey.startsWith(dir));
}

/** Check a config before it is stored; throws an Error naming the bad field. */
export function validateClusterConfig(config: ClusterConfig): void {
  resolveClusterConfig(config);
}

/**
 * The view of one node record. A mirrored key keeps the view it last produced, so a snapshot taken
 * after one change re-parses only what changed: with 1,000 nodes, rebuilding every view on every
 * event made most of the agent's garbage. Views are shared between snapshots and never mutated.
 */
function nodeView(kv: MirroredKey, alive: ReadonlySet<string>, acks: ReadonlyMap<string, string[]>): NodeView {
  const name = kv.key.slice(kv.key.lastIndexOf("/") + 1);
  const isAlive = alive.has(name);
  const ackList = acks.get(name) ?? [];
  const ackKey = ackList.length === 0 ? "" : ackList.sort().join(",");
  const cached = kv.view;
  if (cached && cached.alive === isAlive && cached.acks === ackKey) return cached.node;
  const node: NodeView = { ...parseNodeRecord(kv.value), alive: isAlive, revision: kv.modRevision, acks: ackList };
  kv.view = { node, alive: isAlive, acks: ackKey };
  return node;
}

// Moved to the policy and the registry; kept reachable from here for existing importers.
export { isValidNodeName } from "./subnet-policy.ts";
export { subnetKey } from "./etcd-subnet-registry.ts";
