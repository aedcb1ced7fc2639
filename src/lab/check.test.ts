import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { EXTERNAL_LABEL, LOOPBACK_LABEL, formatReport, judge, judgeMatrix, planTargets, type CheckPod, type CheckReport, type ProbeOutcome } from "./check.ts";

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

/** What a correct network makes every probe client report: the right server, seeing the right source. */
function perfectOutcomes(): Map<string, ProbeOutcome[]> {
  const outcomes = new Map<string, ProbeOutcome[]>();
  for (const source of pods) {
    const targets = planTargets(source, pods, nodeIps, "192.168.1.200");
    outcomes.set(source.name, targets.map((t) => ({ label: t.label, self: t.expectSelf, peer: t.expectPeer, ms: 1 })));
  }
  return outcomes;
}

test("a healthy matrix passes, with one cell per pod pair, per pod over lo and per pod to external", () => {
  const report = judgeMatrix(pods, nodeIps, "192.168.1.200", perfectOutcomes());
  assert.equal(report.ok, true);
  assert.equal(report.cells.length, pods.length * (pods.length - 1) + 2 * pods.length);
  assert.ok(report.cells.every((c) => c.ok));
  assert.match(formatReport(report), /check: PASS\n$/);
});

test("any one broken answer fails the whole check, and only that cell", () => {
  const breakages = ["missing", "error", "wrong server", "wrong source"] as const;
  const cellCount = pods.length * (pods.length - 1) + 2 * pods.length;
  fc.assert(
    fc.property(fc.nat({ max: cellCount - 1 }), fc.constantFrom(...breakages), (victim, how) => {
      const outcomes = perfectOutcomes();
      let seen = 0;
      let broken: { from: string; to: string } | undefined;
      for (const [source, list] of outcomes) {
        const index = victim - seen;
        seen += list.length;
        if (broken || index >= list.length) continue;
        const outcome = list[index]!;
        broken = { from: source, to: outcome.label };
        if (how === "missing") list.splice(index, 1);
        else if (how === "error") list[index] = { label: outcome.label, error: "ECONNREFUSED" };
        else if (how === "wrong server") list[index] = { ...outcome, self: "someone-else" };
        else list[index] = { ...outcome, peer: "10.99.0.1" };
      }
      const report = judgeMatrix(pods, nodeIps, "192.168.1.200", outcomes);
      assert.equal(report.ok, false);
      const failed = report.cells.filter((c) => !c.ok);
      assert.deepEqual(failed.map((c) => ({ from: c.from, to: c.to })), [broken]);
      const text = formatReport(report);
      assert.equal(text.split("\n").filter((l) => l.startsWith("FAIL ")).length, 1);
      assert.ok(text.trimEnd().endsWith(`check: FAIL (1 of ${cellCount})`));
    }),
  );
});

test("a source pod whose probe client reported nothing fails all its cells", () => {
  const outcomes = perfectOutcomes();
  outcomes.delete("node2-pod1");
  const report = judgeMatrix(pods, nodeIps, "192.168.1.200", outcomes);
  assert.equal(report.ok, false);
  assert.deepEqual([...new Set(report.cells.filter((c) => !c.ok).map((c) => c.from))], ["node2-pod1"]);
  assert.equal(report.cells.filter((c) => !c.ok).length, pods.length + 1);
});

test("a check with no pods has nothing to prove and does not pass", () => {
  const report = judgeMatrix([], nodeIps, "192.168.1.200", new Map());
  assert.equal(report.ok, false);
  assert.match(formatReport(report), /check: FAIL/);
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
