// The disk store under real concurrency and real crashes: separate processes (Node with koffi and
// Bun with bun:ffi, as the compiled plugin runs) contend for one data directory through flock(2),
// and workers are SIGKILLed at random moments. Needs no root and no network namespace.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import type { IpamRangeConf, NetConf } from "../src/cni/types.ts";
import { DiskStore, LAST_RESERVED_PREFIX, LOCK_FILE, TEMP_PREFIX } from "../src/ipam/disk-store.ts";
import { tryParseIp } from "../src/net/address.ts";

const repo = resolve(import.meta.dirname, "..");
const worker = join(repo, "src/ipam/testing/ipam-worker.ts");
const bun = join(repo, "node_modules/@oven/bun-linux-x64/bin/bun");

type Runtime = "node" | "bun";
const runtimes: Runtime[] = existsSync(bun) ? ["node", "bun"] : ["node"];

function command(runtime: Runtime, args: string[]): [string, string[]] {
  return runtime === "bun" ? [bun, ["run", worker, ...args]] : [process.execPath, ["--import", "tsx", worker, ...args]];
}

interface Running {
  child: ChildProcess;
  lines: string[];
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  /** Resolves when a line satisfying the predicate has been printed. */
  waitFor(predicate: (line: string) => boolean): Promise<void>;
}

const started: ChildProcess[] = [];

function startWorker(runtime: Runtime, args: string[]): Running {
  const [file, argv] = command(runtime, args);
  const { NODE_EXTRA_CA_CERTS: _unused, ...env } = process.env;
  const child = spawn(file, argv, { cwd: repo, env, stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  const lines: string[] = [];
  const waiters: Array<{ predicate: (line: string) => boolean; resolve: () => void }> = [];
  let partial = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolveDone) =>
    child.on("close", (code, signal) => resolveDone({ code, signal, stderr })),
  );
  const waitFor = (predicate: (line: string) => boolean) =>
    lines.some(predicate)
      ? Promise.resolve()
      : Promise.race([
          new Promise<void>((resolveWait) => waiters.push({ predicate, resolve: resolveWait })),
          done.then(({ code, signal, stderr: err }) => {
            if (!lines.some(predicate)) throw new Error(`worker exited (${code ?? signal}) before the expected output: ${err}`);
          }),
        ]);
  return { child, lines, done, waitFor };
}

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), "pnt-ipam-conc-"));
});
after(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
});

function conf(name: string, ranges: IpamRangeConf[][]): NetConf {
  return { cniVersion: "1.1.0", name, type: "podnet-ipam", ipam: { type: "podnet-ipam", dataDir: root, ranges } };
}

/** Every entry of the store directory, classified; fails on anything that is not a complete file. */
function auditDirectory(dir: string): Map<string, string> {
  const reservations = new Map<string, string>();
  for (const name of readdirSync(dir)) {
    if (name === LOCK_FILE) continue;
    assert.ok(!name.startsWith(TEMP_PREFIX), `temporary file ${name} survived the cleanup`);
    const content = readFileSync(join(dir, name), "utf8");
    if (name.startsWith(LAST_RESERVED_PREFIX)) {
      assert.ok(tryParseIp(content), `${name} holds ${JSON.stringify(content)}, not an address`);
      continue;
    }
    assert.ok(tryParseIp(name), `unexpected file ${name}`);
    assert.match(content, /^w\d+-\d+\r\neth0$/, `reservation ${name} is incomplete: ${JSON.stringify(content)}`);
    reservations.set(name, content.split("\r\n")[0]!);
  }
  return reservations;
}

describe("DiskStore across processes", { timeout: 180_000 }, () => {
  it("8 concurrent processes × 25 allocations give 200 distinct addresses", async () => {
    const netConf = conf("parallel", [[{ subnet: "10.250.0.0/24" }]]);
    const workers = Array.from({ length: 8 }, (_, i) =>
      startWorker(runtimes[i % runtimes.length]!, ["allocate", JSON.stringify(netConf), String(i), "25"]),
    );
    const outcomes = await Promise.all(workers.map((w) => w.done));
    outcomes.forEach((o, i) => assert.equal(o.code, 0, `worker ${i}: ${o.stderr}`));

    const printed = workers.flatMap((w) => w.lines.filter((l) => l.startsWith("add ")));
    assert.equal(printed.length, 200);
    const ips = printed.map((line) => line.split(" ")[2]!.split("/")[0]!);
    assert.equal(new Set(ips).size, 200, "an address was handed out twice");

    const dir = join(root, "parallel");
    const onDisk = auditDirectory(dir);
    assert.equal(onDisk.size, 200, "a reservation was lost");
    for (const line of printed) {
      const [, containerId, address] = line.split(" ");
      assert.equal(onDisk.get(address!.split("/")[0]!), containerId, `${address} on disk is not ${containerId}'s`);
    }
  });

  it("SIGKILL at random moments leaves only complete reservations, all released by attachment", async () => {
    const netConf = conf("crash", [[{ subnet: "10.251.0.0/16" }], [{ subnet: "fd00:251::/64" }]]);
    const dir = join(root, "crash");
    const rounds = 12;
    const parallel = 3;
    const lines: string[] = [];
    let kills = 0;
    for (let round = 0; round < rounds; round++) {
      const batch = Array.from({ length: parallel }, (_, i) => {
        const id = round * parallel + i;
        return { id, running: startWorker(runtimes[id % runtimes.length]!, ["churn", JSON.stringify(netConf), String(id)]) };
      });
      await Promise.all(
        batch.map(async ({ running }) => {
          await running.waitFor((line) => line === "ready");
          // Let it do some work first, so kills land in the middle of ADDs and DELs, not at start-up.
          await new Promise((r) => setTimeout(r, 5 + Math.random() * 60));
          running.child.kill("SIGKILL");
          const outcome = await running.done;
          assert.equal(outcome.signal, "SIGKILL", `worker ended on its own: ${outcome.stderr}`);
          kills++;
          lines.push(...running.lines);
        }),
      );
    }
    assert.equal(kills, rounds * parallel);
    assert.ok(lines.filter((l) => l.startsWith("add ")).length > rounds, "workers did too little work before being killed");

    // Taking the lock once clears what the dead left half-done.
    const store = DiskStore.open(root, "crash");
    store.withLock(() => undefined);
    const onDisk = auditDirectory(dir);

    // Nothing a worker reported as done is lost: live attachments hold both their addresses.
    const live = new Map<string, string[]>();
    for (const line of lines) {
      const [verb, containerId, addresses] = line.split(" ");
      if (verb === "add") live.set(containerId!, addresses!.split(",").map((a) => a.split("/")[0]!));
      // Once a DEL has started, a kill may leave any part of the attachment: it is no longer "live".
      if (verb === "deleting" || verb === "del") live.delete(containerId!);
    }
    for (const [containerId, addresses] of live) {
      assert.equal(addresses.length, 2);
      for (const address of addresses) assert.equal(onDisk.get(address), containerId, `${containerId} lost ${address}`);
    }
    // Anything else belongs to an operation that was cut short: at most one per worker.
    const interrupted = new Set([...onDisk.values()].filter((id) => !live.has(id)));
    assert.ok(interrupted.size <= rounds * parallel, `too many unexplained owners: ${[...interrupted].join(" ")}`);

    // DEL of every attachment (as a runtime retrying the failed ADDs would do) empties the store.
    for (const containerId of new Set(onDisk.values())) store.releaseByAttachment(containerId, "eth0");
    assert.equal(auditDirectory(dir).size, 0);
    assert.deepEqual(
      readdirSync(dir).filter((n) => n !== LOCK_FILE && !n.startsWith(LAST_RESERVED_PREFIX)),
      [],
    );
  });
});
