import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isRecordedProcessAlive, processStartTime, spawnDetached, stopRecordedProcess, type SupervisedProcess } from "./process.ts";

test("a recorded process is alive only while the same PID has the same start time", async () => {
  const dir = mkdtempSync(join(tmpdir(), "supervise-test-"));
  try {
    const record = spawnDetached<SupervisedProcess>({ argv: ["sleep", "30"], log: join(dir, "log") });
    assert.ok(record.pid && record.startTime !== undefined);
    assert.equal(isRecordedProcessAlive(record), true);
    assert.equal(isRecordedProcessAlive({ ...record, startTime: record.startTime! + 1 }), false, "a recycled PID is not ours");
    await stopRecordedProcess(record);
    assert.equal(isRecordedProcessAlive(record), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("start time of this process is stable and of a missing PID undefined", () => {
  const mine = processStartTime(process.pid);
  assert.ok(typeof mine === "number" && mine > 0);
  assert.equal(processStartTime(process.pid), mine);
  assert.equal(processStartTime(2 ** 22 + 1), undefined);
});
