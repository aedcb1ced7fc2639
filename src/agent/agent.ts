// The node agent: a core that owns this node's place in the cluster, and reconcilers that do the work.
//
// The core (this file) talks to the datastore: it reads the cluster config, registers the node and keeps
// its liveness lease, reads snapshots (on every watch event, and in full every `datastoreRefreshMs` as a
// guard against a missed event), and carries out the node lifecycle: acknowledging leaving nodes once
// the routes reconciler has withdrawn from them, marking expired peers leaving, finalizing removals.
// It publishes what it reads into an InputHub, and writes the conflist and the ready file when every
// readiness-gating reconciler is ready.
//
// The reconcilers (reconciler.ts; routes-reconciler.ts, masquerade-reconciler.ts) each run on their own
// timer with their own backoff: a failing or hanging one never stalls the core or another reconciler. In
// particular a backend that cannot be built leaves the node NotReady, but the node still registers,
// renews its lease and acknowledges leaving nodes, so removals elsewhere in the cluster complete.
//
// During a datastore outage the reconcilers keep working against the last snapshot read: routes stay
// exactly as they were (no flapping), and hand-made damage is still repaired. Datastore calls are retried
// with exponential backoff; the watch reconnects by itself and a reconnection forces a fresh read.
//
// On stop (SIGTERM) the agent leaves routes, masquerading and conflist in place and does not revoke its
// lease: running pods keep their connectivity while the agent is restarted or upgraded, and the lease's
// TTL is the grace period in which a restarted agent reclaims its node and subnet as they were.

import type { Datastore, ClusterConfig, ClusterSnapshot, NodeLease, NodeRecord, DatastoreWatch } from "../datastore/datastore.ts";
import { NodeRemovedError } from "../datastore/datastore.ts";
import { planLifecycle } from "../datastore/node-lifecycle.ts";
import { buildConflist, ensureConflist, markNotReady, markReady, removeConflist, subnetFromExistingConflist } from "./conflist.ts";
import type { ObjectStore } from "../datastore/objects.ts";
import type { ObjectKind } from "../k8s/types.ts";
import { sameJson, withdrawnKey, type AgentInputs } from "./inputs.ts";
import { feedObjects, objectKindsIn } from "./object-feed.ts";
import type { AgentMetrics, HealthReport } from "./metrics.ts";
import { Backoff, errorText, InputHub, ReconcilerRunner, type Reconciler } from "./reconciler.ts";

export interface AgentOptions {
  name: string;
  nodeIp: string;
  cniConfDir: string;
  ipamDataDir: string;
  /** Kept while this node's network is in place; the plugin's STATUS is NotReady without it. */
  readyFile: string;
  /** cniVersion of the conflist written. */
  cniVersion: string;
  /** The node's resident CNI service (`podnet serve`), named in the conflist so the plugin hands it its calls. */
  cniServiceSocket?: string;
  bridge: string;
  /** Written to the datastore only if the cluster has no config yet (first agent wins). */
  clusterDefaults: ClusterConfig;
  /** Full datastore re-read period even without watch events, as a guard against a missed event. */
  datastoreRefreshMs: number;
  log: (message: string) => void;
}

export interface AgentDeps {
  datastore: Datastore;
  /** Where cluster objects come from; needed only if a reconciler declares an object kind as an input. */
  objects?: ObjectStore;
  metrics: AgentMetrics;
  /**
   * The reconcilers, built against the agent's InputHub (routes and masquerade; later the service proxy
   * and policy). Extra /status fields come from `describe()` when a reconciler has one.
   */
  reconcilers: (hub: InputHub<AgentInputs>) => readonly Reconciler<AgentInputs, keyof AgentInputs>[];
}

export type AgentExit = "stopped" | "removed";

export class NodeAgent {
  readonly hub = new InputHub<AgentInputs>();
  private readonly runner: ReconcilerRunner<AgentInputs>;
  private readonly reconcilers: readonly Reconciler<AgentInputs, keyof AgentInputs>[];
  private config: ClusterConfig | undefined;
  private lease: NodeLease | undefined;
  private node: NodeRecord | undefined;
  private snapshot: ClusterSnapshot | undefined;
  private watch: DatastoreWatch | undefined;
  /** Object kinds some reconciler reads; watched through `deps.objects`. */
  private readonly objectKinds: readonly ObjectKind[];
  private objectWatch: { close(): Promise<void> } | undefined;
  private needsRegistration = true;
  private dirty = true;
  /** A fresh snapshot or new withdrawals since the lifecycle last ran. */
  private lifecycleDue = false;
  /** When the datastore itself (not the watch-fed mirror) was last read. */
  private lastFreshRead = 0;
  private removedByOperator = false;
  private exited = false;
  private ready = false;
  private datastoreHealthy = true;
  private lastDatastoreError = "";
  private readonly backoff = new Backoff(200, 5000);
  private wake: (() => void) | undefined;

  constructor(
    private readonly opts: AgentOptions,
    private readonly deps: AgentDeps,
  ) {
    this.runner = new ReconcilerRunner(this.hub, {
      log: (message) => this.opts.log(message),
      metrics: deps.metrics.reconcilers,
      onChange: () => this.updateReadiness(),
    });
    this.reconcilers = deps.reconcilers(this.hub);
    for (const reconciler of this.reconcilers) this.runner.add(reconciler);
    this.objectKinds = objectKindsIn(this.reconcilers.flatMap((r) => r.inputs));
    if (this.objectKinds.length > 0 && !deps.objects) {
      throw new Error(`reconcilers read ${this.objectKinds.join(", ")}, but the agent was given no object store`);
    }
    // Outputs of reconcilers the core acts on: withdrawals to acknowledge, backend data to publish.
    this.hub.subscribe(["withdrawn"], () => {
      this.lifecycleDue = true;
      this.wake?.();
    });
    this.hub.subscribe(["backendData"], () => {
      if (this.node && !sameJson(this.node.backendData, this.hub.get("backendData"))) {
        this.needsRegistration = true;
        this.wake?.();
      }
    });
    this.hub.subscribe(["podMtu"], () => this.updateReadiness());
  }

  /** Run until `stop` aborts (returns "stopped") or an operator removed this node (returns "removed"). */
  async run(stop: AbortSignal): Promise<AgentExit> {
    // A conflist from an earlier run stays (running pods keep their network), but until this run has
    // the routes in place the plugin's STATUS says NotReady, so the node reads NotReady meanwhile.
    markNotReady(this.opts.readyFile);
    const onAbort = () => this.wake?.();
    stop.addEventListener("abort", onAbort);
    this.runner.start();
    try {
      while (!stop.aborted) {
        const fresh = await this.syncDatastore();
        if (fresh && this.snapshot) {
          const exit = this.checkOwnRecord(this.snapshot);
          if (exit) return exit;
          this.lifecycleDue = true;
        }
        if (this.lifecycleDue && this.snapshot && this.node) {
          this.lifecycleDue = false;
          await this.runLifecycle(this.snapshot);
        }
        await this.sleep(this.nextWakeDelay(), stop);
      }
      return "stopped";
    } finally {
      this.exited = true;
      stop.removeEventListener("abort", onAbort);
      await this.shutdown();
    }
  }

  health(): HealthReport {
    const extra: Record<string, object> = {};
    for (const r of this.reconcilers) if (r.describe) extra[r.name] = r.describe();
    const reconcilers = Object.fromEntries(Object.entries(this.runner.health()).map(([name, h]) => [name, { ...h, ...extra[name] }]));
    const routes = extra.routes as { running?: string | null; routesProgrammed?: number } | undefined;
    return {
      ready: this.ready,
      notReadyReasons: this.ready ? [] : this.notReadyReasons(),
      node: this.opts.name,
      nodeIp: this.opts.nodeIp,
      podSubnet: this.node?.podSubnet ?? null,
      backend: routes?.running ?? null,
      podMtu: this.hub.get("podMtu") ?? null,
      routesProgrammed: routes?.routesProgrammed ?? 0,
      datastoreConnected: this.datastoreHealthy,
      lastDatastoreError: this.lastDatastoreError || null,
      snapshotRevision: this.snapshot?.revision ?? null,
      reconcilers,
      nodes: (this.snapshot?.nodes ?? []).map((n) => ({ name: n.name, nodeIp: n.nodeIp, podSubnet: n.podSubnet, phase: n.phase, alive: n.alive })),
    };
  }

  private notReadyReasons(): string[] {
    const reasons: string[] = [];
    if (this.removedByOperator) reasons.push("node is being removed from the cluster");
    if (!this.node) reasons.push(`not registered${this.lastDatastoreError ? ` (${this.lastDatastoreError})` : ""}`);
    reasons.push(...this.runner.notReadyReasons());
    if (reasons.length === 0 && this.hub.get("podMtu") === undefined) reasons.push("pod MTU not known yet");
    return reasons;
  }

  /**
   * Ready when registered and every gating reconciler is ready: write the conflist (with the backend's
   * MTU) and the ready file. Not ready (a backend that cannot be built): remove the ready file, so the
   * plugin's STATUS says NotReady; the conflist stays for the pods already running.
   */
  private updateReadiness(): void {
    if (this.exited || this.removedByOperator) return;
    const mtu = this.hub.get("podMtu");
    const shouldBeReady = this.node !== undefined && mtu !== undefined && this.runner.ready();
    if (shouldBeReady) {
      const conflist = buildConflist({
        podSubnet: this.node!.podSubnet,
        bridge: this.opts.bridge,
        mtu: mtu!,
        ipamDataDir: this.opts.ipamDataDir,
        readyFile: this.opts.readyFile,
        cniVersion: this.opts.cniVersion,
        ...(this.opts.cniServiceSocket ? { serviceSocket: this.opts.cniServiceSocket } : {}),
      });
      try {
        if (ensureConflist(this.opts.cniConfDir, conflist)) this.opts.log(`conflist written to ${this.opts.cniConfDir} (pod subnet ${this.node!.podSubnet}, MTU ${mtu})`);
        markReady(this.opts.readyFile);
        if (!this.ready) this.opts.log(`node ready (${this.opts.readyFile})`);
        this.ready = true;
        this.deps.metrics.ready.set(1);
      } catch (err) {
        this.opts.log(`writing the conflist failed: ${errorText(err)}`);
      }
    } else if (this.ready) {
      markNotReady(this.opts.readyFile);
      this.ready = false;
      this.deps.metrics.ready.set(0);
      this.opts.log(`node NOT ready: ${this.notReadyReasons().join("; ")}`);
    }
  }

  /** Talk to the datastore if the backoff allows. Returns true when a fresh snapshot was read. */
  private async syncDatastore(): Promise<boolean> {
    const now = Date.now();
    if (now < this.backoff.nextAttemptAt) return false;
    let op = "config";
    try {
      if (!this.config) {
        this.config = await this.deps.datastore.ensureClusterConfig(this.opts.clusterDefaults);
        this.publishConfig(this.config);
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
        if (this.snapshot.config) this.publishConfig(this.snapshot.config);
        this.hub.set("snapshot", this.snapshot);
        fresh = true;
      }
      // After the first snapshot: the routes reconciler (and so the node's readiness for pods) needs
      // only the nodes, and must not wait for the list of every Service and EndpointSlice (1.2 s at
      // 10,000 services).
      if (!this.objectWatch && this.objectKinds.length > 0) {
        op = "objects-watch";
        this.objectWatch = await feedObjects(this.deps.objects!, this.hub, this.objectKinds, (connected) => {
          if (!connected) this.deps.metrics.datastoreErrors.inc({ op: "objects-watch" });
        });
      }
      this.backoff.succeed();
      if (!this.datastoreHealthy) this.opts.log("datastore reachable again");
      this.datastoreHealthy = true;
      this.lastDatastoreError = "";
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
      } else {
        this.logThrottled(`datastore ${op} failed (${errorText(err)}); keeping the last known routes, retrying in ${delay} ms`);
      }
      this.datastoreHealthy = false;
      return false;
    }
  }

  private publishConfig(config: ClusterConfig): void {
    const previous = this.hub.get("config");
    if (this.hub.set("config", config, sameJson) && previous) {
      this.opts.log(`cluster config changed: backend ${config.backend}${config.backendOptions?.[config.backend] ? ` ${JSON.stringify(config.backendOptions[config.backend])}` : ""}, cluster ${config.clusterCidr}`);
    }
    this.config = config;
  }

  private async register(): Promise<void> {
    const preferredSubnet = this.node?.podSubnet ?? subnetFromExistingConflist(this.opts.cniConfDir);
    const backendData = this.hub.get("backendData");
    const request = {
      name: this.opts.name,
      nodeIp: this.opts.nodeIp,
      ...(preferredSubnet ? { preferredSubnet } : {}),
      ...(backendData && Object.keys(backendData).length > 0 ? { backendData } : {}),
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
    if (!previous || !sameJson(previous, lease.node)) this.hub.set("self", lease.node);
    if (!previous) this.opts.log(`registered node ${lease.node.name} (${lease.node.nodeIp}) with pod subnet ${lease.node.podSubnet}`);
    else if (previous.podSubnet !== lease.node.podSubnet) this.opts.log(`re-registered with a NEW pod subnet ${lease.node.podSubnet} (was ${previous.podSubnet})`);
    else this.opts.log(`re-registered, keeping pod subnet ${lease.node.podSubnet}`);
    this.updateReadiness();
  }

  private checkOwnRecord(snapshot: ClusterSnapshot): AgentExit | undefined {
    const own = snapshot.nodes.find((n) => n.name === this.opts.name);
    if (!own) {
      if (this.removedByOperator) {
        this.opts.log(`node ${this.opts.name} was removed from the cluster; removing the conflist and exiting`);
        this.exited = true;
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

  /**
   * Node lifecycle duties, whatever state the reconcilers are in: ack the leaving nodes the routes
   * reconciler reports withdrawn from (at the record revision it saw), mark expired peers, finalize.
   */
  /** etcd refused this agent a write to another node's record: its role is least privilege. */
  private peerDutiesRefused = false;

  private async runLifecycle(snapshot: ClusterSnapshot): Promise<void> {
    const plan = planLifecycle(snapshot, this.opts.name);
    const withdrawn = this.hub.get("withdrawn");
    try {
      for (const node of plan.owedAcks) {
        if (!withdrawn?.has(withdrawnKey(node))) continue; // acked once the routes reconciler reports it
        await this.deps.datastore.ackNodeLeaving(node.name, this.opts.name);
        this.opts.log(`withdrew routes to leaving node ${node.name}; acknowledged`);
      }
      // With least privilege in etcd (datastore/etcd-roles.ts) an agent may write only its own record:
      // expiring and deleting peers is then the control plane's node lifecycle controller's job
      // (controlplane/node-lifecycle-controller.ts), and the refusal is not a fault.
      if (!this.peerDutiesRefused) {
        try {
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
          if (!/permission denied/i.test(errorText(err))) throw err;
          this.peerDutiesRefused = true;
          this.opts.log(`this node's etcd role may not write other nodes' records; expiring and removing peers is left to the control plane's node lifecycle controller`);
        }
      }
    } catch (err) {
      this.dirty = true;
      this.lifecycleDue = true;
      this.deps.metrics.datastoreErrors.inc({ op: "lifecycle" });
      this.backoff.fail();
      this.logThrottled(`node lifecycle update failed: ${errorText(err)}`);
    }
  }

  private nextWakeDelay(): number {
    if (!(this.needsRegistration || this.dirty || this.lifecycleDue)) return Math.max(0, this.lastFreshRead + this.opts.datastoreRefreshMs - Date.now());
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
    await this.runner.stop();
    // No revoke: see the header. Stopping keepalives lets the lease run out its TTL as the grace period.
    this.lease?.release();
    await this.watch?.close().catch(() => undefined);
    await this.objectWatch?.close().catch(() => undefined);
    await this.deps.datastore.close().catch(() => undefined);
  }

  private lastThrottled = new Map<string, number>();
  private logThrottled(message: string): void {
    const now = Date.now();
    const key = message.slice(0, 60);
    if (now - (this.lastThrottled.get(key) ?? 0) < 10_000) return;
    this.lastThrottled.set(key, now);
    this.opts.log(message);
  }
}
