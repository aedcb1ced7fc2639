// The Datastore on etcd v3, through the etcd3 client.
//
// Keys (all under one prefix, default /podnet/):
//   config                   JSON ClusterConfig
//   nodes/<name>             JSON NodeRecord
//   subnets/<a.b.c.d-len>    owner node name: the allocation claim; a key exists at most once, so two nodes never share a subnet
//   alive/<name>             lease id; attached to the node's liveness lease, so it vanishes when the lease expires
//   acks/<leaving>/<acker>   time the acker withdrew its routes to the leaving node
//
// Every multi-key change is one etcd transaction guarded by compare clauses, and the whole state is read in one
// range request, so each snapshot is consistent at a single revision.

import { Etcd3, type Lease, type IOptions, type Watcher } from "etcd3";
import {
  NodeRemovedError,
  SubnetsExhaustedError,
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
import { isIpv4 } from "../net/address.ts";
import { parseClusterCidr, pickFreeSubnet, subnetCount, subnetIndex } from "./subnets.ts";

export interface EtcdDatastoreOptions {
  endpoints: string[];
  /** Key prefix; default "/podnet/". Tests use a unique one per case. */
  prefix?: string;
  /** Per-request deadline in ms; default 3000, so a dead etcd is noticed quickly and retried by the caller. */
  requestTimeoutMs?: number;
  /** How many times registerNode retries after losing an allocation race; default 50. */
  maxRegistrationAttempts?: number;
}

export class EtcdDatastore implements Datastore {
  readonly client: Etcd3;
  private readonly prefix: string;
  private readonly maxAttempts: number;

  constructor(opts: EtcdDatastoreOptions) {
    this.prefix = opts.prefix ?? "/podnet/";
    this.maxAttempts = opts.maxRegistrationAttempts ?? 50;
    const timeout = opts.requestTimeoutMs ?? 3000;
    const clientOptions: IOptions = {
      hosts: opts.endpoints,
      dialTimeout: timeout,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
    };
    this.client = new Etcd3(clientOptions);
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
    validateClusterConfig(defaults);
    const configKey = this.key("config");
    this.wrote(await this.client.if(configKey, "Create", "==", 0).then(this.client.put(configKey).value(JSON.stringify(defaults))).commit());
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
    const response = await this.client.getAll().prefix(this.prefix).exec();
    const revision = Number(response.header.revision);
    const kvs = response.kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) }));
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
    if (!isValidNodeName(request.name)) throw new Error(`invalid node name ${JSON.stringify(request.name)}`);
    if (!isIpv4(request.nodeIp)) throw new Error(`invalid node IP ${JSON.stringify(request.nodeIp)}`);
    const configText = await this.client.get(this.key("config")).string();
    if (configText === null) throw new Error("no cluster config in the datastore; call ensureClusterConfig first");
    const config = parseClusterConfig(configText);
    const cluster = parseClusterCidr(config.clusterCidr);

    const lease = this.client.lease(config.nodeLeaseTtlSeconds, { autoKeepAlive: true });
    let leaseId: string;
    try {
      leaseId = await lease.grant();
    } catch (err) {
      lease.release();
      throw err;
    }
    const nodeKey = this.key("nodes", request.name);
    const aliveKey = this.key("alive", request.name);

    try {
      for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
        const existing = await this.client.get(nodeKey).exec();
        const kv = existing.kvs[0];
        let record: NodeRecord;
        if (kv) {
          const previous = parseNodeRecord(kv.value.toString());
          if (previous.phase === "leaving" && previous.leavingReason === "removed") throw new NodeRemovedError(request.name);
          record = {
            name: request.name,
            nodeIp: request.nodeIp,
            podSubnet: previous.podSubnet,
            backendData: request.backendData ?? {},
            phase: "active",
          };
          const claimKey = this.key("subnets", subnetKey(record.podSubnet));
          const result = await this.client
            .if(nodeKey, "Mod", "==", Number(kv.mod_revision))
            .and(claimKey, "Value", "==", request.name)
            .then(
              this.client.put(nodeKey).value(JSON.stringify(record)),
              this.client.put(aliveKey).value(leaseId).lease(leaseId),
              // A revived node starts a fresh removal cycle should it leave again.
              this.client.delete().prefix(this.key("acks", request.name) + "/"),
            )
            .commit();
          this.wrote(result);
          if (result.succeeded) return new EtcdNodeLease(record, lease);
          continue;
        }
        const claims = await this.client.getAll().prefix(this.key("subnets") + "/").keys();
        const taken = new Set(claims.map((k) => subnetFromKey(k.slice(this.key("subnets").length + 1))));
        let subnet: string | undefined;
        if (attempt === 0 && request.preferredSubnet && !taken.has(request.preferredSubnet)
          && subnetIndex(cluster, config.subnetLength, request.preferredSubnet) !== undefined) {
          subnet = request.preferredSubnet;
        } else {
          subnet = pickFreeSubnet(cluster, config.subnetLength, taken, attempt);
        }
        if (subnet === undefined) throw new SubnetsExhaustedError(config.clusterCidr, config.subnetLength);
        record = { name: request.name, nodeIp: request.nodeIp, podSubnet: subnet, backendData: request.backendData ?? {}, phase: "active" };
        const claimKey = this.key("subnets", subnetKey(subnet));
        const result = await this.client
          .if(nodeKey, "Create", "==", 0)
          .and(claimKey, "Create", "==", 0)
          .then(
            this.client.put(claimKey).value(request.name),
            this.client.put(nodeKey).value(JSON.stringify(record)),
            this.client.put(aliveKey).value(leaseId).lease(leaseId),
          )
          .commit();
        this.wrote(result);
        if (result.succeeded) return new EtcdNodeLease(record, lease);
      }
      throw new Error(`could not register node ${request.name} after ${this.maxAttempts} attempts (allocation contention)`);
    } catch (err) {
      await lease.revoke().catch(() => undefined);
      throw err;
    }
  }

  async markNodeLeaving(name: string, reason: LeavingReason, expectedRevision?: number): Promise<boolean> {
    const nodeKey = this.key("nodes", name);
    const existing = await this.client.get(nodeKey).exec();
    const kv = existing.kvs[0];
    if (!kv) return false;
    const revision = Number(kv.mod_revision);
    if (expectedRevision !== undefined && revision !== expectedRevision) return false;
    const record = parseNodeRecord(kv.value.toString());
    if (record.phase === "leaving" && (record.leavingReason === reason || record.leavingReason === "removed")) return true;
    const leaving: NodeRecord = { ...record, phase: "leaving", leavingReason: reason, leavingSince: new Date().toISOString() };
    const result = await this.client.if(nodeKey, "Mod", "==", revision).then(this.client.put(nodeKey).value(JSON.stringify(leaving))).commit();
    this.wrote(result);
    return result.succeeded;
  }

  async ackNodeLeaving(leaving: string, acker: string): Promise<void> {
    const nodeKey = this.key("nodes", leaving);
    this.wrote(
      await this.client
        .if(nodeKey, "Create", ">", 0)
        .then(this.client.put(this.key("acks", leaving, acker)).value(new Date().toISOString()))
        .commit(),
    );
  }

  async finalizeNodeRemoval(name: string, expectedRevision: number): Promise<boolean> {
    const nodeKey = this.key("nodes", name);
    const existing = await this.client.get(nodeKey).exec();
    const kv = existing.kvs[0];
    if (!kv || Number(kv.mod_revision) !== expectedRevision) return false;
    const record = parseNodeRecord(kv.value.toString());
    if (record.phase !== "leaving") return false;
    const claimKey = this.key("subnets", subnetKey(record.podSubnet));
    const result = await this.client
      .if(nodeKey, "Mod", "==", expectedRevision)
      .and(claimKey, "Value", "==", name)
      .then(
        this.client.delete().key(nodeKey),
        this.client.delete().key(claimKey),
        this.client.delete().key(this.key("alive", name)),
        this.client.delete().prefix(this.key("acks", name) + "/"),
      )
      .commit();
    this.wrote(result);
    return result.succeeded;
  }

  /**
   * Watches every podnet key. The events also keep a local mirror of the keys current, so that a
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
        for (const event of res.events) {
          const key = event.kv.key.toString();
          const modRevision = Number(event.kv.mod_revision);
          if (event.type === "Put") mirror.put(key, event.kv.value.toString(), modRevision);
          else mirror.delete(key, modRevision);
        }
        // A response's header names the store's current revision even while etcd is still catching a
        // slow watcher up in batches: only an empty response (a progress notice, sent to a watcher that
        // is caught up) says that nothing up to it is missing.
        if (res.events.length === 0) mirror.advance(Number(res.header.revision));
        if (res.events.length > 0) listener.onChange();
      });
      watcher.on("connected", () => {
        mirror.connected();
        listener.onConnection?.(true);
        listener.onChange();
      });
      watcher.on("disconnected", () => {
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
    return {
      close: async () => {
        closed = true;
        if (this.mirror === mirror) this.mirror = undefined;
        await current?.cancel();
      },
    };
  }

  async close(): Promise<void> {
    this.client.close();
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

/** Subnets as key segments: "10.244.1.0/24" → "10.244.1.0-24" (a slash would split the key). */
export function subnetKey(subnet: string): string {
  return subnet.replace("/", "-");
}

function subnetFromKey(key: string): string {
  return key.replace("-", "/");
}

export function isValidNodeName(name: string): boolean {
  return /^[a-z0-9]([a-z0-9.-]{0,62}[a-z0-9])?$/.test(name);
}

export function validateClusterConfig(config: ClusterConfig): void {
  const cluster = parseClusterCidr(config.clusterCidr);
  subnetCount(cluster, config.subnetLength);
  if (typeof config.backend !== "string" || config.backend === "") throw new Error("cluster config: backend must be a non-empty string");
  if (!Number.isInteger(config.nodeLeaseTtlSeconds) || config.nodeLeaseTtlSeconds < 2) {
    throw new Error("cluster config: nodeLeaseTtlSeconds must be an integer of at least 2");
  }
}

function parseClusterConfig(text: string): ClusterConfig {
  const raw = JSON.parse(text) as Partial<ClusterConfig>;
  const config: ClusterConfig = {
    clusterCidr: String(raw.clusterCidr),
    subnetLength: Number(raw.subnetLength),
    backend: String(raw.backend),
    nodeLeaseTtlSeconds: Number(raw.nodeLeaseTtlSeconds ?? 20),
  };
  // Backends validate their own options (naming the field); dropping them here made every option unreachable.
  if (raw.backendOptions !== undefined) config.backendOptions = raw.backendOptions;
  validateClusterConfig(config);
  return config;
}

function parseNodeRecord(text: string): NodeRecord {
  const raw = JSON.parse(text) as Partial<NodeRecord>;
  if (typeof raw.name !== "string" || typeof raw.nodeIp !== "string" || typeof raw.podSubnet !== "string") {
    throw new Error(`malformed node record: ${text}`);
  }
  const record: NodeRecord = {
    name: raw.name,
    nodeIp: raw.nodeIp,
    podSubnet: raw.podSubnet,
    backendData: raw.backendData ?? {},
    phase: raw.phase === "leaving" ? "leaving" : "active",
  };
  if (raw.leavingReason) record.leavingReason = raw.leavingReason;
  if (raw.leavingSince) record.leavingSince = raw.leavingSince;
  return record;
}

interface MirroredKey {
  key: string;
  value: string;
  modRevision: number;
  /** The node view last built from this key, reused while nothing it depends on changed. */
  view?: { node: NodeView; alive: boolean; acks: string };
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

/**
 * podnet's keys as the watch reports them. `revision` is the store revision the mirror is complete up
 * to: the baseline read's, then each applied event's. A full read becomes the baseline (at the start,
 * after the stream broke, and on every fresh read, which also repairs a mirror gone wrong) only if no
 * newer event has been seen and the stream did not break while the read was in flight; otherwise it
 * could drop events the stream will not send again. Events that arrive while there is no baseline are
 * held back and replayed on top of the next one, skipping those the read already holds.
 */
export class KeyMirror {
  private readonly keys = new Map<string, MirroredKey>();
  revision = 0;
  /** Revision of the full read the mirror was last based on: events at or below it are in it already. */
  private baseRevision = 0;
  /** Highest revision of any event seen, baseline or not. */
  private seen = 0;
  /** Bumped whenever the stream breaks: a read started before that cannot be a baseline. */
  epoch = 0;
  private hasBaseline = false;
  private streamUp = false;
  private heldBack: { key: string; value: string | undefined; modRevision: number }[] = [];

  /** Returns true when the read became the baseline. */
  resetTo(revision: number, kvs: readonly MirroredKey[], epoch: number): boolean {
    if (epoch !== this.epoch || revision < this.revision || revision < this.seen) return false;
    this.keys.clear();
    for (const kv of kvs) this.keys.set(kv.key, kv);
    this.revision = revision;
    this.baseRevision = revision;
    this.hasBaseline = true;
    const held = this.heldBack;
    this.heldBack = [];
    for (const event of held) this.apply(event.key, event.value, event.modRevision);
    return true;
  }

  put(key: string, value: string, modRevision: number): void {
    this.apply(key, value, modRevision);
  }

  delete(key: string, modRevision: number): void {
    this.apply(key, undefined, modRevision);
  }

  private apply(key: string, value: string | undefined, modRevision: number): void {
    if (modRevision > this.seen) this.seen = modRevision;
    if (!this.hasBaseline) {
      this.heldBack.push({ key, value, modRevision });
      return;
    }
    // Skipped by the baseline's revision, not by `revision`: the keys of one transaction share a
    // revision and arrive as separate events of one response.
    if (modRevision <= this.baseRevision) return;
    if (value === undefined) this.keys.delete(key);
    else this.keys.set(key, { key, value, modRevision });
    if (modRevision > this.revision) this.revision = modRevision;
  }

  /** Nothing up to `revision` is missing (an empty watch response: the watcher is caught up). */
  advance(revision: number): void {
    if (this.hasBaseline && revision > this.revision) this.revision = revision;
    if (revision > this.seen) this.seen = revision;
  }

  connected(): void {
    this.streamUp = true;
  }

  disconnected(): void {
    this.streamUp = false;
    this.hasBaseline = false;
    this.heldBack = [];
    this.epoch++;
  }

  servesReadsAfter(writeRevision: number): boolean {
    return this.streamUp && this.hasBaseline && this.revision >= writeRevision;
  }

  entries(): Iterable<MirroredKey> {
    return this.keys.values();
  }
}
