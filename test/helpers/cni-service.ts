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

export async function startService(binary: string, nodeNetns: string): Promise<RunningService> {
  const socket = join(tempDir("svc"), "cni.sock");
  // nsenter execs the binary in place, so the child's PID is the service's.
  const child = spawn("nsenter", [`--net=${nodeNetns}`, binary, "serve", "--socket", socket], { stdio: ["ignore", "ignore", "pipe"] });
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
