import { test } from "node:test";
import assert from "node:assert/strict";
import { judgeNode } from "./node-status.ts";

const ready = { ready: true } as const;

test("a podnet node is Ready only with a live agent and a ready network", () => {
  const verdict = judgeNode({ mode: "podnet", agent: { pid: 42, alive: true }, network: ready });
  assert.deepEqual(verdict, { status: "Ready", agent: "pid 42", reasons: [] });
});

test("a dead agent makes the node NotReady even when STATUS still succeeds", () => {
  const verdict = judgeNode({ mode: "podnet", agent: { pid: 42, alive: false }, network: ready });
  assert.equal(verdict.status, "NotReady");
  assert.equal(verdict.agent, "NOT running");
  assert.deepEqual(verdict.reasons, ["agent not running (pid 42 is gone)"]);
  assert.match(judgeNode({ mode: "podnet", agent: undefined, network: ready }).reasons[0] ?? "", /never started/);
});

test("a failing STATUS makes the node NotReady with the plugin's code and message, whatever the agent", () => {
  const network = { ready: false, reason: "podnet STATUS code 50: node not ready" };
  const live = judgeNode({ mode: "podnet", agent: { pid: 7, alive: true }, network });
  assert.deepEqual([live.status, live.reasons], ["NotReady", ["podnet STATUS code 50: node not ready"]]);
  const both = judgeNode({ mode: "podnet", agent: { pid: 7, alive: false }, network });
  assert.equal(both.reasons.length, 2, "both reasons are shown");
  assert.equal(judgeNode({ mode: "reference", agent: undefined, network }).status, "NotReady");
});

test("the reference network has no agent: its nodes are judged by the network alone", () => {
  assert.deepEqual(judgeNode({ mode: "reference", agent: undefined, network: ready }), { status: "Ready", agent: "(static)", reasons: [] });
});
