// Large nf_tables transactions (a full sync: ~120,000 messages) applied by a short-lived child
// process, so that
//   - the encoding runs with V8's optimising compilers: the agent runs with --lite-mode (less
//     memory), where the encoder is 7-8x slower (10.7 s of CPU for 10,000 services × 5 endpoints,
//     against 1.5 s; measured with /tmp-style runs of encodeTransaction, see bench/RESULTS.md);
//   - the agent's event loop is not held for the seconds the encoding and the kernel's commit
//     take (its node lease is 20 s), as the spawned `nft -f` for large scripts did before.
// The child is the podnet command itself (`podnet internal-nft-netlink-apply`, from src/cli), started
// with the agent's script but without its memory-saving V8 flags, in the agent's namespace. The
// transaction goes to it as JSON (measured at 10,000 services, 17 MB: stringify 0.33 s in lite mode
// + parse 0.46 s, against 0.63 s + 0.8-1.4 s for V8's structured clone), written to a private
// temporary file whose name goes on stdin (see apply); it answers with one line of JSON.
//
// Exit codes: 0 applied; 3 not encodable (stderr: what); anything else a failure (stderr: why).
//
// The same protocol serves other child commands that build their transaction from another
// payload (the agent's full sync from the Services and EndpointSlices themselves:
// src/agent/services-child.ts): ChildApplier takes the command, runApplyChild the payload's reader.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import type { NftTransaction } from "./model.ts";
import { NftNotEncodable } from "./netlink-encode.ts";
import { NftNetlinkWriter, type NetlinkApplyStats } from "./netlink-writer.ts";

export const NFT_APPLY_COMMAND = "internal-nft-netlink-apply";
const NOT_ENCODABLE_EXIT = 3;
/** The kernel refused the batch: nothing was changed, and doing it elsewhere would be refused too. */
const KERNEL_REFUSED_EXIT = 4;

/**
 * The child could not do the work at all (not started, crashed, the payload file not written, the
 * child's own compile failed): the kernel was not asked, so the caller may apply in-process. Not
 * for a kernel refusal, which rejects with a plain Error (see KERNEL_REFUSED_EXIT).
 */
export class NftChildFailed extends Error {
  constructor(message: string) {
    super(`netlink child: ${message}`);
    this.name = "NftChildFailed";
  }
}
/** V8 flags that make the agent lean and the encoder slow; the child runs without them. */
const DROPPED_FLAGS = /^--(lite-mode|max-semi-space-size(=.*)?|jitless)$/;

/** The script that started this process, when it is the podnet command (bin/podnet.js or a bundle). */
function podnetScript(): string | undefined {
  const script = process.argv[1];
  return script !== undefined && /(^|\/)podnet(\.m?js)?$/.test(script) ? script : undefined;
}

/** True when this process can start the child (it was started as the podnet command). */
export function childApplyAvailable(): boolean {
  return podnetScript() !== undefined;
}

export interface ChildApplyStats extends NetlinkApplyStats {
  /** The parent's JSON of the payload. */
  serializeMs: number;
  /** The child's reading and decoding of it. */
  decodeMs: number;
  /** What the child's command adds (its statement count, its compile time, when the kernel answered). */
  extra: Record<string, number>;
  /** What the child's command adds that is not a number (a digest of its input). */
  texts?: Record<string, string>;
}
type ChildAnswer = Omit<ChildApplyStats, "serializeMs">;

/**
 * A child process started ahead of its transaction, so its start (process, module loading: ~0.3 s
 * of CPU, more under load) overlaps the compile of a full sync. `apply` hands it the transaction;
 * `cancel` ends it unused.
 */
export class ChildApplier {
  private readonly child;
  private readonly result: Promise<ChildAnswer>;
  private readonly exited: Promise<void>;
  private readonly progressListeners: ((step: string) => void)[] = [];
  private payloadDir: string | undefined;
  private used = false;

  /** `command`: the podnet subcommand the child runs (NFT_APPLY_COMMAND takes a transaction). */
  /**
   * `niceness`: the child's scheduling priority (setpriority(2); lower runs first), when this
   * process may set it (root may raise it); otherwise the child keeps this process's.
   */
  constructor(readonly command: string = NFT_APPLY_COMMAND, options: { niceness?: number } = {}) {
    const script = podnetScript();
    if (script === undefined) throw new Error("netlink child: this process was not started as the podnet command");
    const flags = process.execArgv.filter((flag) => !DROPPED_FLAGS.test(flag));
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, [...flags, script, command], { stdio: ["pipe", "pipe", "pipe"], env });
    this.child = child;
    if (options.niceness !== undefined && child.pid !== undefined) {
      try {
        setPriority(child.pid, options.niceness);
      } catch {
        // Not permitted (not root): the child runs at this process's priority, only slower under load.
      }
    }
    this.exited = new Promise((resolve) => {
      child.on("close", () => resolve());
      child.on("error", () => resolve());
    });
    this.result = new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let pending = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out.push(chunk);
        if (this.progressListeners.length === 0) return;
        // Lines before the answer are progress reports ({"progress": ...}), told as they come.
        pending += chunk.toString("utf8");
        for (let newline = pending.indexOf("\n"); newline >= 0; newline = pending.indexOf("\n")) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          const progress = /^\{"progress":"([a-z-]+)"\}$/.exec(line)?.[1];
          if (progress !== undefined) for (const listener of this.progressListeners) listener(progress);
        }
      });
      child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
      child.on("error", (error) => reject(new NftChildFailed(error.message)));
      child.stdin.on("error", () => undefined); // an early exit is reported by its code
      child.on("close", (code) => {
        if (this.payloadDir !== undefined) rmSync(this.payloadDir, { recursive: true, force: true });
        const stderr = Buffer.concat(err).toString("utf8").trim();
        if (code === 0) {
          try {
            const lines = Buffer.concat(out).toString("utf8").trimEnd().split("\n");
            resolve(JSON.parse(lines[lines.length - 1] ?? "") as ChildAnswer);
          } catch (error) {
            reject(new NftChildFailed(`unreadable answer: ${(error as Error).message}`));
          }
        } else if (code === NOT_ENCODABLE_EXIT) {
          reject(new NftNotEncodable(stderr.replace(/^not encodable as nf_tables netlink: /, "")));
        } else if (code === KERNEL_REFUSED_EXIT) {
          reject(new Error(stderr));
        } else {
          reject(new NftChildFailed(stderr || `exited with ${code ?? "a signal"}`));
        }
      });
    });
    // A cancelled child's rejection is nobody's business.
    this.result.catch(() => undefined);
  }

  /** Hands the child its payload (a transaction for NFT_APPLY_COMMAND, see applyInChild). Once only. */
  async apply(payload: unknown): Promise<ChildApplyStats> {
    if (this.used) throw new Error("netlink child: already used");
    this.used = true;
    const serializeStarted = performance.now();
    const json = JSON.stringify(payload);
    // Through a file, not the pipe: a pipe moves 64 KiB at a time and only while this process's
    // loop runs, so a caller that goes on computing (the agent compiling the same full sync) would
    // hold the child back until it is done. Written synchronously, the file is whole at once.
    let dir: string;
    try {
      dir = this.payloadDir = mkdtempSync(join(tmpdir(), "podnet-nft-child-"));
    } catch (error) {
      this.cancelChild();
      throw new NftChildFailed(`no directory for the payload: ${(error as Error).message}`);
    }
    // Removed here once the child has ended, however it ended: the close handler alone misses a
    // child that had already exited (a prepared one, killed or crashed before its sync came).
    try {
      const file = join(dir, "payload.json");
      try {
        writeFileSync(file, json, { mode: 0o600 });
      } catch (error) {
        throw new NftChildFailed(`the payload could not be written: ${(error as Error).message}`);
      }
      const serializeMs = performance.now() - serializeStarted;
      // One line: the child starts at its newline. It must not wait for the end of stdin, which
      // Node closes only when this process's loop next runs (after the caller's compile).
      this.child.stdin.end(`${JSON.stringify({ payloadFile: file })}\n`);
      return { ...(await this.result), serializeMs };
    } finally {
      this.cancelChild();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  cancel(): void {
    if (this.used) return;
    this.used = true;
    this.cancelChild();
  }

  /**
   * Sends the child one request line now, and leaves its stdin open for more: for a child that
   * works in steps (services-child.ts's startup sync: where to list, then this node's facts).
   */
  tell(request: unknown): void {
    if (this.used) throw new Error("netlink child: already used");
    this.child.stdin.write(`${JSON.stringify(request)}\n`);
  }

  /** Calls `listener` with each progress report the child prints before its answer (a line `{"progress":"STEP"}`). */
  onProgress(listener: (step: string) => void): void {
    this.progressListeners.push(listener);
  }

  /** Resolves when the child has exited, however it ended. */
  whenExited(): Promise<void> {
    return this.exited;
  }

  /** The answer of a child driven with `tell` (it ends on its own once it has what it needs). */
  answer(): Promise<ChildAnswer> {
    this.used = true;
    return this.result;
  }

  /**
   * Ends the child and resolves once it has exited: after that nothing it might have been about to
   * send can reach the kernel, so the caller may write the same table itself.
   */
  async end(): Promise<void> {
    this.used = true;
    this.cancelChild();
    await this.exited;
  }

  private cancelChild(): void {
    this.child.stdin.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}

/**
 * Applies `tx` in a child process (see above). Rejects with NftNotEncodable (nothing was sent) or
 * an Error carrying the kernel's refusal (nothing was changed).
 */
export function applyInChild(tx: NftTransaction): Promise<ChildApplyStats> {
  try {
    return new ChildApplier().apply(tx);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The child's side: read the transaction from stdin, apply it, print the stats. */
export function runNftApplyChild(): Promise<number> {
  return runApplyChild((payload) => ({ tx: payload as NftTransaction }));
}

/**
 * The child's side of any apply command: read the JSON payload from stdin, turn it into a
 * transaction with `prepare` (which may add stats of its own), apply it, print the stats.
 */
export async function runApplyChild(prepare: (payload: unknown) => { tx: NftTransaction; stats?: Record<string, number> }): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    // A request is one line (JSON has no raw newline); a bare transaction ends with stdin.
    if ((chunk as Buffer).includes(10)) break;
  }
  const text = Buffer.concat(chunks).toString("utf8");
  const newline = text.indexOf("\n");
  const request = JSON.parse(newline >= 0 ? text.slice(0, newline) : text) as { payloadFile?: unknown };
  chunks.length = 0;
  const readStarted = performance.now();
  let payload: unknown = request;
  if (typeof request.payloadFile === "string") {
    try {
      payload = JSON.parse(readFileSync(request.payloadFile, "utf8"));
    } finally {
      // Read once: gone now, so a parent killed from here on leaves no 17 MB file in /tmp.
      rmSync(request.payloadFile, { force: true });
    }
  }
  const decodeMs = performance.now() - readStarted;
  return applyAndAnswer(() => prepare(payload), { decodeMs });
}

/**
 * The end of a child's work: `prepare` gives the transaction, which is applied through netlink; the
 * stats (with `known` and `prepare`'s own, and the wall-clock time of the kernel's answer) go to
 * stdout as one line. Returns the exit code (see the top of this file).
 */
export function applyAndAnswer(prepare: () => { tx: NftTransaction; stats?: Record<string, number>; texts?: Record<string, string> }, known: { decodeMs: number }): number {
  const writer = new NftNetlinkWriter();
  try {
    const { tx, stats, texts } = prepare();
    writer.apply(tx);
    const kernelAnsweredAt = Date.now();
    process.stdout.write(`${JSON.stringify({ ...writer.last, decodeMs: known.decodeMs, extra: { changes: tx.changes.length, kernelAnsweredAt, ...stats }, ...(texts ? { texts } : {}) })}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return error instanceof NftNotEncodable ? NOT_ENCODABLE_EXIT : error instanceof Error && error.name === "KernelError" ? KERNEL_REFUSED_EXIT : 1;
  } finally {
    writer.close();
  }
}
