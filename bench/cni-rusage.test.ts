import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readUsageLog, usageMeter } from "./cni-rusage.ts";

test("the usage log is split by command and binary, with peaks and mean CPU", () => {
  const dir = mkdtempSync(join(tmpdir(), "podnet-rusage-test-"));
  try {
    const log = join(dir, "log");
    writeFileSync(
      log,
      [
        "bridge ADD 5000 0.01 0.02",
        "host-local ADD 3000 0.00 0.01",
        "Command exited with non-zero status 1",
        "bridge ADD 5200 0.03 0.04",
        "bridge DEL 4000 0.00 0.00",
        "",
      ].join("\n"),
    );
    const usage = readUsageLog(log);
    assert.deepEqual([...usage.keys()].sort(), ["ADD", "DEL"]);
    const bridgeAdd = usage.get("ADD")?.get("bridge");
    assert.equal(bridgeAdd?.invocations, 2);
    assert.equal(bridgeAdd?.peakRssKiB, 5200);
    assert.ok(Math.abs((bridgeAdd?.meanCpuMs ?? 0) - 50) < 1e-9);
    assert.equal(usage.get("ADD")?.get("host-local")?.peakRssKiB, 3000);
    assert.equal(usage.get("DEL")?.get("bridge")?.meanCpuMs, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a missing log means nothing was measured", () => {
  assert.equal(readUsageLog("/nonexistent/podnet-bench.log").size, 0);
});

test("the wait4 wrapper's microsecond figures are read exactly", () => {
  const dir = mkdtempSync(join(tmpdir(), "podnet-rusage-test-"));
  try {
    const log = join(dir, "log");
    writeFileSync(log, ["bridge DEL 4100 0.000812 0.000391", "bridge DEL 4200 0.001002 0.000207", ""].join("\n"));
    const del = readUsageLog(log).get("DEL")?.get("bridge");
    assert.equal(del?.invocations, 2);
    assert.equal(del?.peakRssKiB, 4200);
    assert.ok(Math.abs((del?.meanCpuMs ?? 0) - 1.206) < 1e-9);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the wait4 wrapper passes the exit code through and logs the child's CPU in µs", { skip: spawnSync("cc", ["--version"]).status !== 0 && "no C compiler" }, () => {
  const meter = usageMeter();
  assert.equal(meter?.kind, "wait4");
  if (meter?.kind !== "wait4") return;
  const dir = mkdtempSync(join(tmpdir(), "podnet-rusage-test-"));
  try {
    const log = join(dir, "log");
    // About 20 ms of CPU in the child: well above zero, and not a multiple of GNU time's 10 ms steps.
    const burn = spawnSync(meter.exec, [log, "burner", "ADD", "/bin/sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exit 3"]);
    assert.equal(burn.status, 3);
    const line = readFileSync(log, "utf8").trim();
    assert.match(line, /^burner ADD \d+ \d+\.\d{6} \d+\.\d{6}$/);
    const usage = readUsageLog(log).get("ADD")?.get("burner");
    assert.ok((usage?.meanCpuMs ?? 0) > 1, `CPU ${usage?.meanCpuMs} ms`);
    assert.ok((usage?.peakRssKiB ?? 0) > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
