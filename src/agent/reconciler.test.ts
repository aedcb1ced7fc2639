import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { injectFaults, parseFaults } from "./faults.ts";
import { ReconcilerMetrics } from "./metrics.ts";
import { Backoff, InputHub, NotReadyError, ReconcilerRunner, type Reconciler } from "./reconciler.ts";

interface TestInputs {
  a: number;
  b: string;
  c: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(5);
  }
}

function recorder<K extends keyof TestInputs>(
  name: string,
  inputs: readonly K[],
  body: (inputs: { readonly [P in K]: TestInputs[P] }, signal: AbortSignal) => void | Promise<void> = () => undefined,
  extra: Partial<Reconciler<TestInputs, K>> = {},
): Reconciler<TestInputs, K> & { calls: { [P in K]: TestInputs[P] }[] } {
  const calls: { [P in K]: TestInputs[P] }[] = [];
  return {
    name,
    inputs,
    gatesReadiness: true,
    backoff: { initialMs: 20, maxMs: 80 },
    ...extra,
    calls,
    sync(values, signal) {
      calls.push({ ...values });
      return body(values, signal);
    },
  };
}

function newRunner(hub: InputHub<TestInputs>, logs: string[] = [], metrics?: ReconcilerMetrics) {
  return new ReconcilerRunner(hub, { log: (m) => logs.push(m), ...(metrics ? { metrics } : {}), random: () => 0.5 });
}

describe("InputHub", () => {
  it("versions values and wakes only the subscribers of the key set; an equal value is not a change", () => {
    const hub = new InputHub<TestInputs>();
    let woken = 0;
    hub.subscribe(["a"], () => woken++);
    assert.equal(hub.version("a"), 0);
    assert.equal(hub.set("a", 1), true);
    hub.set("b", "x");
    assert.equal(woken, 1);
    assert.equal(hub.set("a", 1, (x, y) => x === y), false);
    assert.equal(woken, 1);
    assert.equal(hub.version("a"), 1);
    hub.set("a", 2, (x, y) => x === y);
    assert.equal(woken, 2);
    assert.equal(hub.get("a"), 2);
  });
});

describe("ReconcilerRunner", () => {
  it("runs a reconciler once all its inputs are there, with their values, and again only when one of them changes", async () => {
    const hub = new InputHub<TestInputs>();
    const runner = newRunner(hub);
    const r = recorder("r", ["a", "b"]);
    runner.add(r);
    runner.start();
    hub.set("a", 1);
    await sleep(30);
    assert.equal(r.calls.length, 0, "waits for b");
    assert.deepEqual(runner.health().r?.waitingFor, ["b"]);
    assert.deepEqual(runner.notReadyReasons(), ["r: waiting for b"]);
    hub.set("b", "x");
    await until(() => r.calls.length === 1);
    assert.deepEqual(r.calls[0], { a: 1, b: "x" });
    hub.set("c", true);
    await sleep(30);
    assert.equal(r.calls.length, 1, "c is not one of its inputs");
    hub.set("a", 2);
    await until(() => r.calls.length === 2);
    assert.deepEqual(r.calls[1], { a: 2, b: "x" });
    assert.equal(runner.ready(), true);
    await runner.stop();
  });

  it("never runs one reconciler twice at once, and folds changes made during a sync into one more sync", async () => {
    const hub = new InputHub<TestInputs>();
    const runner = newRunner(hub);
    let running = 0;
    let overlapped = false;
    let release: () => void = () => undefined;
    const r = recorder("r", ["a"], async () => {
      running++;
      if (running > 1) overlapped = true;
      await new Promise<void>((resolve) => (release = resolve));
      running--;
    });
    runner.add(r);
    runner.start();
    hub.set("a", 1);
    await until(() => r.calls.length === 1);
    for (let i = 2; i <= 5; i++) hub.set("a", i);
    await sleep(20);
    assert.equal(r.calls.length, 1, "no second sync while the first runs");
    release();
    await until(() => r.calls.length === 2);
    assert.deepEqual(r.calls[1], { a: 5 }, "the latest value, once");
    release();
    await sleep(30);
    assert.equal(r.calls.length, 2);
    assert.equal(overlapped, false);
    await runner.stop();
  });

  it("resyncs on its own timer without input changes", async () => {
    const hub = new InputHub<TestInputs>();
    const runner = newRunner(hub);
    const r = recorder("r", ["a"], () => undefined, { resyncIntervalMs: 20 });
    runner.add(r);
    runner.start();
    hub.set("a", 1);
    await until(() => r.calls.length >= 4);
    await runner.stop();
    const after = r.calls.length;
    await sleep(60);
    assert.equal(r.calls.length, after, "stop() ends the timer");
  });

  it("retries a failing reconciler with growing delays, records its health, and recovers", async () => {
    const hub = new InputHub<TestInputs>();
    const logs: string[] = [];
    const registry = new Registry();
    const runner = newRunner(hub, logs, new ReconcilerMetrics(registry));
    const times: number[] = [];
    let failUntil = 4;
    const r = recorder("flaky", ["a"], () => {
      times.push(Date.now());
      if (times.length < failUntil) throw new Error(`boom ${times.length}`);
    });
    runner.add(r);
    runner.start();
    hub.set("a", 1);
    await until(() => times.length === 2);
    const health = runner.health().flaky!;
    assert.equal(health.healthy, false);
    assert.equal(health.ready, false);
    assert.match(health.lastError ?? "", /^boom/);
    assert.ok(health.consecutiveFailures >= 1);
    assert.match(runner.notReadyReasons()[0] ?? "", /^flaky: boom/);
    await until(() => times.length === 4);
    // Backoff 20, 40, 80 ms (jitter fixed at 1.0x): each wait is at least the one before.
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.ok(gaps[0]! >= 18 && gaps[1]! >= 38 && gaps[2]! >= 78, `gaps ${gaps.join(", ")}`);
    assert.equal(runner.health().flaky?.healthy, true);
    assert.equal(runner.health().flaky?.consecutiveFailures, 0);
    assert.ok(logs.some((l) => /flaky: boom 1 \(attempt 1; retrying in 20 ms\)/.test(l)), logs.join("\n"));
    assert.ok(logs.some((l) => /flaky: recovered after 3 failed attempt/.test(l)), logs.join("\n"));
    const text = await registry.metrics();
    assert.match(text, /^podnet_agent_reconciler_syncs_total\{reconciler="flaky",result="error"\} 3$/m);
    assert.match(text, /^podnet_agent_reconciler_syncs_total\{reconciler="flaky",result="success"\} 1$/m);
    assert.match(text, /^podnet_agent_reconciler_healthy\{reconciler="flaky"\} 1$/m);
    assert.match(text, /^podnet_agent_reconciler_ready\{reconciler="flaky"\} 1$/m);
    failUntil = 0;
    await runner.stop();
  });

  it("a reconciler that throws or hangs does not hold up another one's timer", async () => {
    const hub = new InputHub<TestInputs>();
    const runner = newRunner(hub);
    const healthy = recorder("healthy", ["a"], () => undefined, { resyncIntervalMs: 10 });
    const thrower = recorder("thrower", ["a"], () => {
      throw new Error("always");
    }, { resyncIntervalMs: 10 });
    const hanger = recorder("hanger", ["a"], () => new Promise<void>(() => undefined), { resyncIntervalMs: 10, timeoutMs: 50 });
    runner.add(thrower);
    runner.add(hanger);
    runner.add(healthy);
    runner.start();
    hub.set("a", 1);
    await until(() => healthy.calls.length >= 15);
    assert.equal(hanger.calls.length, 1, "the hung sync is never started again");
    assert.ok(thrower.calls.length >= 2);
    await until(() => runner.health().hanger?.lastError !== null);
    const hung = runner.health().hanger!;
    assert.equal(hung.healthy, false);
    assert.match(hung.lastError ?? "", /still running after 50 ms/);
    assert.ok((hung.runningForMs ?? 0) >= 50);
    assert.equal(runner.health().healthy?.healthy, true);
    assert.equal(runner.ready(), false);
    const started = Date.now();
    await runner.stop(100);
    assert.ok(Date.now() - started < 1000, "stop gives up on a hung sync after the grace period");
  });

  it("NotReadyError takes readiness away until the next success; other errors do not", async () => {
    const hub = new InputHub<TestInputs>();
    const runner = newRunner(hub);
    let mode: "ok" | "error" | "notready" = "ok";
    const r = recorder("r", ["a"], () => {
      if (mode === "error") throw new Error("transient");
      if (mode === "notready") throw new NotReadyError("backend cannot be built");
    });
    runner.add(r);
    runner.start();
    hub.set("a", 1);
    await until(() => runner.ready());
    mode = "error";
    hub.set("a", 2);
    await until(() => runner.health().r?.lastError === "transient");
    assert.equal(runner.ready(), true, "a transient error after success keeps the node ready");
    mode = "notready";
    hub.set("a", 3);
    await until(() => !runner.ready());
    assert.deepEqual(runner.notReadyReasons(), ["r: backend cannot be built"]);
    mode = "ok";
    await until(() => runner.ready(), 3000);
    await runner.stop();
  });

  it("a reconciler that does not gate readiness never makes the node NotReady", async () => {
    const hub = new InputHub<TestInputs>();
    const runner = newRunner(hub);
    runner.add(recorder("optional", ["a"], () => {
      throw new NotReadyError("nope");
    }, { gatesReadiness: false }));
    runner.add(recorder("gate", ["a"]));
    runner.start();
    hub.set("a", 1);
    await until(() => runner.health().gate?.ready === true && runner.health().optional?.syncs === 1);
    assert.equal(runner.ready(), true);
    assert.deepEqual(runner.notReadyReasons(), []);
    await runner.stop();
  });

  it("refuses two reconcilers of one name", () => {
    const runner = newRunner(new InputHub<TestInputs>());
    runner.add(recorder("r", ["a"]));
    assert.throws(() => runner.add(recorder("r", ["b"])), /already added/);
  });
});

describe("Backoff", () => {
  it("doubles from the initial delay up to the maximum, with jitter between 0.8x and 1.2x, and resets on success", () => {
    const fixed = new Backoff(100, 500, () => 0.5);
    assert.deepEqual([1, 2, 3, 4, 5].map(() => fixed.fail(0)), [100, 200, 400, 500, 500]);
    fixed.succeed();
    assert.equal(fixed.fail(1000), 100);
    assert.equal(fixed.nextAttemptAt, 1100);
    assert.equal(new Backoff(100, 500, () => 0).fail(0), 80);
    assert.equal(new Backoff(100, 500, () => 1).fail(0), 120);
  });
});

describe("fault injection", () => {
  it("parses NAME=throw|hang and rejects anything else, naming the variable", () => {
    assert.deepEqual([...parseFaults("masquerade=throw, routes=hang")], [["masquerade", "throw"], ["routes", "hang"]]);
    assert.equal(parseFaults(undefined).size, 0);
    assert.throws(() => parseFaults("masquerade"), /PODNET_AGENT_FAULTS: want NAME=throw or NAME=hang, got "masquerade"/);
    assert.throws(() => parseFaults("masquerade=explode"), /PODNET_AGENT_FAULTS/);
  });

  it("replaces only the named reconciler's sync, keeping its name and inputs; an unknown name is an error", async () => {
    const a = recorder("a", ["a"]);
    const b = recorder("b", ["a"]);
    const logs: string[] = [];
    const [fa, fb] = injectFaults<TestInputs>([a, b], parseFaults("a=throw"), (m) => logs.push(m));
    assert.equal(fb, b);
    assert.equal(fa!.name, "a");
    assert.deepEqual(fa!.inputs, ["a"]);
    await assert.rejects(Promise.resolve(fa!.sync({ a: 1, b: "", c: true }, new AbortController().signal)), /injected failure/);
    assert.equal(a.calls.length, 0);
    assert.match(logs[0] ?? "", /every sync of a will fail/);
    assert.throws(() => injectFaults<TestInputs>([a], parseFaults("zzz=hang"), () => undefined), /names no reconciler: zzz/);
  });
});
