import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { fnv1a64, hostVethName, isHostVethName, stableMac } from "./names.ts";

test("host veth names fit IFNAMSIZ and are recognisable", () => {
  fc.assert(
    fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1, maxLength: 15 }), (id, ifname) => {
      const name = hostVethName(id, ifname);
      assert.ok(name.length <= 15);
      assert.ok(isHostVethName(name));
      assert.equal(hostVethName(id, ifname), name);
    }),
  );
});

test("different attachments get different names", () => {
  assert.notEqual(hostVethName("abc", "eth0"), hostVethName("abc", "eth1"));
  assert.notEqual(hostVethName("abc", "eth0"), hostVethName("abd", "eth0"));
  assert.equal(isHostVethName("eth0"), false);
  assert.equal(isHostVethName("pnXYZ123456789"), false);
});

test("FNV-1a matches the published test vectors", () => {
  assert.equal(fnv1a64(""), 0xcbf29ce484222325n);
  assert.equal(fnv1a64("a"), 0xaf63dc4c8601ec8cn);
  assert.equal(fnv1a64("foobar"), 0x85944171f73967e8n);
});

test("stable MACs are locally administered unicast and stable", () => {
  const mac = stableMac("podnet-bridge/cni0");
  assert.match(mac, /^02(:[0-9a-f]{2}){5}$/);
  assert.equal(stableMac("podnet-bridge/cni0"), mac);
  assert.notEqual(stableMac("podnet-bridge/cni1"), mac);
});
