// podnet's resident CNI service (`podnet serve`), started inside a node namespace for tests and the
// benchmark, and stopped by PID however the caller ends.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./netns.ts";

export interface RunningService {
  socket: string;
  pid: number;
  /** SIGKILLs the service (a crash, as far as callers can tell) and waits until it is gone. */
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();

export interface ServiceOptions {
  /** Worker threads (`--workers`); the service's default when unset. */
  workers?: number;
  /** PODNET_TRACE for the service: one line per request it serves (src/cni/trace.ts). */
  traceFile?: string;
}

export async function startService(binary: string, nodeNetns: string, options: ServiceOptions = {}): Promise<RunningService> {
  const socket = join(tempDir("svc"), "cni.sock");
  const args = [`--net=${nodeNetns}`, binary, "serve", "--socket", socket, ...(options.workers === undefined ? [] : ["--workers", String(options.workers)])];
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", ...(options.traceFile ? { PODNET_TRACE: options.traceFile } : {}) };
  // nsenter execs the binary in place (and the forwarder execs the full plugin in place), so the
  // child's PID is the service's.
  const child = spawn("nsenter", args, { env, stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  exited.then(() => running.delete(child), () => undefined);
  const deadline = Date.now() + 10_000;
  while (!existsSync(socket) || !stderr.includes("serving")) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`podnet serve exited: ${stderr}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`podnet serve did not listen on ${socket} within 10 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    socket,
    pid: child.pid!,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      rmSync(socket, { force: true });
    },
  };
}

// A test or bench that ends abruptly must not leave services running.
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});
