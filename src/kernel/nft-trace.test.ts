// The nft monitor lines podnet trace reads, as nft 1.0.6 prints them (captured in a lab namespace).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseNftTraceLine, probeMatchExpression, traceTableScript } from "./nft-trace.ts";

test("packet, rule (with handle and verdict), policy and verdict lines become typed events", () => {
  const packet = parseNftTraceLine(`trace id 7150ef85 ip podnet postrouting packet: iif "cni0" oif "eth0" ether saddr f2:73:2c:cd:81:9a ether daddr 02:0e:2d:ef:e9:7d ip saddr 10.244.1.2 ip daddr 192.168.1.200 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 21302 ip length 29 udp sport 60723 udp dport 33434 udp length 9 @th,64,8 0x78 `);
  assert.ok(packet?.kind === "packet");
  assert.deepEqual({ ...packet.packet, text: undefined }, { iif: "cni0", oif: "eth0", saddr: "10.244.1.2", daddr: "192.168.1.200", sport: 60723, dport: 33434, etherSaddr: "f2:73:2c:cd:81:9a", etherDaddr: "02:0e:2d:ef:e9:7d", ttl: 63, text: undefined });
  assert.equal(packet.family, "ip");
  assert.equal(packet.table, "podnet");
  assert.equal(packet.chain, "postrouting");

  const rule = parseNftTraceLine(`trace id 7150ef85 ip podnet postrouting rule ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade comment "pod traffic leaving the cluster" # handle 2 (verdict accept)`);
  assert.deepEqual(rule, { kind: "rule", traceId: "7150ef85", family: "ip", table: "podnet", chain: "postrouting", rule: `ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade comment "pod traffic leaving the cluster"`, handle: 2, verdict: "accept" });

  assert.deepEqual(parseNftTraceLine("trace id c9e94ddc inet pntrace_x pre policy accept "), { kind: "policy", traceId: "c9e94ddc", family: "inet", table: "pntrace_x", chain: "pre", verdict: "accept" });
  assert.deepEqual(parseNftTraceLine("trace id c9e94ddc inet f fwd verdict drop"), { kind: "verdict", traceId: "c9e94ddc", family: "inet", table: "f", chain: "fwd", verdict: "drop" });
  assert.equal(parseNftTraceLine("add table inet pntrace_x"), undefined);
  assert.equal(parseNftTraceLine("# new generation 6 by process 32059 (nft)"), undefined);
});

test("the probe match and the trace table refuse what is not a port, id or safe name", () => {
  assert.equal(probeMatchExpression({ proto: "udp", sport: 40001, dport: 53 }), "udp sport 40001");
  assert.equal(probeMatchExpression({ proto: "icmp", icmpId: 7 }), "icmp type echo-request icmp id 7");
  assert.throws(() => probeMatchExpression({ proto: "tcp", sport: 0, dport: 80 }), /sport must be a port/);
  assert.throws(() => probeMatchExpression({ proto: "tcp", dport: 80 }), /sport must be a port/);
  assert.throws(() => probeMatchExpression({ proto: "icmp" }), /icmpId/);
  assert.throws(() => traceTableScript("podnet", { proto: "udp", sport: 1, dport: 2 }), /trace table name/);
  assert.match(traceTableScript("pntrace_ab12", { proto: "udp", sport: 1, dport: 2 }), /table bridge pntrace_ab12/);
});
