// Reconciler: the service proxy. Services and EndpointSlices (and this node's facts) in, the nftables
// table `ip podnet-svc` out (src/services: kube-proxy's nftables layout), plus stale-UDP conntrack
// clean-up and the LoadBalancer IPs this node announces on its underlay.
//
// - Incremental: the object feed updates its maps in place, so each sync finds what changed by
//   object identity against the objects it last saw (O(objects) pointer compares, no copying),
//   feeds only those to the IncrementalProxyCompiler, and applies planProxyTransaction(applied,
//   next): only the changed services' chains and map elements, in one atomic transaction,
//   without listing the kernel's table: an nf_tables netlink batch (src/kernel/nft/netlink-writer.ts;
//   nft 1.0.6 would first read all 10,000 chains into its cache), or libnftables for what the
//   writer does not encode.
// - Full sync on start and after any failure: the table is replaced in one transaction (nothing is
//   flushed on its own, so established connections keep their conntrack NAT across an agent
//   restart, and new ones are served by the new table at once). Rules are never removed when the
//   agent stops or etcd is down: the sync simply does not run.
// - Verification (rules deleted by hand): a read-back of the whole table, diffed against the
//   model and repaired with the diff. It costs O(table), so it runs at most every
//   `max(resyncIntervalMs, VERIFY_COST_FACTOR × its own last duration)`: every resync for a small
//   table, every minute or two with 10,000 services, so it stays a few percent of one CPU.

import type { EndpointSlice, Service } from "../k8s/types.ts";
import { deleteUdpFlows, listUdpFlows } from "../kernel/conntrack.ts";
import { interfaceOfAddress, syncAnnouncedIps, underlayOfAddress } from "../kernel/lb-announce.ts";
import { diffTables } from "../kernel/nft/diff.ts";
import { readTableSpawnedAsync, runNftAsync, runNftSpawnedAsync, transactionScript } from "../kernel/nft.ts";
import type { NftTransaction } from "../kernel/nft/model.ts";
import { NftNetlinkWriter, NftNotEncodable } from "../kernel/nft/netlink-writer.ts";
import { ChildApplier, childApplyAvailable, NftChildFailed } from "../kernel/nft/netlink-child.ts";
import { collectGarbage, releaseFreedNativeMemory } from "../kernel/malloc-trim.ts";
import { estimateBytes } from "../kernel/nft/netlink-encode.ts";
import { ipsToAnnounce, loadBalancerIpsOf, type AnnounceSegment } from "../services/lb-announcer.ts";
import { tryParseCidr } from "../net/cidr.ts";
import { IncrementalProxyCompiler, PROXY_TABLE, type CompiledProxy, type ProxyNodeFacts } from "../services/proxy-compiler.ts";
import { planProxyTransaction, staleUdpFlows, type StaleUdpFlow } from "../services/proxy-plan.ts";
import { staleUdpFlowsAtStart } from "../services/stale-flows.ts";
import type { AgentInputs } from "./inputs.ts";
import { fullSyncDigest, inKeyOrder, SERVICES_APPLY_COMMAND, type FullSyncObjects, type ServicesChildPayload } from "./services-child.ts";
import { CHILD_FULL_SYNC_AT_SERVICES, type StartupSync, type StartupSyncOutcome } from "./services-startup.ts";
import type { InputHub, Reconciler } from "./reconciler.ts";
import type { ClusterConfig, NodeRecord } from "../datastore/datastore.ts";

type Inputs = "config" | "self" | "snapshot" | "Service" | "EndpointSlice";

/** Scripts larger than this go to a spawned `nft -f`, so the event loop is not stalled for seconds. */
const SPAWN_ABOVE_BYTES = 256 * 1024;
const VERIFY_COST_FACTOR = 20;
/** Netlink batches estimated above this go to a child process (see netlink-child.ts). */
const CHILD_ABOVE_BYTES = 2 * 1024 * 1024;
/** A burst of syncs is over when none came for this long; then its garbage is collected (settleMemory). */
const SETTLE_AFTER_IDLE_MS = 1000;
/** How long a child started ahead (prepareLargeTransaction) waits for its sync before it is ended. */
const PREPARED_CHILD_IDLE_MS = 60_000;
/** ~2 MiB of batch: 600 services of 5 endpoints make about that much. */
const PREPARE_CHILD_AT_SERVICES = CHILD_FULL_SYNC_AT_SERVICES;

/** How a transaction reached the kernel. */
export interface AppliedTransaction {
  way: "netlink" | "libnftables";
  bytes: number;
  /** Why the netlink writer did not take it (a statement outside its subset). */
  fallback?: string;
  /** Netlink only: encoding and the kernel's batch (send to ACK). */
  encodeMs?: number;
  kernelMs?: number;
  /** Through the child process: serialising the transaction, the child's start and decoding it. */
  handOverMs?: number;
}

/** A full sync compiled, planned and applied by a child process from the objects themselves. */
export interface ChildFullSync extends AppliedTransaction {
  /** The child's compile and plan. */
  compileMs: number;
  /** Statements in the child's transaction (the agent's own plan must have as many). */
  changes: number;
  /** Wall-clock time (ms since the epoch) when the kernel acknowledged the batch. */
  kernelAnsweredAt: number;
}

export interface ServicesKernel {
  /** Apply one nft script atomically. */
  apply(script: string): Promise<void>;
  /**
   * Apply one transaction atomically, when the kernel side can take it without a script (the
   * nf_tables netlink writer). Without it, transactions are rendered and given to `apply`.
   */
  applyTransaction?(tx: NftTransaction): Promise<AppliedTransaction>;
  /** A large transaction is coming (a full sync of many services): get ready for it while it is compiled. */
  prepareLargeTransaction?(): void;
  /**
   * Compile, plan and apply the full table of `objects` elsewhere (a child process), starting now:
   * the caller compiles the same objects meanwhile for its own state. Undefined when not possible.
   * Rejects with NftNotEncodable (nothing was sent) or the kernel's refusal (nothing was changed).
   */
  startFullSync?(objects: FullSyncObjects): Promise<ChildFullSync> | undefined;
  /** Takes note of a transaction that startFullSync applied (the planned copy of it). */
  recordApplied?(tx: NftTransaction): void;
  /** Give memory a burst of work left behind back to the system (after a full sync). */
  settleMemory?(): void;
  readTable: typeof readTableSpawnedAsync;
  deleteUdpFlows: typeof deleteUdpFlows;
  /** Every UDP conntrack entry (read once per full sync, for flows left stale while the agent was down). */
  listUdpFlows(): ReturnType<typeof listUdpFlows>;
  /** Make the set of LoadBalancer IPs this node announces exactly `ips`. */
  announce(ips: readonly string[], nodeIp: string): { added: string[]; removed: string[] };
  /** The subnet of the underlay address `nodeIp` (its L2 segment), if an interface holds it. */
  underlaySegment(nodeIp: string): string | undefined;
}

const applyScript = (script: string) => (Buffer.byteLength(script) > SPAWN_ABOVE_BYTES ? runNftSpawnedAsync(script) : runNftAsync(script));
/** The agent's own namespace: the socket is opened on first use, where the agent runs. */
let netlinkWriter: NftNetlinkWriter | undefined;
/** A child started while a full sync compiles (see prepareLargeTransaction). */
let preparedChild: ChildApplier | undefined;

export const realServicesKernel: ServicesKernel = {
  apply: applyScript,
  // nf_tables netlink batches: no nft cache read of the table's 10,000 chains per change, no
  // script text. What the writer cannot encode goes through libnftables, as one script.
  async applyTransaction(tx) {
    netlinkWriter ??= new NftNetlinkWriter();
    try {
      // A full sync is encoded and sent by a child process with V8's optimising compilers (the
      // agent runs with --lite-mode) while the agent's loop stays free; small changes in-process.
      const child = preparedChild;
      preparedChild = undefined;
      // Only a transaction that creates the table anew: the child knows no set types, so a large
      // incremental one (thousands of services in one sync) touching existing sets' elements would be
      // NftNotEncodable there, and every later change would go through libnftables until a full sync.
      if (estimateBytes(tx) > CHILD_ABOVE_BYTES && tx.changes.some((c) => c.op === "deleteTable") && childApplyAvailable()) {
        try {
          const stats = await (child ?? new ChildApplier(SERVICES_APPLY_COMMAND)).apply({ tx } satisfies ServicesChildPayload);
          netlinkWriter.recordApplied(tx);
          return { way: "netlink", bytes: stats.bytes, encodeMs: stats.encodeMs, kernelMs: stats.kernelMs, handOverMs: stats.serializeMs + stats.decodeMs };
        } catch (err) {
          // The kernel was not asked: the same batch goes in from here (the loop waits for it, ~1 s
          // at 10,000 services), rather than a full sync that retries through a child forever.
          if (!(err instanceof NftChildFailed)) throw err;
          netlinkWriter.apply(tx);
          const last = netlinkWriter.last;
          return { way: "netlink", bytes: last?.bytes ?? 0, ...(last ? { encodeMs: last.encodeMs, kernelMs: last.kernelMs } : {}) };
        }
      }
      child?.cancel();
      netlinkWriter.apply(tx);
      const last = netlinkWriter.last;
      return { way: "netlink", bytes: last?.bytes ?? 0, ...(last ? { encodeMs: last.encodeMs, kernelMs: last.kernelMs } : {}) };
    } catch (err) {
      if (!(err instanceof NftNotEncodable)) throw err;
      preparedChild?.cancel();
      preparedChild = undefined;
      // The table may now differ from what the writer last wrote: it forgets its set types, so
      // element changes go through libnftables until its next full sync through netlink.
      netlinkWriter.forget(tx.family, tx.table);
      const script = transactionScript(tx);
      await applyScript(script);
      return { way: "libnftables", bytes: Buffer.byteLength(script), fallback: err.what };
    }
  },
  prepareLargeTransaction() {
    if (preparedChild !== undefined || !childApplyAvailable()) return;
    const child = new ChildApplier(SERVICES_APPLY_COMMAND);
    preparedChild = child;
    // If no sync comes for it, it does not sit there holding a Node process's memory; the sync that
    // comes later starts its own.
    setTimeout(() => {
      if (preparedChild !== child) return;
      preparedChild = undefined;
      child.cancel();
    }, PREPARED_CHILD_IDLE_MS).unref();
  },
  startFullSync(objects) {
    if (!childApplyAvailable()) return undefined;
    const child = preparedChild ?? new ChildApplier(SERVICES_APPLY_COMMAND);
    preparedChild = undefined;
    // apply() writes the payload before it first awaits: the child has it before the caller compiles.
    return child.apply({ full: objects } satisfies ServicesChildPayload).then((stats) => ({
      way: "netlink" as const, bytes: stats.bytes, encodeMs: stats.encodeMs, kernelMs: stats.kernelMs,
      handOverMs: stats.serializeMs + stats.decodeMs, compileMs: stats.extra["compileMs"] ?? NaN, changes: stats.extra["changes"] ?? NaN, kernelAnsweredAt: stats.extra["kernelAnsweredAt"] ?? NaN,
    }));
  },
  recordApplied(tx) {
    netlinkWriter ??= new NftNetlinkWriter();
    netlinkWriter.recordApplied(tx);
  },
  settleMemory() {
    collectGarbage();
    releaseFreedNativeMemory();
  },
  readTable: readTableSpawnedAsync,
  deleteUdpFlows,
  listUdpFlows: () => listUdpFlows(),
  announce(ips, nodeIp) {
    const ifname = interfaceOfAddress(nodeIp);
    if (!ifname) throw new Error(`no interface holds the node IP ${nodeIp}; cannot announce LoadBalancer IPs`);
    return syncAnnouncedIps(ifname, ips);
  },
  underlaySegment(nodeIp) {
    const underlay = underlayOfAddress(nodeIp);
    return underlay ? `${nodeIp}/${underlay.prefixLength}` : undefined;
  },
};

export interface ServicesSyncStats {
  kind: "full" | "incremental" | "repair" | "none";
  changes: number;
  /** Bytes sent to the kernel: the netlink batch, or the nft script. */
  scriptBytes: number;
  way?: AppliedTransaction["way"];
  ms: number;
  /**
   * Where the sync's time went, ms: compile, plan, apply (encode + kernel, or render + nft), UDP
   * conntrack clean-up; for a full sync in a child (compiled there from the objects): the child's
   * compile, and `apply` is how long the agent waited for the child after its own compile and plan;
   * `settle`: the garbage collection and malloc_trim after a full sync.
   */
  phases?: { compile: number; plan: number; apply: number; encode?: number; kernel?: number; handOver?: number; childCompile?: number; conntrack: number; settle?: number };
  /** Full syncs: when the sync started, ms since the agent's process started (its start-up before it). */
  startedAtMs?: number;
  /** Full syncs: who wrote the table (the startup child listed etcd itself; the child was handed the agent's objects). */
  appliedBy?: "startup child" | "child" | "agent";
  /** Full syncs: wall-clock time (ms since the epoch) when the kernel acknowledged the table. */
  kernelAnsweredAt?: number;
  /** A full sync by the startup child: when (ms since the agent's process started) it had started, listed etcd, been told this node's facts. */
  startupChild?: { startedAtMs: number; listedAtMs: number; toldAtMs: number };
}

function nodeFactsOf(nodeName: string, self: NodeRecord, config: ClusterConfig): ProxyNodeFacts {
  return { nodeName, nodeIps: [self.nodeIp], podCidr: self.podSubnet, clusterCidr: config.clusterCidr };
}

export class ServicesReconciler implements Reconciler<AgentInputs, Inputs> {
  readonly name = "services";
  readonly inputs = ["config", "self", "snapshot", "Service", "EndpointSlice"] as const;
  /** Pods can run without services; a failing proxy is reported, not a reason to stop new pods. */
  readonly gatesReadiness = false;
  readonly backoff = { initialMs: 200, maxMs: 5000 };
  readonly timeoutMs = 120_000;

  private readonly compiler = new IncrementalProxyCompiler();
  private applied: CompiledProxy | undefined;
  private seenServices = new Map<string, Service>();
  private seenSlices = new Map<string, EndpointSlice>();
  private lastVerifyAt = 0;
  private lastVerifyMs = 0;
  /** Read-backs of the whole table done (each costs about what loading the table did). */
  private readBacks = 0;
  private announced: string[] = [];
  /** Services with LoadBalancer IPs, by "namespace/name". */
  private readonly loadBalancers = new Map<string, Service>();
  private announceChecked = false;
  private last: ServicesSyncStats | undefined;
  private udpFlowsDeleted = 0;
  /** The datastore revision of the objects the kernel now reflects (for "write → kernel" timing). */
  private revision = 0;
  private lastFull: ServicesSyncStats | undefined;

  constructor(
    private readonly nodeName: string,
    readonly resyncIntervalMs: number,
    private readonly log: (message: string) => void,
    private readonly kernel: ServicesKernel = realServicesKernel,
    private readonly onSynced?: (stats: ServicesSyncStats) => void,
  ) {}

  /** The first full sync's child, started with the agent (services-startup.ts), until the first full sync takes it. */
  private startup: StartupSync | undefined;

  /**
   * Lets the first full sync be the startup child's (StartupFullSync, services-startup.ts): it is told this node's
   * facts as soon as the agent has registered, long before this reconciler's first sync (which
   * waits for the agent's own list of every object).
   */
  useStartupSync(startup: StartupSync, hub: InputHub<AgentInputs>): void {
    this.startup = startup;
    const tell = () => {
      if (!hub.has("self") || !hub.has("config")) return;
      startup.nodeKnown(nodeFactsOf(this.nodeName, hub.get("self") as NodeRecord, hub.get("config") as ClusterConfig));
    };
    const stop = hub.subscribe(["self", "config"], () => {
      tell();
      if (hub.has("self") && hub.has("config")) stop();
    });
    tell();
  }

  /** Bytes sent to the kernel by syncs since memory was last settled (a burst of smaller ones adds up). */
  private bytesSinceSettle = 0;
  private settleTimer: NodeJS.Timeout | undefined;

  async sync(inputs: { readonly [P in Inputs]: AgentInputs[P] }): Promise<void> {
    const large = await this.syncOnce(inputs);
    this.bytesSinceSettle += this.last?.scriptBytes ?? 0;
    if (!large && this.bytesSinceSettle > CHILD_ABOVE_BYTES && this.kernel.settleMemory) {
      // Thousands of services added a few at a time (each write its own small sync) leave as much
      // behind as one large sync: settle once the burst is over, not after each sync (measured at
      // 10,000 services: 103-120 MiB right after such a burst).
      clearTimeout(this.settleTimer);
      this.settleTimer = setTimeout(() => {
        this.settleTimer = undefined;
        this.bytesSinceSettle = 0;
        this.kernel.settleMemory?.();
      }, SETTLE_AFTER_IDLE_MS);
      this.settleTimer.unref();
    }
    // A full sync (or thousands of services added at once) leaves tens of MiB behind (the feed's
    // list, the compile's garbage, the planned transaction): collect it and give glibc's freed
    // pages back now, not at V8's leisure, so the agent's resident memory after a restart is what
    // it is at rest (measured at 10,000 services: ~90 MiB right after instead of ~155). Here,
    // once syncOnce has returned, its full transaction is garbage; no /status request is served
    // before this runs (no macrotask between), so a reader never sees the sync done and the memory not yet settled.
    if (large && this.kernel.settleMemory && this.last?.phases) {
      clearTimeout(this.settleTimer);
      this.settleTimer = undefined;
      this.bytesSinceSettle = 0;
      const settleStarted = performance.now();
      this.kernel.settleMemory();
      const settleMs = performance.now() - settleStarted;
      this.last.phases.settle = Math.round(settleMs * 100) / 100;
      this.last.ms = Math.round(this.last.ms + settleMs);
    }
  }

  /** One sync; true when it was a full one, or a batch large enough for the child. */
  private async syncOnce(inputs: { readonly [P in Inputs]: AgentInputs[P] }): Promise<boolean> {
    const started = performance.now();
    const revision = Math.max(inputs.Service.revision, inputs.EndpointSlice.revision);
    const node = nodeFactsOf(this.nodeName, inputs.self, inputs.config);
    // Read the feed's maps synchronously: they change in place under later events.
    const full = this.applied === undefined;
    let inChild: Promise<ChildFullSync> | undefined;
    let fromStartup: Promise<StartupSyncOutcome> | undefined;
    if (full) {
      this.seenServices = new Map(inputs.Service.objects);
      this.loadBalancers.clear();
      for (const [key, service] of this.seenServices) this.noteService(key, service);
      this.seenSlices = new Map(inputs.EndpointSlice.objects);
      // In key order, as the startup child compiles them: the same input in the same order lays out
      // the same endpoint blocks, so the two plans are the same table.
      const services = inKeyOrder(this.seenServices);
      const slices = inKeyOrder(this.seenSlices);
      const startup = this.startup;
      this.startup = undefined;
      if (startup !== undefined && services.length >= CHILD_FULL_SYNC_AT_SERVICES) {
        fromStartup = startup.outcome();
        fromStartup.catch(() => undefined); // awaited below; a rejection before then is not unhandled
      } else {
        // Few services: quicker here. Ended (and gone) before anything is written from here.
        await startup?.end();
        // Thousands of services: the child process (full V8) compiles, encodes and applies the table
        // from the objects, while this (lite-mode) process compiles them for its own state.
        if (services.length >= PREPARE_CHILD_AT_SERVICES) {
          inChild = this.kernel.startFullSync?.({ node, services, slices });
          inChild?.catch(() => undefined); // awaited below; a rejection before then is not unhandled
          if (inChild === undefined) this.kernel.prepareLargeTransaction?.();
        }
      }
      this.compiler.replaceAll(services, slices);
    } else {
      this.feedChanges(inputs.Service.objects, inputs.EndpointSlice.objects);
    }
    const live = inputs.snapshot.nodes.filter((n) => n.alive && n.phase === "active");
    const liveNodes = live.map((n) => n.name);
    const wantedAnnounced = this.loadBalancers.size === 0 ? [] : ipsToAnnounce(this.nodeName, this.loadBalancers.values(), this.slicesOfLoadBalancers(), liveNodes, this.segment(inputs.self.nodeIp, live));

    const compileStarted = performance.now();
    let next: CompiledProxy;
    let tx: NftTransaction;
    let planStarted: number;
    try {
      next = this.compiler.compile(node);
      planStarted = performance.now();
      tx = planProxyTransaction(this.applied, next);
    } catch (err) {
      // Not before the startup child is done: its table must not land after the next full sync's.
      await fromStartup?.catch(() => undefined);
      throw err;
    }
    const planned = performance.now();
    // Read now, while the full table planned above is still assembled (it is held weakly).
    const udpFrontendsAtFullSync = full ? next.udpFrontends : undefined;
    let kind: ServicesSyncStats["kind"] = full ? "full" : tx.changes.length > 0 ? "incremental" : "none";
    if (!full && tx.changes.length === 0 && this.verifyDue()) {
      tx = await this.repairTransaction(next);
      if (tx.changes.length > 0) kind = "repair";
    }
    let bytes = 0;
    let way: AppliedTransaction["way"] | undefined;
    let netlinkSplit: Pick<AppliedTransaction, "encodeMs" | "kernelMs" | "handOverMs"> = {};
    const applyStarted = performance.now();
    let childCompile: number | undefined;
    let appliedBy: ServicesSyncStats["appliedBy"];
    let kernelAnsweredAt: number | undefined;
    let startupChild: ServicesSyncStats["startupChild"];
    if (fromStartup !== undefined) {
      try {
        const outcome = await fromStartup;
        if (outcome.digest === fullSyncDigest(this.seenServices, this.seenSlices, node) && outcome.changes === tx.changes.length) {
          ({ bytes, kernelAnsweredAt } = outcome);
          way = "netlink";
          netlinkSplit = { encodeMs: outcome.encodeMs, kernelMs: outcome.kernelMs };
          childCompile = outcome.compileMs;
          appliedBy = "startup child";
          const sinceStart = (epochMs: number) => Math.round(epochMs - performance.timeOrigin);
          startupChild = { startedAtMs: sinceStart(outcome.startedAt), listedAtMs: sinceStart(outcome.listedAt), toldAtMs: sinceStart(outcome.toldAt) };
          this.kernel.recordApplied?.(tx);
        } else {
          this.log(`services: the startup child's full sync (etcd revision ${outcome.revision}, ${outcome.changes} statements) was of other objects than the agent's (revision ${revision}, ${tx.changes.length}); applying the agent's own plan`);
        }
      } catch (err) {
        if (!(err instanceof NftChildFailed) && !(err instanceof NftNotEncodable)) {
          this.applied = undefined;
          throw err;
        }
        // The kernel was not asked: the agent's own plan goes in below.
        if (!/declined/.test(err.message)) this.log(`services: the startup child did not sync (${err.message}); applying the agent's own plan`);
      }
    }
    if (inChild !== undefined) {
      try {
        const applied = await inChild;
        ({ bytes, way } = applied);
        netlinkSplit = applied;
        childCompile = applied.compileMs;
        appliedBy = "child";
        kernelAnsweredAt = applied.kernelAnsweredAt;
        this.kernel.recordApplied?.(tx);
        // Same code, same objects: a different count means the two compiles disagree (a bug), and
        // the agent's incremental state would not match the kernel: its own plan (a full replacement) goes in below.
        if (applied.changes !== tx.changes.length) {
          this.log(`services: the child's full sync had ${applied.changes} statements, the agent's plan ${tx.changes.length}; doing it again here`);
          inChild = undefined;
        }
      } catch (err) {
        if (err instanceof NftChildFailed) {
          // The kernel was not asked: the agent's own plan goes in below.
          this.log(`services: the full sync's child failed (${err.message}); applying the agent's own plan`);
        } else if (!(err instanceof NftNotEncodable)) {
          this.applied = undefined;
          throw err;
        }
        inChild = undefined; // the agent's own plan goes in below (libnftables, when not encodable)
      }
    }
    if (tx.changes.length > 0 && inChild === undefined && appliedBy !== "startup child") {
      try {
        if (this.kernel.applyTransaction) {
          const applied = await this.kernel.applyTransaction(tx);
          ({ bytes, way } = applied);
          netlinkSplit = applied;
          if (applied.fallback !== undefined) this.log(`services: ${kind} sync through libnftables: the netlink writer cannot encode ${applied.fallback}`);
        } else {
          const script = transactionScript(tx);
          bytes = Buffer.byteLength(script);
          way = "libnftables";
          await this.kernel.apply(script);
        }
      } catch (err) {
        // The kernel may hold anything now: start over with a full sync.
        this.applied = undefined;
        throw err;
      }
      appliedBy = "agent";
      kernelAnsweredAt = Date.now();
      if (kind === "repair") this.log(`services: repaired ${tx.changes.length} change(s) made to table ${PROXY_TABLE} by someone else`);
    }
    if (kind === "full" && tx.changes.length > 0) this.log(`services: full sync of table ${PROXY_TABLE}, ${next.fragments.size} services, ${(bytes / 1024).toFixed(0)} KiB through ${way}${appliedBy !== "agent" ? ` (compiled in the ${appliedBy})` : ""}`);
    const applied = performance.now();
    const previous = this.applied;
    this.applied = next;
    if (full || bytes > CHILD_ABOVE_BYTES) {
      // Reading the table back costs about what loading it did: until a read-back has been timed,
      // take the full sync's duration as its cost, so a large table is not read back at once. A
      // large incremental sync (thousands of services added at once) counts too: otherwise the
      // read-back, timed on the small table of the first sync, comes due at once and holds the
      // loop for seconds while changes wait (measured: a 9.5 s change).
      this.lastVerifyAt = Date.now();
      this.lastVerifyMs = Math.max(this.lastVerifyMs, performance.now() - started);
    }

    // UDP flows pinned to endpoints that went away (or to nothing, before the service had endpoints):
    // from the change itself, or after a full sync from the kernel's entries (changes made while
    // this agent was not running, or before a failed apply, were never seen as changes).
    const conntrackStarted = performance.now();
    let stale: StaleUdpFlow[] = staleUdpFlows(previous, next);
    if (udpFrontendsAtFullSync !== undefined) {
      try {
        stale = staleUdpFlowsAtStart(udpFrontendsAtFullSync, await this.kernel.listUdpFlows(), node.nodeIps);
      } catch (err) {
        this.log(`services: listing UDP conntrack entries after the full sync: ${(err as Error).message}`);
      }
    }
    for (const flow of stale) {
      try {
        this.udpFlowsDeleted += await this.kernel.deleteUdpFlows({
          ...(flow.frontendIp !== undefined ? { originalDst: flow.frontendIp } : {}),
          originalPort: flow.port,
          ...(flow.endpointIp !== undefined ? { replySrc: flow.endpointIp } : {}),
        });
      } catch (err) {
        this.log(`services: clearing stale UDP flows to ${flow.frontendIp ?? "*"}:${flow.port}: ${(err as Error).message}`);
      }
    }

    // Two `ip` runs per sync: skipped while there is nothing to announce and nothing was (after the first look, which clears what an earlier run left).
    const announceNeeded = wantedAnnounced.length > 0 || this.announced.length > 0 || !this.announceChecked;
    const changed = announceNeeded ? this.kernel.announce(wantedAnnounced, inputs.self.nodeIp) : { added: [], removed: [] };
    this.announceChecked = true;
    if (changed.added.length > 0 || changed.removed.length > 0) {
      this.log(`services: announcing LoadBalancer IPs ${JSON.stringify(wantedAnnounced)} (added ${changed.added.join(", ") || "none"}, withdrew ${changed.removed.join(", ") || "none"})`);
    }
    this.announced = wantedAnnounced;
    const round = (ms: number) => Math.round(ms * 100) / 100;
    const conntrackMs = performance.now() - conntrackStarted;
    const phases: NonNullable<ServicesSyncStats["phases"]> = {
      compile: round(planStarted - compileStarted), plan: round(planned - planStarted), apply: round(applied - applyStarted),
      ...(netlinkSplit.encodeMs !== undefined ? { encode: round(netlinkSplit.encodeMs) } : {}),
      ...(netlinkSplit.kernelMs !== undefined ? { kernel: round(netlinkSplit.kernelMs) } : {}),
      ...(netlinkSplit.handOverMs !== undefined ? { handOver: round(netlinkSplit.handOverMs) } : {}),
      ...(childCompile !== undefined ? { childCompile: round(childCompile) } : {}),
      conntrack: round(conntrackMs),
    };
    this.last = { kind, changes: tx.changes.length, scriptBytes: bytes, ...(way ? { way } : {}), ms: Math.round(performance.now() - started), phases, ...(kind === "full" ? { startedAtMs: Math.round(started), ...(appliedBy ? { appliedBy } : {}), ...(kernelAnsweredAt !== undefined ? { kernelAnsweredAt } : {}), ...(startupChild ? { startupChild } : {}) } : {}) };
    if (kind === "full") this.lastFull = this.last;
    this.revision = revision;
    this.onSynced?.(this.last);
    return full || bytes > CHILD_ABOVE_BYTES;
  }

  /** The slices that belong to a LoadBalancer service (only those matter for announcing). */
  /** This node's L2 segment and the live nodes' IPs, so LoadBalancer IPs are announced only on their own segment. */
  private segment(nodeIp: string, live: readonly { name: string; nodeIp: string }[]): AnnounceSegment | undefined {
    const text = this.kernel.underlaySegment(nodeIp);
    const ownSegment = text === undefined ? undefined : tryParseCidr(text);
    if (ownSegment === undefined) return undefined;
    return { ownSegment, nodeIps: new Map(live.map((n) => [n.name, n.nodeIp])) };
  }

  private *slicesOfLoadBalancers(): Iterable<EndpointSlice> {
    for (const slice of this.seenSlices.values()) {
      const name = slice.metadata.labels?.["kubernetes.io/service-name"];
      if (name && this.loadBalancers.has(`${slice.metadata.namespace ?? "default"}/${name}`)) yield slice;
    }
  }

  private noteService(key: string, service: Service | undefined): void {
    if (service && loadBalancerIpsOf(service).length > 0) this.loadBalancers.set(key, service);
    else this.loadBalancers.delete(key);
  }

  /** Feeds the compiler every object that is not the identical object seen last time. */
  private feedChanges(services: ReadonlyMap<string, Service>, slices: ReadonlyMap<string, EndpointSlice>): void {
    for (const [key, service] of services) {
      if (this.seenServices.get(key) !== service) {
        this.seenServices.set(key, service);
        this.noteService(key, service);
        this.compiler.upsertService(service);
      }
    }
    if (this.seenServices.size > services.size) {
      for (const [key, service] of this.seenServices) {
        if (!services.has(key)) {
          this.seenServices.delete(key);
          this.noteService(key, undefined);
          this.compiler.deleteService(service.metadata.namespace, service.metadata.name);
        }
      }
    }
    for (const [key, slice] of slices) {
      if (this.seenSlices.get(key) !== slice) {
        this.seenSlices.set(key, slice);
        this.compiler.upsertSlice(slice);
      }
    }
    if (this.seenSlices.size > slices.size) {
      for (const [key, slice] of this.seenSlices) {
        if (!slices.has(key)) {
          this.seenSlices.delete(key);
          this.compiler.deleteSlice(slice.metadata.namespace, slice.metadata.name);
        }
      }
    }
  }

  private verifyDue(): boolean {
    const interval = Math.max(this.resyncIntervalMs, VERIFY_COST_FACTOR * this.lastVerifyMs);
    return Date.now() - this.lastVerifyAt >= interval;
  }

  /** Reads the table back and returns what brings it to the model (empty when nobody touched it). */
  private async repairTransaction(next: CompiledProxy): Promise<NftTransaction> {
    const started = Date.now();
    try {
      const current = await this.kernel.readTable("ip", PROXY_TABLE);
      return diffTables(next.table, current);
    } finally {
      this.lastVerifyAt = Date.now();
      this.lastVerifyMs = this.lastVerifyAt - started;
      this.readBacks++;
    }
  }

  describe(): object {
    return {
      services: this.seenServices.size,
      endpointSlices: this.seenSlices.size,
      revision: this.revision,
      lastSync: this.last ?? null,
      lastFullSync: this.lastFull ?? null,
      lastVerifyMs: this.lastVerifyMs,
      readBacks: this.readBacks,
      announcedLoadBalancerIps: this.announced,
      udpFlowsDeleted: this.udpFlowsDeleted,
    };
  }
}
