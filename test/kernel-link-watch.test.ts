// The kernel's announcement of a deleted link (src/kernel/link-watch.ts), against the real kernel in
// a namespace this test creates. The deletions here are synchronous, so the announcement is already
// queued on the watch's socket when the wait starts: the wait must find it among the other events.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { deleteLink } from "../src/kernel/link.ts";
import { LinkDeletionWatch } from "../src/kernel/link-watch.ts";
import { NetlinkSocket } from "../src/kernel/netlink/socket.ts";
import { withNetns } from "../src/kernel/netns.ts";
import { Netns } from "./helpers/netns.ts";

describe("LinkDeletionWatch", () => {
  let ns: Netns;
  before(() => {
    ns = Netns.create("lw");
    ns.ip("link", "add", "lwbr", "type", "bridge");
    ns.ip("link", "set", "lwbr", "up");
  });
  after(() => ns.delete());

  const inNs = <T>(fn: () => T): T => withNetns(ns.path, fn);
  const deleteIn = (name: string): boolean =>
    inNs(() => {
      const nl = NetlinkSocket.open();
      try {
        return deleteLink(nl, name);
      } finally {
        nl.close();
      }
    });

  it("sees the deletion of the link it waits for, and not another's", () => {
    for (const name of ["lwa", "lwb"]) {
      ns.ip("link", "add", name, "type", "veth", "peer", "name", `${name}p`);
      ns.ip("link", "set", name, "master", "lwbr", "up");
    }
    const watch = inNs(() => LinkDeletionWatch.open());
    try {
      assert.equal(deleteIn("lwb"), true);
      let asked = 0;
      // Only lwb is gone: the wait reads its announcements (and the bridge's, of family AF_BRIDGE) and then asks.
      assert.equal(watch.waitDeleted("lwa", () => ++asked > 0), false);
      assert.ok(asked > 0);
      assert.equal(deleteIn("lwa"), true);
      assert.equal(watch.waitDeleted("lwa", () => false), true);
    } finally {
      watch.close();
    }
  });

  it("returns false when the deletion settles without an announcement (no such link)", () => {
    const watch = inNs(() => LinkDeletionWatch.open());
    try {
      assert.equal(deleteIn("lwnone"), false);
      assert.equal(watch.waitDeleted("lwnone", () => true), false);
    } finally {
      watch.close();
    }
  });
});
