// The nf_tables encoder's framing and limits (pure). What the kernel makes of the bytes, compared
// with nft's own output, is test/kernel-nft-netlink.test.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseAttrs, parseMessages, readCString } from "../netlink/codec.ts";
import type { NftTransaction } from "./model.ts";
import { NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NftNotEncodable, encodeTransaction } from "./netlink-encode.ts";

const NLM_F_ACK = 0x4;
const tx = (changes: NftTransaction["changes"]): NftTransaction => ({ family: "ip", table: "pnt-t", changes });

describe("nf_tables netlink encoder", () => {
  it("frames one batch: BATCH_BEGIN, the messages numbered in order, an ACK asked only on the last, BATCH_END", () => {
    const { batch, ops } = encodeTransaction(tx([
      { op: "ensureTable" },
      { op: "addChain", chain: { name: "c", rules: [{ statements: [{ match: "ip saddr", value: "10.0.0.1" }, { verdict: "accept" }], comment: "why" }] } },
    ]), () => undefined);
    const messages = parseMessages(batch);
    assert.deepEqual(messages.map((m) => m.type), [NFNL_MSG_BATCH_BEGIN, 0x0a00, 0x0a03, 0x0a06, NFNL_MSG_BATCH_END]);
    assert.deepEqual(messages.map((m) => m.seq), [0, 1, 2, 3, 4]);
    assert.deepEqual(messages.map((m) => (m.flags & NLM_F_ACK) !== 0), [false, false, false, true, false]);
    assert.deepEqual(ops, ["add table", "add chain c", "add rule c (rule 0)"]);
    // The batch's nfgenmsg names the nf_tables subsystem (res_id 10, big-endian).
    assert.deepEqual([...messages[0]!.payload.subarray(0, 4)], [0, 0, 0, 10]);
    const rule = parseAttrs(messages[3]!.payload.subarray(4));
    assert.equal(readCString(rule.find((a) => a.type === 2)!.data), "c");
    // The comment as nft writes it: userdata TLV type 0, length, NUL-terminated text.
    assert.deepEqual([...rule.find((a) => a.type === 7)!.data], [0, 4, ...Buffer.from("why"), 0]);
  });

  it("splits a long element list over several messages, each attribute under 64 KiB", () => {
    const elements = Array.from({ length: 5000 }, (_, i) => ({ key: [`10.1.${i >> 8}.${i & 255}`, "tcp", 80], verdict: { verdict: "goto" as const, chain: "service-ABCDEF01-default/some-service/tcp/http" } }));
    const { batch, ops } = encodeTransaction(tx([{ op: "addElements", setOrMap: "m", elements }]), () => ({ keyType: ["ipv4_addr", "inet_proto", "inet_service"], verdictMap: true }));
    const messages = parseMessages(batch).slice(1, -1);
    assert.ok(messages.length > 5, `${messages.length} messages`);
    assert.equal(ops.length, messages.length);
    for (const m of messages) assert.ok(m.payload.byteLength < 48 * 1024);
  });

  it("names what it cannot encode, before producing anything", () => {
    assert.throws(() => encodeTransaction(tx([{ op: "addChain", chain: { name: "c", rules: [{ statements: [{ log: { prefix: "x" } }] }] } }]), () => undefined),
      (err: Error) => err instanceof NftNotEncodable && /changes\[0\]\.chain\.rules\[0\]\.statements\[0\]/.test(err.message));
    assert.throws(() => encodeTransaction({ family: "inet", table: "t", changes: [{ op: "ensureTable" }] }, () => undefined), NftNotEncodable);
    assert.throws(() => encodeTransaction(tx([{ op: "addElements", setOrMap: "unknown", elements: [["10.0.0.1"]] }]), () => undefined), /whose type this writer has not seen/);
    assert.throws(() => encodeTransaction(tx([{ op: "addChain", chain: { name: "c", rules: [{ statements: [{ match: "ip daddr", value: "10.0.0.256" }] }] } }]), () => undefined), /IPv4 address "10.0.0.256"/);
    assert.throws(() => encodeTransaction(tx([{ op: "addMap", map: { name: "m", keyType: ["ipv4_addr"], valueType: ["ipv4_addr"], elements: [] } }]), () => undefined), /data map/);
  });

  it("knows the types of sets created earlier in the same transaction, and forgets them with the table", () => {
    const set = { name: "s", keyType: ["ipv4_addr"] as const, elements: [] };
    const ok = encodeTransaction(tx([{ op: "addSet", set }, { op: "addElements", setOrMap: "s", elements: [["10.0.0.1"]] }]), () => undefined);
    assert.deepEqual([...ok.schemaChanges.keys()], ["s"]);
    assert.throws(() => encodeTransaction(tx([{ op: "deleteTable" }, { op: "addElements", setOrMap: "s", elements: [["10.0.0.1"]] }]), () => ({ keyType: ["ipv4_addr"], verdictMap: false })), NftNotEncodable);
  });

  it("writes a numgen map as nft does (integer key, address . port data) and its elements' data", () => {
    const { batch, ops, schemaChanges } = encodeTransaction(tx([
      { op: "addMap", map: { name: "endpoints-udp-00", keyType: ["numgen"], valueType: ["ipv4_addr", "inet_service"], numgenDport: "udp", elements: [{ key: [2048], value: ["10.244.1.5", 53] }] } },
    ]), () => undefined);
    assert.deepEqual(ops, ["add map endpoints-udp-00", "add element endpoints-udp-00"]);
    assert.deepEqual(schemaChanges.get("endpoints-udp-00"), { keyType: ["numgen"], verdictMap: false, valueType: ["ipv4_addr", "inet_service"] });
    const [set, elements] = parseMessages(batch).slice(1, 3).map((m) => parseAttrs(m.payload.subarray(4)));
    const u32 = (attrs: ReturnType<typeof parseAttrs>, type: number) => Buffer.from(attrs.find((a) => a.type === type)!.data).readUInt32BE(0);
    assert.equal(u32(set!, 3), 0x8, "a map");
    assert.equal(u32(set!, 4), 4, "integer key");
    assert.equal(u32(set!, 6), (7 << 6) | 13, "ipv4_addr . inet_service data");
    assert.equal(u32(set!, 7), 8);
    // Key 2048 in host order, data 10.244.1.5 and port 53 big-endian in its own 4-byte word.
    const raw = Buffer.from(elements!.find((a) => a.type === 3)!.data);
    assert.ok(raw.includes(Buffer.from([0, 8, 0, 0])), "key bytes");
    assert.ok(raw.includes(Buffer.from([10, 244, 1, 5, 0, 53, 0, 0])), "data bytes");
  });
  it("refuses a numgen map element without a value", () => {
    assert.throws(() => encodeTransaction(tx([
      { op: "addMap", map: { name: "m", keyType: ["numgen"], valueType: ["ipv4_addr", "inet_service"], elements: [{ key: [1], verdict: { verdict: "accept" } }] } },
    ]), () => undefined), NftNotEncodable);
  });
});
