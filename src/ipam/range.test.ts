import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CniError, ErrorCode, type IpamConf } from "../cni/types.ts";
import { formatIp, parseIp } from "../net/address.ts";
import {
  allocatableCount,
  describeRangeSet,
  isAllocatable,
  parseRange,
  parseRangeSets,
  rangeSetIndexOf,
  whyNotAllocatable,
  type Range,
} from "./range.ts";

function text(range: Range) {
  return {
    subnet: `${formatIp(range.subnet.address)}/${range.subnet.prefix}`,
    rangeStart: formatIp(range.rangeStart),
    rangeEnd: formatIp(range.rangeEnd),
    gateway: formatIp(range.gateway),
  };
}

function invalidConfig(pattern: RegExp) {
  return (error: unknown) => error instanceof CniError && error.code === ErrorCode.InvalidConfig && pattern.test(error.message);
}

describe("parseRange", () => {
  it("fills host-local's IPv4 defaults", () => {
    assert.deepEqual(text(parseRange({ subnet: "10.244.1.0/24" })), {
      subnet: "10.244.1.0/24",
      rangeStart: "10.244.1.1",
      rangeEnd: "10.244.1.254",
      gateway: "10.244.1.1",
    });
  });

  it("fills host-local's IPv6 defaults (end is the last address: no broadcast)", () => {
    assert.deepEqual(text(parseRange({ subnet: "fd00:10:244:1::/120" })), {
      subnet: "fd00:10:244:1::/120",
      rangeStart: "fd00:10:244:1::1",
      rangeEnd: "fd00:10:244:1::ff",
      gateway: "fd00:10:244:1::1",
    });
  });

  it("keeps explicit values", () => {
    const range = parseRange({ subnet: "10.0.0.0/16", rangeStart: "10.0.5.0", rangeEnd: "10.0.5.255", gateway: "10.0.0.254" });
    assert.deepEqual(text(range), { subnet: "10.0.0.0/16", rangeStart: "10.0.5.0", rangeEnd: "10.0.5.255", gateway: "10.0.0.254" });
  });

  it("rejects bad ranges with InvalidConfig and a reason", () => {
    const cases: Array<[object, RegExp]> = [
      [{ subnet: "10.0.0.0" }, /missing "\/prefix"/],
      [{ subnet: "banana/24" }, /invalid CIDR/],
      [{ subnet: 24 }, /subnet must be a CIDR string/],
      [{}, /subnet must be a CIDR string/],
      [{ subnet: "10.0.0.5/24" }, /host bits set; the network is 10\.0\.0\.0\/24/],
      [{ subnet: "10.0.0.0/31" }, /too small/],
      [{ subnet: "10.0.0.0/32" }, /too small/],
      [{ subnet: "fd00::/127" }, /too small/],
      [{ subnet: "10.0.0.0/24", gateway: "10.0.1.1" }, /gateway 10\.0\.1\.1 is outside subnet/],
      [{ subnet: "10.0.0.0/24", rangeStart: "10.0.1.1" }, /rangeStart 10\.0\.1\.1 is outside/],
      [{ subnet: "10.0.0.0/24", rangeEnd: "fd00::1" }, /rangeEnd fd00::1 is not IPv4/],
      [{ subnet: "10.0.0.0/24", rangeStart: "10.0.0.50", rangeEnd: "10.0.0.40" }, /after rangeEnd/],
      [{ subnet: "10.0.0.0/24", gateway: "10.0.0.300" }, /gateway: invalid IP address/],
    ];
    for (const [conf, pattern] of cases) {
      assert.throws(() => parseRange(conf as never), invalidConfig(pattern), JSON.stringify(conf));
    }
  });

  it("never allocates network, broadcast or gateway", () => {
    const range = parseRange({ subnet: "10.0.0.0/29", rangeStart: "10.0.0.0", rangeEnd: "10.0.0.7", gateway: "10.0.0.3" });
    assert.match(whyNotAllocatable(range, parseIp("10.0.0.0"))!, /network address/);
    assert.match(whyNotAllocatable(range, parseIp("10.0.0.7"))!, /broadcast/);
    assert.match(whyNotAllocatable(range, parseIp("10.0.0.3"))!, /gateway/);
    assert.match(whyNotAllocatable(range, parseIp("10.0.0.8"))!, /outside/);
    assert.ok(isAllocatable(range, parseIp("10.0.0.1")));
    assert.equal(allocatableCount({ family: 4, ranges: [range] }), 5n);
  });
});

describe("parseRangeSets", () => {
  it("accepts the shorthand", () => {
    const sets = parseRangeSets({ type: "podnet-ipam", subnet: "10.1.0.0/24", rangeStart: "10.1.0.10", rangeEnd: "10.1.0.20" });
    assert.equal(sets.length, 1);
    assert.equal(describeRangeSet(sets[0]!), "10.1.0.0/24 [10.1.0.10-10.1.0.20]");
  });

  it("accepts dual-stack ranges, one set per family", () => {
    const sets = parseRangeSets({
      type: "podnet-ipam",
      ranges: [[{ subnet: "10.1.0.0/24" }, { subnet: "10.2.0.0/24" }], [{ subnet: "fd00::/64" }]],
    });
    assert.deepEqual(
      sets.map((s) => [s.family, describeRangeSet(s)]),
      [
        [4, "10.1.0.0/24, 10.2.0.0/24"],
        [6, "fd00::/64"],
      ],
    );
    assert.equal(rangeSetIndexOf(sets, parseIp("10.2.0.9")), 0);
    assert.equal(rangeSetIndexOf(sets, parseIp("fd00::9")), 1);
    assert.equal(rangeSetIndexOf(sets, parseIp("10.3.0.9")), -1);
  });

  it("puts the shorthand first when both forms are given", () => {
    const sets = parseRangeSets({ type: "x", subnet: "10.9.0.0/24", ranges: [[{ subnet: "fd00::/64" }]] });
    assert.deepEqual(sets.map(describeRangeSet), ["10.9.0.0/24", "fd00::/64"]);
  });

  it("rejects bad configs with InvalidConfig", () => {
    const cases: Array<[IpamConf, RegExp]> = [
      [{ type: "x" }, /no IP ranges/],
      [{ type: "x", ranges: [] }, /no IP ranges/],
      [{ type: "x", ranges: [[]] }, /non-empty array/],
      [{ type: "x", rangeStart: "10.0.0.1" }, /without subnet/],
      [{ type: "x", ranges: [[{ subnet: "10.0.0.0/24" }, { subnet: "fd00::/64" }]] }, /not IPv4 like range 0/],
      [{ type: "x", ranges: [[{ subnet: "10.0.0.0/16" }, { subnet: "10.0.1.0/24" }]] }, /range 0 .* overlaps range 1/],
      [{ type: "x", ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "10.0.0.0/25" }]] }, /range set 0 .* overlaps range set 1/],
      [{ type: "x", subnet: "10.0.0.0/24", ranges: [[{ subnet: "10.0.0.0/24" }]] }, /overlaps/],
      [{ type: "x", ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "10.0.0.7/24" }]] }, /range set 1, range 0: subnet .* host bits/],
    ];
    for (const [conf, pattern] of cases) {
      assert.throws(() => parseRangeSets(conf), invalidConfig(pattern), JSON.stringify(conf));
    }
  });

  it("allows disjoint windows of one subnet", () => {
    const sets = parseRangeSets({
      type: "x",
      ranges: [
        [{ subnet: "10.0.0.0/24", rangeStart: "10.0.0.10", rangeEnd: "10.0.0.19" }],
        [{ subnet: "10.0.0.0/24", rangeStart: "10.0.0.20", rangeEnd: "10.0.0.29" }],
      ],
    });
    assert.equal(sets.length, 2);
  });

  it("property: two windows are accepted together exactly when they do not overlap", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 254 }), (a, b, c, d) => {
        const [s1, e1] = a <= b ? [a, b] : [b, a];
        const [s2, e2] = c <= d ? [c, d] : [d, c];
        const conf: IpamConf = {
          type: "x",
          ranges: [
            [{ subnet: "10.0.0.0/24", rangeStart: `10.0.0.${s1}`, rangeEnd: `10.0.0.${e1}` }],
            [{ subnet: "10.0.0.0/24", rangeStart: `10.0.0.${s2}`, rangeEnd: `10.0.0.${e2}` }],
          ],
        };
        const overlap = s1 <= e2 && s2 <= e1;
        if (overlap) assert.throws(() => parseRangeSets(conf), invalidConfig(/overlaps/));
        else assert.equal(parseRangeSets(conf).length, 2);
      }),
    );
  });
});
