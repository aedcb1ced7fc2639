// The lab end to end with podnet itself: etcd in the control-plane namespace, podnet's agent in every
// node namespace, pods wired by dist/cni/podnet (run `npm run build` first). Needs root; every
// namespace, process and file it creates is removed afterwards, and the tests assert that.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { lab, labUpKilledAt, leftovers, newTestLab, readLabState, type TestLab } from "../src/lab/lab-test-support.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";

const labs: TestLab[] = [];
function track(t: TestLab): TestLab {
  labs.push(t);
  return t;
}
before(() => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
});
after(async () => {
  for (const t of labs) {
    await lab(["down", ...t.flags]);
    rmSync(t.stateRoot, { recursive: true, force: true });
  }
});

async function upCheckDown(nodes: number, podsPerNode: number): Promise<void> {
  const t = track(newTestLab());
  const up = await lab(["up", "--nodes", String(nodes), "--pods-per-node", String(podsPerNode), ...t.flags]);
  assert.equal(up.code, 0, up.stdout + up.stderr);

  const status = await lab(["status", ...t.flags]);
  assert.equal(status.code, 0, status.stderr);
  const subnets = [...status.stdout.matchAll(/^node\d+\s+192\.168\.1\.\d+\s+(10\.244\.\d+\.0\/24)\s+Ready/gm)].map((m) => m[1]);
  assert.equal(subnets.length, nodes, status.stdout);
  assert.equal(new Set(subnets).size, nodes, "every node has its own subnet");
  // host-gw: every node routes every other node's subnet via that node's underlay address.
  const viaRoutes = [...status.stdout.matchAll(/^\s+10\.244\.\d+\.0\/24 via 192\.168\.1\.\d+ dev eth0/gm)];
  assert.equal(viaRoutes.length, nodes * (nodes - 1), status.stdout);

  const pods = nodes * podsPerNode;
  const check = await lab(["check", ...t.flags]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, new RegExp(`pod→pod ${pods * (pods - 1)}/${pods * (pods - 1)} ok \\(no NAT\\), pod→external ${pods}/${pods} ok \\(masqueraded\\), in-pod over lo ${pods}/${pods} ok`));

  const state = readLabState(t);
  assert.ok(state && state.processes.some((p) => p.role === "agent node1"));
  const down = await lab(["down", ...t.flags]);
  assert.equal(down.code, 0, down.stdout + down.stderr);
  assert.deepEqual(await leftovers(t, state), { namespaces: [], stateDir: false, processes: [] });
}

test("default lab (3 nodes × 2 pods): up, status, check, down", () => upCheckDown(3, 2));

test("5 nodes × 2 pods: up, check, down", () => upCheckDown(5, 2));

test("10 nodes × 1 pod (the largest --nodes the issue asks for): up, check, down", () => upCheckDown(10, 1));

// Killed right after the agents were spawned, etcd's PID is not yet recorded: down must still find it (it lives
// in a lab namespace). Killed once nodes are Ready, agents, etcd and pods are all half-way.
for (const killAt of [/^\[.*\] agent\s+node2 /, /^\[.*\] ready\s+node/]) {
  test(`down after lab up was killed at "${killAt.source}" removes everything, agents and etcd included`, async () => {
    const t = track(newTestLab());
    const { killed, output } = await labUpKilledAt(t.flags, killAt);
    assert.ok(killed, `never saw ${killAt}:\n${output}`);
    const state = readLabState(t);
    assert.ok(state?.processes.some((p) => p.role === "agent node1" && p.pid !== undefined), "agent node1 was recorded");
    assert.ok(state?.processes.some((p) => p.role === "etcd"), "etcd was recorded");
    const down = await lab(["down", ...t.flags]);
    assert.equal(down.code, 0, down.stdout + down.stderr);
    assert.deepEqual(await leftovers(t, state), { namespaces: [], stateDir: false, processes: [] });
  });
}
