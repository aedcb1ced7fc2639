// nftables: typed tables and transactions (nft/model.ts) are rendered (nft/render.ts), applied as
// one atomic transaction, read back as JSON (nft/readback.ts) and diffed (nft/diff.ts) here.
//
// Two ways to reach the kernel, chosen by measurement (bench/nft.ts, bench/RESULTS.md):
// - libnftables in-process over FFI (nft/libnftables.ts; koffi under Node, bun:ffi under Bun): the
//   default everywhere it loads. In a live process one element costs about 0.6-4 ms against
//   12-19 ms for a spawned `nft`; in a fresh Bun-compiled process (the plugin's ipMasq) it adds
//   about half what spawning `nft` adds. The call is synchronous, so the async functions below
//   resolve at once; it is loaded on first use, so a plugin run without ipMasq never pays for it.
// - the `nft` command, `nft -f FILE`: the fallback where libnftables cannot be loaded. The script
//   goes through a temporary file rather than stdin because nft cannot always open /dev/stdin when
//   it is a Node child-process pipe. spawnSync works the same under Node and Bun. child_process is
//   loaded on first use, and the temp name needs no crypto: both would otherwise add to every
//   start of the plugin.
// PODNET_NFT=nft or PODNET_NFT=libnftables overrides the choice (for benchmarks and tests).
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { diffTables } from "./nft/diff.ts";
import { libnftablesAvailable, runLibnftables } from "./nft/libnftables.ts";
import type { NftFamily, NftMapElement, NftTable, NftTransaction } from "./nft/model.ts";
import { decodeTableJson, type NftCounterState, type NftTableState } from "./nft/readback.ts";
import { checkFamily, checkIdentifier, ifnameKeysOf, renderTransaction } from "./nft/render.ts";

export type { NftFamily } from "./nft/model.ts";

export class NftError extends Error {
  readonly stderr: string;
  readonly exitCode: number | null;
  constructor(what: string, exitCode: number | null, stderr: string) {
    super(`${what} failed (exit ${exitCode ?? "signal"}): ${stderr.trim() || "no output"}`);
    this.name = "NftError";
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

export type NftBackend = "libnftables" | "nft";

let backend: NftBackend | undefined;

/** Which way this process reaches nftables (see the top of this file). */
export function nftBackend(): NftBackend {
  if (backend) return backend;
  const asked = process.env["PODNET_NFT"];
  if (asked === "nft" || asked === "libnftables") backend = asked;
  else backend = libnftablesAvailable() ? "libnftables" : "nft";
  return backend;
}

interface NftRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The command line for `nft ARGS`, entered into `netnsPath` through nsenter when given. */
function nftCommand(args: string[], netnsPath?: string): [string, string[]] {
  if (netnsPath === undefined) return ["nft", args];
  return ["nsenter", [`--net=${netnsPath}`, "nft", ...args]];
}

function runCommand(args: string[], netnsPath?: string): NftRun {
  const [command, argv] = nftCommand(args, netnsPath);
  const run = process.getBuiltinModule("node:child_process").spawnSync(command, argv, { encoding: "utf8" });
  if (run.error) throw new NftError(`${command} ${argv.join(" ")}`, null, run.error.message);
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** The async twin of runCommand, for long-lived callers (the agent) whose event loop must not stall. */
function runCommandAsync(args: string[], netnsPath?: string): Promise<NftRun> {
  const [command, argv] = nftCommand(args, netnsPath);
  return new Promise((resolve, reject) => {
    process.getBuiltinModule("node:child_process").execFile(command, argv, { encoding: "utf8", maxBuffer: 1 << 30 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") {
        reject(new NftError(`${command} ${argv.join(" ")}`, null, error.message));
        return;
      }
      resolve({ status: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** A libnftables run, with nft's exit status: 1 for any failure, as the command reports it. */
function runInProcess(script: string, netnsPath: string | undefined, json: boolean): NftRun {
  const run = runLibnftables(script, netnsPath, json);
  return { status: run.status === 0 ? 0 : 1, stdout: run.stdout, stderr: run.stderr };
}

let nftFileCounter = 0;

/** A private temp file holding the script; the caller removes it. */
function writeScriptFile(script: string): string {
  const file = join(tmpdir(), `podnet-nft-${process.pid}-${Date.now().toString(36)}-${(nftFileCounter++).toString(36)}.nft`);
  writeFileSync(file, script, { mode: 0o600, flag: "wx" });
  return file;
}

function checkApplied(run: NftRun, netnsPath?: string): void {
  const what = nftBackend() === "libnftables" ? "nft transaction (libnftables)" : "nft -f";
  if (run.status !== 0) throw new NftError(`${what}${netnsPath ? ` in ${netnsPath}` : ""}`, run.status, run.stderr);
}

function tableListing(run: NftRun, family: NftFamily, name: string): string | undefined {
  if (run.status === 0) return run.stdout;
  if (/No such file or directory/.test(run.stderr)) return undefined;
  throw new NftError(`nft list table ${family} ${name}`, run.status, run.stderr);
}

function listArgs(family: NftFamily, name: string, json: boolean): string[] {
  checkFamily(family);
  checkIdentifier("table", name);
  return [...(json ? ["-j"] : []), "list", "table", family, name];
}

function list(family: NftFamily, name: string, netnsPath: string | undefined, json: boolean): string | undefined {
  const args = listArgs(family, name, json);
  const run = nftBackend() === "libnftables" ? runInProcess(`list table ${family} ${name}`, netnsPath, json) : runCommand(args, netnsPath);
  return tableListing(run, family, name);
}

async function listAsync(family: NftFamily, name: string, netnsPath: string | undefined, json: boolean): Promise<string | undefined> {
  const args = listArgs(family, name, json);
  const run = nftBackend() === "libnftables" ? runInProcess(`list table ${family} ${name}`, netnsPath, json) : await runCommandAsync(args, netnsPath);
  return tableListing(run, family, name);
}

/** Applies an nft script atomically; throws NftError carrying nft's stderr. */
export function runNft(script: string, netnsPath?: string): void {
  if (nftBackend() === "libnftables") {
    checkApplied(runInProcess(script, netnsPath, false), netnsPath);
    return;
  }
  const file = writeScriptFile(script);
  try {
    checkApplied(runCommand(["-f", file], netnsPath), netnsPath);
  } finally {
    rmSync(file, { force: true });
  }
}

/** runNft without blocking on a process (libnftables runs in-process and returns at once). */
export async function runNftAsync(script: string, netnsPath?: string): Promise<void> {
  if (nftBackend() === "libnftables") {
    checkApplied(runInProcess(script, netnsPath, false), netnsPath);
    return;
  }
  const file = writeScriptFile(script);
  try {
    checkApplied(await runCommandAsync(["-f", file], netnsPath), netnsPath);
  } finally {
    rmSync(file, { force: true });
  }
}

/**
 * runNftAsync through a spawned `nft -f`, whatever the backend: for scripts so large (a full sync of
 * thousands of services, megabytes) that libnftables' synchronous call would stall the caller's
 * event loop for seconds.
 */
export async function runNftSpawnedAsync(script: string, netnsPath?: string): Promise<void> {
  const file = writeScriptFile(script);
  try {
    const run = await runCommandAsync(["-f", file], netnsPath);
    if (run.status !== 0) throw new NftError(`nft -f${netnsPath ? ` in ${netnsPath}` : ""}`, run.status, run.stderr);
  } finally {
    rmSync(file, { force: true });
  }
}

/** readTableAsync through a spawned `nft -j list table`, so a large table does not stall the event loop while the kernel dumps it. */
export async function readTableSpawnedAsync(family: NftFamily, name: string, netnsPath?: string): Promise<NftTableState | undefined> {
  const json = tableListing(await runCommandAsync(listArgs(family, name, true), netnsPath), family, name);
  return json === undefined ? undefined : decodeTableJson(json, family, name);
}

/** The text of `nft list table FAMILY NAME`, or undefined if the table does not exist. For people, not for parsing. */
export function nftListTable(family: NftFamily, name: string, netnsPath?: string): string | undefined {
  return list(family, name, netnsPath, false);
}

export async function nftListTableAsync(family: NftFamily, name: string, netnsPath?: string): Promise<string | undefined> {
  return listAsync(family, name, netnsPath, false);
}

// ---- The typed layer: tables and transactions from nft/model.ts ----

/** The table as the kernel holds it, decoded from `nft -j list table`; undefined when it does not exist. */
export function readTable(family: NftFamily, name: string, netnsPath?: string): NftTableState | undefined {
  const json = list(family, name, netnsPath, true);
  return json === undefined ? undefined : decodeTableJson(json, family, name);
}

export async function readTableAsync(family: NftFamily, name: string, netnsPath?: string): Promise<NftTableState | undefined> {
  const json = await listAsync(family, name, netnsPath, true);
  return json === undefined ? undefined : decodeTableJson(json, family, name);
}

/**
 * One set's or map's elements, from `nft -j list map` (the trace reads the one endpoint map a DNAT
 * looked up, not the whole table); undefined when the table or map does not exist.
 */
export function readMapElements(family: NftFamily, table: string, map: string, netnsPath?: string): readonly NftMapElement[] | undefined {
  checkFamily(family);
  checkIdentifier("table", table);
  checkIdentifier("map", map);
  const run = nftBackend() === "libnftables"
    ? runInProcess(`list map ${family} ${table} ${map}`, netnsPath, true)
    : runCommand(["-j", "list", "map", family, table, map], netnsPath);
  const json = tableListing(run, family, table);
  return json === undefined ? undefined : decodeTableJson(json, family, table).maps.find((m) => m.name === map)?.elements;
}

/** The named counters of a table with their values, without listing its rules, sets or maps; undefined when the table does not exist. */
export function readCounters(family: NftFamily, name: string, netnsPath?: string): NftCounterState[] | undefined {
  checkFamily(family);
  checkIdentifier("table", name);
  const run = nftBackend() === "libnftables"
    ? runInProcess(`list counters table ${family} ${name}`, netnsPath, true)
    : runCommand(["-j", "list", "counters", "table", family, name], netnsPath);
  const json = tableListing(run, family, name);
  return json === undefined ? undefined : [...decodeTableJson(json, family, name).counters];
}

/**
 * The script of a transaction. `table` (the owner's wanted table) tells which sets hold interface
 * names, whose elements nft wants quoted; it is needed only when such elements change.
 */
export function transactionScript(tx: NftTransaction, table?: Pick<NftTable, "sets" | "maps">): string {
  return renderTransaction(tx, table ? ifnameKeysOf(table) : new Map());
}

/** Applies one transaction atomically (nothing for an empty one); throws NftError with nft's stderr. */
export function applyTransaction(tx: NftTransaction, netnsPath?: string, table?: Pick<NftTable, "sets" | "maps">): void {
  const script = transactionScript(tx, table);
  if (script !== "") runNft(script, netnsPath);
}

export async function applyTransactionAsync(tx: NftTransaction, netnsPath?: string, table?: Pick<NftTable, "sets" | "maps">): Promise<void> {
  const script = transactionScript(tx, table);
  if (script !== "") await runNftAsync(script, netnsPath);
}

/**
 * Reads the owner's table, and applies what makes it `desired`: one listing and at most one
 * transaction. Resolves to the transaction it applied (empty when the table was already right).
 */
export async function syncTable(desired: NftTable, netnsPath?: string): Promise<NftTransaction> {
  const tx = diffTables(desired, await readTableAsync(desired.family, desired.name, netnsPath));
  await applyTransactionAsync(tx, netnsPath, desired);
  return tx;
}

/** syncTable for synchronous callers (the plugin, tests). */
export function syncTableSync(desired: NftTable, netnsPath?: string): NftTransaction {
  const tx = diffTables(desired, readTable(desired.family, desired.name, netnsPath));
  applyTransaction(tx, netnsPath, desired);
  return tx;
}

/**
 * One owner's table, kept in step with what it last applied, for callers that change it often
 * (the service proxy). The first sync, and the first after a failure, reads the table back and
 * repairs whatever differs; every other sync diffs against the model it applied last, so it never
 * lists the table and sends only the changed chains and elements.
 */
export class NftTableSync {
  private applied: NftTable | undefined;
  /** Calls run one after another, each diffing against what the one before it applied. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly netnsPath?: string) {}

  /** Brings the kernel's table to `desired`; resolves to the transaction it applied. */
  sync(desired: NftTable): Promise<NftTransaction> {
    return this.serialised(async () => {
      const full = this.applied === undefined || this.applied.family !== desired.family || this.applied.name !== desired.name;
      const current = full ? await readTableAsync(desired.family, desired.name, this.netnsPath) : this.applied;
      const tx = diffTables(desired, current);
      await this.applyOrForget(tx, desired);
      return tx;
    });
  }

  /**
   * The fast path for a caller that knows its delta: applies `tx` and takes `after` (the table
   * once `tx` is applied) as the new model, without diffing or listing. After a failure the next
   * `sync` starts from a read-back.
   */
  apply(tx: NftTransaction, after: NftTable): Promise<void> {
    return this.serialised(() => this.applyOrForget(tx, after));
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Forget the applied model: the next sync reads the table back (after a restart, or a repair). */
  reset(): void {
    this.applied = undefined;
  }

  private async applyOrForget(tx: NftTransaction, after: NftTable): Promise<void> {
    try {
      await applyTransactionAsync(tx, this.netnsPath, after);
      this.applied = after;
    } catch (err) {
      this.applied = undefined;
      throw err;
    }
  }
}
