// Reconciler: the backend (host-gw; vxlan next). Needs the cluster config (which backend, its options),
// this node's registration and the node list. Publishes for the core: the pod MTU, this node's
// backendData, and which leaving nodes it has withdrawn from (so the core can acknowledge them).
//
// A backend that cannot be built (unknown name, options it rejects, a device that cannot be created)
// makes this reconciler, and so the node, NotReady with the reason; it is retried with backoff. Meanwhile:
//   - a backend that was already running keeps reconciling, so running pods keep their routes and routes
//     to leaving nodes are still withdrawn;
//   - with none running (the build failed from the start), the kernel may still hold state that an earlier
//     run of the agent made. Every known backend kind withdraws its state for leaving nodes, and only then
//     are they reported withdrawn. So acknowledgements stay truthful and every other node's removal completes.
// When the config names another backend (or other options), the new one is built first, then the old one
// is torn down, then the new one reconciles.

import type { NodeView } from "../datastore/datastore.ts";
import type { Backend, BackendEnv, BackendFactory, BackendSyncResult, UnreachablePeers } from "./backend.ts";
import { sameJson, sameSet, withdrawnKey, type AgentInputs } from "./inputs.ts";
import type { AgentMetrics } from "./metrics.ts";
import { errorText, NotReadyError, type InputHub, type Reconciler } from "./reconciler.ts";

type RoutesInputs = "config" | "self" | "snapshot";

export interface RoutesStatus {
  /** The backend the cluster config names. */
  wanted: string | null;
  /** The backend running, if any (may differ from `wanted` while the wanted one cannot be built). */
  running: string | null;
  /** Why the wanted backend cannot be built, while it cannot. */
  buildError: string | null;
  routesProgrammed: number;
  conflicts: string[];
  podMtu: number | null;
  /** Peers the running backend cannot reach as configured (host-gw: node IP not on-link), with what to do. */
  condition: UnreachablePeers | null;
  /** What the running backend reports of itself (vxlan: device, VTEP MAC, peers). */
  backendStatus: object | null;
}

export class RoutesReconciler implements Reconciler<AgentInputs, RoutesInputs> {
  readonly name = "routes";
  readonly inputs = ["config", "self", "snapshot"] as const;
  readonly gatesReadiness = true;
  // Short: a failed route is retried soon, and the backoff stays under a few resyncs.
  readonly backoff = { initialMs: 100, maxMs: 2000 };
  private backend: Backend | undefined;
  private backendKey = "";
  private readonly status: RoutesStatus = { wanted: null, running: null, buildError: null, routesProgrammed: 0, conflicts: [], podMtu: null, condition: null, backendStatus: null };

  constructor(
    private readonly deps: {
      factories: readonly BackendFactory[];
      env: BackendEnv;
      hub: InputHub<AgentInputs>;
      metrics: AgentMetrics;
      log: (message: string) => void;
      /** Pod MTU set by the operator (--mtu); otherwise the backend's. */
      mtuOverride?: number;
    },
    readonly resyncIntervalMs: number,
  ) {}

  describe(): RoutesStatus {
    return { ...this.status, conflicts: [...this.status.conflicts], backendStatus: this.backend?.describe?.() ?? null };
  }

  sync(inputs: { readonly config: AgentInputs["config"]; readonly self: AgentInputs["self"]; readonly snapshot: AgentInputs["snapshot"] }): void {
    const started = performance.now();
    try {
      this.syncOnce(inputs);
    } finally {
      this.deps.metrics.syncDuration.observe({ phase: "kernel" }, (performance.now() - started) / 1000);
    }
  }

  private syncOnce({ config, self, snapshot }: { readonly config: AgentInputs["config"]; readonly self: AgentInputs["self"]; readonly snapshot: AgentInputs["snapshot"] }): void {
    const name = config.backend;
    const options = config.backendOptions?.[name] ?? {};
    const key = `${name} ${JSON.stringify(options)}`;
    this.status.wanted = name;
    if (!this.backend || key !== this.backendKey) {
      let reason: string | undefined;
      try {
        this.switchTo(name, options, key);
      } catch (err) {
        reason = errorText(err);
      }
      if (reason !== undefined) {
        if (this.status.buildError !== reason) {
          this.deps.log(`backend ${JSON.stringify(name)} cannot be built: ${reason}; ${this.backend ? `${this.backend.name} keeps running` : "no backend runs"}; the node is NotReady`);
        }
        this.status.buildError = reason;
        // Keep withdrawing from leaving nodes while NotReady, so no removal in the cluster waits on us.
        let meanwhile = "";
        try {
          if (this.backend) this.apply(this.backend, snapshot.nodes, self.name);
          else this.withdrawLeftovers(snapshot.nodes);
        } catch (err) {
          meanwhile = `; meanwhile ${errorText(err)}`;
        }
        throw new NotReadyError(`backend ${JSON.stringify(name)}: ${reason}${meanwhile}`);
      }
    }
    this.status.buildError = null;
    const backend = this.backend!;
    const result = this.apply(backend, snapshot.nodes, self.name);
    this.deps.hub.set("backendData", backend.nodeData?.() ?? {}, sameJson);
    let mtu: number;
    try {
      mtu = this.deps.mtuOverride ?? backend.mtu();
    } catch (err) {
      throw new NotReadyError(`the pod MTU is unknown: ${errorText(err)}`);
    }
    if (this.status.podMtu !== mtu) this.deps.log(`pod MTU ${mtu} (${this.deps.mtuOverride !== undefined ? "--mtu" : `from the ${backend.name} backend`})`);
    this.status.podMtu = mtu;
    this.deps.metrics.podMtu.set(mtu);
    this.deps.hub.set("podMtu", mtu, (a, b) => a === b);
    if (result.errors.length > 0) {
      throw new Error(`route errors: ${result.errors.slice(0, 3).join("; ")}${result.errors.length > 3 ? ` (+${result.errors.length - 3} more)` : ""}`);
    }
  }

  /** Build the wanted backend, then tear the old one down, then adopt the new one. Throws if any step fails. */
  private switchTo(name: string, options: Readonly<Record<string, unknown>>, key: string): void {
    const factory = this.deps.factories.find((f) => f.name === name);
    if (!factory) {
      throw new Error(`unknown backend (this agent knows: ${this.deps.factories.map((f) => f.name).join(", ")})`);
    }
    const next = factory.build(options, this.deps.env);
    const previous = this.backend;
    if (previous) {
      this.deps.log(`backend changes from ${previous.name} to ${next.name}: removing ${previous.name}'s state`);
      previous.teardown();
      this.status.routesProgrammed = 0;
      this.status.condition = null;
      this.deps.metrics.unreachablePeers.set(0);
    }
    this.backend = next;
    this.backendKey = key;
    this.status.running = next.name;
    this.deps.log(`backend ${next.name} built${Object.keys(options).length > 0 ? ` with options ${JSON.stringify(options)}` : ""}`);
  }

  /** Reconcile with `backend`; record metrics; publish which leaving nodes are withdrawn from. */
  private apply(backend: Backend, nodes: readonly NodeView[], self: string): BackendSyncResult {
    const result = backend.reconcile(nodes, self);
    const { metrics } = this.deps;
    this.status.routesProgrammed = result.routesProgrammed;
    this.status.conflicts = result.conflicts;
    metrics.routesProgrammed.set(result.routesProgrammed);
    metrics.routeConflicts.set(result.conflicts.length);
    for (const op of ["add", "replace", "delete"] as const) if (result.changes[op] > 0) metrics.routeChanges.inc({ op }, result.changes[op]);
    if (result.errors.length > 0) metrics.kernelErrors.inc(result.errors.length);
    const changed = result.changes.add + result.changes.replace + result.changes.delete;
    if (changed > 0) this.deps.log(`routes: +${result.changes.add} ~${result.changes.replace} -${result.changes.delete}, ${result.routesProgrammed} programmed`);
    if (result.conflicts.length > 0 && !sameJson(result.conflicts, this.lastConflicts)) {
      this.deps.log(`left alone, routes of someone else cover: ${result.conflicts.join(", ")}`);
    }
    this.lastConflicts = result.conflicts;
    const condition = result.unreachable ?? null;
    if (!sameJson(condition, this.status.condition)) {
      this.deps.log(condition ? `${condition.reason}: ${condition.message}` : `every peer is reachable by ${backend.name} again`);
    }
    this.status.condition = condition;
    metrics.unreachablePeers.set(condition?.peers.length ?? 0);
    const failed = new Set(result.notWithdrawn);
    this.publishWithdrawn(nodes.filter((n) => n.phase !== "active" && n.name !== self && !failed.has(n.name)));
    return result;
  }

  private lastConflicts: string[] = [];

  /** No backend runs: have every known kind remove what an earlier run may have left for leaving nodes. */
  private withdrawLeftovers(nodes: readonly NodeView[]): void {
    const leaving = nodes.filter((n) => n.phase !== "active");
    if (leaving.length === 0) {
      this.publishWithdrawn([]);
      return;
    }
    for (const factory of this.deps.factories) {
      const removed = factory.withdraw(leaving, this.deps.env);
      if (removed > 0) this.deps.log(`no backend runs: removed ${removed} ${factory.name} entr${removed === 1 ? "y" : "ies"} an earlier run left for leaving nodes`);
    }
    this.publishWithdrawn(leaving);
  }

  private publishWithdrawn(nodes: readonly NodeView[]): void {
    this.deps.hub.set("withdrawn", new Set(nodes.map(withdrawnKey)), sameSet);
  }
}
