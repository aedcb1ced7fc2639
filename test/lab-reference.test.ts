// The lab end to end on the "reference" network (static routes + the reference bridge/host-local
// plugins): exercises the underlay, etcd in its namespace, the pod runtime, run/exec, the check and
// teardown without depending on podnet's agent. Needs root; creates and removes its own namespaces.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { namedNetnsPath } from "../src/kernel/named-netns.ts";
import { NetlinkSocket } from "../src/kernel/netlink/socket.ts";
import { deleteRoute } from "../src/kernel/route.ts";
import { lab, labUpKilledAt, leftovers, newTestLab, readLabState, removeTestLab, type TestLab } from "./helpers/lab.ts";

const labs: TestLab[] = [];
function track(t: TestLab): TestLab {
  labs.push(t);
  return t;
}
after(async () => {
  const forced: string[] = [];
  for (const t of labs) forced.push(...(await removeTestLab(t)));
  assert.deepEqual(forced, [], "lab down left these behind; they were removed by force");
});

test("reference lab: up, status, run/exec over lo, check passes, a broken route fails the check, down leaves nothing", async () => {
  const t = track(newTestLab());
  const up = await lab(["up", "--app", "none", "--network", "reference", ...t.flags]);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  assert.match(up.stdout, /ready\s+node3 subnet 10\.244\.3\.0\/24/);

  const status = await lab(["status", ...t.flags]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /node2\s+192\.168\.1\.12\s+10\.244\.2\.0\/24\s+Ready/);
  assert.match(status.stdout, /10\.244\.3\.0\/24 via 192\.168\.1\.13 dev eth0/);

  // Two processes of one pod share its netns: a listener started with `run`, a client with `exec`.
  const run = await lab(["run", "node2-pod1", ...t.flags, "--", "busybox", "nc", "-l", "-p", "9100", "-e", "echo", "sidecar-says-hi"]);
  assert.equal(run.code, 0, run.stderr);
  let reply = "";
  for (let attempt = 0; attempt < 50 && !reply.includes("sidecar-says-hi"); attempt++) {
    reply = (await lab(["exec", "node2-pod1", ...t.flags, "--", "busybox", "nc", "127.0.0.1", "9100"])).stdout;
    if (!reply.includes("sidecar-says-hi")) await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(reply, /sidecar-says-hi/);

  const check = await lab(["check", ...t.flags]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /pod→pod 30\/30 ok \(no NAT\), pod→external 6\/6 ok \(masqueraded\), in-pod over lo 6\/6 ok/);

  // Take node1's route to node2's pods away: every pod on node1 must now fail to reach node2's pods.
  const netnsOfNode1 = `pnl-${t.id}-node1`;
  const nl = NetlinkSocket.open(namedNetnsPath(netnsOfNode1));
  try {
    deleteRoute(nl, { dst: "10.244.2.0/24" });
  } finally {
    nl.close();
  }
  const broken = await lab(["check", ...t.flags]);
  assert.equal(broken.code, 1, broken.stdout);
  assert.match(broken.stdout, /FAIL node1-pod1 → node2-pod1/);
  assert.match(broken.stdout, /check: FAIL/);

  const state = readLabState(t);
  const down = await lab(["down", ...t.flags]);
  assert.equal(down.code, 0, down.stdout + down.stderr);
  assert.deepEqual(await leftovers(t, state), { namespaces: [], stateDir: false, processes: [] });
});

for (const killAt of [/^\[.*\] node\s+node2 /, /^\[.*\] etcd /, /^\[.*\] pod\s+/]) {
  test(`down after lab up was killed at "${killAt.source}" removes everything`, async () => {
    const t = track(newTestLab());
    const { killed, output } = await labUpKilledAt(["--network", "reference", ...t.flags], killAt);
    assert.ok(killed, `never saw ${killAt}:\n${output}`);
    const state = readLabState(t);
    assert.ok(state, "the crashed up left a state file");
    assert.equal(state.phase, "creating");
    assert.ok(state.namespaces.length > 0);

    const refused = await lab(["up", "--network", "reference", ...t.flags]);
    assert.equal(refused.code, 1, "a second up over a half-built lab is refused");
    assert.match(refused.stderr, /already exists \(half built\)/);

    const down = await lab(["down", ...t.flags]);
    assert.equal(down.code, 0, down.stdout + down.stderr);
    assert.deepEqual(await leftovers(t, state), { namespaces: [], stateDir: false, processes: [] });
  });
}

test("down with no lab is a no-op that says so", async () => {
  const t = track(newTestLab());
  const down = await lab(["down", ...t.flags]);
  assert.equal(down.code, 0);
  assert.match(down.stdout, /no lab/);
});
