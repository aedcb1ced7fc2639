// An NftTransaction as nf_tables netlink messages (pure: no I/O). The writer (netlink-writer.ts)
// sends them as one NFNL batch, which the kernel commits atomically, as `nft -f` does — but
// without nft's cache, which reads every chain of the table before any rule or element command.
//
// Layouts follow linux/netfilter/nf_tables.h; every 32- and 64-bit attribute is big-endian. The
// expressions are the ones nft 1.0.6 itself generates for the same statements (checked with
// `nft --debug=netlink`), including register use and userdata (comments, set byte orders), so
// `nft list` shows a netlink-written table exactly as one loaded by `nft -f`.
//
// Only the subset of the model the service proxy uses is encoded, in the `ip` family. Anything
// else throws NftNotEncodable before a byte is sent; the caller applies that transaction through
// libnftables instead.

import { u32be } from "../netlink/codec.ts";
import { parseCidr } from "../../net/cidr.ts";
import { priorityNumber } from "./diff.ts";
import type {
  NftBaseChain, NftChain, NftChange, NftDataType, NftMap, NftMapElement, NftRule, NftSelector, NftSet, NftStatement,
  NftTransaction, NftValue, NftVerdict,
} from "./model.ts";
import { checkIdentifier, quoteText } from "./render.ts";

/** A statement or change this encoder does not write; the transaction goes through libnftables. */
export class NftNotEncodable extends Error {
  constructor(readonly what: string) {
    super(`not encodable as nf_tables netlink: ${what}`);
    this.name = "NftNotEncodable";
  }
}

// ---- uapi constants (linux/netfilter/nfnetlink.h, nf_tables.h) ----
export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNL_MSG_BATCH_BEGIN = 0x10;
export const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWTABLE = 0, NFT_MSG_DELTABLE = 2, NFT_MSG_NEWCHAIN = 3, NFT_MSG_DELCHAIN = 5, NFT_MSG_NEWRULE = 6,
  NFT_MSG_DELRULE = 8, NFT_MSG_NEWSET = 9, NFT_MSG_DELSET = 11, NFT_MSG_NEWSETELEM = 12, NFT_MSG_DELSETELEM = 14;
const NLM_F_CREATE = 0x400;
const NLM_F_APPEND = 0x800;
const NFPROTO_IPV4 = 2;
const NFTA_LIST_ELEM = 1;
const NFTA_TABLE_NAME = 1, NFTA_TABLE_FLAGS = 2;
const NFTA_CHAIN_TABLE = 1, NFTA_CHAIN_NAME = 3, NFTA_CHAIN_HOOK = 4, NFTA_CHAIN_POLICY = 5, NFTA_CHAIN_TYPE = 7;
const NFTA_HOOK_HOOKNUM = 1, NFTA_HOOK_PRIORITY = 2;
const NFTA_RULE_TABLE = 1, NFTA_RULE_CHAIN = 2, NFTA_RULE_EXPRESSIONS = 4, NFTA_RULE_USERDATA = 7;
const NFTA_EXPR_NAME = 1, NFTA_EXPR_DATA = 2;
const NFTA_SET_TABLE = 1, NFTA_SET_NAME = 2, NFTA_SET_FLAGS = 3, NFTA_SET_KEY_TYPE = 4, NFTA_SET_KEY_LEN = 5, NFTA_SET_DATA_TYPE = 6,
  NFTA_SET_DATA_LEN = 7, NFTA_SET_DESC = 9, NFTA_SET_ID = 10, NFTA_SET_TIMEOUT = 11, NFTA_SET_USERDATA = 13;
const NFTA_SET_DESC_SIZE = 1;
const NFT_SET_ANONYMOUS = 0x1, NFT_SET_CONSTANT = 0x2, NFT_SET_INTERVAL = 0x4, NFT_SET_MAP = 0x8, NFT_SET_TIMEOUT = 0x10, NFT_SET_EVAL = 0x20;
const NFTA_SET_ELEM_LIST_TABLE = 1, NFTA_SET_ELEM_LIST_SET = 2, NFTA_SET_ELEM_LIST_ELEMENTS = 3, NFTA_SET_ELEM_LIST_SET_ID = 4;
const NFTA_SET_ELEM_KEY = 1, NFTA_SET_ELEM_DATA = 2, NFTA_SET_ELEM_FLAGS = 3;
const NFT_SET_ELEM_INTERVAL_END = 1;
const NFTA_DATA_VALUE = 1, NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1, NFTA_VERDICT_CHAIN = 2;
const NFT_DATA_VERDICT = 0xffffff00;
const NF_DROP = 0, NF_ACCEPT = 1, NFT_CONTINUE = -1, NFT_JUMP = -3, NFT_GOTO = -4, NFT_RETURN = -5;
const NFT_REG_VERDICT = 0, NFT_REG_1 = 1, NFT_REG_2 = 2, NFT_REG32_00 = 8;
const NFT_PAYLOAD_NETWORK_HEADER = 1, NFT_PAYLOAD_TRANSPORT_HEADER = 2;
const NFT_CMP_EQ = 0, NFT_CMP_NEQ = 1;
const NFT_META_MARK = 3, NFT_META_NFPROTO = 15, NFT_META_L4PROTO = 16, NFT_META_PKTTYPE = 19;
const NFT_CT_STATE = 0;
const NFT_FIB_RESULT_ADDRTYPE = 3, NFTA_FIB_F_DADDR = 2;
const NFT_NG_RANDOM = 1;
const NFT_NAT_SNAT = 0, NFT_NAT_DNAT = 1, NF_NAT_RANGE_PROTO_SPECIFIED = 0x2, NF_NAT_RANGE_PROTO_RANDOM_FULLY = 0x10;
const NFT_LOOKUP_F_INV = 1;
const NFT_DYNSET_OP_UPDATE = 1;
const NFT_REJECT_ICMP_UNREACH = 0, NFT_REJECT_TCP_RST = 1, NFT_REJECT_ICMPX_UNREACH = 2;
const NF_INET_HOOKS: Record<string, number> = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 };

// nft's datatype ids (nftables src/datatype.h) and byte orders (1 host, 2 big-endian), as it
// records them in a set's userdata so `nft list` can print the elements.
const TYPE_INTEGER = 4;
const DATATYPES: Record<Exclude<NftDataType, "verdict">, { id: number; len: number; byteorder: number }> = {
  ipv4_addr: { id: 7, len: 4, byteorder: 2 },
  ipv6_addr: { id: 8, len: 16, byteorder: 2 },
  ether_addr: { id: 9, len: 6, byteorder: 2 },
  inet_proto: { id: 12, len: 1, byteorder: 2 },
  inet_service: { id: 13, len: 2, byteorder: 2 },
  mark: { id: 19, len: 4, byteorder: 1 },
  ifname: { id: 41, len: 16, byteorder: 1 },
};
// libnftnl's userdata TLV types (libnftnl/udata.h).
const UDATA_SET_KEYBYTEORDER = 0, UDATA_SET_DATABYTEORDER = 1, UDATA_SET_MERGE_ELEMENTS = 2, UDATA_SET_KEY_TYPEOF = 3,
  UDATA_SET_DATA_INTERVAL = 6, UDATA_SET_COMMENT = 7;
const UDATA_COMMENT = 0;

/** What element encoding needs to know about a named set or map. */
export interface SetSchema {
  keyType: readonly NftDataType[];
  /** Verdict maps only (data maps are not encoded). */
  verdictMap: boolean;
}

/** Looks up a set's schema as the kernel has it now (from earlier transactions). */
export type SchemaLookup = (set: string) => SetSchema | undefined;

/**
 * An attribute to encode. Leaves keep their value unconverted (a number, a string) so a rule costs
 * a few small objects and one write, not a buffer per attribute: a full sync is ~120,000 messages.
 */
type A =
  | { t: number; k: 0; v: number } // u32, big-endian
  | { t: number; k: 1; s: string } // NUL-terminated string
  | { t: number; k: 2; b: Uint8Array }
  | { t: number; k: 3; c: A[]; len?: number } // nested
  | { t: number; k: 4; v: number }; // u64, big-endian

export interface EncodedTransaction {
  /** The whole NFNL batch, ready to send (see BatchBuffer). */
  batch: Buffer;
  /** What each message does, for errors ("add rule services (rule 1)"), by message index from 0. */
  ops: readonly string[];
  /** Sets and maps as they are after the transaction: undefined for deleted ones. */
  schemaChanges: Map<string, SetSchema | undefined>;
  /** True when the transaction deletes the table (every schema before it is gone). */
  tableDeleted: boolean;
}

const PROTOCOLS: Record<string, number> = { icmp: 1, igmp: 2, tcp: 6, udp: 17, ipv6: 41, gre: 47, esp: 50, ah: 51, icmpv6: 58, sctp: 132, udplite: 136 };
const CT_STATES: Record<string, number> = { invalid: 1, established: 2, related: 4, new: 8, untracked: 64 };
const ADDRESS_TYPES: Record<string, number> = { unspec: 0, unicast: 1, local: 2, broadcast: 3, anycast: 4, multicast: 5, blackhole: 6, unreachable: 7, prohibit: 8 };
const PKTTYPES: Record<string, number> = { host: 0, broadcast: 1, multicast: 2, other: 3 };
const NFPROTOS: Record<string, number> = { ipv4: 2, ipv6: 10 };

/** Elements per NEWSETELEM message: keeps each nest far below netlink's 64 KiB attribute limit. */
const ELEMENT_BYTES_PER_MESSAGE = 32 * 1024;


function msgType(msg: number): number {
  return (NFNL_SUBSYS_NFTABLES << 8) | msg;
}

function attr(t: number, b: Uint8Array): A {
  return { t, k: 2, b };
}
function nested(t: number, c: A[]): A {
  return { t, k: 3, c };
}
function str(t: number, s: string): A {
  return { t, k: 1, s };
}
function be32(t: number, v: number): A {
  return { t, k: 0, v };
}
function be64(t: number, v: number): A {
  return { t, k: 4, v };
}
function cstring(value: string): Uint8Array {
  return Buffer.from(`${value}\0`, "utf8");
}

const NLA_F_NESTED = 0x8000;
const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;

/** Payload length of an attribute (header included, trailing padding not). */
function attrSize(a: A): number {
  switch (a.k) {
    case 0: return 8;
    case 1: return 4 + Buffer.byteLength(a.s) + 1;
    case 2: return 4 + a.b.byteLength;
    case 4: return 12;
    case 3: {
      if (a.len !== undefined) return a.len;
      let len = 4;
      for (const c of a.c) len += (attrSize(c) + 3) & ~3;
      if (len > 0xffff) throw new NftNotEncodable(`an attribute of ${len} bytes (netlink attributes stop at 64 KiB)`);
      a.len = len;
      return len;
    }
  }
}

function writeAttrs(buf: Buffer, pos: number, attrs: readonly A[]): number {
  for (const a of attrs) {
    const len = attrSize(a);
    buf.writeUInt16LE(len, pos);
    buf.writeUInt16LE(a.k === 3 ? a.t | NLA_F_NESTED : a.t, pos + 2);
    switch (a.k) {
      case 0: buf.writeUInt32BE(a.v >>> 0, pos + 4); break;
      case 1: {
        const n = buf.write(a.s, pos + 4, "utf8");
        buf[pos + 4 + n] = 0;
        break;
      }
      case 2: buf.set(a.b, pos + 4); break;
      case 4: buf.writeBigUInt64BE(BigInt(a.v), pos + 4); break;
      case 3: writeAttrs(buf, pos + 4, a.c); break;
    }
    const end = pos + ((len + 3) & ~3);
    buf.fill(0, pos + len, end);
    pos = end;
  }
  return pos;
}

const HEADER_LEN = NLMSG_HDRLEN + NFGENMSG_LEN;

/**
 * The batch's bytes, written message by message as the encoder produces them, so no message's
 * attribute tree outlives its own encoding (a full sync is ~120,000 messages; holding their trees
 * costs more in garbage collection than the encoding itself). Sequence numbers are the message's
 * index (0 for BATCH_BEGIN); the socket adds its own base. Only the last message asks for an ACK
 * (see NetlinkSocket.nfBatch).
 */
class BatchBuffer {
  private buf: Buffer;
  private pos = HEADER_LEN; // BATCH_BEGIN is written last, at offset 0
  private lastOffset = -1;
  readonly ops: string[] = [];

  /** `sizeHint`: the expected size, so a full sync's ~36 MB are allocated once, not by doubling. */
  constructor(sizeHint: number) {
    // Every byte up to the end is written (padding explicitly), so the buffer needs no zeroing.
    this.buf = Buffer.allocUnsafe(Math.max(64 * 1024, sizeHint));
  }

  get count(): number {
    return this.ops.length;
  }

  push(type: number, flags: number, attrs: readonly A[], op: string): void {
    let len = HEADER_LEN;
    for (const a of attrs) len += (attrSize(a) + 3) & ~3;
    this.ensure(len + HEADER_LEN);
    this.ops.push(op);
    this.header(this.pos, len, type, flags | NLM_F_REQUEST, this.ops.length, NFPROTO_IPV4, 0);
    const end = writeAttrs(this.buf, this.pos + HEADER_LEN, attrs);
    if (end !== this.pos + len) throw new Error("nf_tables encoder: message length mismatch");
    this.lastOffset = this.pos;
    this.pos = end;
  }

  /** The finished batch: BATCH_BEGIN, the messages (the last one asking for an ACK), BATCH_END. */
  finish(): Buffer {
    this.header(0, HEADER_LEN, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, 0, NFNL_SUBSYS_NFTABLES);
    if (this.lastOffset >= 0) this.buf.writeUInt16LE(this.buf.readUInt16LE(this.lastOffset + 6) | NLM_F_ACK, this.lastOffset + 6);
    this.ensure(HEADER_LEN);
    this.header(this.pos, HEADER_LEN, NFNL_MSG_BATCH_END, NLM_F_REQUEST, this.ops.length + 1, 0, NFNL_SUBSYS_NFTABLES);
    return this.buf.subarray(0, this.pos + HEADER_LEN);
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(Math.ceil(this.buf.length * 1.5), this.pos + extra));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  private header(at: number, len: number, type: number, flags: number, seq: number, family: number, resId: number): void {
    const buf = this.buf;
    buf.writeUInt32LE(len, at);
    buf.writeUInt16LE(type, at + 4);
    buf.writeUInt16LE(flags, at + 6);
    buf.writeUInt32LE(seq, at + 8);
    buf.writeUInt32LE(0, at + 12);
    buf[at + 16] = family;
    buf[at + 17] = 0;
    buf.writeUInt16BE(resId, at + 18);
  }
}

function u32le(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return b;
}

/** One libnftnl userdata TLV: u8 type, u8 length, value (no padding). */
function udata(type: number, value: Uint8Array): Uint8Array {
  if (value.byteLength > 255) throw new NftNotEncodable(`userdata of ${value.byteLength} bytes`);
  const b = new Uint8Array(2 + value.byteLength);
  b[0] = type;
  b[1] = value.byteLength;
  b.set(value, 2);
  return b;
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.byteLength;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

function commentUdata(type: number, field: string, comment: string): Uint8Array {
  quoteText(field, comment);
  return udata(type, cstring(comment));
}

function expr(name: string, data: A[]): A {
  return nested(NFTA_LIST_ELEM, [str(NFTA_EXPR_NAME, name), nested(NFTA_EXPR_DATA, data)]);
}

// ---- values ----

function protocolNumber(field: string, value: NftValue): number {
  const n = typeof value === "number" ? value : PROTOCOLS[value];
  if (n === undefined || !Number.isInteger(n) || n < 0 || n > 255) throw new NftNotEncodable(`${field}: protocol ${JSON.stringify(value)}`);
  return n;
}

function portNumber(field: string, value: NftValue): number {
  const n = typeof value === "number" ? value : /^\d+$/.test(value) ? Number(value) : undefined;
  if (n === undefined || n < 0 || n > 65535) throw new NftNotEncodable(`${field}: port ${JSON.stringify(value)}`);
  return n;
}

function ipv4Bytes(field: string, value: NftValue): Uint8Array {
  const out = new Uint8Array(4);
  if (typeof value === "string") {
    let part = 0;
    let digits = 0;
    let n = 0;
    for (let i = 0; i <= value.length; i++) {
      const c = i < value.length ? value.charCodeAt(i) : 46;
      if (c >= 48 && c <= 57 && digits < 3) {
        n = n * 10 + (c - 48);
        digits++;
      } else if (c === 46 && digits > 0 && n <= 255 && part < 4) {
        out[part++] = n;
        n = 0;
        digits = 0;
      } else {
        part = -1;
        break;
      }
    }
    if (part === 4) return out;
  }
  throw new NftNotEncodable(`${field}: IPv4 address ${JSON.stringify(value)}`);
}

/** A key component of a set element in its type's wire form (unpadded). */
function typedValue(field: string, type: NftDataType, value: NftValue): Uint8Array {
  switch (type) {
    case "ipv4_addr": return ipv4Bytes(field, value);
    case "inet_proto": return Uint8Array.of(protocolNumber(field, value));
    case "inet_service": {
      const b = new Uint8Array(2);
      new DataView(b.buffer).setUint16(0, portNumber(field, value), false);
      return b;
    }
    case "mark": {
      if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new NftNotEncodable(`${field}: mark ${JSON.stringify(value)}`);
      return u32le(value);
    }
    default:
      throw new NftNotEncodable(`${field}: elements of type ${type}`);
  }
}

/** A concatenated key: each component padded to 4 bytes, as the kernel's registers hold them. */
function keyBytes(field: string, types: readonly NftDataType[], key: readonly NftValue[]): Uint8Array {
  if (key.length !== types.length) throw new NftNotEncodable(`${field}: key of ${key.length} components for a ${types.length}-component type`);
  if (types.length === 1) return typedValue(`${field}[0]`, types[0]!, key[0]!);
  const parts = key.map((v, i) => typedValue(`${field}[${i}]`, types[i]!, v));
  let length = 0;
  for (const p of parts) length += (p.byteLength + 3) & ~3;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += (p.byteLength + 3) & ~3;
  }
  return out;
}

function keyLength(types: readonly NftDataType[]): number {
  if (types.length === 1) return datatype(types[0]!).len;
  let length = 0;
  for (const t of types) length += (datatype(t).len + 3) & ~3;
  return length;
}

function datatype(t: NftDataType): { id: number; len: number; byteorder: number } {
  if (t === "verdict") throw new NftNotEncodable("verdict as a key type");
  const d = DATATYPES[t];
  if (d === undefined) throw new NftNotEncodable(`data type ${JSON.stringify(t)}`);
  return d;
}

/** nft's id for a concatenated type: each component's id shifted in, 6 bits apiece. */
function keyTypeId(types: readonly NftDataType[]): number {
  let id = 0;
  for (const t of types) id = (id << 6) | datatype(t).id;
  return id;
}

function verdictData(field: string, v: NftVerdict): A {
  const children: A[] = [];
  switch (v.verdict) {
    case "accept": children.push(be32(NFTA_VERDICT_CODE, NF_ACCEPT)); break;
    case "drop": children.push(be32(NFTA_VERDICT_CODE, NF_DROP)); break;
    case "continue": children.push(be32(NFTA_VERDICT_CODE, NFT_CONTINUE)); break;
    case "return": children.push(be32(NFTA_VERDICT_CODE, NFT_RETURN)); break;
    case "jump": case "goto":
      children.push(be32(NFTA_VERDICT_CODE, v.verdict === "jump" ? NFT_JUMP : NFT_GOTO), str(NFTA_VERDICT_CHAIN, checkIdentifier(`${field}.chain`, v.chain)));
      break;
    default:
      throw new NftNotEncodable(`${field}: verdict ${JSON.stringify(v)}`);
  }
  return nested(NFTA_DATA_VERDICT, children);
}

// ---- expressions ----

function payload(dreg: number, base: number, offset: number, len: number): A {
  return expr("payload", [be32(1, dreg), be32(2, base), be32(3, offset), be32(4, len)]);
}

function meta(dreg: number, key: number): A {
  return expr("meta", [be32(2, key), be32(1, dreg)]);
}

function cmp(op: number, bytes: Uint8Array, sreg = NFT_REG_1): A {
  return expr("cmp", [be32(1, sreg), be32(2, op), nested(3, [attr(NFTA_DATA_VALUE, bytes)])]);
}

function bitwise(len: number, mask: Uint8Array, xor: Uint8Array): A {
  return expr("bitwise", [be32(1, NFT_REG_1), be32(2, NFT_REG_1), be32(3, len), nested(4, [attr(NFTA_DATA_VALUE, mask)]), nested(5, [attr(NFTA_DATA_VALUE, xor)])]);
}

function immediateData(dreg: number, bytes: Uint8Array): A {
  return expr("immediate", [be32(1, dreg), nested(2, [attr(NFTA_DATA_VALUE, bytes)])]);
}

function immediateVerdict(field: string, v: NftVerdict): A {
  return expr("immediate", [be32(1, NFT_REG_VERDICT), nested(2, [verdictData(field, v)])]);
}

interface SelectorLoad {
  /** The loading expression for destination register `dreg`. */
  load(dreg: number): A;
  len: number;
  /** The selector's value as bytes. */
  value(field: string, v: NftValue): Uint8Array;
  /** nft's datatype for an anonymous set keyed by this selector. */
  type: NftDataType | "integer";
}

const selectorCache = new Map<NftSelector, SelectorLoad>();

function selector(field: string, sel: NftSelector): SelectorLoad {
  let load = selectorCache.get(sel);
  if (load === undefined) {
    load = makeSelector(field, sel);
    selectorCache.set(sel, load);
  }
  return load;
}

function makeSelector(field: string, sel: NftSelector): SelectorLoad {
  switch (sel) {
    case "ip saddr": case "ip daddr": {
      const offset = sel === "ip saddr" ? 12 : 16;
      return { load: (r) => payload(r, NFT_PAYLOAD_NETWORK_HEADER, offset, 4), len: 4, value: ipv4Bytes, type: "ipv4_addr" };
    }
    case "meta l4proto":
      return { load: (r) => meta(r, NFT_META_L4PROTO), len: 1, value: (f, v) => Uint8Array.of(protocolNumber(f, v)), type: "inet_proto" };
    case "meta mark":
      return { load: (r) => meta(r, NFT_META_MARK), len: 4, value: (f, v) => typedValue(f, "mark", v), type: "mark" };
    case "meta nfproto":
      return { load: (r) => meta(r, NFT_META_NFPROTO), len: 1, value: (f, v) => Uint8Array.of(lookupName(f, NFPROTOS, v)), type: "integer" };
    case "meta pkttype":
      return { load: (r) => meta(r, NFT_META_PKTTYPE), len: 1, value: (f, v) => Uint8Array.of(lookupName(f, PKTTYPES, v)), type: "integer" };
    case "th dport": case "th sport": {
      const offset = sel === "th sport" ? 0 : 2;
      return { load: (r) => payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, offset, 2), len: 2, value: (f, v) => typedValue(f, "inet_service", v), type: "inet_service" };
    }
    case "ct state":
      return { load: (r) => expr("ct", [be32(1, r), be32(2, NFT_CT_STATE)]), len: 4, value: (f, v) => u32le(lookupName(f, CT_STATES, v)), type: "integer" };
    case "fib daddr type":
      return { load: (r) => expr("fib", [be32(1, r), be32(2, NFT_FIB_RESULT_ADDRTYPE), be32(3, NFTA_FIB_F_DADDR)]), len: 4, value: (f, v) => u32le(lookupName(f, ADDRESS_TYPES, v)), type: "integer" };
    default:
      throw new NftNotEncodable(`${field}: selector ${JSON.stringify(sel)}`);
  }
}

function lookupName(field: string, table: Record<string, number>, value: NftValue): number {
  const n = typeof value === "number" ? value : table[value];
  if (n === undefined) throw new NftNotEncodable(`${field}: value ${JSON.stringify(value)}`);
  return n;
}

/** Loads a (concatenated) key into registers the way nft does: NFT_REG_1, then 32-bit registers. */
function loadKey(field: string, selectors: readonly NftSelector[]): { exprs: A[]; loads: SelectorLoad[] } {
  if (selectors.length === 0) throw new NftNotEncodable(`${field}: no selectors`);
  const exprs: A[] = [];
  const loads: SelectorLoad[] = [];
  let words = 0;
  selectors.forEach((sel, i) => {
    const load = selector(`${field}[${i}]`, sel);
    exprs.push(load.load(words === 0 ? NFT_REG_1 : NFT_REG32_00 + words));
    loads.push(load);
    words += (load.len + 3) >> 2;
  });
  return { exprs, loads };
}

/** Per-transaction state: ids of sets created in it (anonymous ones are referred to by id). */
class Context {
  private nextSetId = 1;
  readonly out: BatchBuffer;
  /** NFTA_RULE_TABLE (= NFTA_SET_TABLE, NFTA_CHAIN_TABLE: all 1), encoded once. */
  readonly tableAttr: A;
  constructor(readonly table: string, sizeHint: number) {
    this.out = new BatchBuffer(sizeHint);
    this.tableAttr = attr(1, cstring(table));
  }

  setId(): number {
    return this.nextSetId++;
  }

  push(msg: number, flags: number, attrs: A[], op: string): void {
    this.out.push(msgType(msg), flags, attrs, op);
  }
}

/** An anonymous constant set (or verdict map) for `{ a, b }` / `vmap { … }`, sent before its rule. */
function anonymousSet(ctx: Context, field: string, spec: {
  keyTypeId: number; keyLen: number; keyByteorder: number; interval: boolean; map: boolean; elements: A[]; udataExtra?: Uint8Array[];
}): { name: string; id: number } {
  const id = ctx.setId();
  const name = spec.map ? "__map%d" : "__set%d";
  const flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | (spec.interval ? NFT_SET_INTERVAL : 0) | (spec.map ? NFT_SET_MAP : 0);
  const attrs: A[] = [
    str(NFTA_SET_TABLE, ctx.table), str(NFTA_SET_NAME, name), be32(NFTA_SET_FLAGS, flags),
    be32(NFTA_SET_KEY_TYPE, spec.keyTypeId), be32(NFTA_SET_KEY_LEN, spec.keyLen),
  ];
  if (spec.map) attrs.push(be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT), be32(NFTA_SET_DATA_LEN, 0));
  attrs.push(be32(NFTA_SET_ID, id), nested(NFTA_SET_DESC, [be32(NFTA_SET_DESC_SIZE, spec.elements.length)]));
  const ud: Uint8Array[] = [udata(UDATA_SET_KEYBYTEORDER, u32le(spec.keyByteorder))];
  if (spec.map) ud.push(udata(UDATA_SET_DATABYTEORDER, u32le(0)));
  if (spec.interval) ud.push(udata(UDATA_SET_MERGE_ELEMENTS, u32le(1)));
  for (const extra of spec.udataExtra ?? []) ud.push(extra);
  if (spec.map) ud.push(udata(UDATA_SET_DATA_INTERVAL, u32le(0)));
  attrs.push(attr(NFTA_SET_USERDATA, concatBytes(ud)));
  ctx.push(NFT_MSG_NEWSET, NLM_F_CREATE, attrs, `${field}: anonymous set`);
  ctx.push(NFT_MSG_NEWSETELEM, NLM_F_CREATE, [
    str(NFTA_SET_ELEM_LIST_TABLE, ctx.table), str(NFTA_SET_ELEM_LIST_SET, name), nested(NFTA_SET_ELEM_LIST_ELEMENTS, spec.elements), be32(NFTA_SET_ELEM_LIST_SET_ID, id),
  ], `${field}: anonymous set elements`);
  return { name, id };
}

function element(key: Uint8Array, extra: A[] = []): A {
  return nested(NFTA_LIST_ELEM, [nested(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, key)]), ...extra]);
}

/** The typeof userdata nft records for an anonymous set keyed by `ip saddr` / `ip daddr`. */
function ipTypeofUdata(sel: NftSelector): Uint8Array | undefined {
  if (sel !== "ip saddr" && sel !== "ip daddr") return undefined;
  const EXPR_PAYLOAD = 7, PROTO_DESC_IP = 12, IPHDR_SADDR = 11, IPHDR_DADDR = 12;
  const inner = concatBytes([udata(0, u32le(PROTO_DESC_IP)), udata(1, u32le(sel === "ip saddr" ? IPHDR_SADDR : IPHDR_DADDR))]);
  return udata(UDATA_SET_KEY_TYPEOF, concatBytes([udata(0, u32le(EXPR_PAYLOAD)), udata(1, inner)]));
}

/** `ip saddr { CIDR, … }` as sorted, merged [start, end) ranges of 32-bit numbers. */
function ipv4Ranges(field: string, values: readonly NftValue[]): [number, number][] {
  const ranges: [number, number][] = values.map((v, i) => {
    if (typeof v !== "string") throw new NftNotEncodable(`${field}[${i}]: ${JSON.stringify(v)}`);
    const cidr = cidrOf(`${field}[${i}]`, v.includes("/") ? v : `${v}/32`);
    const b = ipv4Bytes(`${field}[${i}]`, v.split("/")[0]!);
    const n = new DataView(b.buffer, b.byteOffset, 4).getUint32(0, false);
    const size = 2 ** (32 - cidr.prefix);
    const start = n - (n % size);
    return [start, start + size];
  });
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

/** A CIDR the encoder can write; anything parseCidr refuses goes to libnftables (and nft's own checks) instead. */
function cidrOf(field: string, text: string): ReturnType<typeof parseCidr> {
  try {
    const cidr = parseCidr(text);
    if (cidr.address.family === 4) return cidr;
  } catch {
    // reported below
  }
  throw new NftNotEncodable(`${field}: ${JSON.stringify(text)} is not an IPv4 CIDR the encoder writes`);
}

function be32Bytes(n: number): Uint8Array {
  return u32be(n);
}

/**
 * Expressions of single-value matches, by selector, operator and value: the same few (the cluster
 * CIDR, a protocol, `ct state new`) recur in thousands of rules. Encoded attributes are never
 * changed after they are sized, so sharing them is safe.
 */
const matchCache = new Map<string, A[]>();
const MATCH_CACHE_MAX = 256;

function matchStatement(ctx: Context, field: string, s: Extract<NftStatement, { match: NftSelector }>): A[] {
  if (typeof s.value === "string" || typeof s.value === "number") {
    const key = `${s.match}|${s.op ?? "=="}|${s.value}`;
    let exprs = matchCache.get(key);
    if (exprs === undefined) {
      exprs = encodeMatch(ctx, field, s);
      if (matchCache.size >= MATCH_CACHE_MAX) matchCache.clear();
      matchCache.set(key, exprs);
    }
    return exprs;
  }
  return encodeMatch(ctx, field, s);
}

function encodeMatch(ctx: Context, field: string, s: Extract<NftStatement, { match: NftSelector }>): A[] {
  const negate = s.op === "!=";
  if (s.op !== undefined && s.op !== "==" && s.op !== "!=") throw new NftNotEncodable(`${field}.op ${JSON.stringify(s.op)}`);
  const values = Array.isArray(s.value) ? (s.value as readonly NftValue[]) : [s.value as NftValue];
  if (values.length === 0) throw new NftNotEncodable(`${field}: empty value list`);
  const load = selector(`${field}.match`, s.match);
  const isIp = s.match === "ip saddr" || s.match === "ip daddr";
  if (values.length === 1) {
    const v = values[0]!;
    if (isIp && typeof v === "string" && v.includes("/")) {
      const cidr = cidrOf(`${field}.value`, v);
      const prefix = cidr.prefix;
      const offset = s.match === "ip saddr" ? 12 : 16;
      const bytes = ipv4Bytes(`${field}.value`, v.split("/")[0]!);
      if (prefix === 32) return [load.load(NFT_REG_1), cmp(negate ? NFT_CMP_NEQ : NFT_CMP_EQ, bytes)];
      if (prefix === 0) throw new NftNotEncodable(`${field}: prefix /0`);
      const mask = new Uint8Array(4);
      for (let i = 0; i < prefix; i++) mask[i >> 3]! |= 0x80 >> (i & 7);
      const network = bytes.map((b, i) => b & mask[i]!);
      if (prefix % 8 === 0) {
        // nft loads only the prefix's bytes and compares them, with no mask.
        return [payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, offset, prefix / 8), cmp(negate ? NFT_CMP_NEQ : NFT_CMP_EQ, network.subarray(0, prefix / 8))];
      }
      return [load.load(NFT_REG_1), bitwise(4, mask, new Uint8Array(4)), cmp(negate ? NFT_CMP_NEQ : NFT_CMP_EQ, network)];
    }
    if (s.match === "ct state") {
      const bits = load.value(`${field}.value`, v);
      // `ct state new` is a bit test; `ct state != new` compares the whole state (nft 1.0.6).
      if (negate) return [load.load(NFT_REG_1), cmp(NFT_CMP_NEQ, bits)];
      return [load.load(NFT_REG_1), bitwise(4, bits, new Uint8Array(4)), cmp(NFT_CMP_NEQ, new Uint8Array(4))];
    }
    return [load.load(NFT_REG_1), cmp(negate ? NFT_CMP_NEQ : NFT_CMP_EQ, load.value(`${field}.value`, v))];
  }
  // Several values: an anonymous set, an interval set when any of them is a prefix.
  if (s.match === "ct state") throw new NftNotEncodable(`${field}: ct state with several values`);
  let set: { name: string; id: number };
  if (isIp && values.some((v) => typeof v === "string" && v.includes("/") && !v.endsWith("/32"))) {
    const ranges = ipv4Ranges(`${field}.value`, values);
    const elements: A[] = [];
    const endFlag = be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
    // nft starts an interval set whose first range is above zero with an end marker at zero.
    if (ranges[0]![0] > 0) elements.push(nested(NFTA_LIST_ELEM, [endFlag, nested(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, be32Bytes(0))])]));
    for (const [start, end] of ranges) {
      elements.push(element(be32Bytes(start)));
      if (end < 2 ** 32) elements.push(nested(NFTA_LIST_ELEM, [endFlag, nested(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, be32Bytes(end))])]));
    }
    const typeof_ = ipTypeofUdata(s.match);
    set = anonymousSet(ctx, field, { keyTypeId: 7, keyLen: 4, keyByteorder: 2, interval: true, map: false, elements, ...(typeof_ ? { udataExtra: [typeof_] } : {}) });
  } else {
    if (load.type === "integer") throw new NftNotEncodable(`${field}: a set of ${s.match} values`);
    const dt = datatype(load.type);
    const seen = new Set<string>();
    const elements: A[] = [];
    for (const [i, v] of values.entries()) {
      const bytes = load.value(`${field}.value[${i}]`, typeof v === "string" && v.endsWith("/32") ? v.slice(0, -3) : v);
      const k = Buffer.from(bytes).toString("hex");
      if (!seen.has(k)) elements.push(element(bytes));
      seen.add(k);
    }
    const typeof_ = ipTypeofUdata(s.match);
    set = anonymousSet(ctx, field, { keyTypeId: dt.id, keyLen: dt.len, keyByteorder: dt.byteorder, interval: false, map: false, elements, ...(typeof_ ? { udataExtra: [typeof_] } : {}) });
  }
  return [load.load(NFT_REG_1), lookupExpr(set.name, set.id, NFT_REG_1, undefined, negate)];
}

function lookupExpr(set: string, setId: number | undefined, sreg: number, dreg: number | undefined, invert: boolean): A {
  const attrs: A[] = [str(1, set), be32(2, sreg)];
  if (dreg !== undefined) attrs.push(be32(3, dreg));
  if (setId !== undefined) attrs.push(be32(4, setId));
  if (invert) attrs.push(be32(5, NFT_LOOKUP_F_INV));
  return expr("lookup", attrs);
}

function numgen(mod: number): A {
  return expr("numgen", [be32(1, NFT_REG_1), be32(2, mod), be32(3, NFT_NG_RANDOM)]);
}

function statementExprs(ctx: Context, field: string, s: NftStatement): A[] {
  if ("verdict" in s) return [immediateVerdict(field, s)];
  if ("match" in s) return matchStatement(ctx, field, s);
  if ("lookup" in s) {
    const { exprs } = loadKey(`${field}.lookup`, s.lookup);
    return [...exprs, lookupExpr(checkIdentifier(`${field}.set`, s.set), undefined, NFT_REG_1, undefined, s.negate === true)];
  }
  if ("vmapLookup" in s) {
    const { exprs } = loadKey(`${field}.vmapLookup`, s.vmapLookup);
    return [...exprs, lookupExpr(checkIdentifier(`${field}.map`, s.map), undefined, NFT_REG_1, NFT_REG_VERDICT, false)];
  }
  if ("numgenMatch" in s) {
    const { mod, value } = s.numgenMatch;
    if (!Number.isSafeInteger(mod) || mod < 1 || !Number.isSafeInteger(value) || value < 0 || value >= mod) throw new NftNotEncodable(`${field}: numgen mod ${mod} ${value}`);
    return [numgen(mod), cmp(NFT_CMP_EQ, u32le(value))];
  }
  if ("numgenVmap" in s) {
    if (s.numgenVmap.length === 0) throw new NftNotEncodable(`${field}: empty numgen vmap`);
    const elements = s.numgenVmap.map((v, i) => element(u32le(i), [nested(NFTA_SET_ELEM_DATA, [verdictData(`${field}.numgenVmap[${i}]`, v)])]));
    const map = anonymousSet(ctx, field, { keyTypeId: TYPE_INTEGER, keyLen: 4, keyByteorder: 1, interval: false, map: true, elements });
    return [numgen(s.numgenVmap.length), lookupExpr(map.name, map.id, NFT_REG_1, NFT_REG_VERDICT, false)];
  }
  if ("dnat" in s || "snat" in s) {
    const target = "dnat" in s ? s.dnat : s.snat;
    if (target.family !== "ip") throw new NftNotEncodable(`${field}: nat family ${target.family}`);
    const exprs = [immediateData(NFT_REG_1, ipv4Bytes(`${field}.address`, target.address))];
    const nat: A[] = [be32(1, "dnat" in s ? NFT_NAT_DNAT : NFT_NAT_SNAT), be32(2, NFPROTO_IPV4), be32(3, NFT_REG_1)];
    const port = "dnat" in s ? s.dnat.port : undefined;
    if (port !== undefined) {
      const b = new Uint8Array(2);
      new DataView(b.buffer).setUint16(0, portNumber(`${field}.port`, port), false);
      exprs.push(immediateData(NFT_REG_2, b));
      nat.push(be32(5, NFT_REG_2), be32(7, NF_NAT_RANGE_PROTO_SPECIFIED));
    }
    return [...exprs, expr("nat", nat)];
  }
  if ("masquerade" in s) return [expr("masq", s.masquerade.fullyRandom ? [be32(1, NF_NAT_RANGE_PROTO_RANDOM_FULLY)] : [])];
  if ("setMarkOr" in s) {
    const mark = s.setMarkOr;
    if (!Number.isInteger(mark) || mark < 0 || mark > 0xffffffff) throw new NftNotEncodable(`${field}: mark ${mark}`);
    return [meta(NFT_REG_1, NFT_META_MARK), bitwise(4, u32le(~mark >>> 0), u32le(mark)), expr("meta", [be32(2, NFT_META_MARK), be32(3, NFT_REG_1)])];
  }
  if ("updateSet" in s) {
    const { exprs } = loadKey(`${field}.key`, s.key);
    return [...exprs, expr("dynset", [str(1, checkIdentifier(`${field}.updateSet`, s.updateSet)), be32(3, NFT_DYNSET_OP_UPDATE), be32(4, NFT_REG_1)])];
  }
  if ("counter" in s) return [expr("counter", [be64(1, 0), be64(2, 0)])];
  if ("namedCounter" in s) return [expr("objref", [be32(1, 1), str(2, checkIdentifier(`${field}.namedCounter`, s.namedCounter))])];
  if ("reject" in s) {
    switch (s.reject) {
      case "tcp reset": return [expr("reject", [be32(1, NFT_REJECT_TCP_RST)])];
      case "icmp port-unreachable": return [expr("reject", [be32(1, NFT_REJECT_ICMP_UNREACH), attr(2, Uint8Array.of(3))])];
      case "icmp host-unreachable": return [expr("reject", [be32(1, NFT_REJECT_ICMP_UNREACH), attr(2, Uint8Array.of(1))])];
      case "icmpx port-unreachable": return [expr("reject", [be32(1, NFT_REJECT_ICMPX_UNREACH), attr(2, Uint8Array.of(1))])];
      case "icmpx admin-prohibited": return [expr("reject", [be32(1, NFT_REJECT_ICMPX_UNREACH), attr(2, Uint8Array.of(3))])];
      default: throw new NftNotEncodable(`${field}: reject ${JSON.stringify(s.reject)}`);
    }
  }
  throw new NftNotEncodable(`${field}: statement ${JSON.stringify(s)}`);
}

function ruleAttrs(ctx: Context, field: string, chain: A, rule: NftRule): A[] {
  if (rule.statements.length === 0) throw new NftNotEncodable(`${field}: a rule without statements`);
  const exprs: A[] = [];
  rule.statements.forEach((s, i) => {
    for (const e of statementExprs(ctx, `${field}.statements[${i}]`, s)) exprs.push(e);
  });
  const attrs: A[] = [ctx.tableAttr, chain, nested(NFTA_RULE_EXPRESSIONS, exprs)];
  if (rule.comment !== undefined) attrs.push(attr(NFTA_RULE_USERDATA, commentUdata(UDATA_COMMENT, `${field}.comment`, rule.comment)));
  return attrs;
}

function baseChainAttrs(field: string, base: NftBaseChain): A[] {
  const hook = NF_INET_HOOKS[base.hook];
  if (hook === undefined) throw new NftNotEncodable(`${field}.hook ${base.hook}`);
  if (base.device !== undefined) throw new NftNotEncodable(`${field}.device`);
  if (!["filter", "nat", "route"].includes(base.type)) throw new NftNotEncodable(`${field}.type ${base.type}`);
  const priority = priorityNumber("ip", base.priority);
  if (!Number.isSafeInteger(priority)) throw new NftNotEncodable(`${field}.priority ${JSON.stringify(base.priority)}`);
  const attrs: A[] = [nested(NFTA_CHAIN_HOOK, [be32(NFTA_HOOK_HOOKNUM, hook), be32(NFTA_HOOK_PRIORITY, priority)])];
  if (base.policy !== undefined) {
    if (base.policy !== "accept" && base.policy !== "drop") throw new NftNotEncodable(`${field}.policy`);
    attrs.push(be32(NFTA_CHAIN_POLICY, base.policy === "accept" ? NF_ACCEPT : NF_DROP));
  }
  attrs.push(str(NFTA_CHAIN_TYPE, base.type));
  return attrs;
}

function addChain(ctx: Context, field: string, chain: NftChain, flush: boolean): void {
  const name = checkIdentifier(`${field}.name`, chain.name);
  ctx.push(NFT_MSG_NEWCHAIN, NLM_F_CREATE, [str(NFTA_CHAIN_TABLE, ctx.table), str(NFTA_CHAIN_NAME, name), ...(chain.base ? baseChainAttrs(`${field}.base`, chain.base) : [])], `add chain ${name}`);
  if (flush) ctx.push(NFT_MSG_DELRULE, 0, [str(NFTA_RULE_TABLE, ctx.table), str(NFTA_RULE_CHAIN, name)], `flush chain ${name}`);
  const chainAttr = attr(NFTA_RULE_CHAIN, cstring(name));
  chain.rules.forEach((rule, i) => ctx.push(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, ruleAttrs(ctx, `${field}.rules[${i}]`, chainAttr, rule), `add rule ${name} (rule ${i})`));
}

function setUserdata(keyType: readonly NftDataType[], map: boolean, comment: string | undefined, field: string): Uint8Array {
  const concat = keyType.length > 1;
  const parts = [udata(UDATA_SET_KEYBYTEORDER, u32le(concat ? 0 : datatype(keyType[0]!).byteorder))];
  if (map) parts.push(udata(UDATA_SET_DATABYTEORDER, u32le(0)));
  // nft 1.0.6 records the last component's type of a concatenated map key (byte for byte as it sends it).
  if (map && concat) parts.push(udata(UDATA_SET_KEY_TYPEOF, concatBytes([udata(0, u32le(datatype(keyType[keyType.length - 1]!).id)), udata(1, new Uint8Array(0))])));
  if (map) parts.push(udata(UDATA_SET_DATA_INTERVAL, u32le(0)));
  if (comment !== undefined) parts.push(commentUdata(UDATA_SET_COMMENT, `${field}.comment`, comment));
  return concatBytes(parts);
}

function addSetOrMap(ctx: Context, field: string, s: NftSet | NftMap, isMap: boolean, schemas: Map<string, SetSchema | undefined>): void {
  const name = checkIdentifier(`${field}.name`, s.name);
  let flags = 0;
  for (const f of s.flags ?? []) {
    if (f === "timeout") flags |= NFT_SET_TIMEOUT;
    else if (f === "dynamic") flags |= NFT_SET_EVAL;
    else if (f === "constant") flags |= NFT_SET_CONSTANT;
    else throw new NftNotEncodable(`${field}.flags ${f}`);
  }
  const attrs: A[] = [str(NFTA_SET_TABLE, ctx.table), str(NFTA_SET_NAME, name)];
  if (isMap) {
    const map = s as NftMap;
    if (map.valueType.length !== 1 || map.valueType[0] !== "verdict") throw new NftNotEncodable(`${field}: a data map (${map.valueType.join(" . ")})`);
    flags |= NFT_SET_MAP;
  }
  attrs.push(be32(NFTA_SET_FLAGS, flags), be32(NFTA_SET_KEY_TYPE, keyTypeId(s.keyType)), be32(NFTA_SET_KEY_LEN, keyLength(s.keyType)));
  if (isMap) attrs.push(be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT), be32(NFTA_SET_DATA_LEN, 0));
  attrs.push(be32(NFTA_SET_ID, ctx.setId()));
  const timeout = isMap ? undefined : (s as NftSet).timeoutSeconds;
  if (timeout !== undefined) {
    if (!Number.isSafeInteger(timeout) || timeout <= 0) throw new NftNotEncodable(`${field}.timeoutSeconds ${timeout}`);
    attrs.push(be64(NFTA_SET_TIMEOUT, timeout * 1000));
  }
  if (!isMap && (s as NftSet).autoMerge) throw new NftNotEncodable(`${field}.autoMerge`);
  attrs.push(attr(NFTA_SET_USERDATA, setUserdata(s.keyType, isMap, s.comment, field)));
  ctx.push(NFT_MSG_NEWSET, NLM_F_CREATE, attrs, `add ${isMap ? "map" : "set"} ${name}`);
  const schema: SetSchema = { keyType: s.keyType, verdictMap: isMap };
  schemas.set(name, schema);
  if (s.elements.length > 0) elementMessages(ctx, `${field}.elements`, name, schema, s.elements, false);
}

function isMapElement(e: readonly NftValue[] | NftMapElement): e is NftMapElement {
  return !Array.isArray(e);
}

function elementMessages(ctx: Context, field: string, set: string, schema: SetSchema, elements: readonly (readonly NftValue[] | NftMapElement)[], remove: boolean): void {
  let batch: A[] = [];
  let bytes = 0;
  const flush = () => {
    if (batch.length === 0) return;
    ctx.push(remove ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM, remove ? 0 : NLM_F_CREATE, [
      str(NFTA_SET_ELEM_LIST_TABLE, ctx.table), str(NFTA_SET_ELEM_LIST_SET, set), nested(NFTA_SET_ELEM_LIST_ELEMENTS, batch),
    ], `${remove ? "delete" : "add"} element ${set}`);
    batch = [];
    bytes = 0;
  };
  elements.forEach((e, i) => {
    const key = isMapElement(e) ? e.key : e;
    const keyValue = keyBytes(`${field}[${i}]`, schema.keyType, key);
    const children = [nested(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, keyValue)])];
    let size = 32 + keyValue.byteLength;
    if (!remove && schema.verdictMap) {
      if (!isMapElement(e) || e.verdict === undefined || e.value !== undefined) throw new NftNotEncodable(`${field}[${i}]: a verdict map element needs a verdict`);
      children.push(nested(NFTA_SET_ELEM_DATA, [verdictData(`${field}[${i}].verdict`, e.verdict)]));
      size += 32 + (e.verdict.verdict === "jump" || e.verdict.verdict === "goto" ? e.verdict.chain.length : 0);
    } else if (!remove && isMapElement(e)) {
      throw new NftNotEncodable(`${field}[${i}]: a map element for set ${set}`);
    }
    if (bytes + size > ELEMENT_BYTES_PER_MESSAGE) flush();
    batch.push(nested(NFTA_LIST_ELEM, children));
    bytes += size;
  });
  flush();
}

/**
 * The sets and maps a transaction leaves behind, as encodeTransaction reports them, without
 * encoding it (for a transaction applied by another process).
 */
export function schemaChangesOf(tx: NftTransaction): Pick<EncodedTransaction, "schemaChanges" | "tableDeleted"> {
  const schemaChanges = new Map<string, SetSchema | undefined>();
  let tableDeleted = false;
  for (const c of tx.changes) {
    if (c.op === "deleteTable") {
      schemaChanges.clear();
      tableDeleted = true;
    } else if (c.op === "addSet") schemaChanges.set(c.set.name, { keyType: c.set.keyType, verdictMap: false });
    else if (c.op === "addMap") schemaChanges.set(c.map.name, { keyType: c.map.keyType, verdictMap: true });
    else if (c.op === "deleteSet" || c.op === "deleteMap") schemaChanges.set(c.name, undefined);
  }
  return { schemaChanges, tableDeleted };
}

/** A generous guess at the batch's size (measured: ~300 bytes a rule, ~100 an element). */
export function estimateBytes(tx: NftTransaction): number {
  let bytes = 256;
  for (const c of tx.changes) {
    if (c.op === "addChain" || c.op === "replaceChain") bytes += 128 + 360 * c.chain.rules.length;
    else if (c.op === "addElements") bytes += 120 * c.elements.length;
    else if (c.op === "deleteElements") bytes += 80 * c.keys.length * (c.ifPresent ? 2 : 1);
    else if (c.op === "addSet") bytes += 256 + 40 * c.set.elements.length;
    else if (c.op === "addMap") bytes += 256 + 120 * c.map.elements.length;
    else bytes += 128;
  }
  return bytes;
}

/**
 * The messages of one transaction (without the batch markers), or NftNotEncodable. `schemaOf`
 * tells the types of sets that exist in the kernel already (element changes name only the set).
 */
export function encodeTransaction(tx: NftTransaction, schemaOf: SchemaLookup): EncodedTransaction {
  if (tx.family !== "ip") throw new NftNotEncodable(`family ${tx.family}`);
  const table = checkIdentifier("table", tx.table);
  const ctx = new Context(table, estimateBytes(tx));
  const schemas = new Map<string, SetSchema | undefined>();
  let tableDeleted = false;
  const schema = (name: string): SetSchema | undefined => (schemas.has(name) ? schemas.get(name) : tableDeleted ? undefined : schemaOf(name));
  tx.changes.forEach((change: NftChange, i) => {
    const field = `changes[${i}]`;
    switch (change.op) {
      case "ensureTable":
        ctx.push(NFT_MSG_NEWTABLE, NLM_F_CREATE, [str(NFTA_TABLE_NAME, table), be32(NFTA_TABLE_FLAGS, 0)], "add table");
        return;
      case "deleteTable":
        ctx.push(NFT_MSG_DELTABLE, 0, [str(NFTA_TABLE_NAME, table)], "delete table");
        schemas.clear();
        tableDeleted = true;
        return;
      case "addChain": addChain(ctx, `${field}.chain`, change.chain, false); return;
      case "replaceChain": addChain(ctx, `${field}.chain`, change.chain, true); return;
      case "deleteChain": {
        const name = checkIdentifier(`${field}.name`, change.name);
        ctx.push(NFT_MSG_DELRULE, 0, [str(NFTA_RULE_TABLE, table), str(NFTA_RULE_CHAIN, name)], `flush chain ${name}`);
        ctx.push(NFT_MSG_DELCHAIN, 0, [str(NFTA_CHAIN_TABLE, table), str(NFTA_CHAIN_NAME, name)], `delete chain ${name}`);
        return;
      }
      case "addSet": addSetOrMap(ctx, `${field}.set`, change.set, false, schemas); return;
      case "addMap": addSetOrMap(ctx, `${field}.map`, change.map, true, schemas); return;
      case "deleteSet": case "deleteMap": {
        const name = checkIdentifier(`${field}.name`, change.name);
        ctx.push(NFT_MSG_DELSET, 0, [str(NFTA_SET_TABLE, table), str(NFTA_SET_NAME, name)], `delete ${change.op === "deleteSet" ? "set" : "map"} ${name}`);
        schemas.set(name, undefined);
        return;
      }
      case "addElements": case "deleteElements": {
        const name = checkIdentifier(`${field}.setOrMap`, change.setOrMap);
        const s = schema(name);
        if (s === undefined) throw new NftNotEncodable(`${field}: elements of ${name}, whose type this writer has not seen`);
        if (change.op === "addElements") elementMessages(ctx, `${field}.elements`, name, s, change.elements, false);
        else {
          if (change.ifPresent) elementMessages(ctx, `${field}.keys`, name, { ...s, verdictMap: false }, change.keys, false);
          elementMessages(ctx, `${field}.keys`, name, s, change.keys, true);
        }
        return;
      }
      default:
        throw new NftNotEncodable(`${field}: ${change.op}`);
    }
  });
  return { ops: ctx.out.ops, batch: ctx.out.finish(), schemaChanges: schemas, tableDeleted };
}
