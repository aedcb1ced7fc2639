// A UDP socket that shares its port with other sockets (SO_REUSEPORT), for answering on several
// threads: Node 20's dgram has no reusePort option (it came in Node 22.12), but it wraps an existing
// descriptor, so the socket is made through src/kernel/libc.ts and handed over with bind({ fd }).

import net from "node:net";
import { AF_INET, AF_INET6, SOCK_CLOEXEC, SOL_SOCKET, bind, close, setsockoptInt, socket } from "../kernel/libc.ts";

const SOCK_DGRAM = 2;
/** linux/asm-generic/socket.h */
const SO_REUSEPORT = 15;

function sockaddr(host: string, port: number): Uint8Array {
  if (net.isIPv4(host)) {
    const addr = new Uint8Array(16);
    const view = new DataView(addr.buffer);
    view.setUint16(0, AF_INET, true);
    view.setUint16(2, port, false);
    host.split(".").forEach((octet, i) => (addr[4 + i] = Number(octet)));
    return addr;
  }
  if (!net.isIPv6(host)) throw new Error(`listen address ${host}: not an IP address`);
  const addr = new Uint8Array(28);
  const view = new DataView(addr.buffer);
  view.setUint16(0, AF_INET6, true);
  view.setUint16(2, port, false);
  const halves = host.split("::");
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(":") : [];
  const groups = [...head, ...new Array<string>(8 - head.length - tail.length).fill("0"), ...tail];
  groups.forEach((g, i) => view.setUint16(8 + 2 * i, parseInt(g, 16), false));
  return addr;
}

/** A bound UDP socket descriptor with SO_REUSEPORT set, for dgram's bind({ fd }). */
export function reusePortUdpSocket(host: string, port: number): number {
  const fd = socket(net.isIPv6(host) ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    setsockoptInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    bind(fd, sockaddr(host, port));
    return fd;
  } catch (err) {
    close(fd);
    throw err;
  }
}
