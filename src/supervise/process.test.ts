import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isRecordedProcessAlive, processStartTime, spawnDetached, stopProcess, stopRecordedProcess, type SupervisedProcess } from "./process.ts";

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

test("a process that ignores SIGTERM is killed after the grace period, and only it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "supervise-test-"));
  try {
    const stubborn = spawnDetached<SupervisedProcess>({
      argv: [process.execPath, "-e", "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000)"],
      log: join(dir, "stubborn.log"),
    });
    const bystander = spawnDetached<SupervisedProcess>({ argv: ["sleep", "30"], log: join(dir, "bystander.log") });
    // Wait until its SIGTERM handler is installed, or SIGTERM would simply end it.
    for (let i = 0; i < 250 && !readFileSync(join(dir, "stubborn.log"), "utf8").includes("up"); i++) await new Promise((r) => setTimeout(r, 20));
    const started = Date.now();
    await stopProcess(stubborn.pid!, { graceMs: 300 });
    assert.ok(Date.now() - started >= 300, "it waited the grace period before SIGKILL");
    assert.equal(isRecordedProcessAlive(stubborn), false);
    assert.equal(isRecordedProcessAlive(bystander), true);
    await stopRecordedProcess(bystander);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
