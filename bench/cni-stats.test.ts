import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { median, percentile, summarize } from "./cni-stats.ts";

test("p50 and p99 of 1..100 are 50 and 99", () => {
  const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(samples, 50), 50);
  assert.equal(percentile(samples, 99), 99);
  assert.deepEqual(summarize(samples), { p50: 50, p99: 99, max: 100, count: 100 });
});

test("the median of an odd count is the middle value", () => {
  assert.equal(median([9, 1, 5]), 5);
});

test("percentiles reject empty input and out-of-range p", () => {
  assert.throws(() => percentile([], 50));
  assert.throws(() => percentile([1], 0));
  assert.throws(() => percentile([1], 101));
});

test("a percentile is an observed sample, and rises with p", () => {
  const samples = fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 200 });
  const p = fc.double({ min: 0.001, max: 100, noNaN: true });
  fc.assert(
    fc.property(samples, p, p, (xs, a, b) => {
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      assert.ok(xs.includes(percentile(xs, lo)));
      assert.ok(percentile(xs, lo) <= percentile(xs, hi));
      assert.equal(percentile(xs, 100), Math.max(...xs));
    }),
  );
});

test("at least p percent of the samples are at or below the p-th percentile", () => {
  const samples = fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 200 });
  fc.assert(
    fc.property(samples, fc.integer({ min: 1, max: 100 }), (xs, p) => {
      const value = percentile(xs, p);
      const atOrBelow = xs.filter((x) => x <= value).length;
      const below = xs.filter((x) => x < value).length;
      assert.ok(atOrBelow >= (p / 100) * xs.length);
      assert.ok(below < (p / 100) * xs.length);
    }),
  );
});
