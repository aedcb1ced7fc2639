// conntrack.ts's reading side: the `conntrack -L` arguments and the parser for its text output
// (lines as conntrack-tools 1.4.7 prints them on this kernel). The tool itself is exercised by the root
// trace tests (test/trace-services.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { conntrackListArgs, parseConntrackLine } from "./conntrack.ts";

test("a DNAT'd UDP flow: original and reply tuples, flags, mark", () => {
  const e = parseConntrackLine("udp      17 119 src=10.1.0.2 dst=10.9.9.9 sport=45000 dport=53 src=10.2.0.2 dst=10.1.0.2 sport=8081 dport=45000 [ASSURED] mark=0 use=1");
  assert.deepEqual(e && { ...e, text: undefined }, {
    proto: "udp", timeout: 119, original: { src: "10.1.0.2", dst: "10.9.9.9", sport: 45000, dport: 53 },
    reply: { src: "10.2.0.2", dst: "10.1.0.2", sport: 8081, dport: 45000 }, flags: ["ASSURED"], mark: 0, text: undefined,
  });
});

test("TCP carries its state; UNREPLIED sits between the tuples", () => {
  const tcp = parseConntrackLine("tcp      6 431999 ESTABLISHED src=10.1.0.2 dst=10.9.9.9 sport=46000 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=8081 dport=46000 [ASSURED] mark=0 use=1")!;
  assert.equal(tcp.state, "ESTABLISHED");
  assert.equal(tcp.reply.sport, 8081);
  const unreplied = parseConntrackLine("udp      17 29 src=10.244.1.2 dst=10.96.0.20 sport=45000 dport=53 [UNREPLIED] src=10.244.2.3 dst=10.244.1.2 sport=9000 dport=45000 mark=16384 use=1")!;
  assert.equal(unreplied.state, undefined);
  assert.deepEqual(unreplied.flags, ["UNREPLIED"]);
  assert.equal(unreplied.reply.src, "10.244.2.3");
  assert.equal(unreplied.mark, 16384);
});

test("the tool's summary line and blank lines are no entries", () => {
  assert.equal(parseConntrackLine("conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown."), undefined);
  assert.equal(parseConntrackLine(""), undefined);
});

test("list arguments: every filter field, and bad fields named", () => {
  assert.deepEqual(conntrackListArgs({ proto: "udp", originalSrc: "10.244.1.2", originalSport: 45000, originalDst: "10.96.0.20", originalDport: 53 }),
    ["-L", "-f", "ipv4", "-p", "udp", "--orig-src", "10.244.1.2", "--orig-dst", "10.96.0.20", "--orig-port-src", "45000", "--orig-port-dst", "53"]);
  assert.throws(() => conntrackListArgs({ proto: "udp", originalSrc: "10.244.1.300" }), /originalSrc: "10\.244\.1\.300" is not an IPv4 address/);
  assert.throws(() => conntrackListArgs({ proto: "tcp", originalSport: 0 }), /originalSport: 0 is not a port/);
  assert.throws(() => conntrackListArgs({ proto: "sctp" as "tcp" }), /proto: "sctp" is not tcp or udp/);
});
