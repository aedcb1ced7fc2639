import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDnsperfVerbose } from "./dns-cluster.ts";

test("dnsperf -v: latencies from the answer lines (ms, sorted), QPS from the summary", () => {
  const text = [
    "DNS Performance Testing Tool",
    "> NOERROR svc1.default.svc.cluster.local A 0.000512",
    "> NOERROR svc2.default.svc.cluster.local A 0.000250",
    "> NOERROR svc3.default.svc.cluster.local A not-a-number",
    "Statistics:",
    "  Queries sent:         3",
    "  Queries per second:   123456.789012",
    "",
  ].join("\n");
  const parsed = parseDnsperfVerbose(text);
  assert.deepEqual(parsed.latenciesMs.map((ms) => Number(ms.toFixed(3))), [0.25, 0.512]);
  assert.equal(parsed.qps, 123456.789012);
});
