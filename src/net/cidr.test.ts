import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { compareIp, formatIp, parseIp, type IpAddress } from "./address.ts";
import {
  canonicalCidrText,
  cidrContains,
  cidrContainsCidr,
  cidrFamily,
  cidrsOverlap,
  compareCidr,
  formatCidr,
  lastAddressOf,
  netmaskOf,
  networkOf,
  nthAddress,
  parseCidr,
  sizeOf,
  subnetAt,
  subnetCount,
  subnetIndex,
  subnetsOf,
  type Cidr,
} from "./cidr.ts";

const ipv4 = fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }).map((value): IpAddress => ({ family: 4, value }));
const ipv6 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map((value): IpAddress => ({ family: 6, value }));
const cidr4 = fc.record({ address: ipv4, prefix: fc.integer({ min: 0, max: 32 }) });
const cidr6 = fc.record({ address: ipv6, prefix: fc.integer({ min: 0, max: 128 }) });
const anyCidr: fc.Arbitrary<Cidr> = fc.oneof(cidr4, cidr6);

describe("parseCidr", () => {
  it("keeps host bits by default and refuses them on request, naming the network", () => {
    assert.equal(formatCidr(parseCidr("10.244.1.7/16")), "10.244.1.7/16");
    assert.throws(() => parseCidr("10.244.1.0/16", { hostBits: "reject" }), /host bits are set \(the network is 10\.244\.0\.0\/16\)/);
    assert.equal(formatCidr(parseCidr("10.244.0.0/16", { hostBits: "reject" })), "10.244.0.0/16");
    assert.equal(formatCidr(parseCidr("fd00::/8", { hostBits: "reject" })), "fd00::/8");
  });

  it("refuses the other family on request", () => {
    assert.throws(() => parseCidr("fd00::/64", { family: 4 }), /not an IPv4 prefix/);
    assert.equal(cidrFamily("fd00::/64"), 6);
    assert.equal(cidrFamily("010.0.0.0/8"), 0);
    assert.equal(cidrFamily("10.0.0.0/33"), 0);
  });

  it("refuses malformed prefixes with a message naming the input", () => {
    for (const bad of ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/024", "::/129", "x/8", "10.0.0.0/8/8", "010.0.0.0/8", " 10.0.0.0/8", "10.0.0.0/ 8", "/8"]) {
      assert.throws(() => parseCidr(bad), (error: Error) => error.message.startsWith(`invalid CIDR ${JSON.stringify(bad)}`), bad);
    }
  });

  it("round-trips canonical text", () => {
    fc.assert(fc.property(anyCidr, (cidr) => assert.deepEqual(parseCidr(formatCidr(cidr)), { address: { ...cidr.address }, prefix: cidr.prefix })));
    assert.equal(canonicalCidrText("10.244.1.77/24"), "10.244.1.0/24");
    assert.equal(canonicalCidrText("FD00:0:0:1::5/64"), "fd00:0:0:1::/64");
  });
});

describe("addresses of a prefix", () => {
  it("computes the netmask, network and nth addresses", () => {
    assert.equal(formatIp(netmaskOf(parseCidr("10.0.0.0/20"))), "255.255.240.0");
    assert.equal(formatIp(netmaskOf(parseCidr("::/0"))), "::");
    const cidr = parseCidr("10.244.1.77/24");
    assert.equal(formatIp(nthAddress(cidr, 0)), "10.244.1.0");
    assert.equal(formatIp(nthAddress(cidr, 1)), "10.244.1.1");
    assert.equal(formatIp(nthAddress(cidr, -1)), "10.244.1.255");
    assert.equal(formatIp(nthAddress(cidr, -2)), "10.244.1.254");
    assert.throws(() => nthAddress(cidr, 256), RangeError);
    assert.throws(() => nthAddress(cidr, -257), RangeError);
    assert.equal(formatIp(nthAddress(parseCidr("fd00::/64"), 10n)), "fd00::a");
  });

  it("nth address 0 and -1 are the network and the last address, and both are inside", () => {
    fc.assert(
      fc.property(anyCidr, (cidr) => {
        assert.deepEqual(nthAddress(cidr, 0), networkOf(cidr));
        assert.deepEqual(nthAddress(cidr, -1), lastAddressOf(cidr));
        assert.equal(lastAddressOf(cidr).value - networkOf(cidr).value + 1n, sizeOf(cidr));
        assert.ok(cidrContains(cidr, networkOf(cidr)) && cidrContains(cidr, lastAddressOf(cidr)));
      }),
    );
  });
});

describe("containment and overlap", () => {
  it("a prefix contains another exactly when it contains both ends of it", () => {
    fc.assert(
      fc.property(anyCidr, anyCidr, (a, b) => {
        const ends = cidrContains(a, networkOf(b)) && cidrContains(a, lastAddressOf(b));
        assert.equal(cidrContainsCidr(a, b), ends);
      }),
    );
    assert.ok(cidrContainsCidr(parseCidr("10.0.0.0/8"), parseCidr("10.1.0.0/16")));
    assert.ok(!cidrContainsCidr(parseCidr("10.1.0.0/16"), parseCidr("10.0.0.0/8")));
  });

  it("two prefixes overlap exactly when their ranges intersect", () => {
    const related = cidr4.chain((a) => fc.tuple(fc.constant(a), fc.record({ address: ipv4.map((ip) => (ip.value % 3n === 0n ? a.address : ip)), prefix: fc.integer({ min: 0, max: 32 }) })));
    fc.assert(
      fc.property(related, ([a, b]) => {
        const intersect = compareIp(networkOf(a), lastAddressOf(b)) <= 0 && compareIp(networkOf(b), lastAddressOf(a)) <= 0;
        assert.equal(cidrsOverlap(a, b), intersect);
        assert.equal(cidrsOverlap(b, a), intersect);
      }),
    );
  });

  it("orders a supernet before its subnets", () => {
    const sorted = ["10.0.1.0/24", "fd00::/8", "10.0.0.0/8", "10.0.0.0/16"].map((t) => parseCidr(t)).sort(compareCidr).map(formatCidr);
    assert.deepEqual(sorted, ["10.0.0.0/8", "10.0.0.0/16", "10.0.1.0/24", "fd00::/8"]);
  });
});

describe("carving subnets", () => {
  it("counts, indexes and lists the subnets of a prefix", () => {
    const cluster = parseCidr("10.244.0.0/16");
    assert.equal(subnetCount(cluster, 24), 256n);
    assert.equal(formatCidr(subnetAt(cluster, 24, 0)), "10.244.0.0/24");
    assert.equal(formatCidr(subnetAt(cluster, 24, 255)), "10.244.255.0/24");
    assert.throws(() => subnetAt(cluster, 24, 256), RangeError);
    assert.throws(() => subnetCount(cluster, 15), /does not fit/);
    assert.throws(() => subnetCount(cluster, 33), /does not fit/);
    assert.equal(subnetIndex(cluster, 24, parseCidr("10.244.7.0/24")), 7n);
    assert.equal(subnetIndex(cluster, 24, parseCidr("10.244.7.1/24")), undefined, "not aligned");
    assert.equal(subnetIndex(cluster, 24, parseCidr("10.245.0.0/24")), undefined, "outside");
    assert.equal(subnetIndex(cluster, 24, parseCidr("10.244.0.0/25")), undefined, "other length");
    assert.deepEqual([...subnetsOf(parseCidr("fd00::/62"), 64)].map(formatCidr), ["fd00::/64", "fd00:0:0:1::/64", "fd00:0:0:2::/64", "fd00:0:0:3::/64"]);
  });

  it("subnets tile the prefix: disjoint, inside, in order, and subnetIndex inverts subnetAt", () => {
    fc.assert(
      fc.property(anyCidr, fc.integer({ min: 0, max: 6 }), fc.bigInt({ min: 0n, max: 63n }), (parent, extra, rawIndex) => {
        const bits = parent.address.family === 4 ? 32 : 128;
        const subnetPrefix = Math.min(bits, parent.prefix + extra);
        const count = subnetCount(parent, subnetPrefix);
        const index = rawIndex % count;
        const subnet = subnetAt(parent, subnetPrefix, index);
        assert.ok(cidrContainsCidr(parent, subnet));
        assert.equal(subnetIndex(parent, subnetPrefix, subnet), index);
        if (index + 1n < count) {
          const following = subnetAt(parent, subnetPrefix, index + 1n);
          assert.ok(!cidrsOverlap(subnet, following));
          assert.equal(networkOf(following).value, lastAddressOf(subnet).value + 1n);
        }
      }),
    );
  });
});

it("parseIp and parseCidr agree on the address part", () => {
  assert.deepEqual(parseCidr("::ffff:1.2.3.4/128").address, parseIp("::ffff:1.2.3.4"));
});
