import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { EXTERNAL_LABEL, LOOPBACK_LABEL, formatReport, judge, planTargets, type CheckPod, type CheckReport } from "./check.ts";

const pods: CheckPod[] = [
  { name: "node1-pod1", node: "node1", netns: "ns-a", ip: "10.244.1.2" },
  { name: "node1-pod2", node: "node1", netns: "ns-b", ip: "10.244.1.3" },
  { name: "node2-pod1", node: "node2", netns: "ns-c", ip: "10.244.2.2" },
];
const nodeIps = new Map([
  ["node1", "192.168.1.11"],
  ["node2", "192.168.1.12"],
]);

test("a source pod dials every other pod, itself over lo, and the external host", () => {
  const targets = planTargets(pods[0]!, pods, nodeIps, "192.168.1.200");
  assert.deepEqual(
    targets.map((t) => t.label),
    ["node1-pod2", "node2-pod1", LOOPBACK_LABEL, EXTERNAL_LABEL],
  );
  for (const t of targets.filter((t) => t.kind === "pod")) assert.equal(t.expectPeer, "10.244.1.2");
  assert.equal(targets.find((t) => t.kind === "lo")?.expectSelf, "node1-pod1");
  assert.equal(targets.find((t) => t.kind === "external")?.expectPeer, "192.168.1.11");
});

test("judge passes only the right server seeing the right source address", () => {
  const [toPod, , toLo, toExternal] = planTargets(pods[0]!, pods, nodeIps, "192.168.1.200");
  assert.equal(judge("node1-pod1", toPod!, { label: "node1-pod2", self: "node1-pod2", peer: "10.244.1.2" }).ok, true);
  const natted = judge("node1-pod1", toPod!, { label: "node1-pod2", self: "node1-pod2", peer: "10.244.1.1" });
  assert.equal(natted.ok, false);
  assert.match(natted.problem ?? "", /^NAT/);
  assert.match(judge("node1-pod1", toPod!, { label: "node1-pod2", self: "node2-pod1", peer: "10.244.1.2" }).problem ?? "", /answered as/);
  assert.match(judge("node1-pod1", toPod!, { label: "node1-pod2", error: "ECONNREFUSED" }).problem ?? "", /ECONNREFUSED/);
  assert.equal(judge("node1-pod1", toPod!, undefined).ok, false);
  assert.equal(judge("node1-pod1", toLo!, { label: "lo", self: "node1-pod1", peer: "127.0.0.1" }).ok, true);
  const notMasqueraded = judge("node1-pod1", toExternal!, { label: "external", self: "external", peer: "10.244.1.2" });
  assert.match(notMasqueraded.problem ?? "", /not masqueraded/);
  assert.equal(judge("node1-pod1", toExternal!, { label: "external", self: "external", peer: "192.168.1.11" }).ok, true);
});

test("the report passes exactly when every cell passes, and lists every failure", () => {
  const cellArb = fc.record({ ok: fc.boolean(), kind: fc.constantFrom("pod" as const, "lo" as const, "external" as const) });
  fc.assert(
    fc.property(fc.array(cellArb, { minLength: 1, maxLength: 30 }), (cells) => {
      const report: CheckReport = {
        pods: ["a", "b"],
        cells: cells.map((c, i) => ({ from: "a", to: `t${i}`, kind: c.kind, ok: c.ok, problem: c.ok ? undefined : `broken ${i}` })),
        ok: cells.every((c) => c.ok),
      };
      const text = formatReport(report);
      const failures = cells.filter((c) => !c.ok).length;
      assert.equal(text.split("\n").filter((l) => l.startsWith("FAIL ")).length, failures);
      assert.ok(text.trimEnd().endsWith(failures === 0 ? "check: PASS" : `check: FAIL (${failures} of ${cells.length})`));
    }),
  );
});

test("the matrix marks each cell by what went wrong", () => {
  const report: CheckReport = {
    pods: ["p1", "p2"],
    cells: [
      { from: "p1", to: "p2", kind: "pod", ok: true },
      { from: "p1", to: LOOPBACK_LABEL, kind: "lo", ok: true },
      { from: "p1", to: EXTERNAL_LABEL, kind: "external", ok: false, problem: "not masqueraded to the node IP: …" },
      { from: "p2", to: "p1", kind: "pod", ok: false, problem: "NAT between pods: …" },
      { from: "p2", to: LOOPBACK_LABEL, kind: "lo", ok: false, problem: "127.0.0.1:7007: ECONNREFUSED" },
      { from: "p2", to: EXTERNAL_LABEL, kind: "external", ok: true },
    ],
    ok: false,
  };
  const rows = formatReport(report).split("\n");
  assert.match(rows[1] ?? "", /^1 p1\s+·\s+ok\s+ok\s+NAT$/);
  assert.match(rows[2] ?? "", /^2 p2\s+NAT\s+·\s+--\s+ok$/);
});
