// Pure encoding and decoding of rtnetlink messages (no I/O). Layouts follow the kernel's
// uapi headers: linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h.
// Everything is host byte order (little-endian on the machines podnet targets) except
// addresses, which are network byte order byte strings.

import { formatIp, ipFromBytes, ipToBytes as addressToBytes, parseIp } from "../../net/address.ts";
import { parseCidr, type Cidr } from "../../net/cidr.ts";
export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

// nlmsg_type values
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;

// nlmsg_flags
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** In an NLMSG_ERROR reply: extended-ack TLVs follow the echoed header. */
export const NLM_F_ACK_TLVS = 0x200;
/** In an NLMSG_ERROR reply: the echoed request was cut to its header. */
export const NLM_F_CAPPED = 0x100;
export const NLMSGERR_ATTR_MSG = 1;

/** Rounds up to the 4-byte alignment netlink uses for messages and attributes. */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

export interface NlAttr {
  type: number;
  /** The raw payload; for nested attributes, the encoded children. */
  data: Uint8Array;
}

/** An attribute to encode: a leaf payload or a list of children (sent with NLA_F_NESTED). */
export type AttrSpec = { type: number; data: Uint8Array } | { type: number; nested: AttrSpec[] };

// ---- leaf payload builders ----

export function u8(value: number): Uint8Array {
  return Uint8Array.of(value & 0xff);
}

export function u16(value: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, value, true);
  return b;
}

export function u32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return b;
}

/** Big-endian u32: nf_tables sends every 32-bit attribute in network byte order. */
export function u32be(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, false);
  return b;
}

/** Big-endian u64 (nf_tables timeouts in milliseconds). */
export function u64be(value: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(value), false);
  return b;
}

export function s32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, value, true);
  return b;
}

/** A NUL-terminated string, as IFLA_IFNAME and IFLA_INFO_KIND expect. */
export function cstring(value: string): Uint8Array {
  return new TextEncoder().encode(`${value}\0`);
}

export function attr(type: number, data: Uint8Array): AttrSpec {
  return { type, data };
}

export function nested(type: number, children: AttrSpec[]): AttrSpec {
  return { type, nested: children };
}

// ---- leaf payload readers ----

export function readU8(data: Uint8Array): number {
  if (data.byteLength < 1) throw new Error("netlink: u8 attribute too short");
  return data[0] as number;
}

export function readU16(data: Uint8Array): number {
  if (data.byteLength < 2) throw new Error("netlink: u16 attribute too short");
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint16(0, true);
}

export function readU32(data: Uint8Array): number {
  if (data.byteLength < 4) throw new Error("netlink: u32 attribute too short");
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0, true);
}

export function readS32(data: Uint8Array): number {
  if (data.byteLength < 4) throw new Error("netlink: s32 attribute too short");
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getInt32(0, true);
}

/** Reads a string attribute, stopping at the first NUL. */
export function readCString(data: Uint8Array): string {
  const nul = data.indexOf(0);
  return new TextDecoder().decode(nul === -1 ? data : data.subarray(0, nul));
}

// ---- attributes ----

function attrLength(a: AttrSpec): number {
  if ("data" in a) return NLA_HDRLEN + a.data.byteLength;
  let length = NLA_HDRLEN;
  for (const child of a.nested) length += align4(attrLength(child));
  return length;
}

/** Bytes needed for a list of attributes, padding included. */
export function attrsLength(attrs: readonly AttrSpec[]): number {
  let length = 0;
  for (const a of attrs) length += align4(attrLength(a));
  return length;
}

/** Writes attributes at `offset`, padding each to 4 bytes with zeros; returns the end offset. */
function writeAttrs(out: Uint8Array, view: DataView, offset: number, attrs: readonly AttrSpec[]): number {
  for (const a of attrs) {
    const length = attrLength(a);
    if (length > 0xffff) throw new Error(`netlink: attribute ${a.type} is ${length} bytes, over the 64 KiB limit`);
    const isNested = !("data" in a);
    view.setUint16(offset, length, true);
    view.setUint16(offset + 2, isNested ? a.type | NLA_F_NESTED : a.type, true);
    if ("data" in a) out.set(a.data, offset + NLA_HDRLEN);
    else writeAttrs(out, view, offset + NLA_HDRLEN, a.nested);
    const end = offset + align4(length);
    out.fill(0, offset + length, end);
    offset = end;
  }
  return offset;
}

export function encodeAttrs(attrs: readonly AttrSpec[]): Uint8Array {
  const out = new Uint8Array(attrsLength(attrs));
  writeAttrs(out, new DataView(out.buffer), 0, attrs);
  return out;
}

/**
 * Splits a run of attributes. Types are returned without the NESTED and NET_BYTEORDER flag
 * bits. Stops at a truncated trailer rather than throwing: the kernel never sends one, and a
 * partial attribute carries nothing usable.
 */
export function parseAttrs(data: Uint8Array): NlAttr[] {
  const attrs: NlAttr[] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let offset = 0;
  while (offset + NLA_HDRLEN <= data.byteLength) {
    const length = view.getUint16(offset, true);
    const type = view.getUint16(offset + 2, true) & NLA_TYPE_MASK;
    if (length < NLA_HDRLEN || offset + length > data.byteLength) break;
    attrs.push({ type, data: data.subarray(offset + NLA_HDRLEN, offset + length) });
    offset += align4(length);
  }
  return attrs;
}

/** Attributes keyed by type; the last one wins when a type repeats. */
export function attrMap(data: Uint8Array): Map<number, Uint8Array> {
  const map = new Map<number, Uint8Array>();
  for (const a of parseAttrs(data)) map.set(a.type, a.data);
  return map;
}

// ---- fixed family headers ----

/** struct ifinfomsg: 16 bytes. */
export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}
export const IFINFOMSG_LEN = 16;

export function encodeIfInfoMsg(h: Partial<IfInfoMsg>): Uint8Array {
  const b = new Uint8Array(IFINFOMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, h.family ?? 0);
  v.setUint16(2, h.type ?? 0, true);
  v.setInt32(4, h.index ?? 0, true);
  v.setUint32(8, (h.flags ?? 0) >>> 0, true);
  v.setUint32(12, (h.change ?? 0) >>> 0, true);
  return b;
}

export function decodeIfInfoMsg(b: Uint8Array): IfInfoMsg {
  if (b.byteLength < IFINFOMSG_LEN) throw new Error("netlink: ifinfomsg too short");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    family: v.getUint8(0),
    type: v.getUint16(2, true),
    index: v.getInt32(4, true),
    flags: v.getUint32(8, true),
    change: v.getUint32(12, true),
  };
}

/** struct ifaddrmsg: 8 bytes. */
export interface IfAddrMsg {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
}
export const IFADDRMSG_LEN = 8;

export function encodeIfAddrMsg(h: Partial<IfAddrMsg>): Uint8Array {
  const b = new Uint8Array(IFADDRMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, h.family ?? 0);
  v.setUint8(1, h.prefixlen ?? 0);
  v.setUint8(2, h.flags ?? 0);
  v.setUint8(3, h.scope ?? 0);
  v.setUint32(4, h.index ?? 0, true);
  return b;
}

export function decodeIfAddrMsg(b: Uint8Array): IfAddrMsg {
  if (b.byteLength < IFADDRMSG_LEN) throw new Error("netlink: ifaddrmsg too short");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { family: v.getUint8(0), prefixlen: v.getUint8(1), flags: v.getUint8(2), scope: v.getUint8(3), index: v.getUint32(4, true) };
}

/** struct rtmsg: 12 bytes. */
export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}
export const RTMSG_LEN = 12;

export function encodeRtMsg(h: Partial<RtMsg>): Uint8Array {
  const b = new Uint8Array(RTMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, h.family ?? 0);
  v.setUint8(1, h.dstLen ?? 0);
  v.setUint8(2, h.srcLen ?? 0);
  v.setUint8(3, h.tos ?? 0);
  v.setUint8(4, h.table ?? 0);
  v.setUint8(5, h.protocol ?? 0);
  v.setUint8(6, h.scope ?? 0);
  v.setUint8(7, h.type ?? 0);
  v.setUint32(8, (h.flags ?? 0) >>> 0, true);
  return b;
}

export function decodeRtMsg(b: Uint8Array): RtMsg {
  if (b.byteLength < RTMSG_LEN) throw new Error("netlink: rtmsg too short");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    family: v.getUint8(0),
    dstLen: v.getUint8(1),
    srcLen: v.getUint8(2),
    tos: v.getUint8(3),
    table: v.getUint8(4),
    protocol: v.getUint8(5),
    scope: v.getUint8(6),
    type: v.getUint8(7),
    flags: v.getUint32(8, true),
  };
}

// ---- whole messages ----

/** A message to send: the fixed family header (ifinfomsg, rtmsg, ...) and its attributes. */
export interface NlRequest {
  type: number;
  flags: number;
  header: Uint8Array;
  attrs?: readonly AttrSpec[];
}

export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the 16-byte nlmsghdr: family header and attributes. */
  payload: Uint8Array;
}

export function messageLength(req: NlRequest): number {
  return NLMSG_HDRLEN + align4(req.header.byteLength) + attrsLength(req.attrs ?? []);
}

/** Encodes one message into `out` at `offset`; returns the offset after it (4-byte aligned). */
export function encodeMessageInto(out: Uint8Array, offset: number, req: NlRequest, seq: number, pid = 0): number {
  const length = messageLength(req);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(offset, length, true);
  view.setUint16(offset + 4, req.type, true);
  view.setUint16(offset + 6, req.flags, true);
  view.setUint32(offset + 8, seq >>> 0, true);
  view.setUint32(offset + 12, pid >>> 0, true);
  out.set(req.header, offset + NLMSG_HDRLEN);
  const attrsStart = offset + NLMSG_HDRLEN + align4(req.header.byteLength);
  out.fill(0, offset + NLMSG_HDRLEN + req.header.byteLength, attrsStart);
  const end = writeAttrs(out, view, attrsStart, req.attrs ?? []);
  if (end !== offset + length) throw new Error("netlink: encoded length mismatch");
  return end;
}

export function encodeMessage(req: NlRequest, seq: number, pid = 0): Uint8Array {
  const out = new Uint8Array(messageLength(req));
  encodeMessageInto(out, 0, req, seq, pid);
  return out;
}

/** Splits a datagram into messages. Throws on a length that runs past the datagram. */
export function parseMessages(data: Uint8Array): NlMessage[] {
  const messages: NlMessage[] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let offset = 0;
  while (offset + NLMSG_HDRLEN <= data.byteLength) {
    const length = view.getUint32(offset, true);
    if (length < NLMSG_HDRLEN || offset + length > data.byteLength) {
      throw new Error(`netlink: bad message length ${length} at offset ${offset} of ${data.byteLength}`);
    }
    messages.push({
      type: view.getUint16(offset + 4, true),
      flags: view.getUint16(offset + 6, true),
      seq: view.getUint32(offset + 8, true),
      pid: view.getUint32(offset + 12, true),
      payload: data.subarray(offset + NLMSG_HDRLEN, offset + length),
    });
    offset += align4(length);
  }
  return messages;
}

/** The body of an NLMSG_ERROR: errno is positive (0 means an ACK). */
export interface NlError {
  errno: number;
  /** Sequence number of the request it answers, from the echoed header. */
  seq: number;
  /** Extended-ack text from the kernel, when it gave one. */
  extMessage?: string;
}

export function decodeError(msg: NlMessage): NlError {
  if (msg.payload.byteLength < 4 + NLMSG_HDRLEN) throw new Error("netlink: NLMSG_ERROR too short");
  const view = new DataView(msg.payload.buffer, msg.payload.byteOffset, msg.payload.byteLength);
  const error = view.getInt32(0, true);
  const echoedLength = view.getUint32(4, true);
  const seq = view.getUint32(12, true);
  const result: NlError = { errno: error === 0 ? 0 : -error, seq };
  if (msg.flags & NLM_F_ACK_TLVS) {
    const echoed = msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : echoedLength;
    const tlvStart = 4 + align4(echoed);
    if (tlvStart <= msg.payload.byteLength) {
      const text = attrMap(msg.payload.subarray(tlvStart)).get(NLMSGERR_ATTR_MSG);
      if (text) result.extMessage = readCString(text);
    }
  }
  return result;
}

// ---- IP addresses as attribute payloads (parsing and formatting are src/net's) ----

/** A textual IPv4 or IPv6 address as an attribute payload: 4 or 16 bytes in network order. */
export function ipToBytes(ip: string): Uint8Array {
  return addressToBytes(parseIp(ip));
}

/** An address payload (4 or 16 bytes) as text; IPv6 in RFC 5952 form. */
export function bytesToIp(b: Uint8Array): string {
  return formatIp(ipFromBytes(b));
}

/** "10.0.0.1/24" as an address payload with its prefix length; host bits are kept (an interface address has them). */
export function cidrToBytes(text: string): { bytes: Uint8Array; prefix: number; family: 4 | 6; cidr: Cidr } {
  const cidr = parseCidr(text);
  return { bytes: addressToBytes(cidr.address), prefix: cidr.prefix, family: cidr.address.family, cidr };
}

/** Parses "aa:bb:cc:dd:ee:ff" into 6 bytes. */
export function macToBytes(mac: string): Uint8Array {
  const parts = mac.split(":");
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`invalid MAC address: ${mac}`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export function bytesToMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}
