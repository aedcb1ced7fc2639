import { test } from "node:test";
import assert from "node:assert/strict";
import { isIP } from "node:net";
import fc from "fast-check";
import { ipFamily } from "./ip-syntax.ts";

test("accepts what Go's net.ParseIP accepts", () => {
  for (const ok4 of ["0.0.0.0", "10.244.1.2", "255.255.255.255", "192.168.1.10"]) assert.equal(ipFamily(ok4), 4, ok4);
  for (const ok6 of ["::", "::1", "fd00::1", "2001:db8:0:0:0:0:0:1", "::ffff:10.0.0.1", "64:ff9b::1.2.3.4", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:1.2.3.4", "FE80::A"]) {
    assert.equal(ipFamily(ok6), 6, ok6);
  }
});

test("refuses malformed addresses", () => {
  for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4/24", " 1.2.3.4", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "fe80::1%eth0", "12345::", ":1", "1:", "::g", "1:2:3:4:5:6:7:1.2.3.4", "abc"]) {
    assert.equal(ipFamily(bad), 0, bad);
  }
});

test("agrees with node:net on generated addresses", () => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (address) => {
      assert.equal(ipFamily(address), isIP(address));
    }),
    { numRuns: 2000 },
  );
});
