// Short-lived commands run to completion with their output collected (the lab's probe clients, for
// example), and foreground commands attached to the terminal (`podnet lab exec`). A failure always
// names the exact command line that failed.

import { spawn } from "node:child_process";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export class CommandError extends Error {
  readonly result: CommandResult;
  constructor(argv: readonly string[], result: CommandResult) {
    const detail = (result.stderr || result.stdout).trim();
    super(`\`${argv.join(" ")}\` exited ${result.code}${detail ? `: ${detail}` : ""}`);
    this.name = "CommandError";
    this.result = result;
  }
}

/** Run argv to completion; never throws for a non-zero exit (see runChecked). */
export function runCommand(argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error("runCommand: empty argv"));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill("SIGKILL");
        }, opts.timeoutMs)
      : undefined;
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", (error) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`could not run ${file}: ${error.message}`));
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      const stderr = Buffer.concat(err).toString("utf8") + (timedOut ? `\n(killed after ${opts.timeoutMs} ms)` : "");
      resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString("utf8"), stderr });
    });
    // A child that exits without reading stdin would otherwise surface EPIPE as an unhandled error.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** Run argv and throw CommandError unless it exits 0; returns stdout. */
export async function runChecked(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const result = await runCommand(argv, opts);
  if (result.code !== 0) throw new CommandError(argv, result);
  return result.stdout;
}

/** Run argv with the terminal attached (stdin, stdout, stderr inherited); resolves to its exit code. */
export function runAttached(argv: readonly string[]): Promise<number> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error("runAttached: empty argv"));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: "inherit" });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
