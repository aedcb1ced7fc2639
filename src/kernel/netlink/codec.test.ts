import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  NLMSG_DONE,
  NLMSG_ERROR,
  NLM_F_ACK_TLVS,
  NLM_F_MULTI,
  NLA_F_NESTED,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  align4,
  attr,
  attrMap,
  attrsLength,
  bytesToIp,
  bytesToMac,
  cstring,
  decodeError,
  decodeIfAddrMsg,
  decodeIfInfoMsg,
  decodeRtMsg,
  encodeAttrs,
  encodeIfAddrMsg,
  encodeIfInfoMsg,
  encodeMessage,
  encodeRtMsg,
  ipToBytes,
  macToBytes,
  nested,
  parseAttrs,
  cidrToBytes,
  parseMessages,
  readCString,
  readU16,
  readU32,
  readU8,
  u16,
  u32,
  u8,
  type AttrSpec,
} from "./codec.ts";

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** Builds one raw netlink message by hand, independent of the encoder under test. */
function rawMessage(type: number, flags: number, seq: number, payload: number[]): number[] {
  const length = 16 + payload.length;
  const le32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
  const le16 = (n: number) => [n & 0xff, (n >> 8) & 0xff];
  const padding = new Array<number>(align4(length) - length).fill(0);
  return [...le32(length), ...le16(type), ...le16(flags), ...le32(seq), ...le32(0), ...payload, ...padding];
}

describe("attributes", () => {
  it("pads each attribute to 4 bytes with zeros, but the length field excludes padding", () => {
    const encoded = encodeAttrs([attr(3, cstring("br0")), attr(4, u32(1500)), attr(7, u8(1))]);
    // "br0\0" = 4 bytes -> len 8; u32 -> len 8; u8 -> len 5, padded to 8.
    assert.equal(hex(encoded), "0800030062723000" + "08000400dc050000" + "0500070001000000");
    assert.equal(encoded.byteLength, 24);
  });

  it("sets NLA_F_NESTED on nested attributes and encodes children inside", () => {
    const encoded = encodeAttrs([nested(18, [attr(1, cstring("veth"))])]);
    const view = new DataView(encoded.buffer);
    assert.equal(view.getUint16(0, true), 4 + 12);
    assert.equal(view.getUint16(2, true), 18 | NLA_F_NESTED);
    const [outer] = parseAttrs(encoded);
    assert.equal(outer?.type, 18, "parse strips the NESTED flag");
    const [inner] = parseAttrs(outer!.data);
    assert.equal(inner?.type, 1);
    assert.equal(readCString(inner!.data), "veth");
  });

  it("round-trips arbitrary attribute lists, nested or not", () => {
    const leaf = fc.record({ type: fc.integer({ min: 1, max: 0x3fff }), data: fc.uint8Array({ maxLength: 40 }) });
    const spec: fc.Arbitrary<AttrSpec[]> = fc.array(
      fc.oneof(
        leaf,
        fc.record({ type: fc.integer({ min: 1, max: 0x3fff }), nested: fc.array(leaf, { maxLength: 4 }) }),
      ),
      { maxLength: 8 },
    );
    fc.assert(
      fc.property(spec, (attrs) => {
        const encoded = encodeAttrs(attrs);
        assert.equal(encoded.byteLength, attrsLength(attrs));
        assert.equal(encoded.byteLength % 4, 0);
        const parsed = parseAttrs(encoded);
        assert.equal(parsed.length, attrs.length);
        attrs.forEach((a, i) => {
          const p = parsed[i]!;
          assert.equal(p.type, a.type);
          if ("data" in a) assert.deepEqual(Array.from(p.data), Array.from(a.data));
          else {
            const children = parseAttrs(p.data);
            assert.deepEqual(
              children.map((c) => [c.type, Array.from(c.data)]),
              a.nested.map((c) => [c.type, "data" in c ? Array.from(c.data) : []]),
            );
          }
        });
      }),
    );
  });

  it("stops at a truncated trailing attribute instead of reading past the end", () => {
    const good = encodeAttrs([attr(1, u32(7))]);
    const withJunk = new Uint8Array([...good, 0x20, 0x00, 0x02, 0x00, 1, 2]);
    const parsed = parseAttrs(withJunk);
    assert.equal(parsed.length, 1);
    assert.equal(readU32(parsed[0]!.data), 7);
  });

  it("reads integers little-endian and rejects short payloads", () => {
    assert.equal(readU8(u8(200)), 200);
    assert.equal(readU16(u16(0xbeef)), 0xbeef);
    assert.equal(readU32(u32(0xdeadbeef)), 0xdeadbeef);
    assert.throws(() => readU32(new Uint8Array(3)), /too short/);
  });

  it("attrMap keeps the last of repeated types", () => {
    const map = attrMap(encodeAttrs([attr(5, u32(1)), attr(5, u32(2))]));
    assert.equal(readU32(map.get(5)!), 2);
  });
});

describe("family headers", () => {
  it("ifinfomsg round-trips and has the kernel's layout", () => {
    const h = { family: 7, type: 1, index: 42, flags: 1, change: 0xffffffff };
    const b = encodeIfInfoMsg(h);
    assert.equal(hex(b), "07000100" + "2a000000" + "01000000" + "ffffffff");
    assert.deepEqual(decodeIfInfoMsg(b), h);
  });

  it("ifaddrmsg and rtmsg round-trip", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 128 }), fc.nat(), (family, prefix, index) => {
        const a = { family, prefixlen: prefix, flags: 2, scope: 253, index };
        assert.deepEqual(decodeIfAddrMsg(encodeIfAddrMsg(a)), a);
        const r = { family, dstLen: prefix, srcLen: 0, tos: 0, table: 254, protocol: 3, scope: 253, type: 1, flags: index };
        assert.deepEqual(decodeRtMsg(encodeRtMsg(r)), r);
      }),
    );
    assert.equal(encodeRtMsg({}).byteLength, 12);
    assert.equal(encodeIfAddrMsg({}).byteLength, 8);
  });
});

describe("messages", () => {
  it("encodes nlmsghdr with total length, type, flags, seq", () => {
    const msg = encodeMessage({ type: RTM_NEWLINK, flags: 0x405, header: encodeIfInfoMsg({ index: 3 }), attrs: [attr(3, cstring("eth0"))] }, 77);
    const view = new DataView(msg.buffer);
    assert.equal(view.getUint32(0, true), 16 + 16 + 12);
    assert.equal(view.getUint16(4, true), RTM_NEWLINK);
    assert.equal(view.getUint16(6, true), 0x405);
    assert.equal(view.getUint32(8, true), 77);
    const [parsed] = parseMessages(msg);
    assert.equal(decodeIfInfoMsg(parsed!.payload).index, 3);
  });

  it("pads a family header that is not 4-byte aligned before the attributes", () => {
    const msg = encodeMessage({ type: 1, flags: 0, header: Uint8Array.of(9, 9, 9), attrs: [attr(1, u8(5))] }, 1);
    assert.equal(msg.byteLength, 16 + 4 + 8);
    assert.equal(hex(msg.subarray(16, 20)), "09090900");
    const [parsed] = parseMessages(msg);
    assert.equal(readU8(attrMap(parsed!.payload.subarray(4)).get(1)!), 5);
  });

  it("splits a multi-part dump datagram ending with NLMSG_DONE", () => {
    const route = Array.from(encodeRtMsg({ family: 2, dstLen: 24, table: 254, type: 1 }));
    const datagram = Uint8Array.from([
      ...rawMessage(RTM_NEWROUTE, NLM_F_MULTI, 9, route),
      ...rawMessage(RTM_NEWROUTE, NLM_F_MULTI, 9, [...route, 5, 0, 0]),
      ...rawMessage(NLMSG_DONE, NLM_F_MULTI, 9, [0, 0, 0, 0]),
    ]);
    const messages = parseMessages(datagram);
    assert.deepEqual(
      messages.map((m) => [m.type, m.seq, m.payload.byteLength]),
      [
        [RTM_NEWROUTE, 9, 12],
        [RTM_NEWROUTE, 9, 15],
        [NLMSG_DONE, 9, 4],
      ],
    );
  });

  it("rejects a message length that runs past the datagram", () => {
    const bad = Uint8Array.from(rawMessage(RTM_NEWLINK, 0, 1, [0, 0, 0, 0]));
    new DataView(bad.buffer).setUint32(0, 64, true);
    assert.throws(() => parseMessages(bad), /bad message length/);
  });

  it("never reads outside a malformed datagram: it parses or throws a netlink error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        let messages;
        try {
          messages = parseMessages(bytes);
        } catch (error) {
          assert.match(String(error), /netlink: bad message length/);
          return;
        }
        let covered = 0;
        for (const m of messages) {
          covered += 16 + m.payload.byteLength;
          parseAttrs(m.payload);
          if (m.type === NLMSG_ERROR) {
            try {
              decodeError(m);
            } catch (error) {
              assert.match(String(error), /netlink: NLMSG_ERROR too short/);
            }
          }
        }
        assert.ok(covered <= bytes.byteLength);
      }),
    );
  });

  it("decodes NLMSG_ERROR: ACK, errno and extended-ack text", () => {
    const echoedHeader = rawMessage(RTM_NEWROUTE, 5, 31, []);
    const ack = parseMessages(Uint8Array.from(rawMessage(NLMSG_ERROR, 0, 31, [0, 0, 0, 0, ...echoedHeader])))[0]!;
    assert.deepEqual(decodeError(ack), { errno: 0, seq: 31 });

    const minus17 = [0xef, 0xff, 0xff, 0xff];
    const text = Array.from(encodeAttrs([attr(1, cstring("Nexthop has invalid gateway"))]));
    const echoedNack = rawMessage(RTM_NEWROUTE, 5, 32, []);
    const nack = parseMessages(Uint8Array.from(rawMessage(NLMSG_ERROR, NLM_F_ACK_TLVS | 0x100, 32, [...minus17, ...echoedNack, ...text])))[0]!;
    assert.deepEqual(decodeError(nack), { errno: 17, seq: 32, extMessage: "Nexthop has invalid gateway" });
  });
});

describe("addresses", () => {
  it("parses and formats IPv4", () => {
    assert.equal(hex(ipToBytes("10.244.2.1")), "0af40201");
    assert.equal(bytesToIp(Uint8Array.of(192, 168, 1, 12)), "192.168.1.12");
    for (const bad of ["10.0.0", "10.0.0.256", "a.b.c.d", "1.2.3.4.5", ""]) assert.throws(() => ipToBytes(bad), /invalid/, bad);
  });

  it("parses IPv6 forms and formats them per RFC 5952", () => {
    assert.equal(hex(ipToBytes("::")), "00".repeat(16));
    assert.equal(hex(ipToBytes("fd00::1")), "fd00" + "00".repeat(13) + "01");
    assert.equal(hex(ipToBytes("::ffff:10.1.2.3")), "00".repeat(10) + "ffff0a010203");
    assert.equal(bytesToIp(ipToBytes("2001:db8:0:0:1:0:0:1")), "2001:db8::1:0:0:1");
    assert.equal(bytesToIp(ipToBytes("fe80:0:0:0:0:0:0:0")), "fe80::");
    assert.equal(bytesToIp(ipToBytes("1:0:2:3:4:5:6:7")), "1:0:2:3:4:5:6:7", "a single zero group is not compressed");
    for (const bad of ["1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "1:2:3:4:5:6:7", "g::1"]) assert.throws(() => ipToBytes(bad), /invalid/, bad);
  });

  it("round-trips any IPv6 address through text", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        assert.deepEqual(Array.from(ipToBytes(bytesToIp(bytes))), Array.from(bytes));
      }),
    );
  });

  it("encodes CIDRs and checks the prefix against the family", () => {
    const v4 = cidrToBytes("10.244.0.5/16");
    assert.deepEqual([hex(v4.bytes), v4.prefix, v4.family], ["0af40005", 16, 4], "host bits are kept");
    assert.equal(cidrToBytes("::/0").family, 6);
    assert.throws(() => cidrToBytes("10.0.0.0/33"), /prefix/);
    assert.throws(() => cidrToBytes("10.0.0.0"), /missing "\/prefix"/);
    assert.throws(() => cidrToBytes("fd00::/129"), /prefix/);
    assert.throws(() => ipToBytes("010.0.0.1"), /leading zeros/, "strict, as src/net is");
  });

  it("parses and formats MAC addresses", () => {
    assert.equal(bytesToMac(macToBytes("02:AB:cd:00:01:ff")), "02:ab:cd:00:01:ff");
    assert.throws(() => macToBytes("02:ab:cd:00:01"), /invalid MAC/);
  });
});
