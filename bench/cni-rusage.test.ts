import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readUsageLog } from "./cni-rusage.ts";

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
