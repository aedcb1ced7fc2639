// The node agent's control loop.
//
// Two inputs, one output. Inputs: the datastore (read as whole snapshots, on every watch event and every
// `datastoreRefreshMs` even without one) and the kernel (read on every `resyncIntervalMs` tick). Output:
// the kernel made to match the last snapshot read, then the conflist. The last snapshot is kept in memory
// only as "what the datastore said last"; kernel facts are always read fresh, so nothing drifts.
//
// During a datastore outage the agent keeps reconciling the kernel against the last snapshot: routes stay
// exactly as they were (no flapping), and hand-made damage is still repaired. Datastore calls are retried
// with exponential backoff; the watch reconnects by itself and a reconnection forces a fresh read.
//
// On stop (SIGTERM) the agent leaves routes, masquerading and conflist in place and does not revoke its
// lease: running pods keep their connectivity while the agent is restarted or upgraded, and the lease's
// TTL is the grace period in which a restarted agent reclaims its node and subnet as they were.

import type { Datastore, ClusterConfig, ClusterSnapshot, NodeLease, NodeRecord, DatastoreWatch } from "../datastore/datastore.ts";
import { NodeRemovedError } from "../datastore/datastore.ts";
import { planLifecycle } from "../datastore/node-lifecycle.ts";
import type { Backend } from "./backend.ts";
import { buildConflist, ensureConflist, markNotReady, markReady, removeConflist, subnetFromExistingConflist } from "./conflist.ts";
import type { Masquerade } from "./masquerade.ts";
import type { AgentMetrics, HealthReport } from "./metrics.ts";

export interface AgentOptions {
  name: string;
  nodeIp: string;
  cniConfDir: string;
  ipamDataDir: string;
  /** Kept while this node's network is in place; the plugin's STATUS is NotReady without it. */
  readyFile: string;
  /** cniVersion of the conflist written. */
  cniVersion: string;
  bridge: string;
  mtu: number;
  /** Written to the datastore only if the cluster has no config yet (first agent wins). */
  clusterDefaults: ClusterConfig;
  /** Kernel resync period; a route removed by hand is back within this. */
  resyncIntervalMs: number;
  /** Full datastore re-read period even without watch events, as a guard against a missed event. */
  datastoreRefreshMs: number;
  log: (message: string) => void;
}

export interface AgentDeps {
  datastore: Datastore;
  /** Build the backend the cluster config names; throws for an unknown one. */
  createBackend: (name: string) => Backend;
  masquerade: Masquerade;
  metrics: AgentMetrics;
}

export type AgentExit = "stopped" | "removed";

export class NodeAgent {
  private config: ClusterConfig | undefined;
  private backend: Backend | undefined;
  private lease: NodeLease | undefined;
  private node: NodeRecord | undefined;
  private snapshot: ClusterSnapshot | undefined;
  private watch: DatastoreWatch | undefined;
  private needsRegistration = true;
  private dirty = true;
  /** When the datastore itself (not the watch-fed mirror) was last read. */
  private lastFreshRead = 0;
  private removedByOperator = false;
  private ready = false;
  private masqueradeOk = false;
  private masqueradeInFlight = false;
  private datastoreHealthy = true;
  private lastDatastoreError = "";
  private lastDatastoreErrorLog = 0;
  private routesProgrammed = 0;
  private lastKernelSync = 0;
  private readonly backoff = new Backoff(200, 5000);
  private wake: (() => void) | undefined;

  constructor(
    private readonly opts: AgentOptions,
    private readonly deps: AgentDeps,
  ) {}

  /** Run until `stop` aborts (returns "stopped") or an operator removed this node (returns "removed"). */
  async run(stop: AbortSignal): Promise<AgentExit> {
    // A conflist from an earlier run stays (running pods keep their network), but until this run has
    // the routes in place the plugin's STATUS says NotReady, so the node reads NotReady meanwhile.
    markNotReady(this.opts.readyFile);
    const onAbort = () => this.wake?.();
    stop.addEventListener("abort", onAbort);
    // The kernel is resynced on its own timer, so a datastore call stuck in retries never delays repairs.
    // Masquerading is checked on the timer only: it depends on the cluster CIDR, not on the node list.
    const kernelTimer = setInterval(() => {
      this.syncKernel();
      void this.syncMasquerade();
    }, this.opts.resyncIntervalMs);
    try {
      while (!stop.aborted) {
        const fresh = await this.syncDatastore();
        if (!this.masqueradeOk && this.config) await this.syncMasquerade();
        if (fresh && this.snapshot) {
          // Apply a fresh snapshot at once rather than at the next tick: this is the change latency.
          const kernelOk = this.syncKernel();
          const exit = this.checkOwnRecord(this.snapshot);
          if (exit) return exit;
          if (kernelOk) await this.runLifecycle(this.snapshot);
        }
        await this.sleep(this.nextWakeDelay(), stop);
      }
      return "stopped";
    } finally {
      clearInterval(kernelTimer);
      stop.removeEventListener("abort", onAbort);
      await this.shutdown();
    }
  }

  health(): HealthReport {
    return {
      ready: this.ready,
      node: this.opts.name,
      nodeIp: this.opts.nodeIp,
      podSubnet: this.node?.podSubnet ?? null,
      backend: this.backend?.name ?? null,
      routesProgrammed: this.routesProgrammed,
      datastoreConnected: this.datastoreHealthy,
      lastDatastoreError: this.lastDatastoreError || null,
      snapshotRevision: this.snapshot?.revision ?? null,
      lastKernelSync: this.lastKernelSync ? new Date(this.lastKernelSync).toISOString() : null,
      nodes: (this.snapshot?.nodes ?? []).map((n) => ({ name: n.name, nodeIp: n.nodeIp, podSubnet: n.podSubnet, phase: n.phase, alive: n.alive })),
    };
  }

  /** Talk to the datastore if the backoff allows. Returns true when a fresh snapshot was read. */
  private async syncDatastore(): Promise<boolean> {
    const now = Date.now();
    if (now < this.backoff.nextAttemptAt) return false;
    let op = "config";
    try {
      if (!this.config) {
        this.config = await this.deps.datastore.ensureClusterConfig(this.opts.clusterDefaults);
        this.backend = this.deps.createBackend(this.config.backend);
        this.opts.log(`cluster ${this.config.clusterCidr}, /${this.config.subnetLength} per node, backend ${this.config.backend}, lease TTL ${this.config.nodeLeaseTtlSeconds}s`);
      }
      if (this.needsRegistration) {
        op = "register";
        await this.register();
      }
      if (!this.watch) {
        op = "watch";
        this.watch = await this.deps.datastore.watch({
          onChange: () => {
            this.dirty = true;
            this.wake?.();
          },
          onConnection: (connected) => {
            if (!connected) this.deps.metrics.datastoreErrors.inc({ op: "watch" });
          },
        });
      }
      let fresh = false;
      const periodic = now - this.lastFreshRead >= this.opts.datastoreRefreshMs;
      if (this.dirty || periodic) {
        op = "snapshot";
        this.dirty = false;
        const started = performance.now();
        // Watch events are served from the datastore's mirror; the periodic re-read goes to the store itself.
        this.snapshot = await this.deps.datastore.snapshot({ fresh: periodic });
        this.deps.metrics.syncDuration.observe({ phase: "datastore" }, (performance.now() - started) / 1000);
        if (periodic) this.lastFreshRead = now;
        fresh = true;
      }
      this.backoff.succeed();
      if (!this.datastoreHealthy) this.opts.log("datastore reachable again");
      this.datastoreHealthy = true;
      this.deps.metrics.datastoreConnected.set(1);
      return fresh;
    } catch (err) {
      this.dirty = true;
      this.deps.metrics.datastoreErrors.inc({ op });
      this.deps.metrics.datastoreConnected.set(0);
      const delay = this.backoff.fail();
      this.lastDatastoreError = `${op}: ${errorText(err)}`;
      if (err instanceof NodeRemovedError) {
        this.logThrottled(`waiting: ${err.message}`);
      } else if (this.datastoreHealthy || Date.now() - this.lastDatastoreErrorLog > 30_000) {
        this.logThrottled(`datastore ${op} failed (${errorText(err)}); keeping the last known routes, retrying in ${delay} ms`);
      }
      this.datastoreHealthy = false;
      return false;
    }
  }

  private async register(): Promise<void> {
    const preferredSubnet = this.node?.podSubnet ?? subnetFromExistingConflist(this.opts.cniConfDir);
    const backendData = this.backend?.nodeData?.();
    const request = {
      name: this.opts.name,
      nodeIp: this.opts.nodeIp,
      ...(preferredSubnet ? { preferredSubnet } : {}),
      ...(backendData ? { backendData } : {}),
    };
    const lease = await this.deps.datastore.registerNode(request);
    this.lease?.release();
    this.lease = lease;
    const previous = this.node;
    this.node = lease.node;
    this.needsRegistration = false;
    this.dirty = true;
    lease.onLost((reason) => {
      if (this.lease !== lease) return;
      this.opts.log(`liveness lease lost (${errorText(reason)}); registering again`);
      this.needsRegistration = true;
      this.wake?.();
    });
    if (!previous) this.opts.log(`registered node ${lease.node.name} (${lease.node.nodeIp}) with pod subnet ${lease.node.podSubnet}`);
    else if (previous.podSubnet !== lease.node.podSubnet) this.opts.log(`re-registered with a NEW pod subnet ${lease.node.podSubnet} (was ${previous.podSubnet})`);
    else this.opts.log(`re-registered, keeping pod subnet ${lease.node.podSubnet}`);
  }

  /** Reconcile routes, masquerading and conflist against the last known snapshot. Returns true if everything applied. */
  private syncKernel(): boolean {
    if (!this.snapshot || !this.node || !this.config || !this.backend) return false;
    const started = performance.now();
    let ok = true;
    try {
      const result = this.backend.reconcile(this.snapshot.nodes, this.opts.name);
      this.routesProgrammed = result.routesProgrammed;
      this.deps.metrics.routesProgrammed.set(result.routesProgrammed);
      this.deps.metrics.routeConflicts.set(result.conflicts.length);
      for (const op of ["add", "replace", "delete"] as const) if (result.changes[op] > 0) this.deps.metrics.routeChanges.inc({ op }, result.changes[op]);
      const changed = result.changes.add + result.changes.replace + result.changes.delete;
      if (changed > 0) this.opts.log(`routes: +${result.changes.add} ~${result.changes.replace} -${result.changes.delete}, ${result.routesProgrammed} programmed`);
      if (result.errors.length > 0) {
        ok = false;
        this.deps.metrics.kernelErrors.inc(result.errors.length);
        this.logThrottled(`route errors: ${result.errors.slice(0, 3).join("; ")}${result.errors.length > 3 ? ` (+${result.errors.length - 3} more)` : ""}`);
      }
      if (result.conflicts.length > 0) this.logThrottled(`left alone, routes of someone else cover: ${result.conflicts.join(", ")}`);
    } catch (err) {
      ok = false;
      this.deps.metrics.kernelErrors.inc();
      this.logThrottled(`route sync failed: ${errorText(err)}`);
    }
    this.deps.metrics.syncDuration.observe({ phase: "kernel" }, (performance.now() - started) / 1000);
    this.lastKernelSync = Date.now();
    // Ready once routes and masquerading were both in place once; afterwards the conflist stays even if
    // a later sync fails, since running pods and new ones on this node are still served.
    if ((ok && this.masqueradeOk) || this.ready) {
      const conflist = buildConflist({
        podSubnet: this.node.podSubnet,
        bridge: this.opts.bridge,
        mtu: this.opts.mtu,
        ipamDataDir: this.opts.ipamDataDir,
        readyFile: this.opts.readyFile,
        cniVersion: this.opts.cniVersion,
      });
      try {
        if (ensureConflist(this.opts.cniConfDir, conflist)) this.opts.log(`conflist written to ${this.opts.cniConfDir} (pod subnet ${this.node.podSubnet})`);
        if (!this.ready) this.opts.log(`node ready (${this.opts.readyFile})`);
        markReady(this.opts.readyFile);
        this.ready = true;
        this.deps.metrics.ready.set(1);
      } catch (err) {
        ok = false;
        this.logThrottled(`writing the conflist failed: ${errorText(err)}`);
      }
    }
    return ok;
  }

  /** Make sure the masquerade table is in place; one check at a time, without blocking the loop. */
  private async syncMasquerade(): Promise<void> {
    if (!this.config || this.masqueradeInFlight) return;
    this.masqueradeInFlight = true;
    try {
      if (await this.deps.masquerade.ensure(this.config.clusterCidr)) this.opts.log(`masquerade for ${this.config.clusterCidr} installed (nftables table ip podnet)`);
      const first = !this.masqueradeOk;
      this.masqueradeOk = true;
      // Routes may have been ready before masquerading was: become ready now rather than at the next tick.
      if (first && !this.ready) this.syncKernel();
    } catch (err) {
      this.deps.metrics.kernelErrors.inc();
      this.logThrottled(`masquerade failed: ${errorText(err)}`);
    } finally {
      this.masqueradeInFlight = false;
    }
  }

  private checkOwnRecord(snapshot: ClusterSnapshot): AgentExit | undefined {
    const own = snapshot.nodes.find((n) => n.name === this.opts.name);
    if (!own) {
      if (this.removedByOperator) {
        this.opts.log(`node ${this.opts.name} was removed from the cluster; removing the conflist and exiting`);
        removeConflist(this.opts.cniConfDir);
        markNotReady(this.opts.readyFile);
        this.ready = false;
        this.deps.metrics.ready.set(0);
        return "removed";
      }
      if (!this.needsRegistration && this.node) this.opts.log(`own node record is gone; registering again`);
      this.needsRegistration = true;
      this.wake?.();
      return undefined;
    }
    if (own.phase === "leaving") {
      if (own.leavingReason === "removed") {
        if (!this.removedByOperator) this.opts.log(`node ${own.name} is being removed by an operator; peers are withdrawing their routes`);
        this.removedByOperator = true;
      } else if (!this.needsRegistration) {
        this.opts.log(`own node was marked expired; reviving it`);
        this.needsRegistration = true;
      }
    } else if (own.nodeIp !== this.opts.nodeIp || (this.node && own.podSubnet !== this.node.podSubnet)) {
      this.needsRegistration = true;
    }
    return undefined;
  }

  private async runLifecycle(snapshot: ClusterSnapshot): Promise<void> {
    const plan = planLifecycle(snapshot, this.opts.name);
    try {
      for (const node of plan.owedAcks) {
        await this.deps.datastore.ackNodeLeaving(node.name, this.opts.name);
        this.opts.log(`withdrew routes to leaving node ${node.name}; acknowledged`);
      }
      for (const node of plan.markExpired) {
        if (await this.deps.datastore.markNodeLeaving(node.name, "expired", node.revision)) {
          this.opts.log(`node ${node.name} missed its liveness lease; marked leaving (expired)`);
        }
      }
      for (const node of plan.finalize) {
        if (await this.deps.datastore.finalizeNodeRemoval(node.name, node.revision)) {
          this.opts.log(`node ${node.name} removed; subnet ${node.podSubnet} is free`);
        }
      }
    } catch (err) {
      this.dirty = true;
      this.deps.metrics.datastoreErrors.inc({ op: "lifecycle" });
      this.backoff.fail();
      this.logThrottled(`node lifecycle update failed: ${errorText(err)}`);
    }
  }

  private nextWakeDelay(): number {
    if (!(this.needsRegistration || this.dirty)) return Math.max(0, this.lastFreshRead + this.opts.datastoreRefreshMs - Date.now());
    return Math.max(0, this.backoff.nextAttemptAt - Date.now());
  }

  private sleep(ms: number, stop: AbortSignal): Promise<void> {
    if (stop.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  private async shutdown(): Promise<void> {
    // No revoke: see the header. Stopping keepalives lets the lease run out its TTL as the grace period.
    this.lease?.release();
    await this.watch?.close().catch(() => undefined);
    await this.deps.datastore.close().catch(() => undefined);
  }

  private lastThrottled = new Map<string, number>();
  private logThrottled(message: string): void {
    const now = Date.now();
    const key = message.slice(0, 60);
    if (now - (this.lastThrottled.get(key) ?? 0) < 10_000) return;
    this.lastThrottled.set(key, now);
    if (message.startsWith("datastore")) this.lastDatastoreErrorLog = now;
    this.opts.log(message);
  }
}

/** Exponential backoff with jitter, so agents that lost etcd together do not retry in lockstep. */
export class Backoff {
  private delay = 0;
  nextAttemptAt = 0;

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** Record a failure; returns the wait before the next attempt. */
  fail(now = Date.now()): number {
    this.delay = this.delay === 0 ? this.initialMs : Math.min(this.maxMs, this.delay * 2);
    const wait = Math.round(this.delay * (0.8 + 0.4 * this.random()));
    this.nextAttemptAt = now + wait;
    return wait;
  }

  succeed(): void {
    this.delay = 0;
    this.nextAttemptAt = 0;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
