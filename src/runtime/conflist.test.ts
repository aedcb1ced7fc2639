import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, findConfigList, parseConfigList, validateAttachment, versionAtLeast } from "./conflist.ts";

const good = { cniVersion: "1.1.0", name: "podnet", plugins: [{ type: "podnet" }, { type: "portmap", capabilities: { portMappings: true } }] };

function refusedAt(value: unknown, field: RegExp): void {
  assert.throws(
    () => parseConfigList(JSON.stringify(value), "test.conflist"),
    (error: unknown) => error instanceof ConfigError && field.test(error.field) && error.message.startsWith("test.conflist: "),
  );
}

test("a well-formed conflist is accepted and keeps its fields", () => {
  const list = parseConfigList(JSON.stringify({ ...good, disableCheck: true }));
  assert.equal(list.name, "podnet");
  assert.equal(list.disableCheck, true);
  assert.deepEqual(list.plugins.map((p) => p.type), ["podnet", "portmap"]);
});

test("conflists libcni refuses are refused, naming the field", () => {
  assert.throws(() => parseConfigList("{", "x"), (e: unknown) => e instanceof ConfigError && /not JSON/.test(e.message));
  refusedAt([], /^the list$/);
  refusedAt({ ...good, cniVersion: undefined }, /^cniVersion$/);
  refusedAt({ ...good, cniVersion: 1 }, /^cniVersion$/);
  refusedAt({ ...good, cniVersion: "one" }, /^cniVersion$/);
  refusedAt({ ...good, name: undefined }, /^name$/);
  refusedAt({ ...good, name: "-dash-first" }, /^name$/);
  refusedAt({ ...good, name: "has space" }, /^name$/);
  refusedAt({ ...good, disableCheck: "yes" }, /^disableCheck$/);
  refusedAt({ ...good, plugins: undefined }, /^plugins$/);
  refusedAt({ ...good, plugins: [] }, /^plugins$/);
  refusedAt({ ...good, plugins: [{ type: "podnet" }, "bridge"] }, /^plugins\[1\]$/);
  refusedAt({ ...good, plugins: [{ type: "podnet" }, { bridge: "x" }] }, /^plugins\[1\]\.type$/);
  refusedAt({ ...good, plugins: [{ type: "../evil" }] }, /^plugins\[0\]\.type$/);
  refusedAt({ ...good, plugins: [{ type: "a\\b" }] }, /^plugins\[0\]\.type$/);
});

test("container IDs and interface names follow libcni's rules", () => {
  validateAttachment({ containerId: "pnl-lab-node1-pod1", ifname: "eth0" });
  validateAttachment({ containerId: "a", ifname: "x".repeat(15) });
  const refused = (att: { containerId: string; ifname: string }, field: string): void =>
    assert.throws(() => validateAttachment(att), (e: unknown) => e instanceof ConfigError && e.field === field);
  refused({ containerId: "", ifname: "eth0" }, "containerId");
  refused({ containerId: "_leading", ifname: "eth0" }, "containerId");
  refused({ containerId: "has/slash", ifname: "eth0" }, "containerId");
  refused({ containerId: "c1", ifname: "" }, "ifname");
  refused({ containerId: "c1", ifname: "x".repeat(16) }, "ifname");
  refused({ containerId: "c1", ifname: "." }, "ifname");
  refused({ containerId: "c1", ifname: ".." }, "ifname");
  refused({ containerId: "c1", ifname: "eth:0" }, "ifname");
  refused({ containerId: "c1", ifname: "eth/0" }, "ifname");
  refused({ containerId: "c1", ifname: "eth 0" }, "ifname");
});

test("the first *.conflist by name is the network; none yet is undefined; a bad one is an error", () => {
  const dir = mkdtempSync(join(tmpdir(), "runtime-conflist-"));
  try {
    assert.equal(findConfigList(join(dir, "missing")), undefined);
    assert.equal(findConfigList(dir), undefined);
    writeFileSync(join(dir, "20-b.conflist"), JSON.stringify({ ...good, name: "second" }));
    writeFileSync(join(dir, "10-a.conflist"), JSON.stringify({ ...good, name: "first" }));
    writeFileSync(join(dir, "05-ignored.json"), "{}");
    assert.equal(findConfigList(dir)?.list.name, "first");
    writeFileSync(join(dir, "01-bad.conflist"), JSON.stringify({ ...good, plugins: [] }));
    assert.throws(() => findConfigList(dir), (e: unknown) => e instanceof ConfigError && e.source.endsWith("01-bad.conflist"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("version comparison decides whether STATUS and GC exist", () => {
  assert.equal(versionAtLeast("1.1.0", "1.1.0"), true);
  assert.equal(versionAtLeast("1.10.0", "1.1.0"), true);
  assert.equal(versionAtLeast("1.0.0", "1.1.0"), false);
  assert.equal(versionAtLeast("0.4.0", "1.1.0"), false);
});
