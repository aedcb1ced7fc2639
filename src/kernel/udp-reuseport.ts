// A UDP socket that shares its port with other sockets (SO_REUSEPORT), so several threads can answer
// on one port. Node 20's dgram has no reusePort option (it came in Node 22.12), but dgram wraps an
// existing descriptor: the socket is made here through libc and handed over with bind({ fd }).

import { ipToBytes, parseIp } from "../net/address.ts";
import { AF_INET, AF_INET6, SOCK_CLOEXEC, SOL_SOCKET, bind, close, setsockoptInt, socket } from "./libc.ts";

const SOCK_DGRAM = 2;
/** linux/asm-generic/socket.h */
const SO_REUSEPORT = 15;

/** struct sockaddr_in / sockaddr_in6 for an address and port. */
function sockaddr(host: string, port: number): { family: number; bytes: Uint8Array } {
  const ip = parseIp(host);
  const raw = ipToBytes(ip);
  const v4 = raw.length === 4;
  const addr = new Uint8Array(v4 ? 16 : 28);
  const view = new DataView(addr.buffer);
  view.setUint16(0, v4 ? AF_INET : AF_INET6, true);
  view.setUint16(2, port, false);
  addr.set(raw, v4 ? 4 : 8);
  return { family: v4 ? AF_INET : AF_INET6, bytes: addr };
}

/** A bound UDP socket descriptor with SO_REUSEPORT set, for dgram's bind({ fd }). */
export function reusePortUdpSocket(host: string, port: number): number {
  const address = sockaddr(host, port);
  const fd = socket(address.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    setsockoptInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    bind(fd, address.bytes);
    return fd;
  } catch (err) {
    close(fd);
    throw err;
  }
}
