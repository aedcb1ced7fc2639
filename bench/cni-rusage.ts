// Peak memory and CPU time of plugin processes, as the kernel accounts them (no sampling).
//
// Each measured plugin is replaced, in a directory put first on CNI_PATH, by a wrapper that
// runs the real plugin as its child and logs the child's rusage from wait4(2): CPU time in
// microseconds and ru_maxrss. The wrapper is a tiny C program compiled here with the system's
// `cc` (a Go plugin's DEL costs about 1 ms of CPU, so GNU time's 10 ms steps round it to 0).
// Without a compiler, GNU time is the fallback, and the report says its CPU figures are coarse.
//
// Those figures belong to the plugin itself: the wrapper is a separate, earlier process. Two
// things the kernel does are worth knowing when reading them:
//   - a reaped child's rusage covers the children it reaped, so the reference bridge's figures
//     include the host-local it ran (ru_maxrss: the larger of the two; CPU: the sum);
//     host-local is wrapped as well, so its own share is visible;
//   - ru_maxrss survives execve(2), so a child's figure is at least what it held between fork
//     and exec: a copy of the wrapper, which is why the wrapper must be small (about 1 MiB).
//
// The wrappers cost a shell and a fork, so this is a separate pass, never the timed runs.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { tempDir } from "../test/helpers/netns.ts";

export const GNU_TIME = "/usr/bin/time";
/** The wrappers append to the file named by this variable, which the driver passes through. */
export const RUSAGE_LOG_VARIABLE = "PODNET_BENCH_RUSAGE_LOG";

export interface BinaryUsage {
  invocations: number;
  peakRssKiB: number;
  /** Mean user + system CPU time per invocation. */
  meanCpuMs: number;
}

/** How the wrappers measure: wait4 in our own wrapper (µs), or GNU time (10 ms steps). */
export type UsageMeter = { kind: "wait4"; exec: string } | { kind: "gnu-time" };

const WRAPPER_SOURCE = `
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* rusage-exec LOG NAME COMMAND BINARY [ARG...]: runs BINARY, appends its wait4 rusage to LOG. */
int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: rusage-exec LOG NAME COMMAND BINARY [ARG...]\\n");
    return 127;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 127;
  }
  if (pid == 0) {
    execv(argv[4], argv + 4);
    perror(argv[4]);
    _exit(127);
  }
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      perror("wait4");
      return 127;
    }
  }
  FILE *log = fopen(argv[1], "a");
  if (log != NULL) {
    /* One short line, written by one write(2) at fclose: concurrent wrappers do not interleave. */
    fprintf(log, "%s %s %ld %ld.%06ld %ld.%06ld\\n", argv[2], argv[3], ru.ru_maxrss,
            (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    fclose(log);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}
`;

/** Compiles the wait4 wrapper if a C compiler is present, else falls back to GNU time, else undefined. */
export function usageMeter(): UsageMeter | undefined {
  const dir = tempDir("bench-rusage-exec");
  const source = join(dir, "rusage-exec.c");
  const exec = join(dir, "rusage-exec");
  writeFileSync(source, WRAPPER_SOURCE);
  const cc = spawnSync("cc", ["-O2", "-static", "-o", exec, source], { encoding: "utf8" });
  if (cc.status !== 0 || !existsSync(exec)) {
    // A static link needs libc.a; a dynamic wrapper is only a little larger in memory.
    const dynamic = spawnSync("cc", ["-O2", "-o", exec, source], { encoding: "utf8" });
    if (dynamic.status !== 0 || !existsSync(exec)) return existsSync(GNU_TIME) ? { kind: "gnu-time" } : undefined;
  }
  return { kind: "wait4", exec };
}

/** A directory of wrappers, one per binary, each named like the plugin it measures. */
export function usageWrappers(meter: UsageMeter, binaries: readonly string[]): string {
  const dir = tempDir("bench-rusage");
  for (const binary of binaries) {
    const name = basename(binary);
    // The shell fills in CNI_COMMAND, so ADD and DEL land on separate lines.
    const line =
      meter.kind === "wait4"
        ? `exec ${meter.exec} "$${RUSAGE_LOG_VARIABLE}" ${name} "$CNI_COMMAND" ${binary}`
        : `exec ${GNU_TIME} -a -o "$${RUSAGE_LOG_VARIABLE}" -f "${name} $CNI_COMMAND %M %U %S" ${binary}`;
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${line}\n`);
    chmodSync(path, 0o755);
  }
  return dir;
}

/** Usage per CNI command and binary name, from a log the wrappers wrote. */
export function readUsageLog(logPath: string): Map<string, Map<string, BinaryUsage>> {
  const totals = new Map<string, Map<string, { invocations: number; peakRssKiB: number; cpuS: number }>>();
  if (existsSync(logPath)) {
    for (const line of readFileSync(logPath, "utf8").split("\n")) {
      // GNU time also writes "Command exited with non-zero status N" lines; only "name COMMAND KiB user sys" lines count.
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
