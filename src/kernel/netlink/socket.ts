// A synchronous NETLINK_ROUTE socket: request/ACK, dumps, and batches of requests packed
// into large datagrams. The socket belongs to the network namespace it was created in, for
// its whole life, whatever namespace the thread is in later.
import {
  AF_NETLINK,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_SOCKET,
  SysError,
  bind,
  close,
  describeErrno,
  errnoName,
  recvWithFlags,
  send,
  setsockoptInt,
  socket,
} from "../libc.ts";
import { withNetns } from "../netns.ts";
import {
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  decodeError,
  encodeMessage,
  encodeMessageInto,
  messageLength,
  parseMessages,
  type NlMessage,
  type NlRequest,
} from "./codec.ts";

const NETLINK_ROUTE = 0;
/** nfnetlink: nf_tables and the other netfilter subsystems. */
export const NETLINK_NETFILTER = 12;
const SO_SNDBUFFORCE = 32;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const SO_RCVBUFFORCE = 33;
const MSG_TRUNC = 0x20;
const NLM_F_DUMP_INTR = 0x10;

/** Datagram size for batches: large enough to amortise the syscall, small enough for one skb. */
const BATCH_DATAGRAM_BYTES = 32 * 1024;
const RECEIVE_BUFFER_BYTES = 256 * 1024;
/** Socket receive buffer: room for the error replies of a whole batch datagram. */
const SOCKET_RCVBUF_BYTES = 4 * 1024 * 1024;
const DUMP_ATTEMPTS = 3;

/** A request the kernel refused. `op` names the operation and the object it was about. */
export class KernelError extends Error {
  readonly errno: number;
  readonly op: string;
  constructor(op: string, errno: number, extMessage?: string) {
    super(`${op}: ${describeErrno(errno)}${extMessage ? ` (kernel: ${extMessage})` : ""}`);
    this.name = "KernelError";
    this.errno = errno;
    this.op = op;
  }
  /** The symbolic errno, e.g. "EEXIST". */
  get code(): string {
    return errnoName(this.errno);
  }
}

/** One request in a batch, with the description used if the kernel refuses it. */
export interface BatchItem {
  request: NlRequest;
  op: string;
}

export class NetlinkSocket {
  private readonly fd: number;
  private seq: number;
  private closed = false;
  private readonly buffer = new Uint8Array(RECEIVE_BUFFER_BYTES);

  private constructor(fd: number) {
    this.fd = fd;
    // Start from a time-derived sequence so replies to an earlier process's socket can never match.
    this.seq = (Date.now() & 0xffff) << 12;
  }

  private sndbuf = 0;

  /** Opens a NETLINK_ROUTE (or `protocol`) socket in the current namespace, or inside `nsPath` if given. */
  static open(nsPath?: string, protocol = NETLINK_ROUTE): NetlinkSocket {
    const create = () => createSocket(protocol);
    const fd = nsPath === undefined ? create() : withNetns(nsPath, create);
    return new NetlinkSocket(fd);
  }

  /**
   * Sends one nfnetlink batch (BATCH_BEGIN, messages, BATCH_END, already encoded, with sequence
   * numbers 0…n+1 that this adds its own base to) in one datagram: the kernel commits or aborts
   * it as a whole. Only the last message asks for an ACK: nfnetlink reports a failed message
   * unasked and delivers every report of a batch (the commit's own error first) before that ACK,
   * so it means the whole batch is settled — and 100,000 messages do not flood the receive
   * buffer with ACKs. Throws the first KernelError, named by `opOf(index of the message)`.
   */
  nfBatch(batch: Uint8Array, opOf: (index: number) => string): void {
    const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
    if (batch.byteLength > this.sndbuf) {
      // The whole batch is one skb, so the send buffer must hold it (the FORCE variant needs
      // CAP_NET_ADMIN, which writing nf_tables needs anyway).
      const size = Math.max(batch.byteLength * 2, SOCKET_RCVBUF_BYTES);
      setsockoptInt(this.fd, SOL_SOCKET, SO_SNDBUFFORCE, size);
      this.sndbuf = size;
    }
    const base = this.seq + 1;
    let count = 0;
    for (let offset = 0; offset < batch.byteLength; count++) {
      view.setUint32(offset + 8, (base + view.getUint32(offset + 8, true)) >>> 0, true);
      offset += view.getUint32(offset, true);
    }
    this.seq = (base + count - 1) >>> 0;
    const lastSeq = this.seq - 1; // the last message before BATCH_END
    this.sendAll(batch);
    let failure: KernelError | undefined;
    for (;;) {
      for (const msg of this.receive()) {
        if (msg.type !== NLMSG_ERROR || msg.seq < base || msg.seq > lastSeq + 1) continue;
        const error = decodeError(msg);
        if (error.errno !== 0 && failure === undefined) {
          const op = msg.seq === base ? "commit" : opOf(msg.seq - base - 1);
          failure = new KernelError(op, error.errno, error.extMessage);
        }
        if (msg.seq === lastSeq) {
          if (failure) throw failure;
          return;
        }
      }
    }
  }

  /** Sends one request and waits for its ACK; returns any replies that came before the ACK. */
  request(req: NlRequest, op: string): NlMessage[] {
    const seq = this.nextSeq();
    this.sendAll(encodeMessage({ ...req, flags: req.flags | NLM_F_REQUEST | NLM_F_ACK }, seq));
    const replies: NlMessage[] = [];
    for (;;) {
      for (const msg of this.receive()) {
        if (msg.seq !== seq) continue;
        if (msg.type === NLMSG_ERROR) {
          const error = decodeError(msg);
          if (error.errno !== 0) throw new KernelError(op, error.errno, error.extMessage);
          return replies;
        }
        if (msg.type === NLMSG_NOOP) continue;
        replies.push(msg);
      }
    }
  }

  /** Sends a dump request and collects every message until NLMSG_DONE. */
  dump(req: NlRequest, op: string): NlMessage[] {
    for (let attempt = 1; ; attempt++) {
      const { messages, interrupted } = this.dumpOnce(req, op);
      // The kernel flags a dump whose table changed while it was being read; ask again.
      if (!interrupted || attempt >= DUMP_ATTEMPTS) return messages;
    }
  }

  private dumpOnce(req: NlRequest, op: string): { messages: NlMessage[]; interrupted: boolean } {
    const seq = this.nextSeq();
    this.sendAll(encodeMessage({ ...req, flags: req.flags | NLM_F_REQUEST | NLM_F_DUMP }, seq));
    const messages: NlMessage[] = [];
    let interrupted = false;
    for (;;) {
      for (const msg of this.receive()) {
        if (msg.seq !== seq) continue;
        if (msg.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (msg.type === NLMSG_DONE) {
          const status = msg.payload.byteLength >= 4 ? new DataView(msg.payload.buffer, msg.payload.byteOffset, 4).getInt32(0, true) : 0;
          if (status < 0) throw new KernelError(op, -status);
          return { messages, interrupted };
        }
        if (msg.type === NLMSG_ERROR) {
          const error = decodeError(msg);
          throw new KernelError(op, error.errno, error.extMessage);
        }
        if (msg.type === NLMSG_NOOP) continue;
        messages.push(msg);
      }
    }
  }

  /**
   * Sends many requests packed into ~32 KiB datagrams. Only the last request of each
   * datagram asks for an ACK; the kernel reports failures of the others unasked, and
   * handles a datagram's messages in order, so the final ACK marks the datagram as done.
   * Returns one entry per item: undefined for success or the KernelError.
   */
  batch(items: readonly BatchItem[]): (KernelError | undefined)[] {
    const results: (KernelError | undefined)[] = new Array(items.length).fill(undefined);
    const datagram = new Uint8Array(BATCH_DATAGRAM_BYTES);
    let start = 0;
    while (start < items.length) {
      // Choose how many items fit in this datagram (at least one, even if oversized).
      let end = start;
      let bytes = 0;
      while (end < items.length) {
        const length = messageLength((items[end] as BatchItem).request);
        if (end > start && bytes + length > BATCH_DATAGRAM_BYTES) break;
        bytes += length;
        end++;
      }
      const out = bytes <= datagram.byteLength ? datagram : new Uint8Array(bytes);
      const firstSeq = this.seq + 1;
      let offset = 0;
      for (let i = start; i < end; i++) {
        const item = items[i] as BatchItem;
        const ack = i === end - 1 ? NLM_F_ACK : 0;
        offset = encodeMessageInto(out, offset, { ...item.request, flags: item.request.flags | NLM_F_REQUEST | ack }, this.nextSeq());
      }
      const lastSeq = this.seq;
      this.sendAll(out.subarray(0, offset));
      let done = false;
      while (!done) {
        for (const msg of this.receive()) {
          if (msg.type !== NLMSG_ERROR || msg.seq < firstSeq || msg.seq > lastSeq) continue;
          const error = decodeError(msg);
          const index = start + (msg.seq - firstSeq);
          if (error.errno !== 0) results[index] = new KernelError((items[index] as BatchItem).op, error.errno, error.extMessage);
          if (msg.seq === lastSeq) done = true;
        }
      }
      start = end;
    }
    return results;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    if (this.seq === 0) this.seq = 1;
    return this.seq;
  }

  private sendAll(data: Uint8Array): void {
    if (this.closed) throw new Error("netlink: socket is closed");
    const sent = send(this.fd, data);
    if (sent !== data.byteLength) throw new Error(`netlink: short send (${sent} of ${data.byteLength} bytes)`);
  }

  private receive(): NlMessage[] {
    if (this.closed) throw new Error("netlink: socket is closed");
    // MSG_TRUNC makes recv report the datagram's full size, so truncation cannot go unnoticed.
    let length: number;
    try {
      length = recvWithFlags(this.fd, this.buffer, MSG_TRUNC);
    } catch (error) {
      if (error instanceof SysError && errnoName(error.errno) === "ENOBUFS") {
        throw new Error("netlink: replies were lost because the socket's receive buffer overflowed (ENOBUFS)");
      }
      throw error;
    }
    if (length > this.buffer.byteLength) throw new Error(`netlink: datagram of ${length} bytes exceeds the ${this.buffer.byteLength}-byte buffer`);
    // Copy so parsed messages stay valid after the next receive reuses the buffer.
    return parseMessages(this.buffer.slice(0, length));
  }
}

function createSocket(protocol: number): number {
  const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  try {
    // sockaddr_nl with pid 0: the kernel assigns the port id.
    const address = new Uint8Array(12);
    new DataView(address.buffer).setUint16(0, AF_NETLINK, true);
    bind(fd, address);
    // Error replies carry only the failed request's header, not the whole message, and the
    // kernel's explanation text when it has one.
    setsockoptInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
    setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
    try {
      setsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_RCVBUF_BYTES);
    } catch {
      // Without CAP_NET_ADMIN the default buffer stays; batches still work, with smaller margins.
    }
  } catch (error) {
    close(fd);
    throw error;
  }
  return fd;
}
