// Peak memory and CPU time of plugin processes, as the kernel accounts them (no sampling).
//
// Each measured plugin is replaced, in a directory put first on CNI_PATH, by a wrapper that
// execs GNU time, which forks and execs the real plugin and reports the child's rusage from
// wait4(2). Those figures belong to the plugin itself: nsenter and the wrapper shell are
// separate, earlier images that time never sees. A reaped child's rusage also covers the
// children it reaped, so the reference bridge's figures include the host-local it ran: its
// ru_maxrss is max(bridge, host-local), its CPU time the sum. host-local is wrapped as well,
// so its own share is visible.
//
// The wrappers cost a shell and a fork, so this is a separate pass, never the timed runs.
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { tempDir } from "../test/helpers/netns.ts";

export const GNU_TIME = "/usr/bin/time";
/** The wrappers append to the file named by this variable, which the driver passes through. */
export const RUSAGE_LOG_VARIABLE = "PODNET_BENCH_RUSAGE_LOG";

export interface BinaryUsage {
  invocations: number;
  peakRssKiB: number;
  /** Mean user + system CPU time per invocation. GNU time reports 10 ms steps, so it is a mean over many runs. */
  meanCpuMs: number;
}

export function canMeasureUsage(): boolean {
  return existsSync(GNU_TIME);
}

/** A directory of wrappers, one per binary, each named like the plugin it measures. */
export function usageWrappers(binaries: readonly string[]): string {
  const dir = tempDir("bench-rusage");
  for (const binary of binaries) {
    const name = basename(binary);
    // The shell fills in CNI_COMMAND, so ADD and DEL land on separate lines.
    const script = `#!/bin/sh\nexec ${GNU_TIME} -a -o "$${RUSAGE_LOG_VARIABLE}" -f "${name} $CNI_COMMAND %M %U %S" ${binary}\n`;
    const path = join(dir, name);
    writeFileSync(path, script);
    chmodSync(path, 0o755);
  }
  return dir;
}

/** Usage per CNI command and binary name, from a log the wrappers wrote. */
export function readUsageLog(logPath: string): Map<string, Map<string, BinaryUsage>> {
  const totals = new Map<string, Map<string, { invocations: number; peakRssKiB: number; cpuS: number }>>();
  if (existsSync(logPath)) {
    for (const line of readFileSync(logPath, "utf8").split("\n")) {
      // time also writes "Command exited with non-zero status N" lines; only "name COMMAND KiB user sys" lines count.
      const match = /^(\S+) ([A-Z]+) (\d+) ([\d.]+) ([\d.]+)$/.exec(line.trim());
      if (!match) continue;
      const [, name, command, kib, user, sys] = match as unknown as [string, string, string, string, string, string];
      const byBinary = totals.get(command) ?? new Map();
      const total = byBinary.get(name) ?? { invocations: 0, peakRssKiB: 0, cpuS: 0 };
      total.invocations += 1;
      total.peakRssKiB = Math.max(total.peakRssKiB, Number(kib));
      total.cpuS += Number(user) + Number(sys);
      byBinary.set(name, total);
      totals.set(command, byBinary);
    }
  }
  const usage = new Map<string, Map<string, BinaryUsage>>();
  for (const [command, byBinary] of totals) {
    usage.set(
      command,
      new Map(
        [...byBinary].map(([name, t]) => [name, { invocations: t.invocations, peakRssKiB: t.peakRssKiB, meanCpuMs: (t.cpuS * 1000) / t.invocations }]),
      ),
    );
  }
  return usage;
}
