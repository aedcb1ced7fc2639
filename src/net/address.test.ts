import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isIP } from "node:net";
import fc from "fast-check";
import {
  addToIp,
  canonicalIpText,
  compareIp,
  formatIp,
  ipFamily,
  ipv4Number,
  isIpv4,
  ipFromBytes,
  ipToBytes,
  nextIp,
  parseIp,
  parseIpOf,
  prevIp,
  unmapIpv4,
  type IpAddress,
} from "./address.ts";
import { broadcastOf, cidrContains, cidrsOverlap, formatCidr, lastAddressOf, networkOf, parseCidr, sizeOf } from "./cidr.ts";

const ipv4 = fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }).map((value): IpAddress => ({ family: 4, value }));
const ipv6 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map((value): IpAddress => ({ family: 6, value }));
// Sparse v6 addresses exercise zero-run compression far more often than uniform ones.
const sparseIpv6 = fc
  .array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 })
  .map((groups): IpAddress => ({ family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n) }));
const anyIp = fc.oneof(ipv4, ipv6, sparseIpv6);

describe("parseIp / formatIp", () => {
  it("parses and formats IPv4", () => {
    assert.deepEqual(parseIp("10.244.1.7"), { family: 4, value: 0x0af40107n });
    assert.equal(formatIp({ family: 4, value: 0x0af40107n }), "10.244.1.7");
    assert.equal(formatIp(parseIp("0.0.0.0")), "0.0.0.0");
    assert.equal(formatIp(parseIp("255.255.255.255")), "255.255.255.255");
  });

  it("formats IPv6 canonically (RFC 5952)", () => {
    const cases: Array<[string, string]> = [
      ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of two equal runs
      ["2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"], // longest run wins
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // a single zero group is not compressed
      ["0:0:0:0:0:0:0:0", "::"],
      ["0:0:0:0:0:0:0:1", "::1"],
      ["1:0:0:0:0:0:0:0", "1::"],
      ["fd00:0010::0001", "fd00:10::1"],
      ["::ffff:10.1.2.3", "::ffff:10.1.2.3"],
      ["::FFFF:a01:203", "::ffff:10.1.2.3"],
      ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
      ["::192.0.2.33", "::c000:221"],
    ];
    for (const [input, expected] of cases) assert.equal(canonicalIpText(input), expected, input);
  });

  it("rejects garbage with a message naming the input", () => {
    const bad = [
      "",
      "   ",
      "10.0.0",
      "10.0.0.0.1",
      "10.0.0.256",
      "010.0.0.1",
      "10.0.0.-1",
      "10.0.0.1/24",
      "a.b.c.d",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "12345::",
      "fe80::1%eth0",
      ":1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8::",
      "::ffff:1.2.3",
      "1:2:3:4:5:6:7:1.2.3.4",
      "g::1",
      " 10.0.0.1",
      "10.0.0.1 ",
      "0x0a.0.0.1",
      "1e1.0.0.1",
      "+1.2.3.4",
      "10.0.0.1.",
      ".10.0.0.1",
      "::ffff:010.1.2.3",
      "fe80::1%25eth0",
      ":::",
      "1:::2",
    ];
    for (const text of bad) {
      assert.throws(() => parseIp(text), (error: Error) => error.message.includes(JSON.stringify(text)), text);
    }
  });

  it("round-trips: parse(format(x)) = x and format is a fixed point", () => {
    fc.assert(
      fc.property(anyIp, (ip) => {
        const text = formatIp(ip);
        assert.deepEqual(parseIp(text), ip);
        assert.equal(formatIp(parseIp(text)), text);
      }),
      { numRuns: 2000 },
    );
  });

  it("accepts every uncompressed, upper-case spelling of an IPv6 address", () => {
    fc.assert(
      fc.property(sparseIpv6, (ip) => {
        const groups: string[] = [];
        for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(((ip.value >> shift) & 0xffffn).toString(16).padStart(4, "0"));
        assert.deepEqual(parseIp(groups.join(":").toUpperCase()), ip);
      }),
    );
  });

  it("never emits '::' for a lone zero group, and never twice", () => {
    fc.assert(
      fc.property(sparseIpv6, (ip) => {
        const text = formatIp(ip);
        assert.ok(text.split("::").length <= 2);
        if (text.includes("::")) {
          const explicit = text === "::" ? 0 : text.split("::").flatMap((side) => (side ? side.split(":") : [])).length;
          assert.ok(8 - explicit >= 2 || text.startsWith("::ffff:"), text);
        }
      }),
    );
  });

  it("unmaps IPv4-mapped addresses only on request", () => {
    const mapped = parseIp("::ffff:192.168.0.1");
    assert.equal(mapped.family, 6);
    assert.deepEqual(unmapIpv4(mapped), parseIp("192.168.0.1"));
    assert.deepEqual(unmapIpv4(parseIp("2001:db8::1")), parseIp("2001:db8::1"));
    assert.equal(cidrContains(parseCidr("192.168.0.0/16"), mapped), false);
  });
});

describe("CIDR maths", () => {
  it("parses prefixes and rejects bad ones", () => {
    assert.deepEqual(parseCidr("10.0.0.5/24"), { address: parseIp("10.0.0.5"), prefix: 24 });
    assert.equal(formatCidr(parseCidr("2001:DB8::/32")), "2001:db8::/32");
    for (const bad of ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/024", "::/129", "x/8", "10.0.0.0/8/8"]) {
      assert.throws(() => parseCidr(bad), /invalid CIDR/, bad);
    }
  });

  it("computes network, broadcast, last address and size", () => {
    const v4 = parseCidr("10.244.1.77/24");
    assert.equal(formatIp(networkOf(v4)), "10.244.1.0");
    assert.equal(formatIp(broadcastOf(v4)!), "10.244.1.255");
    assert.equal(sizeOf(v4), 256n);
    const v6 = parseCidr("fd00:1::99/64");
    assert.equal(formatIp(networkOf(v6)), "fd00:1::");
    assert.equal(formatIp(lastAddressOf(v6)), "fd00:1::ffff:ffff:ffff:ffff");
    assert.equal(broadcastOf(v6), undefined);
    assert.equal(sizeOf(parseCidr("0.0.0.0/0")), 1n << 32n);
    assert.equal(sizeOf(parseCidr("10.0.0.1/32")), 1n);
  });

  it("contains exactly the addresses between network and last", () => {
    fc.assert(
      fc.property(ipv4, fc.integer({ min: 0, max: 32 }), ipv4, (base, prefix, probe) => {
        const cidr = { address: base, prefix };
        const inside = compareIp(networkOf(cidr), probe) <= 0 && compareIp(probe, lastAddressOf(cidr)) <= 0;
        assert.equal(cidrContains(cidr, probe), inside);
        assert.ok(cidrContains(cidr, base));
      }),
    );
  });

  it("detects overlap", () => {
    assert.ok(cidrsOverlap(parseCidr("10.0.0.0/8"), parseCidr("10.1.0.0/16")));
    assert.ok(cidrsOverlap(parseCidr("10.1.0.0/16"), parseCidr("10.0.0.0/8")));
    assert.ok(!cidrsOverlap(parseCidr("10.0.0.0/24"), parseCidr("10.0.1.0/24")));
    assert.ok(!cidrsOverlap(parseCidr("0.0.0.0/0"), parseCidr("::/0")));
  });
});

describe("addToIp / compareIp", () => {
  it("adds offsets and refuses to leave the address space", () => {
    assert.equal(formatIp(addToIp(parseIp("10.0.0.255"), 1n)), "10.0.1.0");
    assert.equal(formatIp(addToIp(parseIp("::1"), -1n)), "::");
    assert.throws(() => addToIp(parseIp("255.255.255.255"), 1n), RangeError);
    assert.throws(() => addToIp(parseIp("0.0.0.0"), -1n), RangeError);
  });

  it("orders IPv4 before IPv6 and numerically within a family", () => {
    assert.ok(compareIp(parseIp("255.255.255.255"), parseIp("::")) < 0);
    assert.ok(compareIp(parseIp("10.0.0.2"), parseIp("10.0.0.10")) < 0);
    fc.assert(
      fc.property(anyIp, anyIp, (a, b) => {
        // Antisymmetric; written as a sum because -Math.sign(0) is -0, which strict equality tells from 0.
        assert.equal(Math.sign(compareIp(a, b)) + Math.sign(compareIp(b, a)), 0);
        assert.equal(compareIp(a, b) === 0, a.family === b.family && a.value === b.value);
      }),
    );
  });
});

describe("agreement with node:net (Go's net.ParseIP rules)", () => {
  it("accepts what node:net accepts, among generated addresses", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), (text) => {
        assert.equal(ipFamily(text), isIP(text), text);
      }),
      { numRuns: 3000 },
    );
  });

  it("refuses leading zeros that node:net would read as octal or refuse", () => {
    for (const text of ["010.1.2.3", "1.02.3.4", "00.0.0.0", "1.2.3.004"]) assert.equal(ipFamily(text), 0, text);
  });

  it("agrees on arbitrary short strings of address characters", () => {
    const alphabet = fc.constantFrom(..."0123456789abcdefABCDEF:.%/ x-");
    fc.assert(
      fc.property(fc.string({ unit: alphabet, maxLength: 24 }), (text) => {
        // node:net accepts zone ids; podnet refuses them on purpose.
        if (text.includes("%")) assert.equal(ipFamily(text), 0, text);
        else assert.equal(ipFamily(text), isIP(text), text);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("the IPv4 fast path", () => {
  it("isIpv4 and ipv4Number agree with node:net on strings of IPv4 characters", () => {
    // Mostly near-misses: empty parts, leading zeros, four-digit parts, values over 255, signs and spaces.
    const alphabet = fc.constantFrom(..."0123456789....0125 +-x:");
    fc.assert(
      fc.property(fc.string({ unit: alphabet, maxLength: 17 }), (text) => {
        const v4 = isIP(text) === 4;
        assert.equal(isIpv4(text), v4, text);
        assert.equal(ipv4Number(text) >= 0, v4, text);
        if (v4) assert.equal(BigInt(ipv4Number(text)), parseIp(text).value, text);
      }),
      { numRuns: 20000 },
    );
  });

  it("gives the address's value, and -1 for near-misses", () => {
    assert.equal(ipv4Number("0.0.0.0"), 0);
    assert.equal(ipv4Number("255.255.255.255"), 0xffffffff);
    assert.equal(ipv4Number("10.244.1.2"), 0x0af40102);
    for (const bad of ["", "1.2.3", "1.2.3.4.", ".1.2.3", "1..2.3", "01.2.3.4", "1.2.3.256", "1.2.3.1000", "1.2.3.4 ", "::1", "1.2.3.-4"]) assert.equal(ipv4Number(bad), -1, bad);
  });
});

describe("family, bytes, next and previous", () => {
  it("ipFamily accepts the forms libcni (Go's net.ParseIP) accepts and refuses the rest", () => {
    for (const ok4 of ["0.0.0.0", "10.244.1.2", "255.255.255.255", "192.168.1.10"]) assert.equal(ipFamily(ok4), 4, ok4);
    for (const ok6 of ["::", "::1", "fd00::1", "2001:db8:0:0:0:0:0:1", "::ffff:10.0.0.1", "64:ff9b::1.2.3.4", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:1.2.3.4", "FE80::A"]) {
      assert.equal(ipFamily(ok6), 6, ok6);
    }
    for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4/24", " 1.2.3.4", "1::2::3", "fe80::1%eth0", ":1", "1:", "::g", "abc"]) {
      assert.equal(ipFamily(bad), 0, bad);
    }
  });

  it("parseIpOf refuses the other family", () => {
    assert.deepEqual(parseIpOf(4, "10.0.0.1"), parseIp("10.0.0.1"));
    assert.throws(() => parseIpOf(4, "::1"), /not an IPv4 address/);
    assert.throws(() => parseIpOf(6, "10.0.0.1"), /not an IPv6 address/);
  });

  it("round-trips through network-order bytes", () => {
    assert.deepEqual(Array.from(ipToBytes(parseIp("10.244.2.1"))), [10, 244, 2, 1]);
    assert.deepEqual(Array.from(ipToBytes(parseIp("::ffff:10.1.2.3"))), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]);
    assert.throws(() => ipFromBytes(new Uint8Array(5)), RangeError);
    fc.assert(fc.property(anyIp, (ip) => assert.deepEqual(ipFromBytes(ipToBytes(ip)), ip)));
  });

  it("steps to the next and previous address and stops at the ends", () => {
    assert.equal(formatIp(nextIp(parseIp("10.0.0.255"))!), "10.0.1.0");
    assert.equal(formatIp(prevIp(parseIp("fd00::"))!), "fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert.equal(nextIp(parseIp("255.255.255.255")), undefined);
    assert.equal(nextIp(parseIp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), undefined);
    assert.equal(prevIp(parseIp("0.0.0.0")), undefined);
    fc.assert(
      fc.property(anyIp, (ip) => {
        const next = nextIp(ip);
        if (next) {
          assert.ok(compareIp(ip, next) < 0);
          assert.deepEqual(prevIp(next), ip);
        }
      }),
    );
  });
});
