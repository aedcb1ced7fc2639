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
//
// The bytes are written in place into one buffer as the transaction is walked (BatchWriter), with
// no object or buffer per attribute: a full sync of 10,000 services is ~30,000 messages and
// ~70,000 set elements, where a tree of small objects cost more in garbage collection than the
// writing itself. The expressions of single-value matches, which recur in thousands of rules, are
// encoded once and copied.

import { parseCidr } from "../../net/cidr.ts";
import { priorityNumber } from "./diff.ts";
import type {
  NftBaseChain, NftChain, NftDataType, NftMap, NftMapElement, NftRule, NftSelector, NftSet, NftStatement,
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
  numgen: { id: TYPE_INTEGER, len: 4, byteorder: 1 },
};
// libnftnl's userdata TLV types (libnftnl/udata.h).
const UDATA_SET_KEYBYTEORDER = 0, UDATA_SET_DATABYTEORDER = 1, UDATA_SET_MERGE_ELEMENTS = 2, UDATA_SET_KEY_TYPEOF = 3,
  UDATA_SET_DATA_INTERVAL = 6, UDATA_SET_COMMENT = 7;
const UDATA_COMMENT = 0;

/** What element encoding needs to know about a named set or map. */
export interface SetSchema {
  keyType: readonly NftDataType[];
  verdictMap: boolean;
  /** Data maps only: the type of each element's value (the one data map encoded: numgen → ipv4_addr . inet_service). */
  valueType?: readonly NftDataType[];
}

/** Looks up a set's schema as the kernel has it now (from earlier transactions). */
export type SchemaLookup = (set: string) => SetSchema | undefined;

export interface EncodedTransaction {
  /** The whole NFNL batch, ready to send (see BatchWriter). */
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

const NLA_F_NESTED = 0x8000;
const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const HEADER_LEN = NLMSG_HDRLEN + NFGENMSG_LEN;
const ATTR_MAX = 0xffff;

function tooLong(len: number): NftNotEncodable {
  return new NftNotEncodable(`an attribute of ${len} bytes (netlink attributes stop at 64 KiB)`);
}

/**
 * The batch's bytes, written in place: a message or attribute is begun (its header reserved),
 * its contents written after it, and its length patched in when it ends. Sequence numbers are the
 * message's index (0 for BATCH_BEGIN); the socket adds its own base. Only the last message asks
 * for an ACK (see NetlinkSocket.nfBatch).
 */
class BatchWriter {
  private buf: Buffer;
  private pos = HEADER_LEN; // BATCH_BEGIN is written last, at offset 0
  private message = -1;
  private lastMessage = -1;
  /** Offsets of the attributes begun and not yet ended, innermost last. */
  private readonly open: number[] = [];
  readonly ops: string[] = [];

  /** `sizeHint`: the expected size, so a full sync's bytes are allocated once, not by doubling. */
  constructor(sizeHint: number) {
    // Every byte up to the end is written (padding explicitly), so the buffer needs no zeroing.
    this.buf = Buffer.allocUnsafe(Math.max(64 * 1024, sizeHint));
  }

  beginMessage(msg: number, flags: number): void {
    if (this.pos + HEADER_LEN > this.buf.length) this.grow(HEADER_LEN);
    this.message = this.pos;
    this.header(this.pos, 0, msgType(msg), flags | NLM_F_REQUEST, this.ops.length + 1, NFPROTO_IPV4, 0);
    this.pos += HEADER_LEN;
  }

  /** `op` says what the message does, for the kernel's errors. */
  endMessage(op: string): void {
    if (this.message < 0 || this.open.length > 0) throw new Error("nf_tables encoder: message ended with an attribute open");
    const at = this.message;
    const len = this.pos - at;
    const buf = this.buf;
    buf[at] = len;
    buf[at + 1] = len >>> 8;
    buf[at + 2] = len >>> 16;
    buf[at + 3] = len >>> 24;
    this.lastMessage = at;
    this.message = -1;
    this.ops.push(op);
  }

  /** A nested attribute; its children follow until end(). */
  begin(type: number): void {
    if (this.pos + 4 > this.buf.length) this.grow(4);
    const buf = this.buf;
    const at = this.pos;
    this.open.push(at);
    buf[at + 2] = type;
    buf[at + 3] = (type | NLA_F_NESTED) >>> 8;
    this.pos = at + 4;
  }

  /** A leaf attribute whose value is written in pieces (u8, be16, …) until end(). */
  beginValue(type: number): void {
    if (this.pos + 4 > this.buf.length) this.grow(4);
    const buf = this.buf;
    const at = this.pos;
    this.open.push(at);
    buf[at + 2] = type;
    buf[at + 3] = type >>> 8;
    this.pos = at + 4;
  }

  end(): void {
    const start = this.open.pop();
    if (start === undefined) throw new Error("nf_tables encoder: end() without begin()");
    const len = this.pos - start;
    if (len > ATTR_MAX) throw tooLong(len);
    const buf = this.buf;
    buf[start] = len;
    buf[start + 1] = len >>> 8;
    while ((this.pos & 3) !== 0) buf[this.pos++] = 0;
  }

  /**
   * An expression: NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { … } }, both left open for
   * its attributes until endExpr. The headers and name are copied from bytes made once per name.
   */
  beginExpr(name: string): void {
    let prefix = EXPR_PREFIXES.get(name);
    if (prefix === undefined) EXPR_PREFIXES.set(name, (prefix = exprPrefix(name)));
    if (this.pos + prefix.length > this.buf.length) this.grow(prefix.length);
    const p = this.pos;
    this.buf.set(prefix, p);
    this.open.push(p, p + prefix.length - 4);
    this.pos = p + prefix.length;
  }

  endExpr(): void {
    this.end();
    this.end();
  }

  u32(type: number, value: number): void {
    if (this.pos + 8 > this.buf.length) this.grow(8);
    const buf = this.buf;
    const p = this.pos;
    buf[p] = 8;
    buf[p + 1] = 0;
    buf[p + 2] = type;
    buf[p + 3] = type >>> 8;
    buf[p + 4] = value >>> 24;
    buf[p + 5] = value >>> 16;
    buf[p + 6] = value >>> 8;
    buf[p + 7] = value;
    this.pos = p + 8;
  }

  u64(type: number, value: number): void {
    this.attrHeader(12, type);
    this.be32(Math.floor(value / 0x100000000));
    this.be32(value);
  }

  /** NUL-terminated UTF-8. */
  str(type: number, s: string): void {
    const start = this.pos;
    this.attrHeader(0, type);
    this.stringBytes(s);
    const len = this.pos - start;
    if (len > ATTR_MAX) throw tooLong(len);
    const buf = this.buf;
    buf[start] = len;
    buf[start + 1] = len >>> 8;
    while ((this.pos & 3) !== 0) buf[this.pos++] = 0;
  }

  bytes(type: number, value: Uint8Array): void {
    const len = 4 + value.byteLength;
    if (len > ATTR_MAX) throw tooLong(len);
    this.attrHeader(len, type);
    this.buf.set(value, this.pos);
    this.pos += value.byteLength;
    this.pad();
  }

  /** Whole attributes copied from an earlier encoding (see since). */
  raw(attrs: Uint8Array): void {
    if (this.pos + attrs.byteLength > this.buf.length) this.grow(attrs.byteLength);
    this.buf.set(attrs, this.pos);
    this.pos += attrs.byteLength;
  }

  get offset(): number {
    return this.pos;
  }

  /** Forgets what was written from `offset` (between messages) on. */
  rewind(offset: number): void {
    this.pos = offset;
    this.open.length = 0;
    this.message = -1;
  }

  /**
   * An attribute holding one libnftnl userdata TLV (u8 type, u8 length, no padding) of a
   * NUL-terminated comment, checked as nft text (quoteText).
   */
  udataString(type: number, udataType: number, field: string, text: string): void {
    quoteText(field, text);
    this.beginValue(type);
    const tlv = this.pos;
    this.u8(udataType);
    this.u8(0);
    this.stringBytes(text);
    const len = this.pos - tlv - 2;
    if (len > 255) throw new NftNotEncodable(`userdata of ${len} bytes`);
    this.buf[tlv + 1] = len;
    this.end();
  }

  /** A copy of what was written from `offset` on (Uint8Array's slice: Buffer's is a view into the batch). */
  since(offset: number): Uint8Array {
    return Uint8Array.prototype.slice.call(this.buf, offset, this.pos);
  }

  // ---- pieces of a value, between beginValue and end ----

  u8(value: number): void {
    if (this.pos + 1 > this.buf.length) this.grow(1);
    this.buf[this.pos++] = value;
  }

  be16(value: number): void {
    if (this.pos + 2 > this.buf.length) this.grow(2);
    const buf = this.buf;
    buf[this.pos] = value >>> 8;
    buf[this.pos + 1] = value;
    this.pos += 2;
  }

  be32(value: number): void {
    if (this.pos + 4 > this.buf.length) this.grow(4);
    const buf = this.buf;
    const p = this.pos;
    buf[p] = value >>> 24;
    buf[p + 1] = value >>> 16;
    buf[p + 2] = value >>> 8;
    buf[p + 3] = value;
    this.pos = p + 4;
  }

  le32(value: number): void {
    if (this.pos + 4 > this.buf.length) this.grow(4);
    const buf = this.buf;
    const p = this.pos;
    buf[p] = value;
    buf[p + 1] = value >>> 8;
    buf[p + 2] = value >>> 16;
    buf[p + 3] = value >>> 24;
    this.pos = p + 4;
  }

  /** NUL-terminated UTF-8 (no header, no padding). */
  stringBytes(s: string): void {
    const n = s.length;
    if (this.pos + 3 * n + 4 > this.buf.length) this.grow(3 * n + 4);
    const buf = this.buf;
    const start = this.pos;
    let p = start;
    // Names and comments are ASCII but for rare comments: one byte per character, else Buffer.write.
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        p = start + buf.write(s, start, "utf8");
        break;
      }
      buf[p++] = c;
    }
    buf[p++] = 0;
    this.pos = p;
  }

  /** Zero bytes up to the next 4-byte boundary. */
  pad(): void {
    if (this.pos + 3 > this.buf.length) this.grow(3);
    while ((this.pos & 3) !== 0) this.buf[this.pos++] = 0;
  }

  /** The finished batch: BATCH_BEGIN, the messages (the last one asking for an ACK), BATCH_END. */
  finish(): Buffer {
    this.header(0, HEADER_LEN, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, 0, NFNL_SUBSYS_NFTABLES);
    if (this.lastMessage >= 0) this.buf[this.lastMessage + 6]! |= NLM_F_ACK;
    if (this.pos + HEADER_LEN > this.buf.length) this.grow(HEADER_LEN);
    this.header(this.pos, HEADER_LEN, NFNL_MSG_BATCH_END, NLM_F_REQUEST, this.ops.length + 1, 0, NFNL_SUBSYS_NFTABLES);
    return this.buf.subarray(0, this.pos + HEADER_LEN);
  }

  /** An attribute's header at the end, `len` bytes long (0: patched by end()). */
  private attrHeader(len: number, type: number): void {
    if (this.pos + 4 > this.buf.length) this.grow(4);
    const buf = this.buf;
    const at = this.pos;
    buf[at] = len;
    buf[at + 1] = len >>> 8;
    buf[at + 2] = type;
    buf[at + 3] = type >>> 8;
    this.pos = at + 4;
  }

  private grow(extra: number): void {
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
  return Uint8Array.of(value, value >>> 8, value >>> 16, value >>> 24);
}

function u32be(value: number): Uint8Array {
  return Uint8Array.of(value >>> 24, value >>> 16, value >>> 8, value);
}

function cstring(value: string): Uint8Array {
  return Buffer.from(`${value}\0`, "utf8");
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

/** NFTA_LIST_ELEM and NFTA_EXPR_DATA headers (lengths patched by end()) around NFTA_EXPR_NAME. */
function exprPrefix(name: string): Uint8Array {
  const nameBytes = Buffer.from(`${name}\0`, "latin1");
  const nameLen = 4 + nameBytes.byteLength;
  const out = new Uint8Array(4 + ((nameLen + 3) & ~3) + 4);
  out[2] = NFTA_LIST_ELEM;
  out[3] = NLA_F_NESTED >>> 8;
  out[4] = nameLen;
  out[6] = NFTA_EXPR_NAME;
  out.set(nameBytes, 8);
  out[out.length - 2] = NFTA_EXPR_DATA;
  out[out.length - 1] = NLA_F_NESTED >>> 8;
  return out;
}

const EXPR_PREFIXES = new Map<string, Uint8Array>();

// ---- values ----

/** -1 for a value that is no protocol. */
function protocolOf(value: NftValue): number {
  const n = typeof value === "number" ? value : PROTOCOLS[value];
  return n === undefined || !Number.isInteger(n) || n < 0 || n > 255 ? -1 : n;
}

function protocolNumber(field: string, value: NftValue): number {
  const n = protocolOf(value);
  if (n < 0) throw new NftNotEncodable(`${field}: protocol ${JSON.stringify(value)}`);
  return n;
}

/** -1 for a value that is no port. */
function portOf(value: NftValue): number {
  const n = typeof value === "number" ? value : /^\d+$/.test(value) ? Number(value) : undefined;
  // Unchecked as ever: a fractional number is truncated, NaN is 0.
  return n === undefined || n < 0 || n > 65535 ? -1 : n & 0xffff;
}

function portNumber(field: string, value: NftValue): number {
  const n = portOf(value);
  if (n < 0) throw new NftNotEncodable(`${field}: port ${JSON.stringify(value)}`);
  return n;
}

/** The address as an unsigned 32-bit number, or -1. */
function ipv4Of(value: NftValue): number {
  if (typeof value !== "string") return -1;
  let address = 0;
  let part = 0;
  let digits = 0;
  let n = 0;
  for (let i = 0; i <= value.length; i++) {
    const c = i < value.length ? value.charCodeAt(i) : 46;
    if (c >= 48 && c <= 57 && digits < 3) {
      n = n * 10 + (c - 48);
      digits++;
    } else if (c === 46 && digits > 0 && n <= 255 && part < 4) {
      address = address * 256 + n;
      part++;
      n = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  return part === 4 ? address : -1;
}

function ipv4Number(field: string, value: NftValue): number {
  const n = ipv4Of(value);
  if (n < 0) throw new NftNotEncodable(`${field}: IPv4 address ${JSON.stringify(value)}`);
  return n;
}

function ipv4Bytes(field: string, value: NftValue): Uint8Array {
  return u32be(ipv4Number(field, value));
}

function isU32(value: NftValue): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

/** Bytes of a key component of `type` in its wire form (unpadded), or 0 for a type elements cannot have. */
function typedLength(type: NftDataType): number {
  switch (type) {
    case "ipv4_addr": case "mark": case "numgen": return 4;
    case "inet_proto": return 1;
    case "inet_service": return 2;
    default: return 0;
  }
}

/** Writes a key component in its type's wire form (unpadded); false, having written nothing, for a value not of that type. */
function writeTyped(w: BatchWriter, type: NftDataType, value: NftValue): boolean {
  switch (type) {
    case "ipv4_addr": {
      const n = ipv4Of(value);
      if (n < 0) return false;
      w.be32(n);
      return true;
    }
    case "inet_service": {
      const n = portOf(value);
      if (n < 0) return false;
      w.be16(n);
      return true;
    }
    case "mark": case "numgen":
      if (!isU32(value)) return false;
      w.le32(value);
      return true;
    case "inet_proto": {
      const n = protocolOf(value);
      if (n < 0) return false;
      w.u8(n);
      return true;
    }
    default:
      return false;
  }
}

/** Why writeTyped refused `value`. */
function typedValueError(field: string, type: NftDataType, value: NftValue): NftNotEncodable {
  switch (type) {
    case "ipv4_addr": return new NftNotEncodable(`${field}: IPv4 address ${JSON.stringify(value)}`);
    case "inet_proto": return new NftNotEncodable(`${field}: protocol ${JSON.stringify(value)}`);
    case "inet_service": return new NftNotEncodable(`${field}: port ${JSON.stringify(value)}`);
    case "mark": case "numgen": return new NftNotEncodable(`${field}: ${type} ${JSON.stringify(value)}`);
    default: return new NftNotEncodable(`${field}: elements of type ${type}`);
  }
}

/** A key component of a set element in its type's wire form (unpadded). */
function typedValue(field: string, type: NftDataType, value: NftValue): Uint8Array {
  switch (type) {
    case "ipv4_addr": return ipv4Bytes(field, value);
    case "inet_proto": return Uint8Array.of(protocolNumber(field, value));
    case "inet_service": {
      const port = portNumber(field, value);
      return Uint8Array.of(port >>> 8, port);
    }
    case "mark": case "numgen":
      if (!isU32(value)) throw typedValueError(field, type, value);
      return u32le(value);
    default:
      throw typedValueError(field, type, value);
  }
}

/** Length of keyValue's bytes for a key of `types` (0 when a type cannot be written: keyValue throws). */
function keyValueLength(types: readonly NftDataType[]): number {
  if (types.length === 1) return typedLength(types[0]!);
  let length = 0;
  for (const t of types) length += (typedLength(t) + 3) & ~3;
  return length;
}

/**
 * NFTA_DATA_VALUE holding a (concatenated) key: each component padded to 4 bytes, as the kernel's
 * registers hold them. Errors name `${field}[${index}]${suffix}[component]`, built only then.
 */
function keyValue(w: BatchWriter, types: readonly NftDataType[], key: readonly NftValue[], field: string, index: number, suffix: string): void {
  if (key.length !== types.length) throw new NftNotEncodable(`${field}[${index}]${suffix}: key of ${key.length} components for a ${types.length}-component type`);
  w.beginValue(NFTA_DATA_VALUE);
  for (let i = 0; i < types.length; i++) {
    const type = types[i]!;
    if (!writeTyped(w, type, key[i]!)) throw typedValueError(`${field}[${index}]${suffix}[${i}]`, type, key[i]!);
    if (types.length > 1) w.pad();
  }
  w.end();
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

/** NFTA_DATA_VERDICT { code, chain }. */
function verdictData(ctx: Context, field: string, v: NftVerdict): void {
  const w = ctx.w;
  switch (v.verdict) {
    case "accept": case "drop": case "continue": case "return": {
      const code = v.verdict === "accept" ? NF_ACCEPT : v.verdict === "drop" ? NF_DROP : v.verdict === "continue" ? NFT_CONTINUE : NFT_RETURN;
      w.begin(NFTA_DATA_VERDICT);
      w.u32(NFTA_VERDICT_CODE, code);
      w.end();
      return;
    }
    case "jump": case "goto": {
      const chain = checkIdentifier(`${field}.chain`, v.chain);
      w.begin(NFTA_DATA_VERDICT);
      w.u32(NFTA_VERDICT_CODE, v.verdict === "jump" ? NFT_JUMP : NFT_GOTO);
      w.str(NFTA_VERDICT_CHAIN, chain);
      w.end();
      return;
    }
    default:
      throw new NftNotEncodable(`${field}: verdict ${JSON.stringify(v)}`);
  }
}

// ---- expressions ----

function payload(w: BatchWriter, dreg: number, base: number, offset: number, len: number): void {
  w.beginExpr("payload");
  w.u32(1, dreg);
  w.u32(2, base);
  w.u32(3, offset);
  w.u32(4, len);
  w.endExpr();
}

function meta(w: BatchWriter, dreg: number, key: number): void {
  w.beginExpr("meta");
  w.u32(2, key);
  w.u32(1, dreg);
  w.endExpr();
}

function dataValue(w: BatchWriter, type: number, bytes: Uint8Array): void {
  w.begin(type);
  w.bytes(NFTA_DATA_VALUE, bytes);
  w.end();
}

function cmp(w: BatchWriter, op: number, bytes: Uint8Array): void {
  w.beginExpr("cmp");
  w.u32(1, NFT_REG_1);
  w.u32(2, op);
  dataValue(w, 3, bytes);
  w.endExpr();
}

function bitwise(w: BatchWriter, len: number, mask: Uint8Array, xor: Uint8Array): void {
  w.beginExpr("bitwise");
  w.u32(1, NFT_REG_1);
  w.u32(2, NFT_REG_1);
  w.u32(3, len);
  dataValue(w, 4, mask);
  dataValue(w, 5, xor);
  w.endExpr();
}

function immediateData(w: BatchWriter, dreg: number, bytes: Uint8Array): void {
  w.beginExpr("immediate");
  w.u32(1, dreg);
  dataValue(w, 2, bytes);
  w.endExpr();
}

function immediateVerdict(ctx: Context, field: string, v: NftVerdict): void {
  const w = ctx.w;
  w.beginExpr("immediate");
  w.u32(1, NFT_REG_VERDICT);
  w.begin(2);
  verdictData(ctx, field, v);
  w.end();
  w.endExpr();
}

function ctExpr(w: BatchWriter, dreg: number, key: number): void {
  w.beginExpr("ct");
  w.u32(1, dreg);
  w.u32(2, key);
  w.endExpr();
}

interface SelectorLoad {
  /** Writes the loading expression for destination register `dreg`. */
  load(w: BatchWriter, dreg: number): void;
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
      return { load: (w, r) => payload(w, r, NFT_PAYLOAD_NETWORK_HEADER, offset, 4), len: 4, value: ipv4Bytes, type: "ipv4_addr" };
    }
    case "meta l4proto":
      return { load: (w, r) => meta(w, r, NFT_META_L4PROTO), len: 1, value: (f, v) => Uint8Array.of(protocolNumber(f, v)), type: "inet_proto" };
    case "meta mark":
      return { load: (w, r) => meta(w, r, NFT_META_MARK), len: 4, value: (f, v) => typedValue(f, "mark", v), type: "mark" };
    case "meta nfproto":
      return { load: (w, r) => meta(w, r, NFT_META_NFPROTO), len: 1, value: (f, v) => Uint8Array.of(lookupName(f, NFPROTOS, v)), type: "integer" };
    case "meta pkttype":
      return { load: (w, r) => meta(w, r, NFT_META_PKTTYPE), len: 1, value: (f, v) => Uint8Array.of(lookupName(f, PKTTYPES, v)), type: "integer" };
    case "th dport": case "th sport": {
      const offset = sel === "th sport" ? 0 : 2;
      return { load: (w, r) => payload(w, r, NFT_PAYLOAD_TRANSPORT_HEADER, offset, 2), len: 2, value: (f, v) => typedValue(f, "inet_service", v), type: "inet_service" };
    }
    case "ct state":
      return { load: (w, r) => ctExpr(w, r, NFT_CT_STATE), len: 4, value: (f, v) => u32le(lookupName(f, CT_STATES, v)), type: "integer" };
    case "ct status":
      return { load: (w, r) => ctExpr(w, r, NFT_CT_STATUS), len: 4, value: (f, v) => u32le(lookupName(f, CT_STATUS_BITS, v)), type: "integer" };
    case "fib daddr type":
      return {
        load: (w, r) => {
          w.beginExpr("fib");
          w.u32(1, r);
          w.u32(2, NFT_FIB_RESULT_ADDRTYPE);
          w.u32(3, NFTA_FIB_F_DADDR);
          w.endExpr();
        },
        len: 4, value: (f, v) => u32le(lookupName(f, ADDRESS_TYPES, v)), type: "integer",
      };
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
function loadKey(w: BatchWriter, field: string, selectors: readonly NftSelector[]): void {
  if (selectors.length === 0) throw new NftNotEncodable(`${field}: no selectors`);
  let words = 0;
  for (let i = 0; i < selectors.length; i++) {
    const sel = selectors[i]!;
    const load = selectorCache.get(sel) ?? selector(`${field}[${i}]`, sel);
    load.load(w, words === 0 ? NFT_REG_1 : NFT_REG32_00 + words);
    words += (load.len + 3) >> 2;
  }
}

/** An anonymous set as a rule refers to it. */
interface SetRef {
  name: string;
  id: number;
}

/** Per-transaction state: the batch, ids of sets created in it (anonymous ones are referred to by id). */
class Context {
  private nextSetId = 1;
  readonly w: BatchWriter;

  constructor(readonly table: string, sizeHint: number) {
    this.w = new BatchWriter(sizeHint);
  }

  setId(): number {
    return this.nextSetId++;
  }
}

interface AnonymousElement {
  key: Uint8Array;
  /** The end of an interval (NFT_SET_ELEM_INTERVAL_END, written before the key as nft does). */
  intervalEnd?: boolean;
  verdict?: { field: string; verdict: NftVerdict };
}

/** An anonymous constant set (or verdict map) for `{ a, b }` / `vmap { … }`, sent before its rule. */
function anonymousSet(ctx: Context, field: string, spec: {
  keyTypeId: number; keyLen: number; keyByteorder: number; interval: boolean; map: boolean; elements: AnonymousElement[]; udataExtra?: Uint8Array[];
}): SetRef {
  const w = ctx.w;
  const id = ctx.setId();
  const name = spec.map ? "__map%d" : "__set%d";
  const flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | (spec.interval ? NFT_SET_INTERVAL : 0) | (spec.map ? NFT_SET_MAP : 0);
  const ud: Uint8Array[] = [udata(UDATA_SET_KEYBYTEORDER, u32le(spec.keyByteorder))];
  if (spec.map) ud.push(udata(UDATA_SET_DATABYTEORDER, u32le(0)));
  if (spec.interval) ud.push(udata(UDATA_SET_MERGE_ELEMENTS, u32le(1)));
  for (const extra of spec.udataExtra ?? []) ud.push(extra);
  if (spec.map) ud.push(udata(UDATA_SET_DATA_INTERVAL, u32le(0)));
  w.beginMessage(NFT_MSG_NEWSET, NLM_F_CREATE);
  w.str(NFTA_SET_TABLE, ctx.table);
  w.str(NFTA_SET_NAME, name);
  w.u32(NFTA_SET_FLAGS, flags);
  w.u32(NFTA_SET_KEY_TYPE, spec.keyTypeId);
  w.u32(NFTA_SET_KEY_LEN, spec.keyLen);
  if (spec.map) {
    w.u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
    w.u32(NFTA_SET_DATA_LEN, 0);
  }
  w.u32(NFTA_SET_ID, id);
  w.begin(NFTA_SET_DESC);
  w.u32(NFTA_SET_DESC_SIZE, spec.elements.length);
  w.end();
  w.bytes(NFTA_SET_USERDATA, concatBytes(ud));
  w.endMessage(`${field}: anonymous set`);

  w.beginMessage(NFT_MSG_NEWSETELEM, NLM_F_CREATE);
  w.str(NFTA_SET_ELEM_LIST_TABLE, ctx.table);
  w.str(NFTA_SET_ELEM_LIST_SET, name);
  w.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
  for (const e of spec.elements) {
    w.begin(NFTA_LIST_ELEM);
    if (e.intervalEnd) w.u32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
    dataValue(w, NFTA_SET_ELEM_KEY, e.key);
    if (e.verdict) {
      w.begin(NFTA_SET_ELEM_DATA);
      verdictData(ctx, e.verdict.field, e.verdict.verdict);
      w.end();
    }
    w.end();
  }
  w.end();
  w.u32(NFTA_SET_ELEM_LIST_SET_ID, id);
  w.endMessage(`${field}: anonymous set elements`);
  return { name, id };
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
    const n = ipv4Number(`${field}[${i}]`, v.split("/")[0]!);
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

type MatchStatement = Extract<NftStatement, { match: NftSelector }>;

function checkMatchOp(field: string, s: MatchStatement): boolean {
  if (s.op !== undefined && s.op !== "==" && s.op !== "!=") throw new NftNotEncodable(`${field}.op ${JSON.stringify(s.op)}`);
  return s.op === "!=";
}

/** The anonymous set of a match with several values: an interval set when any of them is a prefix. */
function matchSet(ctx: Context, field: string, s: MatchStatement): SetRef {
  checkMatchOp(field, s);
  const values = s.value as readonly NftValue[];
  const load = selector(`${field}.match`, s.match);
  const isIp = s.match === "ip saddr" || s.match === "ip daddr";
  if (s.match === "ct state" || s.match === "ct status") throw new NftNotEncodable(`${field}: ${s.match} with several values`);
  const typeof_ = ipTypeofUdata(s.match);
  if (isIp && values.some((v) => typeof v === "string" && v.includes("/") && !v.endsWith("/32"))) {
    const ranges = ipv4Ranges(`${field}.value`, values);
    const elements: AnonymousElement[] = [];
    // nft starts an interval set whose first range is above zero with an end marker at zero.
    if (ranges[0]![0] > 0) elements.push({ key: u32be(0), intervalEnd: true });
    for (const [start, end] of ranges) {
      elements.push({ key: u32be(start) });
      if (end < 2 ** 32) elements.push({ key: u32be(end), intervalEnd: true });
    }
    return anonymousSet(ctx, field, { keyTypeId: 7, keyLen: 4, keyByteorder: 2, interval: true, map: false, elements, ...(typeof_ ? { udataExtra: [typeof_] } : {}) });
  }
  if (load.type === "integer") throw new NftNotEncodable(`${field}: a set of ${s.match} values`);
  const dt = datatype(load.type);
  const seen = new Set<string>();
  const elements: AnonymousElement[] = [];
  for (const [i, v] of values.entries()) {
    const bytes = load.value(`${field}.value[${i}]`, typeof v === "string" && v.endsWith("/32") ? v.slice(0, -3) : v);
    const k = Buffer.from(bytes).toString("hex");
    if (!seen.has(k)) elements.push({ key: bytes });
    seen.add(k);
  }
  return anonymousSet(ctx, field, { keyTypeId: dt.id, keyLen: dt.len, keyByteorder: dt.byteorder, interval: false, map: false, elements, ...(typeof_ ? { udataExtra: [typeof_] } : {}) });
}

function numgenVmapSet(ctx: Context, field: string, verdicts: readonly NftVerdict[]): SetRef {
  const elements = verdicts.map((v, i): AnonymousElement => ({ key: u32le(i), verdict: { field: `${field}.numgenVmap[${i}]`, verdict: v } }));
  return anonymousSet(ctx, field, { keyTypeId: TYPE_INTEGER, keyLen: 4, keyByteorder: 1, interval: false, map: true, elements });
}

/**
 * Expressions of single-value matches, by operator, selector and value: the same few (the cluster
 * CIDR, a protocol, `ct state new`) recur in thousands of rules, so their bytes are written once
 * and copied.
 */
const matchCache: [Map<NftSelector, Map<NftValue, Uint8Array>>, Map<NftSelector, Map<NftValue, Uint8Array>>] = [new Map(), new Map()];
let matchCacheSize = 0;
const MATCH_CACHE_MAX = 256;

function matchStatement(ctx: Context, field: string, s: MatchStatement, set: SetRef | undefined): void {
  const w = ctx.w;
  const negate = checkMatchOp(field, s);
  if (set !== undefined) {
    selector(`${field}.match`, s.match).load(w, NFT_REG_1);
    lookupExpr(w, set.name, set.id, NFT_REG_1, undefined, negate);
    return;
  }
  const value = s.value;
  if (typeof value !== "string" && typeof value !== "number") {
    encodeMatch(ctx, field, s, negate);
    return;
  }
  const bySelector = matchCache[negate ? 1 : 0];
  const cached = bySelector.get(s.match)?.get(value);
  if (cached !== undefined) {
    w.raw(cached);
    return;
  }
  const start = w.offset;
  encodeMatch(ctx, field, s, negate);
  if (matchCacheSize >= MATCH_CACHE_MAX) {
    matchCache[0].clear();
    matchCache[1].clear();
    matchCacheSize = 0;
  }
  let byValue = bySelector.get(s.match);
  if (byValue === undefined) bySelector.set(s.match, (byValue = new Map()));
  byValue.set(value, w.since(start));
  matchCacheSize++;
}

/** A match against one value (several are matchSet's). */
function encodeMatch(ctx: Context, field: string, s: MatchStatement, negate: boolean): void {
  const w = ctx.w;
  const values = Array.isArray(s.value) ? (s.value as readonly NftValue[]) : [s.value as NftValue];
  if (values.length === 0) throw new NftNotEncodable(`${field}: empty value list`);
  const load = selector(`${field}.match`, s.match);
  const isIp = s.match === "ip saddr" || s.match === "ip daddr";
  const op = negate ? NFT_CMP_NEQ : NFT_CMP_EQ;
  const v = values[0]!;
  if (isIp && typeof v === "string" && v.includes("/")) {
    const cidr = cidrOf(`${field}.value`, v);
    const prefix = cidr.prefix;
    const offset = s.match === "ip saddr" ? 12 : 16;
    const bytes = ipv4Bytes(`${field}.value`, v.split("/")[0]!);
    if (prefix === 32) {
      load.load(w, NFT_REG_1);
      cmp(w, op, bytes);
      return;
    }
    if (prefix === 0) throw new NftNotEncodable(`${field}: prefix /0`);
    const mask = new Uint8Array(4);
    for (let i = 0; i < prefix; i++) mask[i >> 3]! |= 0x80 >> (i & 7);
    const network = bytes.map((b, i) => b & mask[i]!);
    if (prefix % 8 === 0) {
      // nft loads only the prefix's bytes and compares them, with no mask.
      payload(w, NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, offset, prefix / 8);
      cmp(w, op, network.subarray(0, prefix / 8));
      return;
    }
    load.load(w, NFT_REG_1);
    bitwise(w, 4, mask, new Uint8Array(4));
    cmp(w, op, network);
    return;
  }
  if (s.match === "ct state" || s.match === "ct status") {
    const bits = load.value(`${field}.value`, v);
    load.load(w, NFT_REG_1);
    // `ct state new` is a bit test; `ct state != new` compares the whole state (nft 1.0.6). The same for ct status.
    if (!negate) bitwise(w, 4, bits, new Uint8Array(4));
    cmp(w, NFT_CMP_NEQ, negate ? bits : new Uint8Array(4));
    return;
  }
  const bytes = load.value(`${field}.value`, v);
  load.load(w, NFT_REG_1);
  cmp(w, op, bytes);
}

function lookupExpr(w: BatchWriter, set: string, setId: number | undefined, sreg: number, dreg: number | undefined, invert: boolean): void {
  w.beginExpr("lookup");
  w.str(1, set);
  w.u32(2, sreg);
  if (dreg !== undefined) w.u32(3, dreg);
  if (setId !== undefined) w.u32(4, setId);
  if (invert) w.u32(5, NFT_LOOKUP_F_INV);
  w.endExpr();
}

function numgen(w: BatchWriter, mod: number, offset?: number): void {
  w.beginExpr("numgen");
  w.u32(1, NFT_REG_1);
  w.u32(2, mod);
  w.u32(3, NFT_NG_RANDOM);
  if (offset !== undefined) w.u32(NFTA_NG_OFFSET, offset);
  w.endExpr();
}

const REJECTS: Record<string, { type: number; code?: number }> = {
  "tcp reset": { type: NFT_REJECT_TCP_RST },
  "icmp port-unreachable": { type: NFT_REJECT_ICMP_UNREACH, code: 3 },
  "icmp host-unreachable": { type: NFT_REJECT_ICMP_UNREACH, code: 1 },
  "icmpx port-unreachable": { type: NFT_REJECT_ICMPX_UNREACH, code: 1 },
  "icmpx admin-prohibited": { type: NFT_REJECT_ICMPX_UNREACH, code: 3 },
};

/**
 * Writes a statement's expressions. False, having written nothing, for a statement that refers
 * to an anonymous set when `set` is not given: the set's messages must come before the rule's.
 */
function statementExprs(ctx: Context, field: string, s: NftStatement, set: SetRef | undefined): boolean {
  const w = ctx.w;
  if ("verdict" in s) {
    immediateVerdict(ctx, field, s);
    return true;
  }
  if ("match" in s) {
    if (set === undefined && Array.isArray(s.value) && s.value.length > 1) return false;
    matchStatement(ctx, field, s, set);
    return true;
  }
  if ("lookup" in s) {
    loadKey(w, `${field}.lookup`, s.lookup);
    lookupExpr(w, checkIdentifier(`${field}.set`, s.set), undefined, NFT_REG_1, undefined, s.negate === true);
    return true;
  }
  if ("vmapLookup" in s) {
    loadKey(w, `${field}.vmapLookup`, s.vmapLookup);
    lookupExpr(w, checkIdentifier(`${field}.map`, s.map), undefined, NFT_REG_1, NFT_REG_VERDICT, false);
    return true;
  }
  if ("numgenMatch" in s) {
    const { mod, value } = s.numgenMatch;
    if (!Number.isSafeInteger(mod) || mod < 1 || !Number.isSafeInteger(value) || value < 0 || value >= mod) throw new NftNotEncodable(`${field}: numgen mod ${mod} ${value}`);
    numgen(w, mod);
    cmp(w, NFT_CMP_EQ, u32le(value));
    return true;
  }
  if ("numgenVmap" in s) {
    if (s.numgenVmap.length === 0) throw new NftNotEncodable(`${field}: empty numgen vmap`);
    if (set === undefined) return false;
    numgen(w, s.numgenVmap.length);
    lookupExpr(w, set.name, set.id, NFT_REG_1, NFT_REG_VERDICT, false);
    return true;
  }
  if ("dnat" in s || "snat" in s) {
    const target = "dnat" in s ? s.dnat : s.snat;
    if (target.family !== "ip") throw new NftNotEncodable(`${field}: nat family ${target.family}`);
    const address = ipv4Bytes(`${field}.address`, target.address);
    const port = "dnat" in s ? s.dnat.port : undefined;
    const portNumberValue = port === undefined ? undefined : portNumber(`${field}.port`, port);
    const portBytes = portNumberValue === undefined ? undefined : Uint8Array.of(portNumberValue >>> 8, portNumberValue);
    immediateData(w, NFT_REG_1, address);
    if (portBytes !== undefined) immediateData(w, NFT_REG_2, portBytes);
    w.beginExpr("nat");
    w.u32(1, "dnat" in s ? NFT_NAT_DNAT : NFT_NAT_SNAT);
    w.u32(2, NFPROTO_IPV4);
    w.u32(3, NFT_REG_1);
    if (portBytes !== undefined) {
      w.u32(5, NFT_REG_2);
      w.u32(7, NF_NAT_RANGE_PROTO_SPECIFIED);
    }
    w.endExpr();
    return true;
  }
  if ("dnatMap" in s) {
    dnatMapExprs(ctx, field, s.dnatMap);
    return true;
  }
  if ("masquerade" in s) {
    w.beginExpr("masq");
    if (s.masquerade.fullyRandom) w.u32(1, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
    w.endExpr();
    return true;
  }
  if ("setMarkOr" in s) {
    const mark = s.setMarkOr;
    if (!Number.isInteger(mark) || mark < 0 || mark > 0xffffffff) throw new NftNotEncodable(`${field}: mark ${mark}`);
    meta(w, NFT_REG_1, NFT_META_MARK);
    bitwise(w, 4, u32le(~mark >>> 0), u32le(mark));
    w.beginExpr("meta");
    w.u32(2, NFT_META_MARK);
    w.u32(3, NFT_REG_1);
    w.endExpr();
    return true;
  }
  if ("updateSet" in s) {
    loadKey(w, `${field}.key`, s.key);
    w.beginExpr("dynset");
    w.str(1, checkIdentifier(`${field}.updateSet`, s.updateSet));
    w.u32(3, NFT_DYNSET_OP_UPDATE);
    w.u32(4, NFT_REG_1);
    w.endExpr();
    return true;
  }
  if ("counter" in s) {
    w.beginExpr("counter");
    w.u64(1, 0);
    w.u64(2, 0);
    w.endExpr();
    return true;
  }
  if ("namedCounter" in s) {
    w.beginExpr("objref");
    w.u32(1, 1);
    w.str(2, checkIdentifier(`${field}.namedCounter`, s.namedCounter));
    w.endExpr();
    return true;
  }
  if ("reject" in s) {
    const reject = Object.hasOwn(REJECTS, s.reject) ? REJECTS[s.reject] : undefined;
    if (reject === undefined) throw new NftNotEncodable(`${field}: reject ${JSON.stringify(s.reject)}`);
    w.beginExpr("reject");
    w.u32(1, reject.type);
    if (reject.code !== undefined) w.bytes(2, Uint8Array.of(reject.code));
    w.endExpr();
    return true;
  }
  throw new NftNotEncodable(`${field}: statement ${JSON.stringify(s)}`);
}

function addRule(ctx: Context, field: string, chain: string, index: number, rule: NftRule): void {
  const statements = rule.statements;
  if (statements.length === 0) throw new NftNotEncodable(`${field}: a rule without statements`);
  const w = ctx.w;
  const start = w.offset;
  if (writeRule(ctx, field, chain, index, rule, undefined)) return;
  // The rule refers to anonymous sets, whose messages go first, in its statements' order (as nft
  // sends them): the rule is written again after them.
  w.rewind(start);
  const sets: (SetRef | undefined)[] = [];
  for (let i = 0; i < statements.length; i++) {
    const s = statements[i]!;
    const statementField = `${field}.statements[${i}]`;
    if ("numgenVmap" in s && s.numgenVmap.length > 0) sets[i] = numgenVmapSet(ctx, statementField, s.numgenVmap);
    else if ("match" in s && Array.isArray(s.value) && s.value.length > 1) sets[i] = matchSet(ctx, statementField, s);
  }
  if (!writeRule(ctx, field, chain, index, rule, sets)) throw new Error("nf_tables encoder: a rule's anonymous set went missing");
}

/** False (the rule rewound by the caller) when a statement needs an anonymous set not in `sets`. */
function writeRule(ctx: Context, field: string, chain: string, index: number, rule: NftRule, sets: readonly (SetRef | undefined)[] | undefined): boolean {
  const w = ctx.w;
  w.beginMessage(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
  w.str(NFTA_RULE_TABLE, ctx.table);
  w.str(NFTA_RULE_CHAIN, chain);
  w.begin(NFTA_RULE_EXPRESSIONS);
  const statements = rule.statements;
  for (let i = 0; i < statements.length; i++) {
    if (!statementExprs(ctx, `${field}.statements[${i}]`, statements[i]!, sets?.[i])) return false;
  }
  w.end();
  if (rule.comment !== undefined) w.udataString(NFTA_RULE_USERDATA, UDATA_COMMENT, `${field}.comment`, rule.comment);
  w.endMessage(`add rule ${chain} (rule ${index})`);
  return true;
}

function baseChainAttrs(w: BatchWriter, field: string, base: NftBaseChain): void {
  const hook = NF_INET_HOOKS[base.hook];
  if (hook === undefined) throw new NftNotEncodable(`${field}.hook ${base.hook}`);
  if (base.device !== undefined) throw new NftNotEncodable(`${field}.device`);
  if (!["filter", "nat", "route"].includes(base.type)) throw new NftNotEncodable(`${field}.type ${base.type}`);
  const priority = priorityNumber("ip", base.priority);
  if (!Number.isSafeInteger(priority)) throw new NftNotEncodable(`${field}.priority ${JSON.stringify(base.priority)}`);
  if (base.policy !== undefined && base.policy !== "accept" && base.policy !== "drop") throw new NftNotEncodable(`${field}.policy`);
  w.begin(NFTA_CHAIN_HOOK);
  w.u32(NFTA_HOOK_HOOKNUM, hook);
  w.u32(NFTA_HOOK_PRIORITY, priority);
  w.end();
  if (base.policy !== undefined) w.u32(NFTA_CHAIN_POLICY, base.policy === "accept" ? NF_ACCEPT : NF_DROP);
  w.str(NFTA_CHAIN_TYPE, base.type);
}

function addChain(ctx: Context, field: string, chain: NftChain, flush: boolean): void {
  const w = ctx.w;
  const name = checkIdentifier(`${field}.name`, chain.name);
  w.beginMessage(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
  w.str(NFTA_CHAIN_TABLE, ctx.table);
  w.str(NFTA_CHAIN_NAME, name);
  if (chain.base) baseChainAttrs(w, `${field}.base`, chain.base);
  w.endMessage(`add chain ${name}`);
  if (flush) flushChain(ctx, name);
  const rules = chain.rules;
  for (let i = 0; i < rules.length; i++) addRule(ctx, `${field}.rules[${i}]`, name, i, rules[i]!);
}

function flushChain(ctx: Context, name: string): void {
  ctx.w.beginMessage(NFT_MSG_DELRULE, 0);
  ctx.w.str(NFTA_RULE_TABLE, ctx.table);
  ctx.w.str(NFTA_RULE_CHAIN, name);
  ctx.w.endMessage(`flush chain ${name}`);
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
  if (isMap && isNumgenMap(s as NftMap)) {
    addNumgenMap(ctx, field, name, s as NftMap, flags, schemas);
    return;
  }
  if (isMap) {
    const map = s as NftMap;
    if (map.valueType.length !== 1 || map.valueType[0] !== "verdict") throw new NftNotEncodable(`${field}: a data map (${map.valueType.join(" . ")})`);
    flags |= NFT_SET_MAP;
  }
  const keyType = keyTypeId(s.keyType);
  const keyLen = keyLength(s.keyType);
  const timeout = isMap ? undefined : (s as NftSet).timeoutSeconds;
  if (timeout !== undefined && (!Number.isSafeInteger(timeout) || timeout <= 0)) throw new NftNotEncodable(`${field}.timeoutSeconds ${timeout}`);
  if (!isMap && (s as NftSet).autoMerge) throw new NftNotEncodable(`${field}.autoMerge`);
  const userdata = setUserdata(s.keyType, isMap, s.comment, field);
  const w = ctx.w;
  w.beginMessage(NFT_MSG_NEWSET, NLM_F_CREATE);
  w.str(NFTA_SET_TABLE, ctx.table);
  w.str(NFTA_SET_NAME, name);
  w.u32(NFTA_SET_FLAGS, flags);
  w.u32(NFTA_SET_KEY_TYPE, keyType);
  w.u32(NFTA_SET_KEY_LEN, keyLen);
  if (isMap) {
    w.u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
    w.u32(NFTA_SET_DATA_LEN, 0);
  }
  w.u32(NFTA_SET_ID, ctx.setId());
  if (timeout !== undefined) w.u64(NFTA_SET_TIMEOUT, timeout * 1000);
  w.bytes(NFTA_SET_USERDATA, userdata);
  w.endMessage(`add ${isMap ? "map" : "set"} ${name}`);
  const schema: SetSchema = { keyType: s.keyType, verdictMap: isMap };
  schemas.set(name, schema);
  if (s.elements.length > 0) elementMessages(ctx, `${field}.elements`, name, schema, s.elements, false);
}

function isMapElement(e: readonly NftValue[] | NftMapElement): e is NftMapElement {
  return !Array.isArray(e);
}

/**
 * NEWSETELEM (or DELSETELEM) messages of up to ELEMENT_BYTES_PER_MESSAGE each, by an estimate of
 * every element's size (which decides where a message ends, so it must stay as it is for the same bytes).
 */
function elementMessages(ctx: Context, field: string, set: string, schema: SetSchema, elements: readonly (readonly NftValue[] | NftMapElement)[], remove: boolean): void {
  const w = ctx.w;
  const keyBytes = keyValueLength(schema.keyType);
  const valueBytes = schema.valueType === undefined ? 0 : keyValueLength(schema.valueType);
  const op = `${remove ? "delete" : "add"} element ${set}`;
  let open = false;
  let bytes = 0;
  for (let i = 0; i < elements.length; i++) {
    const e = elements[i]!;
    const isMap = isMapElement(e);
    let size = 32 + keyBytes;
    if (!remove && schema.verdictMap) {
      if (!isMap || e.verdict === undefined || e.value !== undefined) throw new NftNotEncodable(`${field}[${i}]: a verdict map element needs a verdict`);
      size += 32 + (e.verdict.verdict === "jump" || e.verdict.verdict === "goto" ? e.verdict.chain.length : 0);
    } else if (!remove && schema.valueType !== undefined) {
      if (!isMap || e.value === undefined || e.verdict !== undefined) throw new NftNotEncodable(`${field}[${i}]: a data map element needs a value`);
      size += 32 + valueBytes;
    } else if (!remove && isMap) {
      throw new NftNotEncodable(`${field}[${i}]: a map element for set ${set}`);
    }
    if (open && bytes + size > ELEMENT_BYTES_PER_MESSAGE) {
      w.end();
      w.endMessage(op);
      open = false;
      bytes = 0;
    }
    if (!open) {
      w.beginMessage(remove ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM, remove ? 0 : NLM_F_CREATE);
      w.str(NFTA_SET_ELEM_LIST_TABLE, ctx.table);
      w.str(NFTA_SET_ELEM_LIST_SET, set);
      w.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
      open = true;
    }
    w.begin(NFTA_LIST_ELEM);
    w.begin(NFTA_SET_ELEM_KEY);
    keyValue(w, schema.keyType, isMap ? e.key : e, field, i, "");
    w.end();
    if (!remove && isMap) {
      w.begin(NFTA_SET_ELEM_DATA);
      if (schema.verdictMap) verdictData(ctx, `${field}[${i}].verdict`, e.verdict!);
      else keyValue(w, schema.valueType!, e.value!, field, i, ".value");
      w.end();
    }
    w.end();
    bytes += size;
  }
  if (open) {
    w.end();
    w.endMessage(op);
  }
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
    else if (c.op === "addMap") schemaChanges.set(c.map.name, isNumgenMap(c.map) ? numgenMapSchema(c.map) : { keyType: c.map.keyType, verdictMap: true });
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
  const w = ctx.w;
  const schemas = new Map<string, SetSchema | undefined>();
  let tableDeleted = false;
  const schema = (name: string): SetSchema | undefined => (schemas.has(name) ? schemas.get(name) : tableDeleted ? undefined : schemaOf(name));
  const changes = tx.changes;
  for (let i = 0; i < changes.length; i++) {
    const change = changes[i]!;
    const field = `changes[${i}]`;
    switch (change.op) {
      case "ensureTable":
        w.beginMessage(NFT_MSG_NEWTABLE, NLM_F_CREATE);
        w.str(NFTA_TABLE_NAME, table);
        w.u32(NFTA_TABLE_FLAGS, 0);
        w.endMessage("add table");
        break;
      case "deleteTable":
        w.beginMessage(NFT_MSG_DELTABLE, 0);
        w.str(NFTA_TABLE_NAME, table);
        w.endMessage("delete table");
        schemas.clear();
        tableDeleted = true;
        break;
      case "addChain": addChain(ctx, `${field}.chain`, change.chain, false); break;
      case "replaceChain": addChain(ctx, `${field}.chain`, change.chain, true); break;
      case "deleteChain": {
        const name = checkIdentifier(`${field}.name`, change.name);
        flushChain(ctx, name);
        w.beginMessage(NFT_MSG_DELCHAIN, 0);
        w.str(NFTA_CHAIN_TABLE, table);
        w.str(NFTA_CHAIN_NAME, name);
        w.endMessage(`delete chain ${name}`);
        break;
      }
      case "addSet": addSetOrMap(ctx, `${field}.set`, change.set, false, schemas); break;
      case "addMap": addSetOrMap(ctx, `${field}.map`, change.map, true, schemas); break;
      case "deleteSet": case "deleteMap": {
        const name = checkIdentifier(`${field}.name`, change.name);
        w.beginMessage(NFT_MSG_DELSET, 0);
        w.str(NFTA_SET_TABLE, table);
        w.str(NFTA_SET_NAME, name);
        w.endMessage(`delete ${change.op === "deleteSet" ? "set" : "map"} ${name}`);
        schemas.set(name, undefined);
        break;
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
        break;
      }
      default:
        throw new NftNotEncodable(`${field}: ${change.op}`);
    }
  }
  return { ops: w.ops, batch: w.finish(), schemaChanges: schemas, tableDeleted };
}

// ---- numgen DNAT maps: `typeof numgen random mod 4096 : ip daddr . tcp dport` (or udp, sctp) and
// `dnat ip to numgen random mod N offset O map @M` (what nft 1.0.6 sends, from `nft --debug=mnl`) ----

const NFT_CT_STATUS = 2;
const CT_STATUS_BITS: Record<string, number> = { expected: 0x1, "seen-reply": 0x2, assured: 0x4, confirmed: 0x8, snat: 0x10, dnat: 0x20, dying: 0x200 };
const NFTA_NG_OFFSET = 4;
const NFTA_NAT_REG_ADDR_MIN = 3, NFTA_NAT_REG_PROTO_MIN = 5;
const UDATA_SET_DATA_TYPEOF = 4;
// nft's expression ids and fields in typeof userdata (nftables src/expression.c, payload.c, proto.c).
const TYPEOF_EXPR_PAYLOAD = 7, TYPEOF_EXPR_CONCAT = 13, TYPEOF_EXPR_NUMGEN = 23;
const TYPEOF_PROTO_IP = 12, TYPEOF_IP_DADDR = 12, TYPEOF_DPORT = 2;
const TYPEOF_PROTOS: Record<string, number> = { udp: 6, tcp: 8, sctp: 10 };
const NUMGEN_TYPEOF_MOD = 4096;
const NUMGEN_MAP_DATA_TYPES: readonly NftDataType[] = ["ipv4_addr", "inet_service"];

function isNumgenMap(map: NftMap): boolean {
  return map.keyType.length === 1 && map.keyType[0] === "numgen";
}

function numgenMapSchema(map: NftMap): SetSchema {
  if (map.valueType.join(" . ") !== NUMGEN_MAP_DATA_TYPES.join(" . ")) throw new NftNotEncodable(`map ${map.name}: numgen : ${map.valueType.join(" . ")}`);
  return { keyType: map.keyType, verdictMap: false, valueType: NUMGEN_MAP_DATA_TYPES };
}

function payloadTypeof(proto: number, field: number): Uint8Array {
  return concatBytes([udata(0, u32le(TYPEOF_EXPR_PAYLOAD)), udata(1, concatBytes([udata(0, u32le(proto)), udata(1, u32le(field))]))]);
}

/** Userdata of uncommented numgen maps by dport: the same for each of a full sync's ~170 maps. */
const numgenMapUserdataCache = new Map<string, Uint8Array>();

function numgenMapUserdata(field: string, dport: string, comment: string | undefined): Uint8Array {
  const cached = comment === undefined ? numgenMapUserdataCache.get(dport) : undefined;
  if (cached !== undefined) return cached;
  const userdata = makeNumgenMapUserdata(field, dport, comment);
  if (comment === undefined) numgenMapUserdataCache.set(dport, userdata);
  return userdata;
}

function makeNumgenMapUserdata(field: string, dport: string, comment: string | undefined): Uint8Array {
  const proto = TYPEOF_PROTOS[dport];
  if (proto === undefined) throw new NftNotEncodable(`${field}.numgenDport ${JSON.stringify(dport)}`);
  const keyTypeof = concatBytes([
    udata(0, u32le(TYPEOF_EXPR_NUMGEN)),
    udata(1, concatBytes([udata(0, u32le(NFT_NG_RANDOM)), udata(1, u32le(NUMGEN_TYPEOF_MOD)), udata(2, u32le(0))])),
  ]);
  const dataTypeof = concatBytes([
    udata(0, u32le(TYPEOF_EXPR_CONCAT)),
    udata(1, concatBytes([udata(0, payloadTypeof(TYPEOF_PROTO_IP, TYPEOF_IP_DADDR)), udata(1, payloadTypeof(proto, TYPEOF_DPORT))])),
  ]);
  const parts = [
    udata(UDATA_SET_KEYBYTEORDER, u32le(1)),
    udata(UDATA_SET_DATABYTEORDER, u32le(0)),
    udata(UDATA_SET_KEY_TYPEOF, keyTypeof),
    udata(UDATA_SET_DATA_TYPEOF, dataTypeof),
    udata(UDATA_SET_DATA_INTERVAL, u32le(0)),
  ];
  if (comment !== undefined) parts.push(commentUdata(UDATA_SET_COMMENT, `${field}.comment`, comment));
  return concatBytes(parts);
}

function addNumgenMap(ctx: Context, field: string, name: string, map: NftMap, flags: number, schemas: Map<string, SetSchema | undefined>): void {
  const schema = numgenMapSchema(map);
  if (flags !== 0 || (map.flags ?? []).length > 0) throw new NftNotEncodable(`${field}.flags on a numgen map`);
  const userdata = numgenMapUserdata(field, map.numgenDport ?? "tcp", map.comment);
  const w = ctx.w;
  w.beginMessage(NFT_MSG_NEWSET, NLM_F_CREATE);
  w.str(NFTA_SET_TABLE, ctx.table);
  w.str(NFTA_SET_NAME, name);
  w.u32(NFTA_SET_FLAGS, NFT_SET_MAP);
  w.u32(NFTA_SET_KEY_TYPE, TYPE_INTEGER);
  w.u32(NFTA_SET_KEY_LEN, 4);
  w.u32(NFTA_SET_DATA_TYPE, keyTypeId(NUMGEN_MAP_DATA_TYPES));
  w.u32(NFTA_SET_DATA_LEN, keyLength(NUMGEN_MAP_DATA_TYPES));
  w.u32(NFTA_SET_ID, ctx.setId());
  w.bytes(NFTA_SET_USERDATA, userdata);
  w.endMessage(`add map ${name}`);
  schemas.set(name, schema);
  if (map.elements.length > 0) elementMessages(ctx, `${field}.elements`, name, schema, map.elements, false);
}

/** numgen into NFT_REG_1, the map's address . port into NFT_REG_1 (port in its second word), nat from both. */
function dnatMapExprs(ctx: Context, field: string, d: Extract<NftStatement, { dnatMap: unknown }>["dnatMap"]): void {
  if (d.family !== "ip") throw new NftNotEncodable(`${field}: nat family ${d.family}`);
  if (!Number.isSafeInteger(d.mod) || d.mod < 1 || !Number.isSafeInteger(d.offset) || d.offset < 0 || d.offset + d.mod > 2 ** 32) throw new NftNotEncodable(`${field}: numgen mod ${d.mod} offset ${d.offset}`);
  const w = ctx.w;
  numgen(w, d.mod, d.offset);
  lookupExpr(w, checkIdentifier(`${field}.map`, d.map), undefined, NFT_REG_1, NFT_REG_1, false);
  w.beginExpr("nat");
  w.u32(1, NFT_NAT_DNAT);
  w.u32(2, NFPROTO_IPV4);
  w.u32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1);
  w.u32(NFTA_NAT_REG_PROTO_MIN, NFT_REG32_00 + 1);
  w.endExpr();
}
