// host-gw on the routed topology, the failure issue 11 names: the nodes are on different underlay
// subnets, so the agent cannot install an on-link route to the other node's pods, the packet follows
// the node's default route to the router, and the router (which knows no pod subnet) has no route.
// The trace must end there, at the router, with the kernel's own answer. Needs root and `npm run build`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { LabStateData } from "../src/lab/lab-state.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";
import { runCommand } from "../src/supervise/command.ts";
import type { TraceResult } from "../src/trace/model.ts";
import { lab, newTestLab, readLabState, removeTestLab, type TestLab } from "./helpers/lab.ts";

let t: TestLab;
let state: LabStateData;

before(async () => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
  t = newTestLab();
  const up = await lab(["up", "--topology", "routed", "--backend", "host-gw", "--nodes", "2", "--pods-per-node", "1", ...t.flags], 180_000);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  state = readLabState(t)!;
});
after(async () => {
  if (t) assert.deepEqual(await removeTestLab(t), [], "lab down left these behind");
});

test("pod → pod across the router under host-gw: no podnet route on node1, the router has no route to the pod subnet", async () => {
  const run = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", "node1-pod1", "node2-pod1", "-o", "json", ...t.flags], { timeoutMs: 60_000 });
  const result = JSON.parse(run.stdout) as TraceResult;
  assert.equal(run.code, 1, run.stdout + run.stderr);
  const node1Route = result.hops.find((h) => h.kind === "route" && h.where === "node1");
  assert.ok(node1Route && node1Route.kind === "route", JSON.stringify(result.hops, null, 1));
  assert.equal(node1Route.podnet, false, "node1 has no podnet route to node2's pods: host-gw cannot reach across subnets");
  assert.match(node1Route.entry!, /^default via 192\.168\.1\.1 dev eth0/);
  const last = result.hops.at(-1)!;
  assert.ok(last.kind === "drop" && last.reason === "no-route" && last.where === "router" && last.evidence === "route-lookup", JSON.stringify(last));
  assert.equal(state.nodeRecords.length, 2);
});
