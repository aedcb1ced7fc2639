// Large nf_tables transactions (a full sync: ~120,000 messages) applied by a short-lived child
// process, so that
//   - the encoding runs with V8's optimising compilers: the agent runs with --lite-mode (less
//     memory), where the encoder is 7-8x slower (10.7 s of CPU for 10,000 services × 5 endpoints,
//     against 1.5 s; measured with /tmp-style runs of encodeTransaction, see bench/RESULTS.md);
//   - the agent's event loop is not held for the seconds the encoding and the kernel's commit
//     take (its node lease is 20 s), as the spawned `nft -f` for large scripts did before.
// The child is the podnet command itself (`podnet internal-nft-netlink-apply`, from src/cli), started
// with the agent's script but without its memory-saving V8 flags, in the agent's namespace. The
// transaction goes to it as JSON on stdin (measured at 10,000 services, 17 MB: stringify 0.33 s in
// lite mode + parse 0.46 s, against 0.63 s + 0.8-1.4 s for V8's structured clone); it answers with
// one line of JSON.
//
// Exit codes: 0 applied; 3 not encodable (stderr: what); anything else a failure (stderr: why).

import { spawn } from "node:child_process";
import type { NftTransaction } from "./model.ts";
import { NftNotEncodable } from "./netlink-encode.ts";
import { NftNetlinkWriter, type NetlinkApplyStats } from "./netlink-writer.ts";

export const NFT_APPLY_COMMAND = "internal-nft-netlink-apply";
const NOT_ENCODABLE_EXIT = 3;
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
  /** The parent's JSON of the transaction. */
  serializeMs: number;
  /** The child's reading and decoding of it. */
  decodeMs: number;
}

/**
 * A child process started ahead of its transaction, so its start (process, module loading: ~0.3 s
 * of CPU, more under load) overlaps the compile of a full sync. `apply` hands it the transaction;
 * `cancel` ends it unused.
 */
export class ChildApplier {
  private readonly child;
  private readonly result: Promise<NetlinkApplyStats & { decodeMs: number }>;
  private used = false;

  constructor() {
    const script = podnetScript();
    if (script === undefined) throw new Error("netlink child: this process was not started as the podnet command");
    const flags = process.execArgv.filter((flag) => !DROPPED_FLAGS.test(flag));
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, [...flags, script, NFT_APPLY_COMMAND], { stdio: ["pipe", "pipe", "pipe"], env });
    this.child = child;
    this.result = new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
      child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
      child.on("error", reject);
      child.stdin.on("error", () => undefined); // an early exit is reported by its code
      child.on("close", (code) => {
        const stderr = Buffer.concat(err).toString("utf8").trim();
        if (code === 0) {
          try {
            resolve(JSON.parse(Buffer.concat(out).toString("utf8")) as NetlinkApplyStats & { decodeMs: number });
          } catch (error) {
            reject(new Error(`netlink child: unreadable answer: ${(error as Error).message}`));
          }
        } else if (code === NOT_ENCODABLE_EXIT) {
          reject(new NftNotEncodable(stderr.replace(/^not encodable as nf_tables netlink: /, "")));
        } else {
          reject(new Error(stderr || `netlink child exited with ${code}`));
        }
      });
    });
    // A cancelled child's rejection is nobody's business.
    this.result.catch(() => undefined);
  }

  /** Applies `tx` (see applyInChild). Once only. */
  async apply(tx: NftTransaction): Promise<ChildApplyStats> {
    if (this.used) throw new Error("netlink child: already used");
    this.used = true;
    const serializeStarted = performance.now();
    const json = JSON.stringify(tx);
    const serializeMs = performance.now() - serializeStarted;
    this.child.stdin.end(json);
    return { ...(await this.result), serializeMs };
  }

  cancel(): void {
    if (this.used) return;
    this.used = true;
    this.child.stdin.destroy();
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
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
export async function runNftApplyChild(): Promise<number> {
  const chunks: Buffer[] = [];
  let firstChunkAt: number | undefined;
  for await (const chunk of process.stdin) {
    firstChunkAt ??= performance.now();
    chunks.push(chunk as Buffer);
  }
  const tx = JSON.parse(Buffer.concat(chunks).toString("utf8")) as NftTransaction;
  chunks.length = 0;
  const decodeMs = performance.now() - (firstChunkAt ?? performance.now());
  const writer = new NftNetlinkWriter();
  try {
    writer.apply(tx);
    process.stdout.write(`${JSON.stringify({ ...writer.last, decodeMs })}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return error instanceof NftNotEncodable ? NOT_ENCODABLE_EXIT : 1;
  } finally {
    writer.close();
  }
}
