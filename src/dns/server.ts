// `podnet dns`: the DNS server. UDP and TCP on one address; cluster names from the in-memory index,
// everything else through the forwarder; EDNS0, truncation, FORMERR for what cannot be parsed, a
// loop guard, server-side search-path answering, metrics.

import dgram from "node:dgram";
import net from "node:net";
import { isIpv6 } from "../net/address.ts";
import os from "node:os";
import v8 from "node:v8";
import vm from "node:vm";
import { randomBytes } from "node:crypto";
import * as dnsPacket from "dns-packet";
import type { Answer, DecodedPacket, OptAnswer, Question, RecordType } from "dns-packet";
import type { ObjectStore } from "../datastore/objects.ts";
import { AnswerBuilder, type ClusterAnswer } from "./answer.ts";
import { Forwarder, upstreamKey, type ForwardResult, type Upstream } from "./forward.ts";
import { ClusterIndex, type PodsMode } from "./index.ts";
import { DnsMetrics, type QueryCount } from "./metrics.ts";
import { labelsOf } from "./names.ts";
import { udpSocketDescriptor } from "../kernel/udp-reuseport.ts";
import { MSG_TRUNC, openUdpBatch, type UdpBatch } from "../kernel/udp-batch.ts";
import { releaseFreedNativeMemory } from "../kernel/malloc-trim.ts";

export interface DnsServerOptions {
  store: ObjectStore;
  host: string;
  port: number;
  zone?: string;
  ttl?: number;
  pods?: PodsMode;
  upstreams: Upstream[];
  /** Budget for one forwarded resolution, across upstreams; then SERVFAIL. */
  forwardTimeoutMs?: number;
  /** Answer the first step of an ndots:5 search walk in one round trip. */
  autopath?: boolean;
  /** Extra search domains kubelet appends from the node's resolv.conf (they follow `<zone>`). */
  nodeSearch?: string[];
  /** Share the UDP port with other servers (SO_REUSEPORT): one per worker thread. */
  reusePort?: boolean;
  /** Serve TCP too (default); Node 20 cannot share a TCP port between threads, so workers do not. */
  tcp?: boolean;
  /** Send the loop probe (default); workers leave it to the main thread. */
  probe?: boolean;
  /**
   * Move UDP datagrams in batches (recvmmsg/sendmmsg, src/kernel/udp-batch.ts) once one has arrived
   * through dgram (default, where available); false keeps dgram's one callback and one send per datagram.
   */
  batch?: boolean;
  /** Encoded cluster answers kept at most (default ANSWER_CACHE_MAX); the oldest goes first. */
  answerCacheEntries?: number;
  log?: (line: string) => void;
}

const RCODES: Record<string, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };
const OPCODE_MASK = 0x7800;
const UDP_DEFAULT = 512;
/** What we advertise in our OPT (the DNS flag day 2020 size: no fragmentation). */
const OUR_UDP_SIZE = 1232;
const TCP_IDLE_MS = 10_000;
/**
 * Encoded cluster answers kept at most: about 350 bytes each (one Buffer for query and reply, the
 * entry, the map slot), so at most ~7 MiB. Past it the oldest entry goes (a Map iterates in insertion
 * order): a client asking endless distinct names (random 0x20 case, say) cannot grow the process.
 */
export const ANSWER_CACHE_MAX = 20_000;

interface Prepared {
  buffer: Buffer;
  rcode: string;
  type: string;
}

/**
 * An encoded cluster answer, kept until the index changes: the query's bytes after the id → the reply's.
 * Both in one Buffer (query first, reply from `split`): one object per entry instead of two.
 */
interface CachedAnswer {
  generation: number;
  bytes: Buffer;
  split: number;
  rcode: string;
  type: string;
  count: QueryCount;
}

/**
 * FNV-1a over bytes [from, to): the answer cache's key, computed without making a string. Cut to 30
 * bits so that it is a small integer (Smi) on every V8 build: a full 32-bit unsigned value is a heap
 * number half the time, one allocation per query, half of what the hot path allocated. A collision
 * only costs a miss: `cached` compares the query's bytes.
 */
function hashBytes(bytes: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let k = from; k < to; k++) h = Math.imul(h ^ (bytes[k] as number), 0x01000193);
  return h & 0x3fffffff;
}

/** Batches moved per drain before the event loop gets a turn (the TCP side and timers must not starve). */
const DRAIN_ROUNDS = 16;

/** A reply for bytes that are not a usable query: just the header, the id echoed. */
function headerOnlyReply(query: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt16BE(query.readUInt16BE(0), 0);
  const flags = query.readUInt16BE(2);
  out.writeUInt16BE(0x8000 | (flags & (OPCODE_MASK | dnsPacket.RECURSION_DESIRED)) | rcode, 2);
  return out;
}

export class DnsServer {
  readonly index: ClusterIndex;
  readonly metrics = new DnsMetrics();
  readonly forwarder: Forwarder;
  private readonly builder: AnswerBuilder;
  private readonly zoneLabels: string[];
  /** Hash of the query's bytes after the id → answer (a colliding query simply misses). */
  private readonly answerCache = new Map<number, CachedAnswer>();
  private udp: dgram.Socket | undefined;
  private batch: UdpBatch | undefined;
  private tcp: net.Server | undefined;
  private readonly tcpSockets = new Set<net.Socket>();
  private watch: { close(): Promise<void> } | undefined;
  private readonly probes = new Map<string, Upstream>();
  private readonly syncWaiters: (() => void)[] = [];
  private stopped = false;
  private trimTimer: NodeJS.Timeout | undefined;
  private readonly log: (line: string) => void;
  private readonly autopath: boolean;
  private readonly nodeSearch: string[];
  /** Client-visible queries seen, and the subset that arrived over TCP, for the bench. */
  queriesSeen = 0;
  /** Datagrams taken by the batch path (the rest came one by one through dgram). */
  batchedDatagrams = 0;

  /** Whether UDP datagrams move in batches (recvmmsg/sendmmsg) here. */
  get batching(): boolean {
    return this.batch !== undefined;
  }

  constructor(private readonly options: DnsServerOptions) {
    const zone = labelsOf(options.zone ?? "cluster.local").join(".");
    if (zone === "") throw new Error("zone: must not be empty");
    const ttl = options.ttl ?? 5;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 2147483647) throw new Error(`ttl: must be a whole number of seconds, got ${options.ttl}`);
    this.zoneLabels = labelsOf(zone);
    this.index = new ClusterIndex(zone, options.pods ?? "disabled");
    this.builder = new AnswerBuilder({ zone, ttl, pods: options.pods ?? "disabled" });
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.autopath = options.autopath ?? true;
    this.nodeSearch = (options.nodeSearch ?? []).map((d) => labelsOf(d).join(".")).filter((d) => d !== "");
    this.forwarder = new Forwarder({
      upstreams: options.upstreams,
      timeoutMs: options.forwardTimeoutMs ?? 2000,
      onCache: (hit) => (hit ? this.metrics.cacheHits.inc() : this.metrics.cacheMisses.inc()),
      onUpstreamError: (u) => this.metrics.forwardErrors.inc({ upstream: upstreamKey(u) }),
    });
    this.index.onChange = () => this.metrics.services.set(this.index.serviceCount);
  }

  get zone(): string {
    return this.builder.zone;
  }

  /** Encoded cluster answers held now. */
  get answerCacheSize(): number {
    return this.answerCache.size;
  }

  get ready(): boolean {
    return this.index.synced;
  }

  /** The bound address (port 0 in the options picks a free one). */
  get address(): { host: string; port: number } {
    const a = this.udp?.address();
    return { host: a?.address ?? this.options.host, port: a?.port ?? this.options.port };
  }

  async start(): Promise<void> {
    const family = isIpv6(this.options.host) ? 6 : 4;
    this.udp = dgram.createSocket({
      type: family === 6 ? "udp6" : "udp4",
      reuseAddr: false,
      // Replies go to the address a query came from, always an IP literal: skip dns.lookup, which
      // costs a tick and a validation per reply (a visible share at tens of thousands per second).
      lookup: ((address: string, _options: unknown, callback: (err: Error | null, address: string, family: number) => void) => callback(null, address, family)) as never,
    });
    const udp = this.udp;
    udp.on("message", (msg, rinfo) => {
      if (!this.batch) {
        this.onUdp(msg, rinfo);
        return;
      }
      try {
        this.drain(this.batch, msg, rinfo);
      } catch (err) {
        // A receive or send error no datagram path should see (EAGAIN is handled inside): keep
        // serving through dgram alone rather than fail every query the same way.
        this.log(`dns: batched UDP failed (${(err as Error).message}); continuing one datagram at a time`);
        this.batch.close();
        this.batch = undefined;
      }
    });
    udp.on("error", (err) => this.log(`dns: udp error: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      udp.once("error", reject);
      const bound = (): void => {
        udp.off("error", reject);
        resolve();
      };
      if (this.options.reusePort || this.options.batch !== false) {
        // Our own descriptor: SO_REUSEPORT needs it (Node 20's dgram cannot set it), and so does the batch path.
        const fd = udpSocketDescriptor(this.options.host, this.options.port, this.options.reusePort === true);
        if (this.options.batch !== false) this.batch = openUdpBatch(fd);
        udp.bind({ fd }, bound);
      } else udp.bind(this.options.port, this.options.host, bound);
    });
    const port = this.address.port;
    if (this.options.tcp !== false) {
      this.tcp = net.createServer((socket) => this.onTcp(socket));
      const tcp = this.tcp;
      await new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, this.options.host, () => resolve());
      });
    }
    this.refuseSelf();
    // The watch starts in the background: until its first list arrives the server is up but not
    // ready, and answers SERVFAIL for cluster names (a datastore that is down must not keep the
    // port closed, nor make us deny names we have not seen yet).
    void this.openWatch();
    // Watch events, forwarded answers and TCP streams keep freeing C heap in the middle of the arena;
    // a trim walks the arenas in well under a millisecond (measured 0.02-0.3 ms).
    this.trimTimer = setInterval(releaseFreedNativeMemory, 30_000).unref();
    if (this.options.probe !== false) void this.probeLoops();
  }

  private async openWatch(): Promise<void> {
    while (!this.stopped) {
      try {
        const watch = await this.options.store.watchObjects(ClusterIndex.kinds, {
          onSync: (lists, revision) => {
            const first = !this.index.synced;
            this.index.onSync(lists);
            this.answerCache.clear();
            this.metrics.ready.set(1);
            if (first) this.log(`dns: synced at revision ${revision}: ${this.index.serviceCount} services`);
            // The full list (every object as JSON, then parsed) is garbage now; collect it at once
            // so the heap settles at the index's size instead of carrying it until the next major GC.
            setTimeout(settleMemory, 50).unref();
            for (const resolve of this.syncWaiters.splice(0)) resolve();
          },
          onEvent: (event) => this.index.onEvent(event),
          onConnection: (connected) => this.log(`dns: datastore watch ${connected ? "connected" : "broken; answering from the last state"}`),
        });
        if (this.stopped) await watch.close();
        else this.watch = watch;
        // The store held the first full list until its watch was up (after onSync's collection
        // was scheduled, on a slow etcd): collect again now that nothing refers to it; and once more
        // a few seconds on, when the watch's own start-up buffers are gone: on a loaded machine V8
        // kept the heap at 42 MiB (24 used) in some runs where these collections came too early.
        setTimeout(settleMemory, 10).unref();
        setTimeout(settleMemory, 3000).unref();
        return;
      } catch (err) {
        this.log(`dns: cannot watch the datastore (${(err as Error).message}); retrying in 1 s`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Resolves once the first full list is in the index. */
  whenSynced(): Promise<void> {
    if (this.index.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.trimTimer);
    await this.watch?.close().catch(() => undefined);
    this.forwarder.close();
    for (const s of this.tcpSockets) s.destroy();
    await new Promise<void>((resolve) => (this.tcp ? this.tcp.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (this.udp ? this.udp.close(() => resolve()) : resolve()));
    this.batch?.close();
    this.batch = undefined;
  }

  // ---- loop guard

  /**
   * Never forward to ourselves: an upstream that is our own listening address (or any local address
   * when we listen on a wildcard) is dropped up front; that is CoreDNS's `loop` crash with a node
   * whose resolv.conf points at 127.0.0.53 and a DNS listening on it.
   */
  private refuseSelf(): void {
    const { host, port } = this.address;
    const wildcard = host === "0.0.0.0" || host === "::";
    const local = new Set<string>(["127.0.0.1", "::1"]);
    for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) local.add(a.address);
    for (const u of this.forwarder.activeUpstreams) {
      if (u.port !== port) continue;
      const self = u.host === host || (wildcard && (local.has(u.host) || u.host.startsWith("127.")));
      if (self) {
        this.forwarder.disable(u, "is this server's own address");
        this.log(`dns: upstream ${upstreamKey(u)} is this server's own address; not forwarding there`);
      }
    }
  }

  /**
   * The loop probe, as CoreDNS's `loop` plugin: send a random name to each upstream; if that name
   * comes back to us as a query, the upstream forwards to us, and it is taken out of use.
   */
  private async probeLoops(): Promise<void> {
    for (const upstream of this.forwarder.activeUpstreams) {
      const name = `${randomBytes(6).toString("hex")}.${randomBytes(6).toString("hex")}.podnet-loop-probe`;
      this.probes.set(name, upstream);
      await this.forwarder.probe(upstream, name, "HINFO");
    }
  }

  /** Probe names in flight, so that worker threads can recognise them too. */
  get probeNames(): Map<string, Upstream> {
    return this.probes;
  }

  /** Called when a probe came back here; workers pass it on to the main thread. */
  onProbeSeen: ((name: string) => void) | undefined;

  /** A probe came back (here or at a worker): the upstream it went to loops. */
  probeReturned(name: string): void {
    const upstream = this.probes.get(name);
    if (!upstream) return;
    if (this.forwarder.activeUpstreams.some((u) => upstreamKey(u) === upstreamKey(upstream))) {
      this.forwarder.disable(upstream, "forwards back to this server (loop probe came back)");
      this.metrics.forwardErrors.inc({ upstream: upstreamKey(upstream) });
      this.log(`dns: loop detected: upstream ${upstreamKey(upstream)} sent our probe back; not forwarding there`);
    }
  }

  private checkProbe(qname: string): boolean {
    const name = qname.toLowerCase().replace(/\.$/, "");
    if (!name.endsWith(".podnet-loop-probe")) return false;
    this.onProbeSeen?.(name);
    this.probeReturned(name);
    return true;
  }

  // ---- transports

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const started = performance.now();
    const hit = msg.length <= 512 ? this.cached(msg, 0, msg.length) : undefined;
    if (hit) {
      this.udp?.send([msg.subarray(0, 2), hit.bytes.subarray(hit.split)], rinfo.port, rinfo.address);
      this.queriesSeen++;
      hit.count.n++;
      this.metrics.latency.observe("cache", (performance.now() - started) / 1000);
      return;
    }
    const result = this.handle(msg, "udp");
    if (result === undefined) return;
    if (result instanceof Promise) {
      result.then((r) => {
        if (!r) return;
        this.udp?.send(r.buffer, rinfo.port, rinfo.address);
        this.finish(r, "udp", started, "forward");
      }, (err: unknown) => this.log(`dns: ${String(err)}`));
      return;
    }
    this.udp?.send(result.buffer, rinfo.port, rinfo.address);
    this.finish(result, "udp", started, "cluster");
  }

  private onTcp(socket: net.Socket): void {
    this.tcpSockets.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on("close", () => this.tcpSockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let data: Buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      data = data.length === 0 ? chunk : Buffer.concat([data, chunk]);
      while (data.length >= 2) {
        const len = data.readUInt16BE(0);
        if (data.length < 2 + len) break;
        const msg = data.subarray(2, 2 + len);
        data = data.subarray(2 + len);
        const started = performance.now();
        const send = (r: Prepared | undefined, source: string): void => {
          if (!r || socket.destroyed) return;
          const frame = Buffer.alloc(2 + r.buffer.length);
          frame.writeUInt16BE(r.buffer.length, 0);
          r.buffer.copy(frame, 2);
          socket.write(frame);
          this.finish(r, "tcp", started, source);
        };
        const result = this.handle(msg, "tcp");
        if (result instanceof Promise) result.then((r) => send(r, "forward"), (err: unknown) => this.log(`dns: ${String(err)}`));
        else send(result, "cluster");
      }
    });
  }

  private finish(r: Prepared, proto: "udp" | "tcp", started: number, source: string): void {
    this.queriesSeen++;
    this.metrics.countQuery(r.type, r.rcode, proto);
    this.metrics.latency.observe(source, (performance.now() - started) / 1000);
  }

  /**
   * Drain the datagrams waiting on the UDP socket in batches: cached answers are written straight
   * into the send slots (id from the query, the rest from the cache) and leave in one sendmmsg; any
   * other query takes the ordinary path (`handle`), its synchronous reply joining the batch.
   */
  private drain(batch: UdpBatch, first: Buffer, from: dgram.RemoteInfo): void {
    const bytes = batch.bytes;
    let woke: Buffer | undefined = first;
    for (let round = 0; round < DRAIN_ROUNDS; round++) {
      const started = performance.now();
      let out = 0;
      let hits = 0;
      if (woke !== undefined) {
        // The datagram that woke us came through dgram: a cached answer to it leaves in the first
        // sendmmsg, not through dgram's send (a send request, a callback and the address lookup
        // per wakeup: most of what the hot path still allocated).
        if (this.replyFirst(batch, woke, from)) {
          out = 1;
          hits = 1;
        } else this.onUdp(woke, from);
        woke = undefined;
      }
      // One send slot per datagram taken: with slot 0 given to the first, take one fewer.
      const room = batch.slots - out;
      const received = batch.receive(room);
      this.batchedDatagrams += received;
      for (let i = 0; i < received; i++) {
        const at = batch.receiveOffset(i);
        const length = batch.receivedLength(i);
        if ((batch.receivedFlags(i) & MSG_TRUNC) !== 0) {
          // Longer than any query we take over UDP: dropped, as a packet under 12 bytes is.
          this.metrics.malformed.inc({ action: "dropped" });
          continue;
        }
        const hit = length <= 512 ? this.cached(bytes, at, length) : undefined;
        const replyLength = hit ? hit.bytes.length - hit.split : 0;
        if (hit && replyLength + 2 <= batch.sendSize) {
          const to = batch.sendOffset(out);
          bytes[to] = bytes[at] as number;
          bytes[to + 1] = bytes[at + 1] as number;
          // A byte loop, not Buffer#copy: copy() makes a Uint8Array view of the source range on every
          // call (lib/buffer.js _copyActual), which was 80% of what the hot path allocated and a
          // scavenge every ~25 ms at 100,000 q/s; the reply is ~100 bytes.
          const reply = hit.bytes;
          for (let k = hit.split, d = to + 2; k < reply.length; k++, d++) bytes[d] = reply[k] as number;
          batch.setReply(out++, i, replyLength + 2);
          hit.count.n++;
          hits++;
          continue;
        }
        out = this.drainSlow(batch, i, Buffer.from(bytes.subarray(at, at + length)), out, started);
      }
      if (out > 0) batch.send(out);
      this.queriesSeen += hits;
      this.metrics.latency.observeMany("cache", (performance.now() - started) / 1000, hits);
      if (received < room) return;
    }
  }

  /** A cached answer to `msg` into send slot 0, addressed to `from` (IPv4 only); false when not. */
  private replyFirst(batch: UdpBatch, msg: Buffer, from: dgram.RemoteInfo): boolean {
    if (msg.length > 512 || from.family !== "IPv4") return false;
    const hit = this.cached(msg, 0, msg.length);
    if (!hit) return false;
    const reply = hit.bytes;
    const length = reply.length - hit.split + 2;
    if (length > batch.sendSize || !batch.setReplyToIPv4(0, from.address, from.port, length)) return false;
    const bytes = batch.bytes;
    const to = batch.sendOffset(0);
    bytes[to] = msg[0] as number;
    bytes[to + 1] = msg[1] as number;
    for (let k = hit.split, d = to + 2; k < reply.length; k++, d++) bytes[d] = reply[k] as number;
    hit.count.n++;
    return true;
  }

  /** One datagram of a batch that is not a cached answer; returns the next free send slot. */
  private drainSlow(batch: UdpBatch, i: number, msg: Buffer, out: number, started: number): number {
    const result = this.handle(msg, "udp");
    if (result === undefined) return out;
    if (result instanceof Promise) {
      const sender = batch.sender(i);
      result.then((r) => {
        if (!r) return;
        this.udp?.send(r.buffer, sender.port, sender.address);
        this.finish(r, "udp", started, "forward");
      }, (err: unknown) => this.log(`dns: ${String(err)}`));
      return out;
    }
    if (result.buffer.length <= batch.sendSize) {
      batch.bytes.set(result.buffer, batch.sendOffset(out));
      batch.setReply(out, i, result.buffer.length);
      out++;
    } else {
      const sender = batch.sender(i);
      this.udp?.send(result.buffer, sender.port, sender.address);
    }
    this.finish(result, "udp", started, "cluster");
    return out;
  }

  /**
   * Answers for cluster names do not change until the index does: the encoded reply is kept, keyed
   * by every byte of the query after the id (flags, counts, question, OPT), and only the id differs.
   */
  private cached(bytes: Uint8Array, at: number, length: number): CachedAnswer | undefined {
    if (length < 12) return undefined;
    const hit = this.answerCache.get(hashBytes(bytes, at + 2, at + length));
    if (!hit || hit.generation !== this.index.generation || hit.split !== length - 2) return undefined;
    const stored = hit.bytes;
    for (let k = 0; k < hit.split; k++) if (stored[k] !== bytes[at + 2 + k]) return undefined;
    return hit;
  }

  private remember(msg: Buffer, prepared: Prepared): void {
    if (msg.length > 512 || msg.length < 12) return;
    const key = hashBytes(msg, 2, msg.length);
    if (this.answerCache.size >= (this.options.answerCacheEntries ?? ANSWER_CACHE_MAX) && !this.answerCache.has(key)) {
      const oldest = this.answerCache.keys().next();
      if (!oldest.done) this.answerCache.delete(oldest.value);
    }
    // Buffer.concat copies into Node's shared 8 KiB pool: no ArrayBuffer of its own per entry.
    const bytes = Buffer.concat([msg.subarray(2), prepared.buffer.subarray(2)]);
    this.answerCache.set(key, {
      generation: this.index.generation,
      bytes,
      split: msg.length - 2,
      rcode: prepared.rcode,
      type: prepared.type,
      count: this.metrics.queryCount(prepared.type, prepared.rcode, "udp"),
    });
  }

  // ---- one query

  /**
   * Turn one query into one reply: synchronously for cluster names, a promise when an upstream is
   * involved, undefined when the bytes deserve no reply (too short, or a response).
   */
  handle(msg: Buffer, proto: "udp" | "tcp"): Prepared | Promise<Prepared | undefined> | undefined {
    if (msg.length < 12) {
      this.metrics.malformed.inc({ action: "dropped" });
      return undefined;
    }
    if ((msg.readUInt16BE(2) & 0x8000) !== 0) {
      // A response sent to a server: answering it could start a packet storm between two servers.
      this.metrics.malformed.inc({ action: "dropped" });
      return undefined;
    }
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      this.metrics.malformed.inc({ action: "formerr" });
      return { buffer: headerOnlyReply(msg, RCODES.FORMERR as number), rcode: "FORMERR", type: "none" };
    }
    const flags = query.flags ?? 0;
    if ((flags & OPCODE_MASK) !== 0) return { buffer: headerOnlyReply(msg, RCODES.NOTIMP as number), rcode: "NOTIMP", type: "none" };
    const questions = query.questions ?? [];
    const opts = (query.additionals ?? []).filter((a): a is OptAnswer => a.type === "OPT");
    if (questions.length !== 1 || opts.length > 1) {
      this.metrics.malformed.inc({ action: "formerr" });
      return { buffer: headerOnlyReply(msg, RCODES.FORMERR as number), rcode: "FORMERR", type: "none" };
    }
    const question = questions[0] as Question;
    const opt = opts[0];
    const limit = proto === "tcp" ? 65535 : opt ? Math.max(UDP_DEFAULT, opt.udpPayloadSize) : UDP_DEFAULT;
    const reply = (rcode: string, sections: { answers?: Answer[]; authorities?: Answer[]; additionals?: Answer[] }, authoritative: boolean): Prepared =>
      this.encodeReply(query, question, opt, rcode, sections, authoritative, limit);
    if (opt && opt.ednsVersion !== 0) {
      // RFC 6891 section 6.1.3: BADVERS (16) is an extended code: 1 in the OPT's upper bits, 0 in the header.
      return this.encodeReply(query, question, opt, "NOERROR", {}, false, limit, 1);
    }
    const qtype = question.type;
    if (this.checkProbe(question.name)) return reply("SERVFAIL", {}, false);
    if ((question.class ?? "IN") !== "IN") return reply("REFUSED", {}, false);
    if (qtype === "AXFR" || qtype === "IXFR") return reply("REFUSED", {}, false);

    const answer = this.builder.answer(this.index, question.name, qtype);
    if (answer.kind === "answer") {
      if (answer.rcode === "NXDOMAIN" && this.autopath) {
        const walk = this.searchWalk(question.name);
        if (walk) return this.answerWalk(question, walk, answer, reply);
      }
      const prepared = reply(answer.rcode, answer, true);
      // Only UDP replies are kept: they are cut to the asker's UDP size, which the key (the query's
      // bytes) carries; a TCP reply for the same bytes is whole and must never go out over UDP.
      if (answer.rcode !== "SERVFAIL" && proto === "udp") this.remember(msg, prepared);
      return prepared;
    }
    if (answer.kind === "chase") {
      return this.chase(answer, qtype).then((r) => reply(r.rcode, r, true));
    }
    return this.forwarder.resolve(question.name, qtype, question.class ?? "IN").then((r) =>
      reply(r.rcode, { answers: renameOwner(r.answers, question.name), authorities: r.authorities, additionals: r.additionals }, false),
    );
  }

  private async chase(answer: Extract<ClusterAnswer, { kind: "chase" }>, qtype: string): Promise<{ rcode: string; answers: Answer[]; authorities: Answer[] }> {
    const upstream = await this.forwarder.resolve(answer.target, qtype);
    // A failed chase still gives the CNAME: the client can follow it itself (CoreDNS does the same).
    if (upstream.source === "failed") return { rcode: "NOERROR", answers: answer.answers, authorities: [] };
    return { rcode: upstream.rcode, answers: [...answer.answers, ...upstream.answers], authorities: upstream.authorities };
  }

  // ---- search-path answering

  /**
   * The rest of the search walk a query can only have come from, or undefined.
   *
   * A pod in namespace N has `search N.svc.<zone> svc.<zone> <zone>` and `ndots:5` (kubelet,
   * pkg/kubelet/network/dns/dns.go). Looking up a name X with fewer than 5 dots, its resolver first
   * asks `X.N.svc.<zone>`. When that name is not the cluster's (NXDOMAIN) and X's last label is
   * neither a service in N nor a namespace, the query is the first step of a walk, and its next
   * steps are X.svc.<zone>, X.<zone>, the node's search domains, and X itself. We require X to have at
   * least 2 labels: a single label is a service name that does not exist, and the client's own walk
   * (all answered from the index) is as cheap as ours.
   */
  private searchWalk(qname: string): string[] | undefined {
    if (!this.index.synced) return undefined;
    const labels = labelsOf(qname);
    const z = this.zoneLabels.length;
    const depth = labels.length - z;
    if (depth < 4 || labels[depth - 1] !== "svc") return undefined;
    const namespace = labels[depth - 2] as string;
    const x = labels.slice(0, depth - 2);
    if (x.length < 2 || x.length > 5) return undefined;
    if (!this.index.hasNamespace(namespace)) return undefined;
    const last = x[x.length - 1] as string;
    if (this.index.service(namespace, last) || this.index.hasNamespace(last)) return undefined;
    // The original spelling of X, so the CNAME target keeps the client's case.
    const asked = qname.replace(/\.$/, "").split(".").slice(0, x.length).join(".");
    return [`${asked}.svc.${this.zone}`, `${asked}.${this.zone}`, ...this.nodeSearch.map((d) => `${asked}.${d}`), asked];
  }

  private async resolveAny(name: string, qtype: string): Promise<{ rcode: string; answers: Answer[]; authorities: Answer[]; failed: boolean }> {
    const answer = this.builder.answer(this.index, name, qtype);
    if (answer.kind === "answer") return { rcode: answer.rcode, answers: answer.answers, authorities: answer.authorities, failed: answer.rcode === "SERVFAIL" };
    if (answer.kind === "chase") return { ...(await this.chase(answer, qtype)), failed: false };
    const r: ForwardResult = await this.forwarder.resolve(name, qtype);
    return { rcode: r.rcode, answers: renameOwner(r.answers, name), authorities: r.authorities, failed: r.source === "failed" };
  }

  private async answerWalk(
    question: Question,
    walk: string[],
    plain: Extract<ClusterAnswer, { kind: "answer" }>,
    reply: (rcode: string, sections: { answers?: Answer[]; authorities?: Answer[] }, aa: boolean) => Prepared,
  ): Promise<Prepared> {
    for (const candidate of walk) {
      const r = await this.resolveAny(candidate, question.type);
      if (r.failed) break;
      if (r.rcode === "NXDOMAIN") continue;
      this.metrics.autopath.inc({ outcome: "answered" });
      // RFC 1034 section 3.6.2: the alias first, then the target's records; the client sees one answer.
      const cname: Answer = { type: "CNAME", name: question.name, ttl: this.builderTtl(), data: candidate };
      return reply(r.rcode, { answers: [cname, ...r.answers], authorities: r.authorities }, false);
    }
    // Nothing found (or an upstream failed): the plain NXDOMAIN, and the client walks on by itself.
    this.metrics.autopath.inc({ outcome: "fallback" });
    return reply(plain.rcode, plain, true);
  }

  private builderTtl(): number {
    return this.options.ttl ?? 5;
  }

  // ---- encoding

  private encodeReply(
    query: DecodedPacket,
    question: Question,
    opt: OptAnswer | undefined,
    rcode: string,
    sections: { answers?: Answer[]; authorities?: Answer[]; additionals?: Answer[] },
    authoritative: boolean,
    limit: number,
    extendedRcode = 0,
  ): Prepared {
    const flags =
      ((query.flags ?? 0) & (OPCODE_MASK | dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED)) |
      dnsPacket.RECURSION_AVAILABLE |
      (authoritative ? dnsPacket.AUTHORITATIVE_ANSWER : 0) |
      (RCODES[rcode] ?? (RCODES.SERVFAIL as number));
    const ourOpt: Answer[] = opt
      ? [{ type: "OPT", name: ".", udpPayloadSize: OUR_UDP_SIZE, extendedRcode, ednsVersion: 0, flags: 0, flag_do: false, options: [] }]
      : [];
    const packet = {
      type: "response" as const,
      id: query.id ?? 0,
      flags,
      questions: [question],
      answers: sections.answers ?? [],
      authorities: sections.authorities ?? [],
      additionals: [...(sections.additionals ?? []), ...ourOpt],
    };
    let buffer: Buffer;
    try {
      buffer = dnsPacket.encode(packet);
    } catch {
      // A record we cannot encode (for example a label over 63 bytes from upstream data) is a failure, never silence.
      buffer = dnsPacket.encode({ ...packet, flags: (flags & ~0xf) | (RCODES.SERVFAIL as number), answers: [], authorities: [], additionals: ourOpt });
      rcode = "SERVFAIL";
    }
    if (buffer.length > limit) {
      // RFC 2181 section 9 / RFC 1035 4.2.1: set TC and send what fits; we send the question only,
      // and the client asks again over TCP for the whole answer.
      buffer = dnsPacket.encode({ ...packet, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [], additionals: ourOpt });
    }
    return { buffer, rcode, type: question.type };
  }
}

/**
 * One full garbage collection. Node exposes gc() only with --expose-gc; setting the flag at run time
 * and fetching gc from a fresh context gets it without a start flag (V8 reads the flag when a context is made).
 */
/**
 * After a full list: collect the garbage it left, then give the C heap's freed pages back. Start-up
 * (compiling modules, the gRPC stream's buffers, decoding the list) leaves about 20 MiB of freed
 * malloc memory resident that glibc would otherwise keep (bench/RESULTS.md, "Cluster DNS").
 */
function settleMemory(): void {
  collectGarbage();
  releaseFreedNativeMemory();
}

function collectGarbage(): void {
  try {
    v8.setFlagsFromString("--expose-gc");
    (vm.runInNewContext("gc") as () => void)();
  } catch {
    // Memory is only released later, by V8's own schedule.
  }
}

/** Upstream answers keep the client's spelling of the asked name (DNS 0x20 clients compare it). */
function renameOwner(answers: Answer[], asked: string): Answer[] {
  const lower = asked.toLowerCase().replace(/\.$/, "");
  return answers.map((a) => (a.name.toLowerCase().replace(/\.$/, "") === lower && a.name !== asked ? ({ ...a, name: asked } as Answer) : a));
}

export type { RecordType };
