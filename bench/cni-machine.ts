// What a reader needs to judge the numbers: the machine, the runtimes, the plugin builds, and
// whether the Node CA-certificate variable (which slows every Node start here) reached the plugins.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release } from "node:os";
import { join } from "node:path";
import { CniNetwork } from "../src/runtime/cni-driver.ts";
import { tempDir } from "../test/helpers/netns.ts";

export interface MachineNotes {
  date: string;
  cpu: string;
  nproc: number;
  kernel: string;
  node: string;
  bun: string;
  referencePlugins: string;
  podnetCommit: string;
  podnetBinaryBytes: number | undefined;
  /** Bytes on disk of each side's plugin files, counting a file with several hard links once. */
  installBytes: { podnet: number; reference: number };
  loadAtStart: string;
}

function firstLine(cmd: string, args: string[], cwd?: string): string {
  const run = spawnSync(cmd, args, { encoding: "utf8", ...(cwd ? { cwd } : {}) });
  return run.status === 0 ? (run.stdout.split("\n")[0] ?? "").trim() : "unknown";
}

export function formatLoad(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}

/** Bytes of the given files, each inode once: podnet-ipam is a hard link to podnet, not a copy. */
export function installBytes(files: readonly string[]): number {
  const seen = new Map<string, number>();
  for (const file of files) {
    if (!existsSync(file)) continue;
    const st = statSync(file);
    seen.set(`${st.dev}:${st.ino}`, st.size);
  }
  return [...seen.values()].reduce((a, b) => a + b, 0);
}

export function machineNotes(root: string, bun: string, podnetBinary: string, installFiles: { podnet: string[]; reference: string[] }): MachineNotes {
  const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: root, encoding: "utf8" }).stdout.trim() !== "";
  return {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model ?? "unknown",
    nproc: availableParallelism(),
    kernel: release(),
    node: process.version,
    bun: existsSync(bun) ? firstLine(bun, ["--version"]) : "not installed",
    referencePlugins: firstLine("dpkg-query", ["-W", "-f", "containernetworking-plugins ${Version}", "containernetworking-plugins"]),
    podnetCommit: `${firstLine("git", ["rev-parse", "--short", "HEAD"], root)}${dirty ? " with uncommitted changes" : ""}`,
    podnetBinaryBytes: existsSync(podnetBinary) ? statSync(podnetBinary).size : undefined,
    installBytes: { podnet: installBytes(installFiles.podnet), reference: installBytes(installFiles.reference) },
    loadAtStart: formatLoad(),
  };
}

export interface CaCertsCheck {
  /** What this benchmark process had (the machines set it; real nodes do not). */
  inBenchProcess: string | undefined;
  /** Whether a plugin run through the driver saw the variable at all. */
  reachedPlugins: boolean;
}

/**
 * Runs a probe "plugin" through the same driver the benchmark uses and records the environment
 * it received, so the claim that plugins run without NODE_EXTRA_CA_CERTS is checked, not assumed.
 */
export async function checkCaCertsReachPlugins(): Promise<CaCertsCheck> {
  const dir = tempDir("bench-envprobe");
  const envFile = join(dir, "env.txt");
  const probe = join(dir, "envprobe");
  writeFileSync(probe, `#!/bin/sh\nenv > ${envFile}\n`);
  chmodSync(probe, 0o755);
  const network = new CniNetwork({ cniVersion: "1.1.0", name: "envprobe", plugins: [{ type: "envprobe" }] }, { cniPath: [dir] });
  await network.status();
  const seen = readFileSync(envFile, "utf8");
  return {
    inBenchProcess: process.env.NODE_EXTRA_CA_CERTS,
    reachedPlugins: /^NODE_EXTRA_CA_CERTS=/m.test(seen),
  };
}
