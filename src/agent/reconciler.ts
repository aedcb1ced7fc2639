// The agent's reconciler framework, after kube-router's one-controller-per-job: each reconciler (routes,
// masquerade; later the service proxy and policy) declares the inputs it needs, and runs on its own
// timer with its own backoff, health and metrics. A reconciler that throws or hangs holds up nobody else:
// every one has its own asynchronous chain, and the runner never awaits one reconciler on behalf of another.
//
// Inputs live in an InputHub: named, typed, versioned values that the agent's core (datastore snapshots,
// the cluster config, this node's registration) and reconcilers themselves publish. A reconciler is
// woken when one of its inputs changes, and again every `resyncIntervalMs` (kernel state can be changed
// by hand, so it is re-read and repaired even when the datastore is quiet).
//
// One limit no framework in one JavaScript thread can lift: a reconciler that blocks the event loop
// synchronously (a busy loop, a synchronous syscall that never returns) stalls everything. Slow work
// must be asynchronous; a promise that never settles is fine, and is reported (see `timeoutMs`).

import type { ReconcilerMetrics } from "./metrics.ts";

/** Named values with a version each; `M` maps each name to its type. */
export class InputHub<M extends object> {
  private readonly values = new Map<keyof M, unknown>();
  private readonly versions = new Map<keyof M, number>();
  private readonly listeners = new Map<keyof M, Set<() => void>>();

  get<K extends keyof M>(key: K): M[K] | undefined {
    return this.values.get(key) as M[K] | undefined;
  }

  has(key: keyof M): boolean {
    return this.values.has(key);
  }

  /** Version of a key: 0 until first set, then bumped on every change. */
  version(key: keyof M): number {
    return this.versions.get(key) ?? 0;
  }

  /**
   * Publish a value. With `equals`, a value equal to the current one is not a change: its subscribers
   * are not woken (so, e.g., a snapshot whose config is unchanged does not wake the masquerade reconciler).
   */
  set<K extends keyof M>(key: K, value: M[K], equals?: (a: M[K], b: M[K]) => boolean): boolean {
    if (equals && this.values.has(key) && equals(this.values.get(key) as M[K], value)) return false;
    this.values.set(key, value);
    this.versions.set(key, this.version(key) + 1);
    for (const listener of [...(this.listeners.get(key) ?? [])]) listener();
    return true;
  }

  delete(key: keyof M): void {
    if (!this.values.delete(key)) return;
    this.versions.set(key, this.version(key) + 1);
    for (const listener of [...(this.listeners.get(key) ?? [])]) listener();
  }

  /** Call `listener` (synchronously, from `set`) whenever one of `keys` changes. Returns the unsubscribe. */
  subscribe(keys: readonly (keyof M)[], listener: () => void): () => void {
    for (const key of keys) {
      let set = this.listeners.get(key);
      if (!set) this.listeners.set(key, (set = new Set()));
      set.add(listener);
    }
    return () => {
      for (const key of keys) this.listeners.get(key)?.delete(listener);
    };
  }
}

/** Thrown by a reconciler whose failure means the node cannot serve pods (e.g. a backend that cannot be built). */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotReadyError";
  }
}

export interface Reconciler<M extends object, K extends keyof M = keyof M> {
  /** Short, stable: a metric label and a key of /status. */
  readonly name: string;
  /** The inputs it reads. It first runs once all are present, then on every change of any of them. */
  readonly inputs: readonly K[];
  /** Run again this long after the last attempt even without input changes (kernel repair). Omit for changes only. */
  readonly resyncIntervalMs?: number;
  /** Whether the node is NotReady until this reconciler has succeeded (and while it reports NotReadyError). */
  readonly gatesReadiness: boolean;
  /** Retry after a failure: from `initialMs`, doubling to `maxMs`, with jitter. Default 200 ms to 5 s. */
  readonly backoff?: { initialMs: number; maxMs: number };
  /** A sync still running after this long is reported unhealthy (it cannot be killed, only told through the signal). Default 30 s. */
  readonly timeoutMs?: number;
  /**
   * Make the world match the inputs. Throwing fails the attempt (retried with backoff); throwing
   * NotReadyError also makes the reconciler, and so the node if it gates readiness, NotReady.
   * Never called twice at once for one reconciler.
   */
  sync(inputs: { readonly [P in K]: M[P] }, signal: AbortSignal): void | Promise<void>;
  /** Called once by `stop()`, after the last sync settled or was given up on. */
  close?(): void | Promise<void>;
  /** Extra facts for this reconciler's entry in /status (the routes reconciler names its backend). */
  describe?(): object;
}

export interface ReconcilerHealth {
  /** Serving as far as this reconciler goes: succeeded once, and no NotReadyError since the last success. */
  ready: boolean;
  /** The last attempt succeeded (false while waiting for inputs, too). */
  healthy: boolean;
  /** Inputs not yet published, if it is waiting for some. */
  waitingFor: string[];
  lastError: string | null;
  lastErrorAt: string | null;
  lastSuccessAt: string | null;
  consecutiveFailures: number;
  syncs: number;
  /** ms the current sync has been running, when one is. */
  runningForMs: number | null;
}

interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface RunnerOptions {
  log: (message: string) => void;
  metrics?: ReconcilerMetrics;
  /** Called after every attempt of any reconciler, and when a reconciler's readiness changes. */
  onChange?: () => void;
  clock?: Clock;
  random?: () => number;
}

/** Runs reconcilers side by side over one InputHub. */
export class ReconcilerRunner<M extends object> {
  private readonly loops: ReconcilerLoop<M>[] = [];
  private started = false;

  constructor(
    private readonly hub: InputHub<M>,
    private readonly opts: RunnerOptions,
  ) {}

  add<K extends keyof M>(reconciler: Reconciler<M, K>): void {
    if (this.loops.some((l) => l.reconciler.name === reconciler.name)) throw new Error(`a reconciler named ${reconciler.name} is already added`);
    const loop = new ReconcilerLoop<M>(reconciler as unknown as Reconciler<M>, this.hub, this.opts);
    this.loops.push(loop);
    if (this.started) loop.start();
  }

  start(): void {
    this.started = true;
    for (const loop of this.loops) loop.start();
  }

  /** Stop every timer, abort running syncs, and wait up to `graceMs` for them to settle. */
  async stop(graceMs = 1000): Promise<void> {
    this.started = false;
    await Promise.all(this.loops.map((l) => l.stop(graceMs)));
  }

  health(): Record<string, ReconcilerHealth> {
    return Object.fromEntries(this.loops.map((l) => [l.reconciler.name, l.health()]));
  }

  /** Every readiness-gating reconciler is ready. */
  ready(): boolean {
    return this.loops.every((l) => !l.reconciler.gatesReadiness || l.health().ready);
  }

  /** Why the node is not ready, one line per gating reconciler that is not. */
  notReadyReasons(): string[] {
    const reasons: string[] = [];
    for (const loop of this.loops) {
      if (!loop.reconciler.gatesReadiness) continue;
      const h = loop.health();
      if (h.ready) continue;
      if (h.waitingFor.length > 0) reasons.push(`${loop.reconciler.name}: waiting for ${h.waitingFor.join(", ")}`);
      else if (h.lastError) reasons.push(`${loop.reconciler.name}: ${h.lastError}`);
      else if (h.runningForMs !== null) reasons.push(`${loop.reconciler.name}: first sync running for ${h.runningForMs} ms`);
      else reasons.push(`${loop.reconciler.name}: not synced yet`);
    }
    return reasons;
  }
}

class ReconcilerLoop<M extends object> {
  private timer: unknown;
  private unsubscribe: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private runningSince = 0;
  private abort: AbortController | undefined;
  private stopped = true;
  /** Input versions at the start of the last attempt; a difference means new work. */
  private seen = new Map<keyof M, number>();
  private lastAttemptAt = 0;
  private readonly backoff: Backoff;
  private readonly clock: Clock;
  private state = {
    ready: false,
    healthy: false,
    lastError: null as string | null,
    lastErrorAt: 0,
    lastSuccessAt: 0,
    consecutiveFailures: 0,
    syncs: 0,
    timedOut: false,
  };

  constructor(
    readonly reconciler: Reconciler<M>,
    private readonly hub: InputHub<M>,
    private readonly opts: RunnerOptions,
  ) {
    this.clock = opts.clock ?? realClock;
    this.backoff = new Backoff(reconciler.backoff?.initialMs ?? 200, reconciler.backoff?.maxMs ?? 5000, opts.random);
    opts.metrics?.declare(reconciler.name);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.unsubscribe = this.hub.subscribe(this.reconciler.inputs, () => this.schedule());
    this.schedule();
  }

  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.clearTimer();
    this.abort?.abort();
    if (this.running) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.running, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    try {
      await this.reconciler.close?.();
    } catch (err) {
      this.opts.log(`${this.reconciler.name}: close failed: ${errorText(err)}`);
    }
  }

  health(): ReconcilerHealth {
    const iso = (t: number) => (t ? new Date(t).toISOString() : null);
    return {
      ready: this.state.ready,
      healthy: this.state.healthy && !this.state.timedOut,
      waitingFor: this.missingInputs().map(String),
      lastError: this.state.lastError,
      lastErrorAt: iso(this.state.lastErrorAt),
      lastSuccessAt: iso(this.state.lastSuccessAt),
      consecutiveFailures: this.state.consecutiveFailures,
      syncs: this.state.syncs,
      runningForMs: this.running ? this.clock.now() - this.runningSince : null,
    };
  }

  private missingInputs(): (keyof M)[] {
    return this.reconciler.inputs.filter((key) => !this.hub.has(key));
  }

  private changed(): boolean {
    return this.reconciler.inputs.some((key) => this.hub.version(key) !== (this.seen.get(key) ?? 0));
  }

  /** Work out when the next attempt is due and set the one timer for it. */
  private schedule(): void {
    if (this.stopped || this.running) return; // a running sync reschedules when it settles
    this.clearTimer();
    if (this.missingInputs().length > 0) return; // woken by the hub when they arrive
    const now = this.clock.now();
    let due: number | undefined;
    if (this.changed() || this.state.syncs === 0) due = now;
    if (this.reconciler.resyncIntervalMs !== undefined) {
      const resync = this.lastAttemptAt + this.reconciler.resyncIntervalMs;
      due = due === undefined ? resync : Math.min(due, resync);
    }
    if (this.state.consecutiveFailures > 0) due = Math.max(due ?? now, this.backoff.nextAttemptAt);
    if (due === undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.attempt();
    }, Math.max(0, due - now));
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private attempt(): void {
    if (this.stopped || this.running || this.missingInputs().length > 0) return;
    const inputs = {} as Record<keyof M, unknown>;
    for (const key of this.reconciler.inputs) {
      inputs[key] = this.hub.get(key);
      this.seen.set(key, this.hub.version(key));
    }
    this.lastAttemptAt = this.runningSince = this.clock.now();
    const abort = (this.abort = new AbortController());
    const timeoutMs = this.reconciler.timeoutMs ?? 30_000;
    const watchdog = this.clock.setTimeout(() => this.onTimeout(timeoutMs), timeoutMs);
    const started = performance.now();
    this.running = (async () => {
      let failure: unknown;
      let ok = false;
      try {
        await this.reconciler.sync(inputs as { [P in keyof M]: M[P] }, abort.signal);
        ok = true;
      } catch (err) {
        failure = err;
      }
      this.clock.clearTimeout(watchdog);
      this.record(ok, failure, (performance.now() - started) / 1000);
    })().finally(() => {
      this.running = undefined;
      this.abort = undefined;
      this.schedule();
      this.opts.onChange?.();
    });
  }

  private onTimeout(timeoutMs: number): void {
    if (!this.running) return;
    this.state.timedOut = true;
    this.state.lastError = `sync still running after ${timeoutMs} ms`;
    this.state.lastErrorAt = this.clock.now();
    this.opts.metrics?.setHealthy(this.reconciler.name, false);
    this.opts.log(`${this.reconciler.name}: sync still running after ${timeoutMs} ms; other reconcilers carry on`);
    this.abort?.abort();
    this.opts.onChange?.();
  }

  private record(ok: boolean, failure: unknown, seconds: number): void {
    const name = this.reconciler.name;
    const now = this.clock.now();
    const wasReady = this.state.ready;
    const wasHealthy = this.state.healthy;
    this.state.syncs++;
    this.state.timedOut = false;
    this.opts.metrics?.observe(name, ok, seconds);
    if (ok) {
      if (!wasHealthy && this.state.consecutiveFailures > 0) this.opts.log(`${name}: recovered after ${this.state.consecutiveFailures} failed attempt(s)`);
      this.backoff.succeed();
      this.state.healthy = true;
      this.state.ready = true;
      this.state.lastError = null;
      this.state.lastSuccessAt = now;
      this.state.consecutiveFailures = 0;
      this.opts.metrics?.succeeded(name, now);
    } else {
      const delay = this.backoff.fail(now);
      const message = errorText(failure);
      const repeated = this.state.lastError === message;
      this.state.healthy = false;
      this.state.lastError = message;
      this.state.lastErrorAt = now;
      this.state.consecutiveFailures++;
      if (failure instanceof NotReadyError) this.state.ready = false;
      this.opts.metrics?.failed(name, this.state.consecutiveFailures);
      // The same error again is logged only now and then, not at every retry.
      if (!repeated || this.state.consecutiveFailures % 20 === 0) {
        this.opts.log(`${name}: ${message} (attempt ${this.state.consecutiveFailures}; retrying in ${delay} ms)`);
      }
    }
    this.opts.metrics?.setReady(name, this.state.ready);
    if (wasReady !== this.state.ready) this.opts.log(`${name}: ${this.state.ready ? "ready" : "NOT ready"}`);
  }
}

/** Exponential backoff with jitter, so agents that failed together do not retry in lockstep. */
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

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
