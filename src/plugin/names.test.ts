import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { hostVethName, isHostVethName } from "./names.ts";

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
