// Namespace ids (`ip netns list-id`): a namespace names its peers by small integers, and a veth reports
// its peer's namespace that way (IFLA_LINK_NETNSID). RTM_GETNSID with a namespace's fd asks the id the
// socket's namespace uses for it, which tells two veths with the same peer index apart.

import { AF_UNSPEC, close } from "./libc.ts";
import { attr, attrMap, readS32, u32 } from "./netlink/codec.ts";
import type { NetlinkSocket } from "./netlink/socket.ts";
import { openNetns } from "./netns.ts";

const RTM_NEWNSID = 88;
const RTM_GETNSID = 90;
const NETNSA_NSID = 1;
const NETNSA_FD = 3;
/** struct rtgenmsg, padded to 4 bytes as the kernel reads it. */
const RTGENMSG_LEN = 4;

/** The id the socket's namespace has for the namespace at nsPath, or undefined when it has assigned none. */
export function netnsIdOf(nl: NetlinkSocket, nsPath: string): number | undefined {
  const fd = openNetns(nsPath);
  try {
    const header = new Uint8Array(RTGENMSG_LEN);
    header[0] = AF_UNSPEC;
    const replies = nl.request({ type: RTM_GETNSID, flags: 0, header, attrs: [attr(NETNSA_FD, u32(fd))] }, `get netns id of ${nsPath}`);
    const reply = replies.find((m) => m.type === RTM_NEWNSID);
    const id = reply ? attrMap(reply.payload.subarray(RTGENMSG_LEN)).get(NETNSA_NSID) : undefined;
    if (!id) return undefined;
    const value = readS32(id);
    return value < 0 ? undefined : value;
  } finally {
    close(fd);
  }
}
