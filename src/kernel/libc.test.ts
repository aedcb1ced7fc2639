import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, O_RDONLY, SysError, backendName, close, describeErrno, errnoName, flock, openPath } from "./libc.ts";

describe("libc (koffi backend under Node)", () => {
  it("uses koffi under Node", () => {
    assert.equal(backendName(), "koffi");
  });

  it("flock: exclusive locks conflict across descriptors, shared ones do not", () => {
    const dir = mkdtempSync(join(tmpdir(), "pnt-k-libc-"));
    const path = join(dir, "lock");
    const a = openSync(path, "w");
    const b = openSync(path, "r");
    try {
      flock(a, LOCK_SH);
      flock(b, LOCK_SH | LOCK_NB);
      flock(b, LOCK_UN);
      flock(a, LOCK_EX);
      assert.throws(
        () => flock(b, LOCK_EX | LOCK_NB),
        (e: unknown) => e instanceof SysError && e.syscall === "flock" && e.errno === 11 && /Resource temporarily unavailable/.test(e.message),
      );
      assert.throws(() => flock(b, LOCK_SH | LOCK_NB), SysError);
      flock(a, LOCK_UN);
      flock(b, LOCK_EX | LOCK_NB);
    } finally {
      closeSync(a);
      closeSync(b);
      rmSync(dir, { recursive: true });
    }
  });

  it("errors carry errno, the syscall and the path", () => {
    assert.throws(
      () => openPath("/nonexistent/pnt-k", O_RDONLY),
      (e: unknown) => e instanceof SysError && e.errno === 2 && e.message === "open /nonexistent/pnt-k: No such file or directory (ENOENT)",
    );
    assert.throws(() => flock(-1, LOCK_EX), (e: unknown) => e instanceof SysError && e.errno === 9);
  });

  it("openPath and close work on a real file", () => {
    const fd = openPath("/proc/self/status", O_RDONLY);
    assert.ok(fd > 2);
    close(fd);
    assert.throws(() => close(fd), (e: unknown) => e instanceof SysError && errnoName(e.errno) === "EBADF");
  });

  it("describes errno values with message and name", () => {
    assert.equal(describeErrno(17), "File exists (EEXIST)");
    assert.equal(describeErrno(19), "No such device (ENODEV)");
    assert.equal(errnoName(3), "ESRCH");
  });
});
