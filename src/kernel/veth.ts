// A veth pair whose peer lives in another namespace named by path, for callers that hold paths
// rather than descriptors (the lab's underlay). The peer is created directly inside that namespace
// (moving it afterwards costs ~15 ms) and left down: the kernel refuses to create it up.
import { close } from "./libc.ts";
import { createVethPair } from "./link.ts";
import type { NetlinkSocket } from "./netlink/socket.ts";
import { openNetns } from "./netns.ts";

export function createVethWithPeerIn(
  nl: NetlinkSocket,
  opts: { name: string; masterIndex?: number; mtu?: number; peer: { name: string; nsPath: string } },
): void {
  const fd = openNetns(opts.peer.nsPath);
  try {
    createVethPair(nl, { name: opts.name, masterIndex: opts.masterIndex, mtu: opts.mtu, peer: { name: opts.peer.name, netnsFd: fd } });
  } finally {
    close(fd);
  }
}
