// The vxlan backend's pure planning: VTEP MACs, desired entries per peer, and the changes that reach them.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { NodeView } from "../datastore/datastore.ts";
import { parseVxlanOptions } from "./vxlan-backend.ts";
import { isOnLink } from "./route-plan.ts";
import { isVtepMac, planFdbChanges, planNeighbourChanges, planVxlan, tunnelAddress, vtepMacFor, vxlanMtu } from "./vxlan-plan.ts";

function node(name: string, index: number, extra: Partial<NodeView> = {}): NodeView {
  return {
    name,
    nodeIp: `192.168.${index <= 2 ? 1 : 2}.${10 + index}`,
    podSubnet: `10.244.${index}.0/24`,
    backendData: { vtepMac: vtepMacFor(name, 1) },
    phase: "active",
    alive: true,
    revision: 100 + index,
    acks: [],
    ...extra,
  };
}

describe("vtepMacFor", () => {
  it("is stable, locally administered unicast, and differs by node and by VNI", () => {
    const mac = vtepMacFor("node1", 1);
    assert.equal(mac, vtepMacFor("node1", 1));
    assert.ok(isVtepMac(mac), mac);
    assert.equal(parseInt(mac.slice(0, 2), 16) & 0x03, 0x02, "locally administered, unicast");
    assert.notEqual(mac, vtepMacFor("node2", 1));
    assert.notEqual(mac, vtepMacFor("node1", 2));
  });

  it("isVtepMac refuses multicast, all-zero and malformed MACs", () => {
    assert.equal(isVtepMac("01:00:5e:00:00:01"), false);
    assert.equal(isVtepMac("00:00:00:00:00:00"), false);
    assert.equal(isVtepMac("02:00:00:00:00"), false);
    assert.equal(isVtepMac("02:AA:00:00:00:01"), false);
    assert.equal(isVtepMac("02:aa:00:00:00:01"), true);
  });
});

describe("planVxlan", () => {
  const nodes = [node("n1", 1), node("n2", 2), node("n3", 3), node("n4", 4, { phase: "leaving" })];
  const onLink = (ip: string): boolean => ip.startsWith("192.168.1.");

  it("gives every active peer an ARP entry, an FDB entry and an onlink route via its subnet's .0", () => {
    const plan = planVxlan({ nodes, self: "n1", vni: 1, deviceIndex: 7, directRouting: false, onLink });
    assert.deepEqual(plan.routes, [
      { dst: "10.244.2.0/24", gw: "10.244.2.0", oifIndex: 7, onlink: true },
      { dst: "10.244.3.0/24", gw: "10.244.3.0", oifIndex: 7, onlink: true },
    ]);
    assert.deepEqual(plan.neighbours, [
      { ip: "10.244.2.0", mac: vtepMacFor("n2", 1) },
      { ip: "10.244.3.0", mac: vtepMacFor("n3", 1) },
    ]);
    assert.deepEqual(plan.fdb, [
      { mac: vtepMacFor("n2", 1), dst: "192.168.1.12" },
      { mac: vtepMacFor("n3", 1), dst: "192.168.2.13" },
    ]);
    assert.deepEqual(plan.overlay, ["n2", "n3"]);
  });

  it("directRouting: plain routes to on-link peers, the overlay to the others", () => {
    const plan = planVxlan({ nodes, self: "n1", vni: 1, deviceIndex: 7, directRouting: true, onLink });
    assert.deepEqual(plan.direct, ["n2"]);
    assert.deepEqual(plan.overlay, ["n3"]);
    assert.deepEqual(plan.routes[0], { dst: "10.244.2.0/24", gw: "192.168.1.12" });
    assert.deepEqual(plan.neighbours.map((n) => n.ip), ["10.244.3.0"]);
  });

  it("uses the derived MAC of a peer that has not published one yet, and skips a malformed one, saying why", () => {
    const plan = planVxlan({
      nodes: [node("n1", 1), node("n2", 2, { backendData: {} }), node("n3", 3, { backendData: { vtepMac: "ff:ff:ff:ff:ff:ff" } })],
      self: "n1",
      vni: 1,
      deviceIndex: 7,
      directRouting: false,
      onLink,
    });
    assert.deepEqual(plan.fdb, [{ mac: vtepMacFor("n2", 1), dst: "192.168.1.12" }]);
    assert.deepEqual(plan.skipped.map((s) => s.name), ["n3"]);
    assert.match(plan.skipped[0]!.reason, /not a unicast MAC/);
  });
});

describe("planNeighbourChanges and planFdbChanges", () => {
  it("set what is missing or different, delete what nobody wants", () => {
    const n = planNeighbourChanges(
      [{ ip: "10.244.2.0", mac: "02:00:00:00:00:02" }, { ip: "10.244.3.0", mac: "02:00:00:00:00:03" }],
      [{ ip: "10.244.2.0", mac: "02:00:00:00:00:02" }, { ip: "10.244.3.0", mac: "02:00:00:00:00:99" }, { ip: "10.244.9.0", mac: "02:00:00:00:00:09" }],
    );
    assert.deepEqual(n.set, [{ ip: "10.244.3.0", mac: "02:00:00:00:00:03" }]);
    assert.deepEqual(n.delete, [{ ip: "10.244.9.0", mac: "02:00:00:00:00:09" }]);
  });

  it("a peer's new node IP replaces its old remote; a departed MAC goes", () => {
    const f = planFdbChanges(
      [{ mac: "02:00:00:00:00:02", dst: "192.168.2.99" }],
      [{ mac: "02:00:00:00:00:02", dst: "192.168.1.12" }, { mac: "02:00:00:00:00:09", dst: "192.168.1.19" }],
    );
    assert.deepEqual(f.set, [{ mac: "02:00:00:00:00:02", dst: "192.168.2.99" }]);
    assert.deepEqual(f.delete, [{ mac: "02:00:00:00:00:02", dst: "192.168.1.12" }, { mac: "02:00:00:00:00:09", dst: "192.168.1.19" }]);
    assert.deepEqual(planFdbChanges([{ mac: "02:00:00:00:00:02", dst: "192.168.1.12" }], [{ mac: "02:00:00:00:00:02", dst: "192.168.1.12" }]), { set: [], delete: [] });
  });
});

describe("helpers", () => {
  it("tunnelAddress is the subnet's network address", () => {
    assert.equal(tunnelAddress("10.244.2.0/24"), "10.244.2.0");
    assert.equal(tunnelAddress("10.244.2.128/25"), "10.244.2.128");
  });

  it("vxlanMtu subtracts 50 for an IPv4 underlay, 70 for IPv6", () => {
    assert.equal(vxlanMtu(1500, 4), 1450);
    assert.equal(vxlanMtu(9000, 6), 8930);
  });

  it("isOnLink: only connected routes count, not the default, not our own, not the overlay device", () => {
    const routes = [
      { dst: "192.168.1.0/24", protocol: 2, scope: 253, oifIndex: 2 },
      { dst: "0.0.0.0/0", gw: "192.168.1.1", protocol: 3, scope: 0 },
      { dst: "10.244.2.0/24", gw: "10.244.2.0", protocol: 0x50, scope: 0 },
      { dst: "10.99.0.0/16", protocol: 2, scope: 253, oifIndex: 9 },
    ];
    assert.equal(isOnLink("192.168.1.12", routes), true);
    assert.equal(isOnLink("192.168.2.13", routes), false);
    assert.equal(isOnLink("10.99.1.1", routes, 9), false);
    assert.equal(isOnLink("not an ip", routes), false);
  });
});

describe("parseVxlanOptions", () => {
  it("defaults to VNI 1, port 8472, no direct routing", () => {
    assert.deepEqual(parseVxlanOptions({}), { vni: 1, port: 8472, directRouting: false });
    assert.deepEqual(parseVxlanOptions({ vni: 42, port: 4789, directRouting: true }), { vni: 42, port: 4789, directRouting: true });
  });

  it("names the bad field", () => {
    assert.throws(() => parseVxlanOptions({ vni: 0 }), { name: "BackendConfigError", message: /backendOptions\.vxlan\.vni: must be an integer from 1 to 16777215, got 0/ });
    assert.throws(() => parseVxlanOptions({ vni: 1 << 24 }), /backendOptions\.vxlan\.vni/);
    assert.throws(() => parseVxlanOptions({ port: "8472" }), /backendOptions\.vxlan\.port: .* got "8472"/);
    assert.throws(() => parseVxlanOptions({ port: 70000 }), /backendOptions\.vxlan\.port/);
    assert.throws(() => parseVxlanOptions({ directRouting: "yes" }), /backendOptions\.vxlan\.directRouting: must be true or false/);
    assert.throws(() => parseVxlanOptions({ vnid: 1 }), /backendOptions\.vxlan: unknown option "vnid" \(it takes vni, port, directRouting\)/);
  });
});
