import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CniError, ErrorCode, type IpamRangeConf } from "../cni/types.ts";
import { Allocator } from "./allocator.ts";
import { formatIp, parseIp } from "../net/address.ts";
import { MemoryStore } from "./memory-store.ts";
import { allocatableCount, isAllocatable, parseRangeSets, rangeFor, type RangeSet } from "./range.ts";

function setOf(...ranges: IpamRangeConf[]): RangeSet {
  return parseRangeSets({ type: "podnet-ipam", ranges: [ranges] })[0]!;
}

function att(i: number | string) {
  return { containerId: `c${i}`, ifname: "eth0" };
}

function hasCode(code: number, pattern?: RegExp) {
  return (error: unknown) => error instanceof CniError && error.code === code && (!pattern || pattern.test(error.message));
}

/** A random IPv4 range of at most 64 addresses, with random window and gateway inside its subnet. */
const smallRange = fc
  .record({
    prefix: fc.integer({ min: 26, max: 30 }),
    third: fc.integer({ min: 0, max: 255 }),
    a: fc.nat(),
    b: fc.nat(),
    g: fc.option(fc.nat(), { nil: undefined }),
    explicitWindow: fc.boolean(),
  })
  .map(({ prefix, third, a, b, g, explicitWindow }): IpamRangeConf => {
    const size = 2 ** (32 - prefix);
    const base = `10.9.${third}.`;
    const blockStart = 0; // the subnet is 10.9.third.0/prefix
    const [lo, hi] = [a % size, b % size].sort((x, y) => x - y) as [number, number];
    const conf: IpamRangeConf = { subnet: `${base}${blockStart}/${prefix}` };
    if (explicitWindow) {
      conf.rangeStart = `${base}${lo}`;
      conf.rangeEnd = `${base}${hi}`;
    }
    if (g !== undefined) conf.gateway = `${base}${g % size}`;
    return conf;
  });

describe("Allocator", () => {
  it("hands out the first addresses in order, skipping the gateway", () => {
    const store = new MemoryStore();
    const allocator = new Allocator(setOf({ subnet: "10.244.1.0/24" }), 0, store);
    const got = [1, 2, 3].map((i) => formatIp(store.withLock(() => allocator.allocate(att(i))).ip));
    assert.deepEqual(got, ["10.244.1.2", "10.244.1.3", "10.244.1.4"]);
    assert.equal(store.lastReserved(0), "10.244.1.4");
  });

  it("property: every address is allocatable in its range, all distinct, until exhaustion", () => {
    fc.assert(
      fc.property(smallRange, (conf) => {
        const set = setOf(conf);
        const store = new MemoryStore();
        const allocator = new Allocator(set, 0, store);
        const capacity = Number(allocatableCount(set));
        const seen = new Set<string>();
        for (let i = 0; i < capacity; i++) {
          const allocation = allocator.allocate(att(i));
          assert.ok(isAllocatable(allocation.range, allocation.ip), formatIp(allocation.ip));
          assert.equal(rangeFor(set, allocation.ip), allocation.range);
          seen.add(formatIp(allocation.ip));
        }
        assert.equal(seen.size, capacity);
        assert.equal(store.list().length, capacity);
        assert.throws(() => allocator.allocate(att("late")), hasCode(ErrorCode.RangeExhausted, /no free address in range set 10\.9\./));
      }),
      { numRuns: 200 },
    );
  });

  it("property: a freed address is not handed out again until the cursor wraps", () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 60 }), fc.nat(), fc.nat(), (size, takenSeed, freedSeed) => {
        const set = setOf({ subnet: "10.7.0.0/24", rangeStart: "10.7.0.100", rangeEnd: `10.7.0.${99 + size}`, gateway: "10.7.0.1" });
        const store = new MemoryStore();
        const allocator = new Allocator(set, 0, store);
        const taken = 1 + (takenSeed % (size - 1)); // leaves at least one never-used address
        const first = Array.from({ length: taken }, (_, i) => formatIp(allocator.allocate(att(i)).ip));
        const freed = first[freedSeed % taken]!;
        store.release(freed);
        const next = Array.from({ length: size - taken }, (_, i) => formatIp(allocator.allocate(att(`n${i}`)).ip));
        assert.ok(!next.includes(freed), `${freed} reused before the cursor wrapped: ${next.join(" ")}`);
        assert.equal(formatIp(allocator.allocate(att("wrap")).ip), freed);
      }),
      { numRuns: 200 },
    );
  });

  it("wraps around to the start after the end of the window", () => {
    const store = new MemoryStore();
    const allocator = new Allocator(setOf({ subnet: "10.0.0.0/29" }), 0, store); // .2 .. .6 usable
    const ips = [0, 1, 2, 3, 4].map((i) => formatIp(allocator.allocate(att(i)).ip));
    assert.deepEqual(ips, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
    store.release("10.0.0.3");
    assert.equal(formatIp(allocator.allocate(att(9)).ip), "10.0.0.3");
  });

  it("walks every range of a set in turn", () => {
    const store = new MemoryStore();
    const set = setOf({ subnet: "10.0.0.0/30" }, { subnet: "10.0.1.0/30" }); // .1 is each gateway: .2 usable in each
    const allocator = new Allocator(set, 0, store);
    assert.deepEqual(
      [0, 1].map((i) => formatIp(allocator.allocate(att(i)).ip)),
      ["10.0.0.2", "10.0.1.2"],
    );
    assert.throws(() => allocator.allocate(att(2)), hasCode(ErrorCode.RangeExhausted, /10\.0\.0\.0\/30, 10\.0\.1\.0\/30/));
  });

  it("ignores a cursor outside the set (config changed) and starts at the beginning", () => {
    const store = new MemoryStore();
    store.setLastReserved(0, "192.168.0.9");
    const allocator = new Allocator(setOf({ subnet: "10.0.0.0/24" }), 0, store);
    assert.equal(formatIp(allocator.allocate(att(1)).ip), "10.0.0.2");
  });

  it("allocates IPv6", () => {
    const store = new MemoryStore();
    const allocator = new Allocator(setOf({ subnet: "fd00:10::/64" }), 0, store);
    assert.equal(formatIp(allocator.allocate(att(1)).ip), "fd00:10::2");
    store.setLastReserved(0, "fd00:10::ffff:ffff:ffff:fffe");
    assert.equal(formatIp(allocator.allocate(att(2)).ip), "fd00:10::ffff:ffff:ffff:ffff");
    assert.equal(formatIp(allocator.allocate(att(3)).ip), "fd00:10::3");
  });

  it("returns the attachment's existing address on a retried ADD", () => {
    const store = new MemoryStore();
    const allocator = new Allocator(setOf({ subnet: "10.0.0.0/24" }), 0, store);
    const first = allocator.allocate(att(1));
    const again = allocator.allocate(att(1));
    assert.equal(formatIp(again.ip), formatIp(first.ip));
    assert.equal(again.fresh, false);
    assert.equal(store.list().length, 1);
    assert.notEqual(formatIp(allocator.allocate({ containerId: "c1", ifname: "net1" }).ip), formatIp(first.ip));
  });

  describe("requested addresses", () => {
    const set = setOf({ subnet: "10.0.0.0/24", rangeStart: "10.0.0.10", rangeEnd: "10.0.0.50" });

    it("reserves a free requested address without moving the cursor", () => {
      const store = new MemoryStore();
      const allocator = new Allocator(set, 0, store);
      assert.equal(formatIp(allocator.allocate(att(1), parseIp("10.0.0.40")).ip), "10.0.0.40");
      assert.equal(store.lastReserved(0), undefined);
      assert.equal(formatIp(allocator.allocate(att(2)).ip), "10.0.0.10");
    });

    it("refuses a taken address with AddressInUse naming the holder", () => {
      const store = new MemoryStore();
      const allocator = new Allocator(set, 0, store);
      allocator.allocate(att(1), parseIp("10.0.0.40"));
      assert.throws(() => allocator.allocate(att(2), parseIp("10.0.0.40")), hasCode(ErrorCode.AddressInUse, /already allocated to c1\/eth0/));
    });

    it("refuses addresses outside the window, and the gateway, with InvalidConfig", () => {
      const allocator = new Allocator(set, 0, new MemoryStore());
      assert.throws(() => allocator.allocate(att(1), parseIp("10.0.0.60")), hasCode(ErrorCode.InvalidConfig, /not in range set/));
      const withGateway = new Allocator(setOf({ subnet: "10.0.0.0/24" }), 0, new MemoryStore());
      assert.throws(() => withGateway.allocate(att(1), parseIp("10.0.0.1")), hasCode(ErrorCode.InvalidConfig, /gateway/));
    });

    it("accepts the held address again, refuses a different one", () => {
      const store = new MemoryStore();
      const allocator = new Allocator(set, 0, store);
      allocator.allocate(att(1), parseIp("10.0.0.20"));
      assert.equal(allocator.allocate(att(1), parseIp("10.0.0.20")).fresh, false);
      assert.throws(() => allocator.allocate(att(1), parseIp("10.0.0.21")), hasCode(ErrorCode.AddressInUse, /already holds 10\.0\.0\.20/));
    });
  });
});
