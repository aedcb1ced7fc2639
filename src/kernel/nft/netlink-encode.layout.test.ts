// The encoder's bytes against a straightforward reference: each expected message written here
// as a tree of attributes (from linux/netfilter/nf_tables.h and libnftnl's userdata layout) and
// serialised by the few lines below, for a transaction with every message type and every
// expression the encoder writes. The encoder writes in place into one buffer; a slip in a length,
// padding or nesting shows here as a byte difference, named by message.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NftStatement, NftTransaction } from "./model.ts";
import { encodeTransaction } from "./netlink-encode.ts";

// ---- the reference: attributes as padded byte strings ----

function attr(type: number, value: Uint8Array | readonly number[], nested = false): Buffer {
  const body = Buffer.from(value);
  const head = Buffer.alloc(4);
  head.writeUInt16LE(4 + body.length, 0);
  head.writeUInt16LE(nested ? type | 0x8000 : type, 2);
  return Buffer.concat([head, body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
}
const nest = (type: number, ...children: Buffer[]) => attr(type, Buffer.concat(children), true);
const str = (type: number, s: string) => attr(type, Buffer.from(`${s}\0`));
const u32 = (type: number, v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return attr(type, b);
};
const u64 = (type: number, v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return attr(type, b);
};
/** A 32-bit number in host (little-endian) order, as nft stores marks, ct bits and numgen keys. */
const le = (v: number) => [...Buffer.from(Uint32Array.of(v).buffer)];
/** A libnftnl userdata TLV: type, length, value, no padding. */
const tlv = (type: number, value: readonly number[]) => [type, value.length, ...value];
const text = (s: string) => [...Buffer.from(`${s}\0`)];

// NFTA_DATA_VALUE (1) inside the nest `type`; NFTA_DATA_VERDICT (2) { CODE (1), CHAIN (2) }.
const data = (type: number, bytes: readonly number[]) => nest(type, attr(1, bytes));
const verdict = (code: number, chain?: string) => nest(2, u32(1, code), ...(chain === undefined ? [] : [str(2, chain)]));
const ACCEPT = 1, DROP = 0, JUMP = -3, GOTO = -4, RETURN = -5;

// An expression: NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { … } }.
const expr = (name: string, ...attrs: Buffer[]) => nest(1, str(1, name), nest(2, ...attrs));
const payload = (dreg: number, base: number, offset: number, len: number) => expr("payload", u32(1, dreg), u32(2, base), u32(3, offset), u32(4, len));
const meta = (key: number, dreg: number) => expr("meta", u32(2, key), u32(1, dreg));
const cmp = (op: number, bytes: readonly number[]) => expr("cmp", u32(1, 1), u32(2, op), data(3, bytes));
const bitwise = (mask: readonly number[], xor: readonly number[]) => expr("bitwise", u32(1, 1), u32(2, 1), u32(3, 4), data(4, mask), data(5, xor));
const immediate = (code: number, chain?: string) => expr("immediate", u32(1, 0), nest(2, verdict(code, chain)));
const EQ = 0, NEQ = 1, NETWORK = 1, TRANSPORT = 2, L4PROTO = 16, MARK = 3;

interface Message {
  type: number;
  flags: number;
  attrs: Buffer[];
}
const CREATE = 0x400, APPEND = 0x800;
const msg = (type: number, flags: number, ...attrs: Buffer[]): Message => ({ type, flags, attrs });

/** The NFNL batch: BATCH_BEGIN, the messages numbered from 1 (an ACK asked on the last), BATCH_END. */
function batch(messages: readonly Message[]): Buffer {
  const header = (len: number, type: number, flags: number, seq: number, family: number, resId: number) => {
    const h = Buffer.alloc(20);
    h.writeUInt32LE(len, 0);
    h.writeUInt16LE(type, 4);
    h.writeUInt16LE(flags | 0x1, 6);
    h.writeUInt32LE(seq, 8);
    h[16] = family;
    h.writeUInt16BE(resId, 18);
    return h;
  };
  const parts = [header(20, 0x10, 0, 0, 0, 10)];
  messages.forEach((m, i) => {
    const body = Buffer.concat(m.attrs);
    parts.push(header(20 + body.length, (10 << 8) | m.type, m.flags | (i === messages.length - 1 ? 0x4 : 0), i + 1, 2, 0), body);
  });
  parts.push(header(20, 0x11, 0, messages.length + 1, 0, 10));
  return Buffer.concat(parts);
}

// ---- the transaction and what nf_tables wants for it ----

const T = "pnt-t";
const st = (...statements: NftStatement[]) => ({ statements });
const tx: NftTransaction = {
  family: "ip", table: T, changes: [
    { op: "ensureTable" },
    { op: "deleteTable" },
    { op: "ensureTable" },
    { op: "addSet", set: { name: "aff", keyType: ["ipv4_addr", "inet_proto", "inet_service"], flags: ["timeout", "dynamic"], timeoutSeconds: 600, comment: "affinity", elements: [["10.0.0.2", "tcp", 443]] } },
    { op: "addMap", map: { name: "svc", keyType: ["ipv4_addr", "inet_proto", "inet_service"], valueType: ["verdict"], elements: [
      { key: ["10.96.0.1", "tcp", 80], verdict: { verdict: "goto", chain: "c2" } },
      { key: ["10.96.0.2", "udp", 53], verdict: { verdict: "drop" } },
    ] } },
    { op: "addMap", map: { name: "ep", keyType: ["numgen"], valueType: ["ipv4_addr", "inet_service"], numgenDport: "udp", elements: [{ key: [1], value: ["10.244.1.5", 8080] }] } },
    { op: "addChain", chain: { name: "c1", base: { type: "nat", hook: "prerouting", priority: "dstnat", policy: "accept" }, rules: [
      { statements: [{ match: "ip saddr", op: "!=", value: "10.244.0.0/16" }, { verdict: "jump", chain: "c2" }], comment: "why" },
      st({ match: "ip daddr", value: "172.16.0.0/12" }, { match: "meta l4proto", value: "udp" }, { dnatMap: { family: "ip", mod: 2, offset: 0, map: "ep" } }),
      st({ match: "ip daddr", value: ["10.0.0.1", "10.0.0.2"] }, { counter: true }, { verdict: "accept" }),
      st({ match: "ct state", value: "new" }, { match: "fib daddr type", value: "local" }, { lookup: ["ip saddr", "meta l4proto", "th dport"], set: "aff", negate: true }),
      st({ vmapLookup: ["meta l4proto", "th dport"], map: "svc" }),
      st({ setMarkOr: 0x4000 }, { masquerade: { fullyRandom: true } }),
      st({ updateSet: "aff", key: ["ip saddr"] }, { dnat: { family: "ip", address: "10.0.0.9", port: 80 } }),
      st({ snat: { family: "ip", address: "192.168.5.1" } }, { namedCounter: "hits" }, { reject: "icmpx admin-prohibited" }),
      st({ numgenMatch: { mod: 3, value: 0 } }, { reject: "tcp reset" }),
      st({ numgenVmap: [{ verdict: "goto", chain: "c2" }, { verdict: "accept" }] }),
    ] } },
    { op: "replaceChain", chain: { name: "c2", rules: [st({ verdict: "return" })] } },
    { op: "deleteElements", setOrMap: "svc", keys: [["10.96.0.2", "udp", 53]] },
    { op: "deleteChain", name: "old" },
    { op: "deleteSet", name: "gone" },
  ],
};

const KEY_3 = (7 << 12) | (12 << 6) | 13; // ipv4_addr . inet_proto . inet_service
const payloadTypeof = (proto: number, field: number) => [...tlv(0, le(7)), ...tlv(1, [...tlv(0, le(proto)), ...tlv(1, le(field))])];
const table = str(1, T);
const rule = (...attrs: Buffer[]) => msg(6, CREATE | APPEND, table, str(2, "c1"), ...attrs);

const expected: Message[] = [
  msg(0, CREATE, table, u32(2, 0)),
  msg(2, 0, table),
  msg(0, CREATE, table, u32(2, 0)),
  // set aff: timeout | eval, key length 12, id 1, timeout in ms; userdata: key byte order 0 (concatenated), comment.
  msg(9, CREATE, table, str(2, "aff"), u32(3, 0x30), u32(4, KEY_3), u32(5, 12), u32(10, 1), u64(11, 600_000),
    attr(13, [...tlv(0, le(0)), ...tlv(7, text("affinity"))])),
  msg(12, CREATE, table, str(2, "aff"), nest(3, nest(1, data(1, [10, 0, 0, 2, 6, 0, 0, 0, 1, 187, 0, 0])))),
  // verdict map svc: NFT_SET_MAP, data type NFT_DATA_VERDICT; userdata also records the key's last type (typeof).
  msg(9, CREATE, table, str(2, "svc"), u32(3, 0x8), u32(4, KEY_3), u32(5, 12), u32(6, 0xffffff00), u32(7, 0), u32(10, 2),
    attr(13, [...tlv(0, le(0)), ...tlv(1, le(0)), ...tlv(3, [...tlv(0, le(13)), ...tlv(1, [])]), ...tlv(6, le(0))])),
  msg(12, CREATE, table, str(2, "svc"), nest(3,
    nest(1, data(1, [10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]), nest(2, verdict(GOTO, "c2"))),
    nest(1, data(1, [10, 96, 0, 2, 17, 0, 0, 0, 0, 53, 0, 0]), nest(2, verdict(DROP))))),
  // numgen map ep: integer key, ipv4_addr . inet_service data; typeof userdata `numgen random mod 4096 : ip daddr . udp dport`.
  msg(9, CREATE, table, str(2, "ep"), u32(3, 0x8), u32(4, 4), u32(5, 4), u32(6, (7 << 6) | 13), u32(7, 8), u32(10, 3), attr(13, [
    ...tlv(0, le(1)), ...tlv(1, le(0)),
    ...tlv(3, [...tlv(0, le(23)), ...tlv(1, [...tlv(0, le(1)), ...tlv(1, le(4096)), ...tlv(2, le(0))])]),
    ...tlv(4, [...tlv(0, le(13)), ...tlv(1, [...tlv(0, payloadTypeof(12, 12)), ...tlv(1, payloadTypeof(6, 2))])]),
    ...tlv(6, le(0)),
  ])),
  msg(12, CREATE, table, str(2, "ep"), nest(3, nest(1, data(1, le(1)), data(2, [10, 244, 1, 5, 0x1f, 0x90, 0, 0])))),
  // base chain: hook prerouting (0) at dstnat (-100), policy accept, type nat.
  msg(3, CREATE, table, str(3, "c1"), nest(4, u32(1, 0), u32(2, -100)), u32(5, ACCEPT), str(7, "nat")),
  // A /16 loads and compares its two bytes; a comment is userdata TLV 0.
  rule(nest(4, payload(1, NETWORK, 12, 2), cmp(NEQ, [10, 244]), immediate(JUMP, "c2")), attr(7, tlv(0, text("why")))),
  // A /12 is masked; dnat through the numgen map: numgen, lookup into register 1, nat from registers 1 and 9.
  rule(nest(4,
    payload(1, NETWORK, 16, 4), bitwise([255, 240, 0, 0], [0, 0, 0, 0]), cmp(EQ, [172, 16, 0, 0]),
    meta(L4PROTO, 1), cmp(EQ, [17]),
    expr("numgen", u32(1, 1), u32(2, 2), u32(3, 1), u32(4, 0)),
    expr("lookup", str(1, "ep"), u32(2, 1), u32(3, 1)),
    expr("nat", u32(1, 1), u32(2, 2), u32(3, 1), u32(5, 9)))),
  // Two values: an anonymous constant set (id 4, with its size and `ip daddr` typeof), sent before the rule.
  msg(9, CREATE, table, str(2, "__set%d"), u32(3, 0x3), u32(4, 7), u32(5, 4), u32(10, 4), nest(9, u32(1, 2)),
    attr(13, [...tlv(0, le(2)), ...tlv(3, [...tlv(0, le(7)), ...tlv(1, [...tlv(0, le(12)), ...tlv(1, le(12))])])])),
  msg(12, CREATE, table, str(2, "__set%d"), nest(3, nest(1, data(1, [10, 0, 0, 1])), nest(1, data(1, [10, 0, 0, 2]))), u32(4, 4)),
  rule(nest(4, payload(1, NETWORK, 16, 4), expr("lookup", str(1, "__set%d"), u32(2, 1), u32(4, 4)), expr("counter", u64(1, 0), u64(2, 0)), immediate(ACCEPT))),
  // ct state new is a bit test; fib daddr type; a concatenated key in registers 1, 9, 10, looked up inverted.
  rule(nest(4,
    expr("ct", u32(1, 1), u32(2, 0)), bitwise(le(8), [0, 0, 0, 0]), cmp(NEQ, [0, 0, 0, 0]),
    expr("fib", u32(1, 1), u32(2, 3), u32(3, 2)), cmp(EQ, le(2)),
    payload(1, NETWORK, 12, 4), meta(L4PROTO, 9), payload(10, TRANSPORT, 2, 2),
    expr("lookup", str(1, "aff"), u32(2, 1), u32(5, 1)))),
  rule(nest(4, meta(L4PROTO, 1), payload(9, TRANSPORT, 2, 2), expr("lookup", str(1, "svc"), u32(2, 1), u32(3, 0)))),
  rule(nest(4,
    meta(MARK, 1), bitwise(le(~0x4000 >>> 0), le(0x4000)), expr("meta", u32(2, MARK), u32(3, 1)),
    expr("masq", u32(1, 0x10)))),
  rule(nest(4,
    payload(1, NETWORK, 12, 4), expr("dynset", str(1, "aff"), u32(3, 1), u32(4, 1)),
    expr("immediate", u32(1, 1), data(2, [10, 0, 0, 9])), expr("immediate", u32(1, 2), data(2, [0, 80])),
    expr("nat", u32(1, 1), u32(2, 2), u32(3, 1), u32(5, 2), u32(7, 2)))),
  rule(nest(4,
    expr("immediate", u32(1, 1), data(2, [192, 168, 5, 1])), expr("nat", u32(1, 0), u32(2, 2), u32(3, 1)),
    expr("objref", u32(1, 1), str(2, "hits")),
    expr("reject", u32(1, 2), attr(2, [3])))),
  rule(nest(4, expr("numgen", u32(1, 1), u32(2, 3), u32(3, 1)), cmp(EQ, le(0)), expr("reject", u32(1, 1)))),
  // numgen vmap: an anonymous verdict map (id 5) keyed by the number in host order.
  msg(9, CREATE, table, str(2, "__map%d"), u32(3, 0xb), u32(4, 4), u32(5, 4), u32(6, 0xffffff00), u32(7, 0), u32(10, 5), nest(9, u32(1, 2)),
    attr(13, [...tlv(0, le(1)), ...tlv(1, le(0)), ...tlv(6, le(0))])),
  msg(12, CREATE, table, str(2, "__map%d"), nest(3,
    nest(1, data(1, le(0)), nest(2, verdict(GOTO, "c2"))),
    nest(1, data(1, le(1)), nest(2, verdict(ACCEPT)))), u32(4, 5)),
  rule(nest(4, expr("numgen", u32(1, 1), u32(2, 2), u32(3, 1)), expr("lookup", str(1, "__map%d"), u32(2, 1), u32(3, 0), u32(4, 5)))),
  // replace = add, flush (DELRULE naming the chain), add the rules.
  msg(3, CREATE, table, str(3, "c2")),
  msg(8, 0, table, str(2, "c2")),
  msg(6, CREATE | APPEND, table, str(2, "c2"), nest(4, immediate(RETURN))),
  msg(14, 0, table, str(2, "svc"), nest(3, nest(1, data(1, [10, 96, 0, 2, 17, 0, 0, 0, 0, 53, 0, 0])))),
  msg(8, 0, table, str(2, "old")),
  msg(5, 0, table, str(3, "old")),
  msg(11, 0, table, str(2, "gone")),
];

describe("nf_tables netlink encoder, byte for byte", () => {
  it("writes every message type and expression as the reference lays them out", () => {
    const { batch: actual, ops } = encodeTransaction(tx, () => undefined);
    assert.equal(ops.length, expected.length);
    const want = batch(expected);
    // Message by message first, so a difference is named by what the message does.
    let offset = 0;
    let wantOffset = 0;
    for (let i = 0; i <= expected.length + 1; i++) {
      const len = actual.readUInt32LE(offset);
      const wantLen = want.readUInt32LE(wantOffset);
      assert.deepEqual([...actual.subarray(offset, offset + len)], [...want.subarray(wantOffset, wantOffset + wantLen)], `message ${i} (${i === 0 ? "batch begin" : ops[i - 1] ?? "batch end"})`);
      offset += len;
      wantOffset += wantLen;
    }
    assert.ok(actual.equals(want));
  });
});
