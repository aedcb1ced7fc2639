import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CniError, ErrorCode } from "../cni/types.ts";
import { DiskStore, LOCK_FILE, TEMP_PREFIX, parseReservationContent } from "./disk-store.ts";

let root: string;
let counter = 0;

function freshStore(options = {}): DiskStore {
  return DiskStore.open(root, `net${++counter}`, options);
}

before(() => {
  root = mkdtempSync(join(tmpdir(), "pnt-ipam-disk-"));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("DiskStore", () => {
  it("writes host-local's layout and format", () => {
    const store = freshStore();
    assert.equal(store.dir, join(root, `net${counter}`));
    assert.ok(store.reserve({ ip: "10.244.1.7", containerId: "abc123", ifname: "eth0", rangeSetId: 0 }));
    store.setLastReserved(0, "10.244.1.7");
    assert.equal(readFileSync(join(store.dir, "10.244.1.7"), "utf8"), "abc123\r\neth0");
    assert.equal(readFileSync(join(store.dir, "last_reserved_ip.0"), "utf8"), "10.244.1.7");
    assert.deepEqual(readdirSync(store.dir).sort(), ["10.244.1.7", "last_reserved_ip.0", LOCK_FILE].sort());
  });

  it("names IPv6 files canonically", () => {
    const store = freshStore();
    assert.ok(store.reserve({ ip: "FD00:0::0A", containerId: "c", ifname: "eth0", rangeSetId: 1 }));
    assert.ok(readdirSync(store.dir).includes("fd00::a"));
    assert.deepEqual(store.list().map((r) => r.ip), ["fd00::a"]);
  });

  it("reserves atomically: a second reserve of the same IP is refused and leaves the first intact", () => {
    const store = freshStore();
    assert.equal(store.reserve({ ip: "10.0.0.2", containerId: "first", ifname: "eth0", rangeSetId: 0 }), true);
    assert.equal(store.reserve({ ip: "10.0.0.2", containerId: "second", ifname: "eth0", rangeSetId: 0 }), false);
    // A second handle (another plugin process would have its own) sees the same.
    const other = DiskStore.open(root, `net${counter}`);
    assert.equal(other.reserve({ ip: "10.0.0.2", containerId: "third", ifname: "eth1", rangeSetId: 0 }), false);
    assert.deepEqual(store.list(), [{ ip: "10.0.0.2", containerId: "first", ifname: "eth0", rangeSetId: -1 }]);
    assert.ok(!readdirSync(store.dir).some((name) => name.startsWith(TEMP_PREFIX)));
  });

  it("finds, lists and releases by attachment", () => {
    const store = freshStore({ rangeSetOf: (ip: string) => (ip.includes(":") ? 1 : 0) });
    store.reserve({ ip: "10.0.0.2", containerId: "a", ifname: "eth0", rangeSetId: 0 });
    store.reserve({ ip: "fd00::2", containerId: "a", ifname: "eth0", rangeSetId: 1 });
    store.reserve({ ip: "10.0.0.3", containerId: "a", ifname: "net1", rangeSetId: 0 });
    store.reserve({ ip: "10.0.0.4", containerId: "b", ifname: "eth0", rangeSetId: 0 });
    const byIp = (rs: { ip: string }[]) => rs.map((r) => r.ip).sort();
    assert.deepEqual(byIp(store.findByAttachment("a", "eth0")), ["10.0.0.2", "fd00::2"]);
    assert.deepEqual(store.findByAttachment("a", "eth0").find((r) => r.ip === "fd00::2")?.rangeSetId, 1);
    assert.equal(store.list().length, 4);
    assert.deepEqual(byIp(store.releaseByAttachment("a", "eth0")), ["10.0.0.2", "fd00::2"]);
    assert.deepEqual(byIp(store.list()), ["10.0.0.3", "10.0.0.4"]);
    assert.deepEqual(store.releaseByAttachment("a", "eth0"), []);
    store.release("10.0.0.4");
    store.release("10.0.0.4");
    assert.deepEqual(byIp(store.list()), ["10.0.0.3"]);
  });

  it("reads legacy host-local files that hold only the container ID", () => {
    const store = freshStore();
    writeFileSync(join(store.dir, "10.0.0.9"), "legacy-id\n");
    assert.deepEqual(parseReservationContent("legacy-id\n"), { containerId: "legacy-id", ifname: "" });
    assert.deepEqual(store.findByAttachment("legacy-id", "eth0").map((r) => r.ip), ["10.0.0.9"]);
    assert.equal(store.releaseByAttachment("legacy-id", "eth0").length, 1);
    assert.deepEqual(store.list(), []);
  });

  it("releases a file whose name spells the address differently", () => {
    const store = freshStore();
    writeFileSync(join(store.dir, "FD00:0:0::5"), "x\r\neth0");
    assert.deepEqual(store.list().map((r) => r.ip), ["fd00::5"]);
    store.release("fd00::5");
    assert.deepEqual(readdirSync(store.dir).filter((n) => n.includes(":")), []);
  });

  it("persists lastReserved across handles and per range set", () => {
    const store = freshStore();
    assert.equal(store.lastReserved(0), undefined);
    store.setLastReserved(0, "10.0.0.5");
    store.setLastReserved(1, "fd00::0:7");
    store.setLastReserved(0, "10.0.0.6");
    const reopened = DiskStore.open(root, `net${counter}`);
    assert.equal(reopened.lastReserved(0), "10.0.0.6");
    assert.equal(reopened.lastReserved(1), "fd00::7");
    assert.equal(reopened.lastReserved(2), undefined);
  });

  it("removes stale temporary files when the lock is next taken, and nothing else", () => {
    const store = freshStore();
    store.reserve({ ip: "10.0.0.2", containerId: "a", ifname: "eth0", rangeSetId: 0 });
    writeFileSync(join(store.dir, `${TEMP_PREFIX}12345.1.dead`), "half");
    writeFileSync(join(store.dir, `${TEMP_PREFIX}12345.2.dead`), "");
    store.withLock(() => undefined);
    assert.deepEqual(readdirSync(store.dir).sort(), ["10.0.0.2", LOCK_FILE].sort());
  });

  it("is re-entrant within one handle", () => {
    const store = freshStore();
    const result = store.withLock(() => store.withLock(() => store.reserve({ ip: "10.0.0.3", containerId: "a", ifname: "eth0", rangeSetId: 0 })));
    assert.equal(result, true);
  });

  it("holds an exclusive flock that another process cannot take", () => {
    const store = freshStore();
    const probe = `
      const { openSync } = require("node:fs");
      const koffi = require("koffi");
      const flock = koffi.load("libc.so.6").func("int flock(int, int)");
      const fd = openSync(process.argv[1], "a");
      process.stdout.write(String(flock(fd, 2 | 4))); // LOCK_EX | LOCK_NB
    `;
    const tryLock = () =>
      spawnSync(process.execPath, ["-e", probe, join(store.dir, LOCK_FILE)], { cwd: process.cwd(), encoding: "utf8" }).stdout;
    assert.equal(store.withLock(tryLock), "-1");
    assert.equal(tryLock(), "0");
  });

  it("rejects network names that would escape the data directory", () => {
    for (const bad of ["", ".", "..", "a/b", "../x"]) {
      assert.throws(() => DiskStore.open(root, bad), (e: unknown) => e instanceof CniError && e.code === ErrorCode.InvalidConfig, bad);
    }
  });

  it("reports a lock file it cannot open for writing as an I/O error", () => {
    // Root ignores file modes, so a directory in the lock file's place stands in for a read-only store.
    const store = freshStore();
    mkdirSync(join(store.dir, LOCK_FILE));
    assert.throws(
      () => store.withLock(() => undefined),
      (e: unknown) => e instanceof CniError && e.code === ErrorCode.Io && /cannot open lock file/.test(e.message),
    );
  });

  it("refuses a bad address rather than writing a strange file name", () => {
    const store = freshStore();
    assert.throws(() => store.reserve({ ip: "../../etc/passwd", containerId: "a", ifname: "eth0", rangeSetId: 0 }), CniError);
  });
});
