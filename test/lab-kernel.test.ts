// The kernel pieces the lab builds on (src/kernel/named-netns.ts, netns-exec.ts, veth.ts, setSysctlIn),
// against the real kernel, in namespaces this test creates and removes. Needs root.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { addAddress } from "../src/kernel/address.ts";
import { ensureBridge, getLink, setLinkUp } from "../src/kernel/link.ts";
import { createNamedNetns, deleteNamedNetns, listNamedNetns, namedNetnsInode, namedNetnsPath, validateNetnsName } from "../src/kernel/named-netns.ts";
import { NetlinkSocket } from "../src/kernel/netlink/socket.ts";
import { argvInNamedNetns, argvInNetnsPath } from "../src/kernel/netns-exec.ts";
import { listRoutes } from "../src/kernel/route.ts";
import { getSysctl, getSysctlIn, setSysctlIn } from "../src/kernel/sysctl.ts";
import { createVethWithPeerIn } from "../src/kernel/veth.ts";

const prefix = `pnt-lk-${randomBytes(3).toString("hex")}-`;
const created: string[] = [];

async function netns(tag: string): Promise<string> {
  const name = `${prefix}${tag}`;
  created.push(name);
  await createNamedNetns(name);
  return name;
}

function run(argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const [file, ...args] = argv;
  const r = spawnSync(file!, args, { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

after(async () => {
  for (const name of created) if (existsSync(namedNetnsPath(name))) await deleteNamedNetns(name);
  assert.deepEqual(listNamedNetns({ includeStale: true }).filter((n) => n.startsWith(prefix)), [], "no namespace of this test is left");
});

test("a named namespace is created with lo up, listed, has an inode, and is gone after delete", async () => {
  const name = await netns("a");
  assert.ok(listNamedNetns().includes(name));
  assert.ok(existsSync(namedNetnsPath(name)));
  const inode = namedNetnsInode(name);
  assert.ok(inode !== undefined && inode > 0);
  const nl = NetlinkSocket.open(namedNetnsPath(name));
  try {
    assert.equal(getLink(nl, "lo")?.up, true);
  } finally {
    nl.close();
  }
  // The kernel's own view from inside: the process runs in that very namespace.
  const inside = run(argvInNamedNetns(name, ["readlink", "/proc/self/ns/net"]));
  assert.equal(inside.stdout.trim(), `net:[${inode}]`);
  assert.equal(run(argvInNetnsPath(namedNetnsPath(name), ["readlink", "/proc/self/ns/net"])).stdout.trim(), `net:[${inode}]`);

  await assert.rejects(createNamedNetns(name), /exists/, "a taken name is refused");
  await deleteNamedNetns(name);
  assert.equal(listNamedNetns().includes(name), false);
  assert.equal(namedNetnsInode(name), undefined);
  await assert.rejects(deleteNamedNetns(name), new RegExp(name));
});

test("a stale /run/netns file (its mount gone) is not listed as live, is listed for cleaners, and is removed by delete", async () => {
  const name = await netns("st");
  const umount = run(["umount", namedNetnsPath(name)]);
  assert.equal(umount.status, 0, umount.stderr);
  assert.ok(existsSync(namedNetnsPath(name)), "the file stays behind");
  assert.equal(listNamedNetns().includes(name), false);
  assert.equal(namedNetnsInode(name), undefined);
  assert.ok(listNamedNetns({ includeStale: true }).includes(name));
  await deleteNamedNetns(name);
  assert.equal(existsSync(namedNetnsPath(name)), false);
});

test("bad namespace names are refused before anything is run", async () => {
  for (const bad of ["", ".", "..", "a/b", "a b", "x".repeat(256)]) {
    assert.ok(validateNetnsName(bad), `"${bad.slice(0, 10)}" is refused`);
    await assert.rejects(createNamedNetns(bad));
  }
  assert.throws(() => argvInNamedNetns("../etc", ["true"]));
  assert.throws(() => argvInNetnsPath("relative/path", ["true"]));
  assert.deepEqual(listNamedNetns().filter((n) => n.startsWith(prefix)), []);
});

test("a veth with its peer in another namespace, on a bridge, carries traffic; a sysctl is set only in its namespace", async () => {
  const sw = await netns("sw");
  const host = await netns("h");
  const rootForwarding = getSysctl("net.ipv4.ip_forward");
  const swNl = NetlinkSocket.open(namedNetnsPath(sw));
  const hostNl = NetlinkSocket.open(namedNetnsPath(host));
  try {
    const bridge = ensureBridge(swNl, { name: "br0" });
    addAddress(swNl, bridge.index, "192.0.2.1/24");
    createVethWithPeerIn(swNl, { name: "port1", masterIndex: bridge.index, peer: { name: "eth0", nsPath: namedNetnsPath(host) } });
    const port = getLink(swNl, "port1");
    assert.equal(port?.masterIndex, bridge.index);
    assert.equal(port?.up, true);
    const eth0 = getLink(hostNl, "eth0");
    assert.ok(eth0, "the peer was created inside the host namespace");
    assert.equal(eth0.up, false, "the peer starts down");
    addAddress(hostNl, eth0.index, "192.0.2.2/24");
    setLinkUp(hostNl, eth0.index);
    assert.ok(listRoutes(hostNl, { family: 4 }).some((r) => r.dst === "192.0.2.0/24" && r.oifIndex === eth0.index));
    const ping = run(argvInNamedNetns(host, ["ping", "-c", "1", "-W", "2", "192.0.2.1"]));
    assert.equal(ping.status, 0, ping.stdout + ping.stderr);

    const flipped = rootForwarding === "1" ? "0" : "1";
    setSysctlIn(namedNetnsPath(host), "net.ipv4.ip_forward", flipped);
    assert.equal(getSysctlIn(namedNetnsPath(host), "net.ipv4.ip_forward"), flipped);
    assert.equal(getSysctl("net.ipv4.ip_forward"), rootForwarding, "the root namespace is untouched");
  } finally {
    swNl.close();
    hostNl.close();
  }
});
