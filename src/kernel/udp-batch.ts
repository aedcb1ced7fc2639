// Batched UDP receive and send (recvmmsg / sendmmsg) on a socket descriptor, for a server whose
// per-datagram cost in Node is the bottleneck: Node's dgram makes a Buffer, a remote-info object
// with a formatted address string, and a JavaScript callback per datagram, and one sendmsg per
// reply. Here one call moves up to `slots` datagrams each way, into and out of fixed native memory
// that JavaScript reads and writes in place: no allocation per datagram, and the sender's address
// goes back to the kernel as the bytes it came as.
//
// Linux, 64-bit little-endian (x86-64, arm64), Node with koffi only; `openUdpBatch` returns
// undefined elsewhere and callers keep their dgram path. Struct layouts from <sys/socket.h>,
// <bits/types/struct_iovec.h> (man 2 recvmmsg): on LP64, struct msghdr is 56 bytes (name 0,
// namelen 8, iov 16, iovlen 24, control 32, controllen 40, flags 48) and struct mmsghdr 64 (msg_len 56).

import { describeErrno, loadKoffi } from "./libc.ts";

const MMSGHDR = 64;
const IOVEC = 16;
/** Room for a sockaddr_in6 (28 bytes), rounded up. */
const NAME = 32;
const MSG_DONTWAIT = 0x40;
/** msg_flags: the datagram was longer than the buffer. */
export const MSG_TRUNC = 0x20;
const EAGAIN = 11;

export interface UdpBatchOptions {
  /** Datagrams per call each way. */
  slots?: number;
  /** Bytes per received datagram (longer ones arrive cut, with MSG_TRUNC). */
  receiveSize?: number;
  /** Bytes per reply. */
  sendSize?: number;
}

/**
 * Fixed native memory for `slots` datagrams in and out, and the two calls. `bytes` views all of it:
 * received datagram i is at `receiveOffset(i)` (length `receivedLength(i)`), the reply for it is
 * written at `sendOffset(j)` with `setReply(j, from, length)`.
 */
export class UdpBatch {
  readonly bytes: Uint8Array;
  readonly slots: number;
  readonly receiveSize: number;
  readonly sendSize: number;
  private readonly view: DataView;
  private readonly memory: unknown;
  private readonly recvmmsg: (fd: number, vec: unknown, vlen: number, flags: number, timeout: null) => number;
  private readonly sendmmsg: (fd: number, vec: unknown, vlen: number, flags: number) => number;
  private readonly errno: () => number;
  // Offsets into `bytes` of each region.
  private readonly recvVec: number;
  private readonly recvNames: number;
  private readonly recvData: number;
  private readonly sendVec: number;
  private readonly sendNames: number;
  private readonly sendIov: number;
  private readonly sendData: number;

  constructor(private readonly fd: number, options: UdpBatchOptions = {}) {
    this.slots = options.slots ?? 64;
    this.receiveSize = options.receiveSize ?? 2048;
    this.sendSize = options.sendSize ?? 4096;
    const n = this.slots;
    // Layout: receive mmsghdrs, iovecs, names, data; then the same for sending.
    this.recvVec = 0;
    const recvIov = this.recvVec + n * MMSGHDR;
    this.recvNames = recvIov + n * IOVEC;
    this.recvData = this.recvNames + n * NAME;
    this.sendVec = this.recvData + n * this.receiveSize;
    this.sendIov = this.sendVec + n * MMSGHDR;
    this.sendNames = this.sendIov + n * IOVEC;
    this.sendData = this.sendNames + n * NAME;
    const total = this.sendData + n * this.sendSize;

    const koffi = loadKoffi();
    const lib = koffi.load("libc.so.6");
    this.recvmmsg = lib.func("int recvmmsg(int fd, void *msgvec, unsigned int vlen, int flags, void *timeout)") as never;
    this.sendmmsg = lib.func("int sendmmsg(int fd, void *msgvec, unsigned int vlen, int flags)") as never;
    this.errno = () => koffi.errno();
    this.memory = koffi.alloc("uint8_t", total);
    const base = koffi.address(this.memory);
    this.bytes = new Uint8Array(koffi.view(this.memory, total));
    this.bytes.fill(0);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    const pointer = (offset: number, at: number): void => this.view.setBigUint64(at, base + BigInt(offset), true);
    for (let i = 0; i < n; i++) {
      // Receive: name buffer, one iovec over the slot's data.
      let h = this.recvVec + i * MMSGHDR;
      let iov = recvIov + i * IOVEC;
      pointer(this.recvNames + i * NAME, h);
      pointer(iov, h + 16);
      this.view.setBigUint64(h + 24, 1n, true);
      pointer(this.recvData + i * this.receiveSize, iov);
      this.view.setBigUint64(iov + 8, BigInt(this.receiveSize), true);
      // Send: the same shape; lengths are set per reply.
      h = this.sendVec + i * MMSGHDR;
      iov = this.sendIov + i * IOVEC;
      pointer(this.sendNames + i * NAME, h);
      pointer(iov, h + 16);
      this.view.setBigUint64(h + 24, 1n, true);
      pointer(this.sendData + i * this.sendSize, iov);
    }
    this.free = () => koffi.free(this.memory);
  }

  private readonly free: () => void;
  private closed = false;

  /** Release the native memory (the descriptor belongs to whoever opened it). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.free();
  }

  /**
   * Take the datagrams waiting on the socket, up to `limit` (default and at most `slots`), without
   * blocking. Returns how many arrived (0 when none are waiting).
   */
  receive(limit = this.slots): number {
    if (this.closed) return 0;
    const n = Math.min(limit, this.slots);
    for (let i = 0; i < n; i++) {
      const h = this.recvVec + i * MMSGHDR;
      this.view.setUint32(h + 8, NAME, true);
      this.view.setInt32(h + 48, 0, true);
    }
    const got = this.recvmmsg(this.fd, this.memory, n, MSG_DONTWAIT, null);
    if (got < 0) {
      const errno = this.errno();
      if (errno === EAGAIN) return 0;
      throw new Error(`recvmmsg: ${describeErrno(errno)}`);
    }
    return got;
  }

  receiveOffset(i: number): number {
    return this.recvData + i * this.receiveSize;
  }

  receivedLength(i: number): number {
    return this.view.getUint32(this.recvVec + i * MMSGHDR + 56, true);
  }

  receivedFlags(i: number): number {
    return this.view.getInt32(this.recvVec + i * MMSGHDR + 48, true);
  }

  /** The sender of datagram i as an address and port (for replies that leave through another path). */
  sender(i: number): { address: string; port: number; family: 4 | 6 } {
    const at = this.recvNames + i * NAME;
    const family = this.view.getUint16(at, true);
    const port = this.view.getUint16(at + 2, false);
    const b = this.bytes;
    if (family === 2) return { address: `${b[at + 4]}.${b[at + 5]}.${b[at + 6]}.${b[at + 7]}`, port, family: 4 };
    const groups: string[] = [];
    for (let g = 0; g < 8; g++) groups.push(this.view.getUint16(at + 8 + g * 2, false).toString(16));
    return { address: groups.join(":"), port, family: 6 };
  }

  sendOffset(j: number): number {
    return this.sendData + j * this.sendSize;
  }

  /** Reply slot j goes to the sender of received datagram i, `length` bytes from sendOffset(j). */
  setReply(j: number, i: number, length: number): void {
    const h = this.sendVec + j * MMSGHDR;
    const namelen = this.view.getUint32(this.recvVec + i * MMSGHDR + 8, true);
    const from = this.recvNames + i * NAME;
    this.bytes.copyWithin(this.sendNames + j * NAME, from, from + namelen);
    this.view.setUint32(h + 8, namelen, true);
    this.view.setUint32(this.sendIov + j * IOVEC + 8, length, true);
  }

  /**
   * Reply slot j goes to an IPv4 sender given as text (a datagram that arrived another way, through
   * dgram), `length` bytes from sendOffset(j). False, and nothing set, when `address` is not a
   * dotted quad. Parses without allocating: it runs once per wakeup of a busy server.
   */
  setReplyToIPv4(j: number, address: string, port: number, length: number): boolean {
    const at = this.sendNames + j * NAME;
    let octet = 0;
    let digits = 0;
    let index = 0;
    for (let k = 0; k <= address.length; k++) {
      const c = k < address.length ? address.charCodeAt(k) : 46;
      if (c === 46) {
        if (digits === 0 || octet > 255 || index > 3) return false;
        this.bytes[at + 4 + index++] = octet;
        octet = 0;
        digits = 0;
      } else if (c >= 48 && c <= 57 && digits < 3) {
        octet = octet * 10 + (c - 48);
        digits++;
      } else return false;
    }
    if (index !== 4) return false;
    // struct sockaddr_in: family (host order), port (network order), address, 8 bytes of zero.
    this.view.setUint16(at, 2, true);
    this.view.setUint16(at + 2, port, false);
    for (let k = 8; k < 16; k++) this.bytes[at + k] = 0;
    this.view.setUint32(this.sendVec + j * MMSGHDR + 8, 16, true);
    this.view.setUint32(this.sendIov + j * IOVEC + 8, length, true);
    return true;
  }

  /**
   * Send reply slots 0..count-1, in one call unless the kernel takes fewer. Returns how many left;
   * the rest are dropped when the socket's send buffer is full (EAGAIN; UDP: the client asks again).
   */
  send(count: number): number {
    let sent = 0;
    while (sent < count && !this.closed) {
      const n = this.sendmmsg(this.fd, this.sendSlotsPointer(sent), count - sent, MSG_DONTWAIT);
      if (n < 0) {
        const errno = this.errno();
        if (errno === EAGAIN) return sent;
        throw new Error(`sendmmsg: ${describeErrno(errno)}`);
      }
      if (n === 0) return sent;
      sent += n;
    }
    return sent;
  }

  private sendPointers = new Map<number, unknown>();

  /** A pointer to send slot `first`'s mmsghdr (slot 0's is made once; others only after a partial send). */
  private sendSlotsPointer(first: number): unknown {
    let pointer = this.sendPointers.get(first);
    if (pointer === undefined) {
      const koffi = loadKoffi();
      const address = koffi.address(this.memory) + BigInt(this.sendVec + first * MMSGHDR);
      pointer = koffi.decode(koffiPointerTo(address), "void *");
      this.sendPointers.set(first, pointer);
    }
    return pointer;
  }
}

/** A BigUint64Array holding an address, so koffi can decode it as a `void *` value. */
function koffiPointerTo(address: bigint): BigUint64Array {
  return new BigUint64Array([address]);
}

/** A batch over `fd`, or undefined where this path is not available (then use dgram alone). */
export function openUdpBatch(fd: number, options?: UdpBatchOptions): UdpBatch | undefined {
  if (process.platform !== "linux" || (process.arch !== "x64" && process.arch !== "arm64")) return undefined;
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return undefined;
  try {
    return new UdpBatch(fd, options);
  } catch {
    return undefined;
  }
}
