// Root test of src/kernel against the real kernel, Node + koffi backend. It builds a "node"
// namespace with a bridge and a "pod" namespace joined to it by a veth, then checks every
// operation both through podnet's own reads and through iproute2, and proves the result
// carries traffic with a ping. Nothing here touches the root namespace.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readlinkSync, rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { addAddress, deleteAddress, listAddresses } from "../src/kernel/address.ts";
import { LOCK_EX, LOCK_NB, LOCK_UN, SysError, backendName, close, flock } from "../src/kernel/libc.ts";
import {
  createVethPair,
  deleteLink,
  ensureBridge,
  getBridgePortHairpin,
  getLink,
  getLinkByIndex,
  listLinks,
  setBridgePortHairpin,
  setLinkMac,
  setLinkUp,
  type LinkInfo,
} from "../src/kernel/link.ts";
import { KernelError, NetlinkSocket } from "../src/kernel/netlink/socket.ts";
import { netnsExists, openNetns, withNetns } from "../src/kernel/netns.ts";
import { NftError, nftListTable, runNft } from "../src/kernel/nft.ts";
import { RTPROT_STATIC, addRoute, applyRouteChanges, deleteRoute, listRoutes, type RouteChange } from "../src/kernel/route.ts";
import { getSysctl, setSysctl } from "../src/kernel/sysctl.ts";

const EEXIST = 17;
const ENODEV = 19;
const ESRCH = 3;
const EWOULDBLOCK = 11;

const suffix = randomBytes(3).toString("hex");
const NODE = `pnt-k-${suffix}-node`;
const POD = `pnt-k-${suffix}-pod`;
const nodePath = `/run/netns/${NODE}`;
const podPath = `/run/netns/${POD}`;
const created: string[] = [];

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8" });
}

let nodeNl: NetlinkSocket;
let podNl: NetlinkSocket;
let bridge: LinkInfo;

before(() => {
  assert.equal(backendName(), "koffi");
  for (const name of [NODE, POD]) {
    ip("netns", "add", name);
    created.push(name);
  }
  nodeNl = NetlinkSocket.open(nodePath);
  podNl = NetlinkSocket.open(podPath);
});

after(() => {
  nodeNl?.close();
  podNl?.close();
  for (const name of created) spawnSync("ip", ["netns", "del", name]);
});

describe("netns", () => {
  it("withNetns runs inside the namespace and restores the thread's own afterwards", () => {
    const own = readlinkSync("/proc/thread-self/ns/net");
    const target = execFileSync("ip", ["netns", "exec", NODE, "readlink", "/proc/self/ns/net"], { encoding: "utf8" }).trim();
    assert.notEqual(own, target);
    assert.equal(
      withNetns(nodePath, () => readlinkSync("/proc/thread-self/ns/net")),
      target,
    );
    assert.equal(readlinkSync("/proc/thread-self/ns/net"), own);
    assert.throws(() => withNetns(nodePath, () => {
      throw new Error("boom");
    }), /boom/);
    assert.equal(readlinkSync("/proc/thread-self/ns/net"), own, "restored after a throw");
    assert.throws(() => withNetns(nodePath, async () => 1), /promise/);
    assert.equal(readlinkSync("/proc/thread-self/ns/net"), own);
  });

  it("withNetns on a missing path throws without switching", () => {
    const own = readlinkSync("/proc/thread-self/ns/net");
    assert.throws(() => withNetns("/run/netns/pnt-k-does-not-exist", () => 1), (e: unknown) => e instanceof SysError && e.syscall === "open");
    assert.equal(readlinkSync("/proc/thread-self/ns/net"), own);
  });

  it("netnsExists tells live namespaces from missing paths and ordinary files", () => {
    assert.equal(netnsExists(nodePath), true);
    assert.equal(netnsExists(`/proc/${process.pid}/ns/net`), true);
    assert.equal(netnsExists("/run/netns/pnt-k-does-not-exist"), false);
    const stale = `/tmp/pnt-k-${suffix}-stale`;
    closeSync(openSync(stale, "w"));
    try {
      assert.equal(netnsExists(stale), false);
    } finally {
      rmSync(stale);
    }
  });

  it("sysctls follow the namespace of the thread at open time", () => {
    withNetns(nodePath, () => setSysctl("net.ipv4.ip_forward", "1"));
    assert.equal(withNetns(nodePath, () => getSysctl("net/ipv4/ip_forward")), "1");
    assert.equal(ip("netns", "exec", NODE, "cat", "/proc/sys/net/ipv4/ip_forward").trim(), "1");
    assert.equal(withNetns(podPath, () => getSysctl("net.ipv4.ip_forward")), "0");
    assert.throws(() => getSysctl("net/../../etc/passwd"), /invalid sysctl key/);
  });
});

describe("flock", () => {
  it("a second exclusive non-blocking lock fails with EWOULDBLOCK until the first is released", () => {
    const path = `/tmp/pnt-k-${suffix}.lock`;
    const first = openSync(path, "w");
    const second = openSync(path, "r");
    try {
      flock(first, LOCK_EX);
      assert.throws(() => flock(second, LOCK_EX | LOCK_NB), (e: unknown) => e instanceof SysError && e.errno === EWOULDBLOCK && e.syscall === "flock");
      flock(first, LOCK_UN);
      flock(second, LOCK_EX | LOCK_NB);
    } finally {
      closeSync(first);
      closeSync(second);
      rmSync(path);
    }
  });
});

describe("links", () => {
  it("ensureBridge creates the bridge up, with the given MAC and MTU, and is idempotent", () => {
    bridge = ensureBridge(nodeNl, { name: "pntbr0", mtu: 1450, mac: "02:50:4e:00:00:01" });
    assert.equal(bridge.kind, "bridge");
    assert.equal(bridge.up, true);
    assert.equal(bridge.mac, "02:50:4e:00:00:01");
    assert.equal(bridge.mtu, 1450);
    assert.deepEqual(ensureBridge(nodeNl, { name: "pntbr0" }), bridge);
    assert.match(ip("-n", NODE, "-d", "link", "show", "pntbr0"), /state (UP|UNKNOWN|DOWN).*\n.*\n\s+bridge /);
  });

  it("createVethPair puts the peer in the pod namespace, host end enslaved and up, peer down", () => {
    addAddress(nodeNl, bridge.index, "10.99.0.1/24");
    addAddress(nodeNl, bridge.index, "fd99::1/64", { noDad: true });
    const podFd = openNetns(podPath);
    try {
      createVethPair(nodeNl, { name: "pntveth0", mtu: 1450, masterIndex: bridge.index, peer: { name: "eth0", netnsFd: podFd, mac: "02:50:4e:00:00:02" } });
    } finally {
      close(podFd);
    }
    const host = getLink(nodeNl, "pntveth0");
    assert.ok(host);
    assert.equal(host.kind, "veth");
    assert.equal(host.masterIndex, bridge.index);
    assert.equal(host.up, true);
    assert.equal(host.mtu, 1450);
    assert.equal(getLink(nodeNl, "eth0"), undefined, "the peer is not in the node namespace");
    const eth0 = getLink(podNl, "eth0");
    assert.ok(eth0);
    assert.equal(eth0.up, false);
    assert.equal(eth0.mac, "02:50:4e:00:00:02");
    assert.equal(eth0.mtu, 1450, "peer inherits the pair's MTU");
    assert.deepEqual(getLinkByIndex(podNl, eth0.index), eth0);
    assert.match(ip("-n", POD, "link", "show", "eth0"), /eth0@if\d+:/);
  });

  it("addresses, link up and routes make the pod reachable: a real ping over the veth", () => {
    const eth0 = getLink(podNl, "eth0")!;
    addAddress(podNl, eth0.index, "10.99.0.2/24");
    addAddress(podNl, eth0.index, "fd99::2/64", { noDad: true });
    setLinkUp(podNl, eth0.index);
    setLinkUp(podNl, getLink(podNl, "lo")!.index);
    addRoute(podNl, { dst: "0.0.0.0/0", gw: "10.99.0.1" });
    addRoute(podNl, { dst: "::/0", gw: "fd99::1" });

    const addresses = listAddresses(podNl, eth0.index).map((a) => `${a.family} ${a.cidr}`);
    assert.ok(addresses.includes("4 10.99.0.2/24"), addresses.join(","));
    assert.ok(addresses.includes("6 fd99::2/64"), addresses.join(","));
    assert.match(ip("-n", POD, "-4", "addr", "show", "eth0"), /inet 10\.99\.0\.2\/24 brd 10\.99\.0\.255 /);
    assert.doesNotMatch(ip("-n", POD, "-6", "addr", "show", "eth0"), /fd99::2\/64.*tentative/, "noDad skips DAD");
    assert.ok(listAddresses(nodeNl).some((a) => a.index === bridge.index && a.cidr === "10.99.0.1/24"));

    const routes = listRoutes(podNl, { family: 4 });
    assert.ok(routes.some((r) => r.dst === "0.0.0.0/0" && r.gw === "10.99.0.1" && r.oifIndex === eth0.index), JSON.stringify(routes));
    assert.ok(listRoutes(podNl, { family: 6 }).some((r) => r.dst === "::/0" && r.gw === "fd99::1"));
    assert.match(ip("-n", POD, "route", "show", "default"), /default via 10\.99\.0\.1 dev eth0/);

    ip("netns", "exec", POD, "ping", "-c1", "-W2", "10.99.0.1");
    ip("netns", "exec", POD, "ping", "-6", "-c1", "-W2", "fd99::1");
  });

  it("listLinks sees every link of the socket's namespace and only those", () => {
    const names = listLinks(podNl).map((l) => l.name).sort();
    assert.deepEqual(names, ["eth0", "lo"]);
    const nodeNames = listLinks(nodeNl).map((l) => l.name);
    assert.ok(nodeNames.includes("pntbr0") && nodeNames.includes("pntveth0"));
  });

  it("setLinkMac changes the MAC", () => {
    const host = getLink(nodeNl, "pntveth0")!;
    setLinkMac(nodeNl, host.index, "02:50:4e:00:00:aa");
    assert.equal(getLink(nodeNl, "pntveth0")!.mac, "02:50:4e:00:00:aa");
  });

  it("hairpin mode is set through AF_BRIDGE and read back", () => {
    const host = getLink(nodeNl, "pntveth0")!;
    assert.equal(getBridgePortHairpin(nodeNl, host.index), false);
    setBridgePortHairpin(nodeNl, host.index, true);
    assert.equal(getBridgePortHairpin(nodeNl, host.index), true);
    assert.match(execFileSync("bridge", ["-n", NODE, "-d", "link", "show", "dev", "pntveth0"], { encoding: "utf8" }), /hairpin on/);
    setBridgePortHairpin(nodeNl, host.index, false);
    assert.match(execFileSync("bridge", ["-n", NODE, "-d", "link", "show", "dev", "pntveth0"], { encoding: "utf8" }), /hairpin off/);
  });

  it("ensureBridge refuses a link of that name that is not a bridge", () => {
    assert.throws(() => ensureBridge(nodeNl, { name: "pntveth0" }), /exists but is a veth/);
  });
});

describe("errors", () => {
  it("a duplicate address is EEXIST with the operation in the message", () => {
    const eth0 = getLink(podNl, "eth0")!;
    assert.throws(
      () => addAddress(podNl, eth0.index, "10.99.0.2/24"),
      (e: unknown) => e instanceof KernelError && e.errno === EEXIST && e.code === "EEXIST" && /^add address 10\.99\.0\.2\/24 to link #\d+: File exists \(EEXIST\)/.test(e.message),
    );
  });

  it("a duplicate route is EEXIST; replace succeeds", () => {
    assert.throws(
      () => addRoute(podNl, { dst: "0.0.0.0/0", gw: "10.99.0.1" }),
      (e: unknown) => e instanceof KernelError && e.errno === EEXIST && e.message.startsWith("add route 0.0.0.0/0 via 10.99.0.1: File exists (EEXIST)"),
    );
    addRoute(podNl, { dst: "0.0.0.0/0", gw: "10.99.0.1" }, { replace: true });
  });

  it("operations on a missing link are ENODEV; look-ups and deletes of missing links are not errors", () => {
    assert.throws(() => setLinkUp(podNl, 99999), (e: unknown) => e instanceof KernelError && e.errno === ENODEV && /set link #99999 up/.test(e.message));
    assert.equal(getLink(podNl, "nosuchlink"), undefined);
    assert.equal(getLinkByIndex(podNl, 99999), undefined);
    assert.equal(deleteLink(podNl, "nosuchlink"), false);
  });

  it("deleting a missing route is ESRCH", () => {
    assert.throws(() => deleteRoute(podNl, { dst: "10.123.0.0/16" }), (e: unknown) => e instanceof KernelError && e.errno === ESRCH);
  });

  it("an unreachable gateway is refused with the kernel's extended-ack text", () => {
    assert.throws(
      () => addRoute(podNl, { dst: "10.124.0.0/16", gw: "192.0.2.1" }),
      (e: unknown) => e instanceof KernelError && /via 192\.0\.2\.1/.test(e.message) && /kernel: /.test(e.message),
    );
  });
});

describe("routes", () => {
  it("metric, MTU, advmss and table round-trip through list", () => {
    const eth0 = getLink(podNl, "eth0")!;
    addRoute(podNl, { dst: "10.50.0.0/16", gw: "10.99.0.1", metric: 50, mtu: 1400, advmss: 1360, protocol: RTPROT_STATIC });
    addRoute(podNl, { dst: "10.51.0.0/16", oifIndex: eth0.index, table: 1000 });
    const main = listRoutes(podNl, { family: 4, protocol: RTPROT_STATIC });
    assert.deepEqual(
      main.map((r) => ({ dst: r.dst, gw: r.gw, metric: r.metric, mtu: r.mtu, advmss: r.advmss })),
      [{ dst: "10.50.0.0/16", gw: "10.99.0.1", metric: 50, mtu: 1400, advmss: 1360 }],
    );
    const table1000 = listRoutes(podNl, { family: 4, table: 1000 });
    assert.deepEqual(table1000.map((r) => [r.dst, r.oifIndex, r.scope]), [["10.51.0.0/16", eth0.index, 253]]);
    assert.ok(!listRoutes(podNl, { family: 4 }).some((r) => r.dst === "10.51.0.0/16"), "main is the default table");
    assert.match(ip("-n", POD, "route", "show", "10.50.0.0/16"), /proto static metric 50 mtu 1400 advmss 1360/);
    deleteRoute(podNl, { dst: "10.51.0.0/16", table: 1000 });
    assert.deepEqual(listRoutes(podNl, { family: 4, table: 1000 }), []);
  });

  it("deletes a route that iproute2 added (protocol boot, scope link)", () => {
    ip("-n", POD, "route", "add", "10.60.0.0/16", "dev", "eth0");
    deleteRoute(podNl, { dst: "10.60.0.0/16" });
    assert.equal(ip("-n", POD, "route", "show", "10.60.0.0/16").trim(), "");
  });

  it("deleteAddress removes an address", () => {
    const eth0 = getLink(podNl, "eth0")!;
    addAddress(podNl, eth0.index, "10.98.7.7/32");
    deleteAddress(podNl, eth0.index, "10.98.7.7/32");
    assert.ok(!listAddresses(podNl, eth0.index).some((a) => a.cidr === "10.98.7.7/32"));
  });

  it("applies 1,000 routes in a batch, reports a failure at its own index only, and deletes them", () => {
    const routes = Array.from({ length: 1000 }, (_, i) => ({ dst: `10.${100 + (i >> 8)}.${i & 255}.0/24`, gw: "10.99.0.1" }));
    const start = performance.now();
    const added = applyRouteChanges(nodeNl, routes.map((route): RouteChange => ({ op: "replace", route })));
    const elapsed = performance.now() - start;
    assert.equal(added.length, 1000);
    assert.deepEqual(added.filter((r) => r.error), []);
    const listed = new Set(listRoutes(nodeNl, { family: 4 }).filter((r) => r.gw === "10.99.0.1").map((r) => r.dst));
    assert.equal(listed.size, 1000);
    for (const r of routes) assert.ok(listed.has(r.dst), r.dst);
    assert.equal(ip("-n", NODE, "route", "show", "via", "10.99.0.1").trim().split("\n").length, 1000);

    // A change that must fail, between two that must succeed, with the failure in the middle of a datagram.
    const mixed: RouteChange[] = [
      { op: "delete", route: routes[0]! },
      { op: "delete", route: { dst: "10.250.0.0/24" } },
      ...routes.slice(1).map((route): RouteChange => ({ op: "delete", route })),
    ];
    const deleted = applyRouteChanges(nodeNl, mixed);
    const failures = deleted.map((r, i) => (r.error ? i : -1)).filter((i) => i >= 0);
    assert.deepEqual(failures, [1]);
    assert.equal(deleted[1]!.error!.errno, ESRCH);
    assert.match(deleted[1]!.error!.message, /^delete route 10\.250\.0\.0\/24: No such process \(ESRCH\)/);
    assert.equal(listRoutes(nodeNl, { family: 4 }).filter((r) => r.gw === "10.99.0.1").length, 0);
    process.stderr.write(`# kernel-netlink: 1,000 routes batched (koffi) in ${elapsed.toFixed(1)} ms\n`);
  });
});

describe("nft", () => {
  it("applies a script inside a namespace and lists it back", () => {
    runNft("table inet pnt_k_test {\n  chain post {\n    type nat hook postrouting priority 100; policy accept;\n    ip saddr 10.99.0.0/24 masquerade\n  }\n}\n", nodePath);
    const listed = nftListTable("inet", "pnt_k_test", nodePath);
    assert.ok(listed);
    assert.match(listed, /ip saddr 10\.99\.0\.0\/24 masquerade/);
    assert.equal(nftListTable("inet", "pnt_k_test", podPath), undefined, "not visible in another namespace");
  });

  it("throws NftError carrying nft's stderr on a bad script, and leaves no temp file", () => {
    assert.throws(
      () => runNft("table inet pnt_k_test { chain x { nonsense here } }\n", nodePath),
      (e: unknown) => e instanceof NftError && /Error/.test(e.stderr) && e.exitCode === 1,
    );
    const leftovers = execFileSync("sh", ["-c", `ls /tmp | grep -c '^podnet-nft-${process.pid}-' || true`], { encoding: "utf8" }).trim();
    assert.equal(leftovers, "0");
  });
});

describe("delete", () => {
  it("deleting the host end removes the pair from both namespaces", () => {
    assert.equal(deleteLink(nodeNl, "pntveth0"), true);
    assert.equal(getLink(nodeNl, "pntveth0"), undefined);
    assert.equal(getLink(podNl, "eth0"), undefined);
    assert.equal(deleteLink(nodeNl, "pntveth0"), false);
  });
});
