// Root test of the overlay pieces of src/kernel: VXLAN devices, permanent neighbours, FDB
// entries and onlink routes. Two "node" namespaces joined by a veth underlay each get a
// VXLAN device; the neighbour and FDB entries written here are the only way either side can
// reach the other across the tunnel (learning is off), so a ping proves them.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { addAddress } from "../src/kernel/address.ts";
import { close } from "../src/kernel/libc.ts";
import { createVethPair, createVxlan, deleteLink, getLink, setLinkUp } from "../src/kernel/link.ts";
import { deleteFdbEntry, deleteNeighbour, listFdb, listNeighbours, setFdbEntry, setNeighbour, NUD_PERMANENT } from "../src/kernel/neigh.ts";
import { KernelError, NetlinkSocket } from "../src/kernel/netlink/socket.ts";
import { openNetns } from "../src/kernel/netns.ts";
import { addRoute, listRoutes } from "../src/kernel/route.ts";

const suffix = randomBytes(3).toString("hex");
const A = `pnt-k-${suffix}-a`;
const B = `pnt-k-${suffix}-b`;
const created: string[] = [];
const MAC_A = "02:77:00:00:00:0a";
const MAC_B = "02:77:00:00:00:0b";

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8" });
}

let nlA: NetlinkSocket;
let nlB: NetlinkSocket;

before(() => {
  for (const name of [A, B]) {
    ip("netns", "add", name);
    created.push(name);
  }
  nlA = NetlinkSocket.open(`/run/netns/${A}`);
  nlB = NetlinkSocket.open(`/run/netns/${B}`);
  // Underlay: a veth between the two nodes.
  const fdB = openNetns(`/run/netns/${B}`);
  try {
    createVethPair(nlA, { name: "under0", peer: { name: "under0", netnsFd: fdB } });
  } finally {
    close(fdB);
  }
  addAddress(nlA, getLink(nlA, "under0")!.index, "192.168.77.1/24");
  addAddress(nlB, getLink(nlB, "under0")!.index, "192.168.77.2/24");
  setLinkUp(nlB, getLink(nlB, "under0")!.index);
});

after(() => {
  nlA?.close();
  nlB?.close();
  for (const name of created) spawnSync("ip", ["netns", "del", name]);
});

describe("vxlan overlay", () => {
  it("createVxlan makes a device with the VNI, local address, port and learning off", () => {
    createVxlan(nlA, { name: "pnt.1", vni: 1, localIp: "192.168.77.1", underlayIndex: getLink(nlA, "under0")!.index, mac: MAC_A, mtu: 1450 });
    createVxlan(nlB, { name: "pnt.1", vni: 1, localIp: "192.168.77.2", underlayIndex: getLink(nlB, "under0")!.index, mac: MAC_B, mtu: 1450 });
    const vx = getLink(nlA, "pnt.1")!;
    assert.equal(vx.kind, "vxlan");
    assert.equal(vx.mac, MAC_A);
    assert.equal(vx.mtu, 1450);
    assert.deepEqual(vx.vxlan, { vni: 1, port: 4789, learning: false, localIp: "192.168.77.1", underlayIndex: getLink(nlA, "under0")!.index });
    const details = ip("-n", A, "-d", "link", "show", "pnt.1");
    assert.match(details, /vxlan id 1 local 192\.168\.77\.1 dev under0 .*dstport 4789 .*nolearning/s);
    assert.throws(() => createVxlan(nlA, { name: "pnt.1", vni: 1 }), (e: unknown) => e instanceof KernelError && e.code === "EEXIST");
  });

  it("neighbour + FDB entries carry a ping across the tunnel", () => {
    for (const [nl, local, remoteIp, remoteUnderlay, remoteMac] of [
      [nlA, "10.77.0.1/24", "10.77.0.2", "192.168.77.2", MAC_B],
      [nlB, "10.77.0.2/24", "10.77.0.1", "192.168.77.1", MAC_A],
    ] as const) {
      const vx = getLink(nl, "pnt.1")!;
      addAddress(nl, vx.index, local);
      setLinkUp(nl, vx.index);
      setNeighbour(nl, vx.index, remoteIp, remoteMac);
      setFdbEntry(nl, vx.index, remoteMac, remoteUnderlay);
      setFdbEntry(nl, vx.index, remoteMac, remoteUnderlay); // replace is idempotent
    }
    const vxA = getLink(nlA, "pnt.1")!;
    const neighbours = listNeighbours(nlA, vxA.index);
    assert.deepEqual(neighbours.map((n) => [n.ip, n.mac, n.state & NUD_PERMANENT]), [["10.77.0.2", MAC_B, NUD_PERMANENT]]);
    const fdb = listFdb(nlA, vxA.index).filter((f) => f.dst !== undefined);
    assert.deepEqual(fdb.map((f) => [f.mac, f.dst]), [[MAC_B, "192.168.77.2"]]);
    assert.match(execFileSync("bridge", ["-n", A, "fdb", "show", "dev", "pnt.1"], { encoding: "utf8" }), /02:77:00:00:00:0b dst 192\.168\.77\.2 self permanent/);
    ip("netns", "exec", A, "ping", "-c1", "-W2", "10.77.0.2");
  });

  it("an onlink route reaches a subnet behind the remote tunnel address", () => {
    const vxA = getLink(nlA, "pnt.1")!;
    ip("-n", B, "addr", "add", "10.78.0.1/32", "dev", "lo");
    ip("-n", B, "link", "set", "lo", "up");
    // Flannel's shape: the gateway is the remote's tunnel address, reachable only by "onlink".
    addRoute(nlA, { dst: "10.78.0.0/24", gw: "10.77.0.2", oifIndex: vxA.index, onlink: true });
    const route = listRoutes(nlA, { family: 4 }).find((r) => r.dst === "10.78.0.0/24");
    assert.equal(route?.onlink, true);
    assert.match(ip("-n", A, "route", "show", "10.78.0.0/24"), /via 10\.77\.0\.2 dev pnt\.1 .*onlink/);
    ip("netns", "exec", A, "ping", "-c1", "-W2", "10.78.0.1");
  });

  it("deleting the neighbour and FDB entries removes them", () => {
    const vxA = getLink(nlA, "pnt.1")!;
    deleteNeighbour(nlA, vxA.index, "10.77.0.2");
    deleteFdbEntry(nlA, vxA.index, MAC_B, "192.168.77.2");
    assert.equal(listNeighbours(nlA, vxA.index).filter((n) => n.ip === "10.77.0.2" && n.state & NUD_PERMANENT).length, 0);
    assert.equal(listFdb(nlA, vxA.index).filter((f) => f.dst === "192.168.77.2").length, 0);
    assert.equal(deleteLink(nlA, "pnt.1"), true);
  });
});
