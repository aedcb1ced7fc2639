// The lab end to end with podnet itself: etcd in the control-plane namespace, podnet's agent in every
// node namespace, pods wired by dist/cni/podnet (run `npm run build` first). Needs root; every
// namespace, process and file it creates is removed afterwards, and the tests assert that.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { LabStateData } from "../src/lab/lab-state.ts";
import { lab, labUpKilledAt, leftovers, newTestLab, readLabState, removeTestLab, type TestLab } from "./helpers/lab.ts";
import { processStartTime } from "../src/supervise/process.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";
import { cniServiceRequestLog } from "../src/lab/node-network.ts";

const labs: TestLab[] = [];
function track(t: TestLab): TestLab {
  labs.push(t);
  return t;
}
before(() => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
});
after(async () => {
  const forced: string[] = [];
  for (const t of labs) forced.push(...(await removeTestLab(t)));
  assert.deepEqual(forced, [], "lab down left these behind; they were removed by force");
});

async function upCheckDown(nodes: number, podsPerNode: number): Promise<void> {
  const t = track(newTestLab());
  const up = await lab(["up", "--app", "none", "--nodes", String(nodes), "--pods-per-node", String(podsPerNode), ...t.flags]);
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
  // Every node runs its resident CNI service, the agent's conflist names it, and the service (not the
  // full plugin the forwarder falls back to) answered each of that node's pod ADDs.
  for (const node of state.nodeRecords) {
    assert.ok(node.cniServiceSocket, `${node.name} has a CNI service socket`);
    const conflist = JSON.parse(readFileSync(join(node.cniConfDir, "10-podnet.conflist"), "utf8")) as { plugins: { serviceSocket?: string }[] };
    assert.equal(conflist.plugins[0]!.serviceSocket, node.cniServiceSocket);
    const service = state.processes.find((p) => p.role === `cni-service ${node.name}`);
    assert.ok(service?.pid !== undefined && processStartTime(service.pid) === service.startTime, `${node.name}'s podnet serve runs as recorded`);
    const served = readFileSync(cniServiceRequestLog(join(t.stateRoot, t.id), node.name), "utf8").split("\n").filter((l) => / ADD .* exit 0$/.test(l));
    assert.equal(served.length, podsPerNode, `${node.name}: the service answered every ADD: ${served.join(" | ")}`);
  }
  if (nodes >= 3) await deadAgentsReadNotReady(t, state);
  const down = await lab(["down", ...t.flags]);
  assert.equal(down.code, 0, down.stdout + down.stderr);
  assert.deepEqual(await leftovers(t, state), { namespaces: [], stateDir: false, processes: [] });
}

/** The row of `lab status` for one node: STATUS, AGENT and REASON columns. */
function nodeRow(status: string, node: string): { status: string; agent: string; reason: string } {
  const line = status.split("\n").find((l) => l.startsWith(`${node} `));
  assert.ok(line, `no row for ${node} in:\n${status}`);
  const match = /^\S+\s+\S+\s+\S+\s+(Ready|NotReady)\s+(pid \d+|NOT running)\s*(.*)$/.exec(line);
  assert.ok(match, `cannot read the row: ${line}`);
  return { status: match[1]!, agent: match[2]!, reason: match[3]! };
}

/**
 * Kill node1's agent by its recorded PID (SIGKILL: it leaves its ready file behind, so CNI STATUS still
 * succeeds), and node2's too, removing its ready file as well (STATUS now fails with 50). Both must read
 * NotReady with the reason; node3 stays Ready.
 */
async function deadAgentsReadNotReady(t: TestLab, state: LabStateData): Promise<void> {
  const agentPid = (node: string): number => {
    const record = state.processes.find((p) => p.role === `agent ${node}`);
    assert.ok(record?.pid !== undefined && record.startTime !== undefined && processStartTime(record.pid) === record.startTime, `agent ${node} runs as recorded`);
    return record.pid;
  };
  const killed = [agentPid("node1"), agentPid("node2")];
  for (const pid of killed) process.kill(pid, "SIGKILL");
  for (const pid of killed) {
    for (let i = 0; i < 100 && processStartTime(pid) !== undefined && !isZombie(pid); i++) await new Promise((r) => setTimeout(r, 20));
  }
  const node2 = state.nodeRecords.find((n) => n.name === "node2");
  assert.ok(node2);
  const readyFile = join(node2.ipamDataDir, "..", "agent.ready");
  assert.ok(existsSync(readyFile), "node2's agent had its ready file");
  rmSync(readyFile);

  const status = await lab(["status", ...t.flags]);
  assert.equal(status.code, 0, status.stderr);
  assert.deepEqual(nodeRow(status.stdout, "node1"), { status: "NotReady", agent: "NOT running", reason: `agent not running (pid ${killed[0]} is gone)` });
  const row2 = nodeRow(status.stdout, "node2");
  assert.equal(row2.status, "NotReady");
  assert.match(row2.reason, new RegExp(`^agent not running \\(pid ${killed[1]} is gone\\); podnet STATUS code 50: the podnet node agent is not ready`));
  assert.deepEqual(nodeRow(status.stdout, "node3"), { status: "Ready", agent: `pid ${agentPid("node3")}`, reason: "" });
}

function isZombie(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") ?? true;
  } catch {
    return true;
  }
}

test("default lab (3 nodes × 2 pods): up, status, check, dead agents read NotReady, down", () => upCheckDown(3, 2));

test("5 nodes × 2 pods: up, check, down", () => upCheckDown(5, 2));

test("10 nodes × 1 pod (the largest --nodes the issue asks for): up, check, down", () => upCheckDown(10, 1));

// Killed right after the agents were spawned, etcd's PID is not yet recorded: down must still find it (it lives
// in a lab namespace). Killed once nodes are Ready, agents, etcd and pods are all half-way. Killed right after
// the example app was applied, the controllers' kubelet is creating its pods while down runs.
for (const killAt of [/^\[.*\] agent\s+node2 /, /^\[.*\] ready\s+node/, /^\[.*\] apply\s+pod\/client/]) {
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
