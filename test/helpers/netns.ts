// Network namespaces for tests: uniquely named, tracked, and removed however the test ends.
// Nothing here touches the root namespace: every command runs inside a namespace created here.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const created = new Set<string>();
const tempDirs = new Set<string>();

function sh(cmd: string, args: string[], input?: string): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: "utf8", ...(input === undefined ? {} : { input }) });
}

/** A short unique name with the test prefix; link names must stay within 15 characters. */
export function uniqueName(tag: string): string {
  return `pnt${tag}${randomBytes(3).toString("hex")}`;
}

export class Netns {
  private constructor(readonly name: string) {}

  get path(): string {
    return `/run/netns/${this.name}`;
  }

  static create(tag: string): Netns {
    const name = uniqueName(tag);
    const run = sh("ip", ["netns", "add", name]);
    if (run.status !== 0) throw new Error(`ip netns add ${name}: ${run.stderr}`);
    created.add(name);
    const ns = new Netns(name);
    ns.ip("link", "set", "lo", "up");
    return ns;
  }

  /** Runs a command inside this namespace; throws with its stderr when it fails. */
  exec(cmd: string, ...args: string[]): string {
    const run = sh("ip", ["netns", "exec", this.name, cmd, ...args]);
    if (run.status !== 0) throw new Error(`[${this.name}] ${cmd} ${args.join(" ")}: ${run.stderr || run.stdout}`);
    return run.stdout;
  }

  /** Like exec, but returns the exit status instead of throwing. */
  try(cmd: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const run = sh("ip", ["netns", "exec", this.name, cmd, ...args]);
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  }

  ip(...args: string[]): string {
    return this.exec("ip", ...args);
  }

  /** Link names in this namespace. */
  links(): string[] {
    const out = this.ip("-j", "link", "show");
    return (JSON.parse(out) as { ifname: string }[]).map((l) => l.ifname);
  }

  /** Addresses of a link in CIDR form, IPv6 link-local ones included. */
  addresses(dev: string): string[] {
    const out = this.ip("-j", "addr", "show", "dev", dev);
    const [link] = JSON.parse(out) as { addr_info: { local: string; prefixlen: number }[] }[];
    return (link?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
  }

  routes(family: "-4" | "-6" = "-4"): { dst: string; gateway?: string; dev?: string }[] {
    return JSON.parse(this.ip("-j", family, "route", "show")) as { dst: string; gateway?: string; dev?: string }[];
  }

  delete(): void {
    if (!created.has(this.name)) return;
    const run = sh("ip", ["netns", "del", this.name]);
    if (run.status === 0 || !listNetns().includes(this.name)) created.delete(this.name);
  }
}

export function listNetns(): string[] {
  const run = sh("ip", ["-j", "netns", "list"]);
  if (run.status !== 0 || run.stdout.trim() === "") return [];
  return (JSON.parse(run.stdout) as { name: string }[]).map((n) => n.name);
}

export function tempDir(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `podnet-${tag}-`));
  tempDirs.add(dir);
  return dir;
}

/** Removes every namespace and temp dir this process created and has not removed yet. */
export function cleanupAll(): void {
  for (const name of [...created]) {
    sh("ip", ["netns", "del", name]);
    created.delete(name);
  }
  for (const dir of [...tempDirs]) {
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  }
}

// A test file that crashes still must not leave namespaces behind.
process.on("exit", cleanupAll);
