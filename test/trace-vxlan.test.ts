// `podnet trace` over the vxlan backend on the routed topology (two underlay subnets joined by a router):
// the FDB entry that names the remote VTEP, the outer packet routed through the router, decapsulation on
// the remote node, and a missing FDB entry as the reason a trace ends. Needs root and `npm run build`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv } from "ajv";
import type { LabStateData } from "../src/lab/lab-state.ts";
import { REPO_ROOT } from "../src/lab/repo-root.ts";
import { runCommand } from "../src/supervise/command.ts";
import { stopRecordedProcess } from "../src/supervise/process.ts";
import type { Hop, TraceResult } from "../src/trace/model.ts";
import { lab, newTestLab, readLabState, removeTestLab, type TestLab } from "./helpers/lab.ts";

let t: TestLab;
let state: LabStateData;

before(async () => {
  assert.ok(existsSync(join(REPO_ROOT, "dist/cni/podnet")), "dist/cni/podnet is missing: run npm run build");
  t = newTestLab();
  const up = await lab(["up", "--topology", "routed", "--backend", "vxlan", "--nodes", "2", "--pods-per-node", "1", ...t.flags], 180_000);
  assert.equal(up.code, 0, up.stdout + up.stderr);
  state = readLabState(t)!;
});
after(async () => {
  if (t) assert.deepEqual(await removeTestLab(t), [], "lab down left these behind");
});

const validate = new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(readFileSync(join(REPO_ROOT, "src/trace/trace.schema.json"), "utf8")));

async function trace(...args: string[]): Promise<{ code: number; result: TraceResult }> {
  const run = await runCommand([process.execPath, join(REPO_ROOT, "bin/podnet.js"), "trace", ...args, "-o", "json", ...t.flags], { timeoutMs: 60_000 });
  const result = JSON.parse(run.stdout) as TraceResult;
  assert.ok(validate(result), JSON.stringify(validate.errors, null, 2));
  return { code: run.code, result };
}

function sh(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  assert.equal(r.status, 0, `${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const node = (name: string) => state.nodeRecords.find((n) => n.name === name)!;
const vxlanHops = (r: TraceResult) => r.hops.filter((h): h is Extract<Hop, { kind: "vxlan" }> => h.kind === "vxlan");

test("pod → pod across the router: encapsulated on node1 to node2's VTEP, routed by the router, decapsulated on node2", async () => {
  const { code, result } = await trace("node1-pod1", "node2-pod1");
  assert.equal(code, 0, JSON.stringify(result.hops, null, 1));
  const [encap, decap] = vxlanHops(result);
  assert.ok(encap && decap, JSON.stringify(result.hops, null, 1));
  assert.equal(encap.direction, "encap");
  assert.equal(encap.where, "node1");
  assert.equal(encap.fdb?.dst, node("node2").ip, "the FDB entry names node2's underlay address");
  assert.deepEqual(encap.outer, { src: node("node1").ip, dst: node("node2").ip });
  assert.equal(encap.vni, 1);
  // The outer packet crosses the router (the nodes are on different underlay subnets).
  const routerHop = result.hops.find((h) => h.kind === "route" && h.where === "router");
  assert.ok(routerHop && routerHop.kind === "route" && routerHop.query.dst === node("node2").ip, "the router routes the outer packet");
  assert.equal(decap.direction, "decap");
  assert.equal(decap.where, "node2");
  // After decapsulation the inner packet is routed on node2 as having come in on the VXLAN device.
  const inner = result.hops.find((h) => h.kind === "route" && h.where === "node2" && h.query.iif === decap.device);
  assert.ok(inner, "node2 routes the inner packet from its vxlan device");
  const arrival = result.hops.at(-1)!;
  assert.ok(arrival.kind === "arrival" && arrival.where === "node2-pod1" && arrival.saddr === state.pods.find((p) => p.name === "node1-pod1")!.ip && arrival.evidence === "nft-trace");
});

test("lab graph draws the router, both switches and the tunnel", async () => {
  const run = await lab(["graph", ...t.flags]);
  assert.equal(run.code, 0, run.stderr);
  for (const text of [">router<", "192.168.2.0/24<", ">vxlan podnet.1 VNI 1<", `VTEP ${node("node2").ip}<`]) assert.ok(run.stdout.includes(text), text);
  assert.match(run.stdout, /data-id="t-node1\/podnet\.1-node2\/podnet\.1"[^>]*stroke-dasharray/);
});

// Last: it stops node1's agent, which would put the FDB entry back.
test("a missing FDB entry on the VXLAN device ends the trace at node1: no remote VTEP", async () => {
  await stopRecordedProcess(state.processes.find((p) => p.role === "agent node1")!);
  const ns = node("node1").netns;
  const entry = sh(["bridge", "-n", ns, "fdb", "show", "dev", "podnet.1"]).split("\n").find((l) => l.includes(`dst ${node("node2").ip}`));
  assert.ok(entry, "node1 has an FDB entry for node2");
  const mac = entry.split(" ")[0]!;
  sh(["bridge", "-n", ns, "fdb", "del", mac, "dev", "podnet.1", "dst", node("node2").ip, "self"]);
  const { code, result } = await trace("node1-pod1", "node2-pod1");
  assert.equal(code, 1);
  const last = result.hops.at(-1)!;
  assert.ok(last.kind === "drop" && last.reason === "no-fdb" && last.where === "node1", JSON.stringify(last));
  assert.match(last.summary, new RegExp(`VXLAN podnet\\.1 has no FDB entry for ${mac}`));
});
