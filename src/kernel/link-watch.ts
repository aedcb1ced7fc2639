// Watching for the kernel's announcement that a link is gone (RTM_DELLINK on the RTNLGRP_LINK
// multicast group), so a caller can go on before the deleting thread's RTM_DELLINK returns.
//
// Why: deleting a veth holds its caller 13-23 ms, but the device is gone from view after 1-2 ms. The
// kernel unlists both ends, closes them, runs the unregister notifiers (the bridge lets go of the
// port, the addresses and routes go) and announces each device's removal while it holds the RTNL;
// what follows, before the request's ACK, is an expedited RCU grace period and, after the RTNL is
// released, netdev_run_todo's rcu_barrier() and the wait for the last references: the freeing of
// what nobody can reach any more (net/core/dev.c, unregister_netdevice_many_notify and
// netdev_run_todo; measured here with `ip -ts monitor link`: the announcement 0.7-3.6 ms after the
// request, the ACK after 13-23 ms). Once announced, the deletion cannot fail.
//
// The socket belongs to the namespace it was opened in, for its whole life. Open it before starting
// the deletion (the announcement is not kept for late subscribers) and close it after.

import {
  AF_NETLINK,
  AF_UNSPEC,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_SOCKET,
  SysError,
  bind,
  close,
  errnoName,
  recvWithFlags,
  setsockopt,
  setsockoptInt,
  socket,
} from "./libc.ts";
import { RTM_DELLINK, decodeIfInfoMsg, parseAttrs, parseMessages, readCString } from "./netlink/codec.ts";

const NETLINK_ROUTE = 0;
const RTMGRP_LINK = 1;
const SO_RCVTIMEO = 20;
const SO_RCVBUFFORCE = 33;
const IFINFOMSG_LEN = 16;
const IFLA_IFNAME = 3;
/** Room for a burst of link events from pods added and deleted at once. */
const RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024;

export class LinkDeletionWatch {
  private readonly buffer = new Uint8Array(64 * 1024);
  private closed = false;

  private constructor(private readonly fd: number) {}

  /**
   * Subscribes to link events in the caller's namespace. `pollMs` bounds how long a wait goes
   * without asking its `settled` callback.
   */
  static open(pollMs = 1): LinkDeletionWatch {
    const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    try {
      const address = new Uint8Array(12);
      const view = new DataView(address.buffer);
      view.setUint16(0, AF_NETLINK, true);
      view.setUint32(8, RTMGRP_LINK, true);
      bind(fd, address);
      try {
        setsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES);
      } catch {
        // Without CAP_NET_ADMIN the default buffer stays; an overflow only makes waits take the slow way.
      }
      const timeout = new Uint8Array(16); // struct timeval: tv_sec, tv_usec (64-bit each)
      new DataView(timeout.buffer).setBigInt64(8, BigInt(pollMs * 1000), true);
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout);
    } catch (error) {
      close(fd);
      throw error;
    }
    return new LinkDeletionWatch(fd);
  }

  /**
   * Waits until the kernel announces that the link `name` was deleted (true), or until `settled`
   * returns true first (false): the deletion ended without an announcement (there was no such link,
   * it failed), or events were lost to a full buffer and the announcement may have been among them.
   */
  waitDeleted(name: string, settled: () => boolean): boolean {
    for (;;) {
      let length: number;
      try {
        length = recvWithFlags(this.fd, this.buffer, 0);
      } catch (error) {
        const code = error instanceof SysError ? errnoName(error.errno) : "";
        if (code === "EAGAIN" || code === "EINTR") {
          if (settled()) return false;
          continue;
        }
        if (code === "ENOBUFS") return false;
        throw error;
      }
      for (const msg of parseMessages(this.buffer.subarray(0, length))) {
        if (msg.type !== RTM_DELLINK || msg.payload.byteLength < IFINFOMSG_LEN) continue;
        // A bridge announces a port leaving it as an RTM_DELLINK of family AF_BRIDGE; the device's own is AF_UNSPEC.
        if (decodeIfInfoMsg(msg.payload).family !== AF_UNSPEC) continue;
        const ifname = parseAttrs(msg.payload.subarray(IFINFOMSG_LEN)).find((a) => a.type === IFLA_IFNAME);
        if (ifname && readCString(ifname.data) === name) return true;
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}
