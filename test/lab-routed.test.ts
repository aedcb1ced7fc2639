// The routed lab topology: nodes on 192.168.1.0/24 and 192.168.2.0/24 joined by a router namespace that
// knows no pod subnet. With vxlan the whole check passes with no NAT; with host-gw the cross-subnet cells
// fail and the check says why (the agents' PeersNotOnLink condition). Needs root and `npm run build`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { lab, leftovers, newTestLab, readLabState, removeTestLab, type TestLab } from "./helpers/lab.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";

const labs: TestLab[] = [];
before(() => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
});
after(async () => {
  const forced: string[] = [];
  for (const t of labs) forced.push(...(await removeTestLab(t)));
  assert.deepEqual(forced, [], "lab down left these behind; they were removed by force");
});

async function upDown(args: string[], body: (t: TestLab) => Promise<void>): Promise<void> {
  const t = newTestLab();
  labs.push(t);
  const up = await lab(["up", "--nodes", "3", "--pods-per-node", "1", ...args, ...t.flags]);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  assert.match(up.stdout, /router\s+pnl-\w+-router 192\.168\.1\.1 192\.168\.2\.1 \(no pod routes\)/);
  const state = readLabState(t);
  await body(t);
  const down = await lab(["down", ...t.flags]);
  assert.equal(down.code, 0, down.stdout + down.stderr);
  assert.deepEqual(await leftovers(t, state), { namespaces: [], stateDir: false, processes: [] });
}

test("routed + vxlan: the whole check passes with no NAT, and status shows backend, MTU, VTEP MACs and peers", async () => {
  await upDown(["--topology", "routed", "--backend", "vxlan"], async (t) => {
    const check = await lab(["check", ...t.flags]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /pod→pod 6\/6 ok \(no NAT\), pod→external 3\/3 ok \(masqueraded\), in-pod over lo 3\/3 ok/);
    const status = await lab(["status", ...t.flags]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /routed underlay \(192\.168\.1\.0\/24, 192\.168\.2\.0\/24 via pnl-\w+-router\)/);
    assert.match(status.stdout, /^node2\s+192\.168\.2\.12\s+10\.244\.\d+\.0\/24\s+Ready/m, "node2 sits on the second subnet");
    for (const node of ["node1", "node2", "node3"]) {
      assert.match(status.stdout, new RegExp(`^${node}: backend vxlan, MTU 1450, VTEP MAC [0-9a-f:]{17} on podnet\\.1$`, "m"));
    }
    const peerLines = [...status.stdout.matchAll(/^ {2}peer (node\d)\s+(\S+)\s+vxlan → ([0-9a-f:]{17})$/gm)];
    assert.equal(peerLines.length, 6, status.stdout);
    // Each node's VTEP MAC, as the node reports it, is the one its peers use.
    for (const node of ["node1", "node2", "node3"]) {
      const own = new RegExp(`^${node}: .*VTEP MAC ([0-9a-f:]{17})`, "m").exec(status.stdout)![1];
      assert.ok(peerLines.filter((m) => m[1] === node).every((m) => m[3] === own), `${node}'s peers use ${own}`);
    }
  });
});

test("routed + host-gw: cross-subnet cells fail, and the check says why", async () => {
  await upDown(["--topology", "routed", "--backend", "host-gw"], async (t) => {
    const check = await lab(["check", ...t.flags]);
    assert.equal(check.code, 1, check.stdout + check.stderr);
    // node1 and node3 share 192.168.1.0/24; node2 is alone on 192.168.2.0/24: 4 of 6 pod→pod cells cross the router.
    assert.match(check.stdout, /pod→pod 2\/6 ok/);
    assert.match(check.stdout, /why, as the agents report it:/);
    assert.match(check.stdout, /node1: PeersNotOnLink: host-gw cannot route to 1 peer .*node2 \(192\.168\.2\.12\).*vxlan/);
    assert.match(check.stdout, /node2: PeersNotOnLink: host-gw cannot route to 2 peers .*node1 \(192\.168\.1\.11\), node3 \(192\.168\.1\.13\)/);
    const status = await lab(["status", ...t.flags]);
    assert.match(status.stdout, /^node1: backend host-gw, MTU 1500$/m);
    assert.match(status.stdout, /^ {2}condition PeersNotOnLink: /m);
  });
});

test("flat + vxlan --direct-routing: every peer shares the subnet, so every route is direct", async () => {
  const t = newTestLab();
  labs.push(t);
  const up = await lab(["up", "--nodes", "2", "--pods-per-node", "1", "--backend", "vxlan", "--direct-routing", ...t.flags]);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  const status = await lab(["status", ...t.flags]);
  assert.match(status.stdout, /^ {2}peer node2\s+192\.168\.1\.12\s+direct route$/m);
  const check = await lab(["check", ...t.flags]);
  assert.equal(check.code, 0, check.stdout);
  const state = readLabState(t);
  assert.equal((await lab(["down", ...t.flags])).code, 0);
  assert.deepEqual(await leftovers(t, state), { namespaces: [], stateDir: false, processes: [] });
});
