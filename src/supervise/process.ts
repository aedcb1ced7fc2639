// Long-lived processes (etcd, agents, the lab's probe servers): started detached so they outlive the
// command that started them, logged to a file, and identified by PID *and* kernel start time, so that
// nothing ever signals a process that merely reused a PID.

import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync } from "node:fs";

/** What a supervisor records about a process; the lab keeps these in its state file. */
export interface SupervisedProcess {
  argv: string[];
  /** stdout and stderr are appended here. */
  log: string;
  /** Absent until it is spawned. */
  pid?: number;
  /** The kernel's start time of pid (clock ticks since boot), so a recycled PID is never taken for it. */
  startTime?: number;
}

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
export function processStartTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses; the fields after it are plain.
  const afterName = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const value = Number(afterName[19]);
  return Number.isFinite(value) ? value : undefined;
}

export function isRecordedProcessAlive(record: SupervisedProcess): boolean {
  if (record.pid === undefined) return false;
  const startTime = processStartTime(record.pid);
  if (startTime === undefined) return false;
  if (isZombie(record.pid)) return false;
  return record.startTime === undefined || record.startTime === startTime;
}

/**
 * Start argv detached with stdout and stderr appended to record.log; fills in record.pid and startTime.
 * argv is often a kernel/netns-exec.ts prefix, which execs in place, so the PID is the program's own.
 */
export function spawnDetached<T extends SupervisedProcess>(record: T, env: NodeJS.ProcessEnv = process.env): T {
  const [file, ...args] = record.argv;
  if (file === undefined) throw new Error("spawnDetached: empty argv");
  const logFd = openSync(record.log, "a");
  try {
    const child = spawn(file, args, { stdio: ["ignore", logFd, logFd], detached: true, env });
    if (child.pid === undefined) throw new Error(`could not start ${file}`);
    child.on("error", () => {});
    child.unref();
    record.pid = child.pid;
    record.startTime = processStartTime(child.pid);
  } finally {
    closeSync(logFd);
  }
  return record;
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. Only ever the recorded process. */
export async function stopRecordedProcess(record: SupervisedProcess, graceMs = 3000): Promise<void> {
  if (!isRecordedProcessAlive(record) || record.pid === undefined) return;
  await stopProcess(record.pid, { graceMs });
}

export interface StopOptions {
  /** The ChildProcess when this process spawned it: its exit event is then the authority (a child we
   * have not reaped stays a zombie, which polling would take for alive). */
  child?: ChildProcess;
  /** First signal; default SIGTERM. SIGKILL follows after graceMs if the process is still there. */
  signal?: NodeJS.Signals;
  graceMs?: number;
}

/**
 * Signal one process the caller started, by PID, and resolve once it is gone: `signal` (SIGTERM), then
 * SIGKILL after graceMs. The one way podnet stops what it started (etcd, agents, lab processes).
 */
export async function stopProcess(pid: number, opts: StopOptions = {}): Promise<void> {
  const { child } = opts;
  const gone = (): boolean => (child ? child.exitCode !== null || child.signalCode !== null : processStartTime(pid) === undefined || isZombie(pid));
  if (gone()) return;
  try {
    process.kill(pid, opts.signal ?? "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + (opts.graceMs ?? 10_000);
  while (!gone() && Date.now() < deadline) await sleep(20);
  if (gone()) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  const killDeadline = Date.now() + 5000;
  while (!gone() && Date.now() < killDeadline) await sleep(20);
}

/**
 * PIDs of every process whose network namespace is one of `inodes` (see namedNetnsInode). For a
 * supervisor that owns those namespaces: anything living in one was started by it, and this finds a
 * process whose PID a crash kept it from recording.
 */
export function pidsInNamespaces(inodes: ReadonlySet<number>): number[] {
  const found: number[] = [];
  if (inodes.size === 0) return found;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/ns/net`);
    } catch {
      continue;
    }
    const match = /^net:\[(\d+)\]$/.exec(link);
    if (match && inodes.has(Number(match[1]))) found.push(pid);
  }
  return found;
}

/** Stop processes found by pidsInNamespaces, all at once. */
export async function stopPids(pids: readonly number[], graceMs = 2000): Promise<void> {
  await Promise.all(pids.map((pid) => stopProcess(pid, { graceMs })));
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
