import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LabState } from "./lab-state.ts";

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "lab-state-test-"));
}

test("every record is on disk as soon as it is made, and loads back the same", () => {
  const dir = tempDir();
  try {
    const state = LabState.create(join(dir, "x"), { id: "x", nodes: 2, podsPerNode: 1, network: "podnet" });
    state.recordNamespace("pnl-x-switch");
    // A second process (the later `lab down`) must see it without any further save.
    assert.deepEqual(LabState.load(join(dir, "x"))?.data.namespaces, ["pnl-x-switch"]);
    state.recordNamespace("pnl-x-switch");
    state.recordProcess({ role: "etcd", netns: "pnl-x-cp", argv: ["etcd"], log: "/dev/null" });
    state.recordNode({ name: "node1", netns: "pnl-x-node1", ip: "192.168.1.11", cniConfDir: "/c", ipamDataDir: "/i" });
    state.recordPod({ name: "node1-pod1", node: "node1", netns: "pnl-x-node1-pod1", containerId: "c1" });
    const loaded = LabState.load(join(dir, "x"));
    assert.ok(loaded);
    assert.deepEqual(loaded.data, state.data);
    assert.deepEqual(loaded.data.namespaces, ["pnl-x-switch"], "recording twice keeps one entry");
    state.forgetNamespace("pnl-x-switch");
    state.removePod("node1-pod1");
    assert.deepEqual(LabState.load(join(dir, "x"))?.data.pods, []);
    assert.deepEqual(LabState.load(join(dir, "x"))?.data.namespaces, []);
    assert.equal(existsSync(`${state.path}.tmp`), false);
    assert.doesNotThrow(() => JSON.parse(readFileSync(state.path, "utf8")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no state file means no lab; a foreign file is refused", () => {
  const dir = tempDir();
  try {
    assert.equal(LabState.load(join(dir, "nothing")), undefined);
    writeFileSync(join(dir, "state.json"), JSON.stringify({ hello: "world" }));
    assert.throws(() => LabState.load(dir), /not a podnet lab state file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
