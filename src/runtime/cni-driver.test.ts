// The driver's checks that come before any plugin runs. The CNI_PATH here holds no plugins, so a
// driver that skipped a check would fail differently ("not found") and the test would say so.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CniNetwork, ConfigError } from "./cni-driver.ts";

const nowhere = { cniPath: ["/nonexistent-podnet-test-dir"] };
const list = (cniVersion: string) => ({ cniVersion, name: "net", plugins: [{ type: "podnet" }] });

test("a conflist libcni would refuse is refused when the network is built", () => {
  assert.throws(() => new CniNetwork({ cniVersion: "1.1.0", name: "bad name", plugins: [{ type: "podnet" }] }, nowhere), (e: unknown) => e instanceof ConfigError && e.field === "name");
  assert.throws(() => new CniNetwork({ cniVersion: "1.1.0", name: "net", plugins: [] }, nowhere), (e: unknown) => e instanceof ConfigError && e.field === "plugins");
});

test("a bad attachment is refused before any plugin is looked for", async () => {
  const net = new CniNetwork(list("1.1.0"), nowhere);
  const isField = (field: string) => (e: unknown) => e instanceof ConfigError && e.field === field;
  await assert.rejects(net.add({ containerId: "-bad", netns: "/run/netns/x", ifname: "eth0" }), isField("containerId"));
  await assert.rejects(net.del({ containerId: "ok", netns: "", ifname: "eth0:1" }), isField("ifname"));
  await assert.rejects(net.check({ containerId: "ok", netns: "", ifname: "a".repeat(16) }, {}), isField("ifname"));
  // A good attachment gets as far as the lookup, which fails here: proof the checks above came first.
  await assert.rejects(net.add({ containerId: "ok", netns: "/run/netns/x", ifname: "eth0" }), /podnet.*(run npm run build)/);
});

test("STATUS and GC exist from 1.1.0; for older lists they succeed without running a plugin", async () => {
  const old = new CniNetwork(list("1.0.0"), nowhere);
  assert.equal(old.hasStatus, false);
  await old.status();
  await old.gc([]);
  const current = new CniNetwork(list("1.1.0"), nowhere);
  assert.equal(current.hasStatus, true);
  await assert.rejects(current.status(), /podnet/);
});

test("disableCheck skips CHECK without running a plugin", async () => {
  const net = new CniNetwork({ ...list("1.1.0"), disableCheck: true }, nowhere);
  await net.check({ containerId: "ok", netns: "", ifname: "eth0" }, {});
});
