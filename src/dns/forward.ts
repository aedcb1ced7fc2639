// Forwarding names outside the cluster to upstream servers, with a cache that honours TTLs
// (RFC 2308 negative caching from the SOA), coalescing of identical queries in flight, a bounded
// time budget (an upstream that is down costs at most `timeoutMs`, then SERVFAIL), and TCP when
// an upstream truncates.

import dgram from "node:dgram";
import net from "node:net";
import { formatIp, isIpv6, tryParseIp } from "../net/address.ts";
import { formatHostPort, parseHostPort } from "../net/endpoint.ts";
import { randomInt } from "node:crypto";
import * as dnsPacket from "dns-packet";
import type { Answer, DecodedPacket, RecordClass, RecordType } from "dns-packet";

export interface Upstream {
  host: string;
  port: number;
}

export interface ForwardResult {
  rcode: "NOERROR" | "NXDOMAIN" | "SERVFAIL" | "REFUSED" | string;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
  /** Where it came from: the cache, an upstream, or nowhere (every upstream failed). */
  source: "cache" | "upstream" | "failed";
}

export interface ForwarderOptions {
  upstreams: Upstream[];
  /** The whole budget of one resolution across every upstream and retry. */
  timeoutMs?: number;
  /** Caps on cached TTLs (CoreDNS cache defaults: 3600 s success, 1800 s denial). */
  maxTtl?: number;
  maxNegativeTtl?: number;
  /** Most entries kept; the oldest go first. */
  cacheSize?: number;
  /** Counts for metrics. */
  onCache?: (hit: boolean) => void;
  onUpstreamError?: (upstream: Upstream, reason: string) => void;
}

interface CacheEntry {
  result: Omit<ForwardResult, "source">;
  storedAt: number;
  expiresAt: number;
}

interface Pending {
  resolve: (packet: DecodedPacket) => void;
  reject: (err: Error) => void;
  name: string;
  type: string;
  upstream: Upstream;
  timer: NodeJS.Timeout;
}

export function upstreamKey(u: Upstream): string {
  return formatHostPort(u);
}

/** "1.2.3.4", "1.2.3.4:5353", "[fd00::1]:53", "fd00::1" → Upstream; throws naming the value. */
export function parseUpstream(text: string): Upstream {
  let upstream: Upstream;
  try {
    upstream = parseHostPort(text.trim(), { defaultPort: 53, minPort: 1 });
  } catch (err) {
    throw new Error(`upstream "${text}": ${(err as Error).message}`);
  }
  return upstream;
}

/** Nameservers of a resolv.conf text (the node's own resolver configuration). */
export function nameserversFromResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const host = (m[1] as string).replace(/%.*$/, "");
    const ip = tryParseIp(host);
    if (ip) out.push({ host: formatIp(ip), port: 53 });
  }
  return out;
}

function rcodeOf(packet: DecodedPacket): string {
  return (packet as DecodedPacket & { rcode?: string }).rcode ?? "NOERROR";
}

/** Seconds a response may be cached: the least TTL of its answers, or the SOA's for a denial. */
function cacheTtl(packet: DecodedPacket, maxTtl: number, maxNegativeTtl: number): number {
  const rcode = rcodeOf(packet);
  const answers = (packet.answers ?? []).filter((a) => a.type !== "OPT");
  if (rcode === "NOERROR" && answers.length > 0) {
    return Math.min(maxTtl, ...answers.map((a) => ("ttl" in a && typeof a.ttl === "number" ? a.ttl : 0)));
  }
  if (rcode === "NXDOMAIN" || rcode === "NOERROR") {
    // RFC 2308 section 5: the denial lives as long as the SOA record's TTL and its MINIMUM, whichever is less.
    const soa = (packet.authorities ?? []).find((a) => a.type === "SOA");
    if (!soa || soa.type !== "SOA") return 0;
    return Math.min(maxNegativeTtl, soa.ttl ?? 0, soa.data.minimum ?? 0);
  }
  return 0;
}

function withAge(records: Answer[], age: number): Answer[] {
  return records.map((r) => (r.type === "OPT" || typeof r.ttl !== "number" ? r : { ...r, ttl: Math.max(0, r.ttl - age) }) as Answer);
}

export class Forwarder {
  private upstreams: Upstream[];
  private readonly disabled = new Map<string, string>();
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<ForwardResult>>();
  private readonly pending = new Map<number, Pending>();
  private socket4: dgram.Socket | undefined;
  private socket6: dgram.Socket | undefined;
  private readonly timeoutMs: number;
  private readonly maxTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly cacheSize: number;
  /** Upstream queries sent, for the bench's "server queries per lookup". */
  upstreamQueries = 0;

  constructor(private readonly options: ForwarderOptions) {
    this.upstreams = [...options.upstreams];
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.maxTtl = options.maxTtl ?? 3600;
    this.maxNegativeTtl = options.maxNegativeTtl ?? 1800;
    this.cacheSize = options.cacheSize ?? 10000;
  }

  /** Upstreams still in use (self-forwarding ones removed). */
  get activeUpstreams(): Upstream[] {
    return this.upstreams.filter((u) => !this.disabled.has(upstreamKey(u)));
  }

  /** Take an upstream out of use for good (it forwards back to us). */
  disable(upstream: Upstream, reason: string): void {
    this.disabled.set(upstreamKey(upstream), reason);
  }

  get disabledReasons(): Map<string, string> {
    return new Map(this.disabled);
  }

  /** Resolve through the cache or the upstreams; never rejects. */
  resolve(name: string, type: string, klass = "IN"): Promise<ForwardResult> {
    const key = `${name.toLowerCase().replace(/\.$/, "")}|${type}|${klass}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.expiresAt > now) {
      this.options.onCache?.(true);
      const age = Math.floor((now - hit.storedAt) / 1000);
      const r = hit.result;
      return Promise.resolve({ ...r, answers: withAge(r.answers, age), authorities: withAge(r.authorities, age), additionals: withAge(r.additionals, age), source: "cache" });
    }
    if (hit) this.cache.delete(key);
    this.options.onCache?.(false);
    const running = this.inflight.get(key);
    if (running) return running;
    const promise = this.fetch(name, type, klass).then((result) => {
      this.inflight.delete(key);
      return result;
    });
    this.inflight.set(key, promise);
    return promise;
  }

  /** One query to one specific upstream, no cache: used by the loop probe. */
  async probe(upstream: Upstream, name: string, type: RecordType): Promise<void> {
    await this.exchange(upstream, name, type, "IN", this.timeoutMs).catch(() => undefined);
  }

  private async fetch(name: string, type: string, klass: string): Promise<ForwardResult> {
    const deadline = Date.now() + this.timeoutMs;
    const upstreams = this.activeUpstreams;
    // Each upstream gets a share of the budget, and whatever is left at the end goes to one more round.
    const attempts = upstreams.length === 0 ? [] : [...upstreams, ...upstreams];
    for (let i = 0; i < attempts.length; i++) {
      const upstream = attempts[i] as Upstream;
      const left = deadline - Date.now();
      if (left <= 0) break;
      const slice = Math.max(50, Math.floor(left / (attempts.length - i)));
      try {
        const packet = await this.exchange(upstream, name, type, klass, Math.min(left, slice));
        const rcode = rcodeOf(packet);
        if (rcode === "SERVFAIL" || rcode === "REFUSED") {
          this.options.onUpstreamError?.(upstream, rcode);
          continue;
        }
        const result = {
          rcode,
          answers: (packet.answers ?? []) as Answer[],
          authorities: (packet.authorities ?? []) as Answer[],
          additionals: ((packet.additionals ?? []) as Answer[]).filter((a) => a.type !== "OPT"),
        };
        this.store(`${name.toLowerCase().replace(/\.$/, "")}|${type}|${klass}`, result, cacheTtl(packet, this.maxTtl, this.maxNegativeTtl));
        return { ...result, source: "upstream" };
      } catch (err) {
        this.options.onUpstreamError?.(upstream, (err as Error).message);
      }
    }
    return { rcode: "SERVFAIL", answers: [], authorities: [], additionals: [], source: "failed" };
  }

  private store(key: string, result: Omit<ForwardResult, "source">, ttl: number): void {
    if (ttl <= 0) return;
    if (this.cache.size >= this.cacheSize) {
      // Map iteration is insertion order: drop the oldest tenth.
      let drop = Math.ceil(this.cacheSize / 10);
      for (const k of this.cache.keys()) {
        this.cache.delete(k);
        if (--drop <= 0) break;
      }
    }
    const now = Date.now();
    this.cache.set(key, { result, storedAt: now, expiresAt: now + ttl * 1000 });
  }

  private socketFor(host: string): dgram.Socket {
    const v6 = isIpv6(host);
    let socket = v6 ? this.socket6 : this.socket4;
    if (socket) return socket;
    socket = dgram.createSocket(v6 ? "udp6" : "udp4");
    socket.on("message", (msg, rinfo) => this.onReply(msg, rinfo));
    socket.on("error", () => undefined);
    socket.unref();
    if (v6) this.socket6 = socket;
    else this.socket4 = socket;
    return socket;
  }

  private onReply(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12) return;
    const id = msg.readUInt16BE(0);
    const pending = this.pending.get(id);
    if (!pending) return;
    // Accept only from the server asked, with the question asked (RFC 5452 section 9.1).
    if (rinfo.address !== pending.upstream.host || rinfo.port !== pending.upstream.port) return;
    let packet: DecodedPacket;
    try {
      packet = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const q = packet.questions?.[0];
    if (!q || q.name.toLowerCase() !== pending.name.toLowerCase() || q.type !== pending.type) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(packet);
  }

  private newId(): number {
    for (;;) {
      const id = randomInt(0, 65536);
      if (!this.pending.has(id)) return id;
    }
  }

  private async exchange(upstream: Upstream, name: string, type: string, klass: string, timeoutMs: number): Promise<DecodedPacket> {
    this.upstreamQueries++;
    const id = this.newId();
    const query = dnsPacket.encode({
      type: "query",
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name, type: type as RecordType, class: klass as RecordClass }],
      additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
    });
    const packet = await new Promise<DecodedPacket>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer from ${upstreamKey(upstream)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, name, type, upstream, timer });
      this.socketFor(upstream.host).send(query, upstream.port, upstream.host, (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      });
    });
    if (!(packet as DecodedPacket & { flag_tc?: boolean }).flag_tc) return packet;
    return this.exchangeTcp(upstream, query, timeoutMs);
  }

  private exchangeTcp(upstream: Upstream, query: Buffer, timeoutMs: number): Promise<DecodedPacket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: upstream.host, port: upstream.port });
      let data = Buffer.alloc(0);
      const fail = (err: Error): void => {
        socket.destroy();
        reject(err);
      };
      socket.setTimeout(timeoutMs, () => fail(new Error(`TCP to ${upstreamKey(upstream)} timed out`)));
      socket.on("error", fail);
      socket.on("connect", () => {
        const frame = Buffer.alloc(2 + query.length);
        frame.writeUInt16BE(query.length, 0);
        query.copy(frame, 2);
        socket.write(frame);
      });
      socket.on("data", (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        if (data.length < 2) return;
        const len = data.readUInt16BE(0);
        if (data.length < 2 + len) return;
        socket.destroy();
        try {
          resolve(dnsPacket.decode(data.subarray(2, 2 + len)));
        } catch (err) {
          reject(err as Error);
        }
      });
    });
  }

  close(): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error("forwarder closed"));
    }
    this.pending.clear();
    this.socket4?.close();
    this.socket6?.close();
    this.socket4 = this.socket6 = undefined;
  }
}
