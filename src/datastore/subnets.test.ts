import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseClusterCidr, pickFreeSubnet, subnetAt, subnetCount, subnetIndex } from "./subnets.ts";

describe("subnet maths", () => {
  const cluster = parseClusterCidr("10.244.0.0/16");

  it("rejects a malformed cluster CIDR, host bits and IPv6, naming the input", () => {
    for (const bad of ["10.244.0.0", "10.244.0.0/33", "10.244.1.0/16", "256.0.0.0/8", "10.0.0/8", "a.b.c.d/8", "010.244.0.0/16", "fd00::/48"]) {
      assert.throws(() => parseClusterCidr(bad), (error: Error) => error.message.includes(JSON.stringify(bad)), bad);
    }
  });

  it("cuts a /16 into 256 /24s in order", () => {
    assert.equal(subnetCount(cluster, 24), 256);
    assert.equal(subnetAt(cluster, 24, 0), "10.244.0.0/24");
    assert.equal(subnetAt(cluster, 24, 255), "10.244.255.0/24");
    assert.equal(subnetAt(parseClusterCidr("10.0.0.0/8"), 26, 5), "10.0.1.64/26");
    assert.throws(() => subnetAt(cluster, 24, 256));
    assert.throws(() => subnetCount(cluster, 15));
  });

  it("subnetIndex inverts subnetAt and refuses foreign or misaligned subnets (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 16, max: 28 }), fc.nat(), (length, seed) => {
        const index = seed % subnetCount(cluster, length);
        assert.equal(subnetIndex(cluster, length, subnetAt(cluster, length, index)), index);
      }),
    );
    assert.equal(subnetIndex(cluster, 24, "10.245.0.0/24"), undefined);
    assert.equal(subnetIndex(cluster, 24, "10.244.0.0/25"), undefined);
  });

  it("picks the lowest free subnet first and never a taken one (property)", () => {
    assert.equal(pickFreeSubnet(cluster, 24, new Set(["10.244.0.0/24", "10.244.2.0/24"])), "10.244.1.0/24");
    const small = parseClusterCidr("10.244.0.0/20");
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 15 })), fc.nat(5), fc.double({ min: 0, max: 0.9999, noNaN: true }), (takenIdx, attempt, r) => {
        const taken = new Set(takenIdx.map((i) => subnetAt(small, 24, i)));
        const picked = pickFreeSubnet(small, 24, taken, attempt, () => r);
        if (taken.size === 16) assert.equal(picked, undefined);
        else {
          assert.ok(picked !== undefined && !taken.has(picked));
          assert.notEqual(subnetIndex(small, 24, picked), undefined);
        }
      }),
    );
  });
});
