import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MAX_LAB_ID_LENGTH, MAX_NODES, planLab, underlayHosts, validateLabId } from "./topology.ts";

const labIds = fc.stringMatching(new RegExp(`^[a-z0-9]{1,${MAX_LAB_ID_LENGTH}}$`));

test("the default lab is the seed topology", () => {
  const plan = planLab({ id: "lab", nodes: 3, podsPerNode: 2 });
  assert.deepEqual(
    plan.nodes.map((n) => [n.name, n.ip]),
    [
      ["node1", "192.168.1.11"],
      ["node2", "192.168.1.12"],
      ["node3", "192.168.1.13"],
    ],
  );
  assert.equal(plan.pods.length, 6);
  assert.equal(plan.controlPlane.ip, "192.168.1.10");
  assert.equal(plan.external.ip, "192.168.1.200");
  assert.equal(plan.switchNetns, "pnl-lab-switch");
});

test("every name carries the lab prefix, link names fit in 15 bytes, nothing collides", () => {
  fc.assert(
    fc.property(labIds, fc.integer({ min: 1, max: MAX_NODES }), fc.integer({ min: 0, max: 3 }), (id, nodes, podsPerNode) => {
      const plan = planLab({ id, nodes, podsPerNode });
      const hosts = underlayHosts(plan);
      const namespaces = [plan.switchNetns, ...hosts.map((h) => h.netns), ...plan.pods.map((p) => p.netns)];
      const links = [plan.switchBridge, ...hosts.map((h) => h.switchPort)];
      for (const name of [...namespaces, ...links]) assert.ok(name.startsWith(`pnl-${id}-`), name);
      for (const link of links) assert.ok(Buffer.byteLength(link) <= 15, link);
      assert.equal(new Set(namespaces).size, namespaces.length);
      assert.equal(new Set(links).size, links.length);
      const ips = hosts.map((h) => h.ip);
      assert.equal(new Set(ips).size, ips.length);
      for (const ip of ips) assert.match(ip, /^192\.168\.1\.(\d+)$/);
      assert.equal(plan.pods.length, nodes * podsPerNode);
      for (const pod of plan.pods) assert.match(pod.containerId, /^[A-Za-z0-9][A-Za-z0-9_.-]*$/);
    }),
  );
});

test("one lab's names never start with another lab's prefix", () => {
  fc.assert(
    fc.property(labIds, labIds, (a, b) => {
      fc.pre(a !== b);
      const planA = planLab({ id: a, nodes: 2, podsPerNode: 1 });
      for (const ns of [planA.switchNetns, ...planA.nodes.map((n) => n.netns)]) assert.ok(!ns.startsWith(`pnl-${b}-`), `${ns} vs ${b}`);
    }),
  );
});

test("bad ids and sizes are refused", () => {
  assert.ok(validateLabId("Lab"));
  assert.ok(validateLabId("toolong7"));
  assert.ok(validateLabId(""));
  assert.ok(validateLabId("a-b"));
  assert.equal(validateLabId("abc123"), undefined);
  assert.throws(() => planLab({ id: "lab", nodes: 0, podsPerNode: 2 }), RangeError);
  assert.throws(() => planLab({ id: "lab", nodes: MAX_NODES + 1, podsPerNode: 2 }), RangeError);
  assert.throws(() => planLab({ id: "lab", nodes: 2, podsPerNode: 1.5 }), RangeError);
});

test("routed: odd nodes on 192.168.1.0/24, even nodes on 192.168.2.0/24, a router at .1 on both", () => {
  const plan = planLab({ id: "lab", nodes: 4, podsPerNode: 1, topology: "routed" });
  assert.deepEqual(
    plan.nodes.map((n) => [n.name, n.ip, n.switchIndex, n.gateway]),
    [
      ["node1", "192.168.1.11", 0, "192.168.1.1"],
      ["node2", "192.168.2.12", 1, "192.168.2.1"],
      ["node3", "192.168.1.13", 0, "192.168.1.1"],
      ["node4", "192.168.2.14", 1, "192.168.2.1"],
    ],
  );
  assert.deepEqual(plan.switches.map((s) => [s.netns, s.cidr]), [
    ["pnl-lab-switch", "192.168.1.0/24"],
    ["pnl-lab-switch2", "192.168.2.0/24"],
  ]);
  assert.deepEqual(plan.router?.uplinks.map((u) => [u.name, u.ip, u.switchIndex]), [
    ["eth0", "192.168.1.1", 0],
    ["eth1", "192.168.2.1", 1],
  ]);
  assert.equal(plan.controlPlane.gateway, "192.168.1.1");
  const flat = planLab({ id: "lab", nodes: 2, podsPerNode: 1 });
  assert.equal(flat.router, undefined);
  assert.equal(flat.nodes[1]!.gateway, "192.168.1.200", "flat: nodes route upstream via the external host");
  assert.equal(flat.controlPlane.gateway, undefined);
  assert.throws(() => planLab({ id: "lab", nodes: 1, podsPerNode: 0, topology: "mesh" as "flat" }), /--topology must be flat or routed/);
});
