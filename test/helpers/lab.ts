// Shared by the root-only lab tests (test/lab-*.test.ts) and bench/lab.ts: drive `podnet lab` as a user
// would, as a separate process, and look at what is left behind afterwards.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deleteNamedNetns, listNamedNetns, namedNetnsInode } from "../../src/kernel/named-netns.ts";
import { pidsInNamespaces, processStartTime, stopPids } from "../../src/supervise/process.ts";
import { runCommand } from "../../src/supervise/command.ts";
import type { LabStateData } from "../../src/lab/lab-state.ts";
import { REPO_ROOT } from "../../src/lab/repo-root.ts";

export interface TestLab {
  id: string;
  stateRoot: string;
  /** The lab-selecting flags for every command. */
  flags: string[];
}

export function newTestLab(): TestLab {
  const id = `t${Math.random().toString(36).slice(2, 7)}`;
  const stateRoot = mkdtempSync(join(tmpdir(), "podnet-lab-test-"));
  return { id, stateRoot, flags: ["--id", id, "--state-root", stateRoot] };
}

export interface LabRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node bin/podnet.js lab ARGS…` to completion. */
export async function lab(args: readonly string[], timeoutMs = 120_000): Promise<LabRun> {
  return runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "lab", ...args], { timeoutMs });
}

/** Start `lab up` and SIGKILL it as soon as a progress line matches, as if the machine's operator or the OOM killer did. */
export function labUpKilledAt(args: readonly string[], killAt: RegExp, timeoutMs = 60_000): Promise<{ killed: boolean; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, "bin/podnet.js"), "lab", "up", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let killed = false;
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
      if (!killed && output.split("\n").some((line) => killAt.test(line))) {
        killed = true;
        child.kill("SIGKILL");
      }
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      resolve({ killed, output });
    });
  });
}

export function readLabState(t: TestLab): LabStateData | undefined {
  const path = join(t.stateRoot, t.id, "state.json");
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as LabStateData) : undefined;
}

/**
 * The lab's namespaces still under /run/netns, and any /etc/netns/NAME directory of one (which
 * `ip netns exec` would bind over /etc; the lab must leave none behind).
 */
export function labNamespaces(t: TestLab): string[] {
  const prefix = `pnl-${t.id}-`;
  const etc = existsSync("/etc/netns") ? readdirSync("/etc/netns").filter((n) => n.startsWith(prefix)).map((n) => `/etc/netns/${n}`) : [];
  return [...listNamedNetns({ includeStale: true }).filter((n) => n.startsWith(prefix)), ...etc];
}

/** Recorded processes that are still the same process (same PID and start time). */
export function survivingProcesses(state: LabStateData | undefined): number[] {
  if (!state) return [];
  return state.processes
    .filter((p) => p.pid !== undefined && processStartTime(p.pid) !== undefined && processStartTime(p.pid) === p.startTime)
    .filter((p) => !readFileSync(`/proc/${p.pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z"))
    .map((p) => p.pid!);
}

/**
 * Live processes whose command line names the lab's state root or namespace prefix: every process the lab
 * starts does (etcd's data dir, the agents' config dirs, the probes' ready files, `ip netns exec pnl-…`),
 * so this finds even one whose PID never made it into the state file.
 */
export function processesMentioningLab(t: TestLab): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ");
      const state = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1] ?? "";
      if (state.startsWith("Z")) continue;
      if (cmdline.includes(join(t.stateRoot, t.id)) || cmdline.includes(`pnl-${t.id}-`)) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** Everything the lab could leave behind: namespaces with its prefix, its state dir, its processes. */
export async function leftovers(t: TestLab, before: LabStateData | undefined): Promise<{ namespaces: string[]; stateDir: boolean; processes: number[] }> {
  return {
    namespaces: labNamespaces(t),
    stateDir: existsSync(join(t.stateRoot, t.id)),
    processes: [...new Set([...survivingProcesses(before), ...processesMentioningLab(t)])],
  };
}

/**
 * Tear a test lab down however its test ended: `lab down` (twice if the first reports a problem), then,
 * for anything still there, stop the processes and delete the namespaces that carry this lab's unique
 * prefix (the test created them), and remove the state root. Returns what `lab down` left behind, so
 * the caller can fail loudly instead of leaking silently.
 */
export async function removeTestLab(t: TestLab): Promise<string[]> {
  let down = await lab(["down", ...t.flags]);
  if (down.code !== 0) down = await lab(["down", ...t.flags]);
  const state = readLabState(t);
  const left = await leftovers(t, state);
  const forced: string[] = [];
  if (left.processes.length > 0) {
    forced.push(`processes ${left.processes.join(" ")}`);
    await stopPids(left.processes);
  }
  const prefix = `pnl-${t.id}-`;
  const namespaces = listNamedNetns({ includeStale: true }).filter((n) => n.startsWith(prefix));
  const inodes = new Set(namespaces.map((n) => namedNetnsInode(n)).filter((i): i is number => i !== undefined));
  await stopPids(pidsInNamespaces(inodes));
  for (const name of namespaces) {
    forced.push(`netns ${name}`);
    await deleteNamedNetns(name);
  }
  rmSync(t.stateRoot, { recursive: true, force: true });
  if (forced.length > 0) forced.unshift(`lab down exited ${down.code}: ${(down.stdout + down.stderr).trim().split("\n").slice(-5).join(" | ")}`);
  return forced;
}
