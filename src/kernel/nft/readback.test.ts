import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NftDecodeError, decodeTableJson } from "./readback.ts";

// Output of nft 1.0.6 `nft -j list table inet probe` for a table podnet rendered (trimmed), plus a
// rule outside the model's vocabulary and an object of another table.
const LISTING = JSON.stringify({"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "probe", "handle": 1}}, {"set": {"family": "inet", "name": "cidrs", "table": "probe", "type": "ipv4_addr", "handle": 2, "comment": "some cidrs", "flags": ["interval"], "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, {"range": ["172.16.0.1", "172.16.0.9"]}, "192.168.1.1"]}}, {"set": {"family": "inet", "name": "aff", "table": "probe", "type": "ipv4_addr", "handle": 3, "size": 65535, "flags": ["timeout"], "timeout": 10800}}, {"map": {"family": "inet", "name": "vm", "table": "probe", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 6, "map": "verdict", "elem": [[{"concat": ["10.96.0.1", "tcp", 80]}, {"goto": {"target": "svc-a"}}]]}}, {"chain": {"family": "inet", "table": "probe", "name": "svc-a", "handle": 8}}, {"chain": {"family": "inet", "table": "probe", "name": "post", "handle": 10, "type": "nat", "hook": "postrouting", "prio": 105, "policy": "accept"}}, {"rule": {"family": "inet", "table": "probe", "chain": "svc-a", "handle": 14, "expr": [{"vmap": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "data": {"set": [[0, {"goto": {"target": "ep-1"}}], [1, {"jump": {"target": "ep-1"}}]]}}}]}}, {"rule": {"family": "inet", "table": "probe", "chain": "svc-a", "handle": 15, "comment": "hello world", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "probe", "chain": "post", "handle": 20, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 16384}}, {"masquerade": {"flags": "fully-random"}}]}}, {"rule": {"family": "inet", "table": "probe", "chain": "post", "handle": 21, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"masquerade": null}]}}, {"rule": {"family": "inet", "table": "probe", "chain": "post", "handle": 22, "expr": [{"snat": {"family": "ip", "addr": "192.168.1.1"}}]}}, {"rule": {"family": "inet", "table": "probe", "chain": "post", "handle": 23, "expr": [{"queue": {"num": 1}}]}}, {"chain": {"family": "inet", "table": "other", "name": "x", "handle": 1}}]});

describe("reading a table back from nft's JSON", () => {
  const table = decodeTableJson(LISTING, "inet", "probe");

  it("decodes base and regular chains with their handles and rules", () => {
    assert.deepEqual(table.chains.map((c) => [c.name, c.handle, c.rules.length]), [["svc-a", 8, 2], ["post", 10, 4]]);
    assert.deepEqual(table.chains[1]!.base, { type: "nat", hook: "postrouting", priority: 105, policy: "accept" });
    assert.equal(table.chains[0]!.base, undefined);
  });

  it("decodes rules into the model's statements, with comments and handles", () => {
    const [numgen, counted] = table.chains[0]!.rules;
    assert.deepEqual(numgen, { handle: 14, statements: [{ numgenVmap: [{ verdict: "goto", chain: "ep-1" }, { verdict: "jump", chain: "ep-1" }] }] });
    assert.deepEqual(counted, { handle: 15, comment: "hello world", statements: [{ match: "ip saddr", value: "10.0.0.0/8" }, { counter: true }, { verdict: "accept" }] });
    const post = table.chains[1]!.rules;
    assert.deepEqual(post[0]!.statements, [{ match: "meta mark", value: 16384 }, { masquerade: { fullyRandom: true } }]);
    assert.deepEqual(post[1]!.statements, [{ match: "ip saddr", value: "10.244.0.0/16" }, { match: "ip daddr", op: "!=", value: "10.244.0.0/16" }, { masquerade: {} }]);
    assert.deepEqual(post[2]!.statements, [{ snat: { family: "ip", address: "192.168.1.1" } }]);
  });

  it("keeps a rule it cannot decode as opaque instead of failing", () => {
    const queue = table.chains[1]!.rules[3]!;
    assert.deepEqual(queue.statements, []);
    assert.match(queue.opaque ?? "", /queue/);
  });

  it("decodes sets and maps with flags, timeouts, comments and elements", () => {
    assert.deepEqual(table.sets, [
      { name: "cidrs", keyType: ["ipv4_addr"], flags: ["interval"], comment: "some cidrs", elements: [["10.0.0.0/8"], ["172.16.0.1-172.16.0.9"], ["192.168.1.1"]] },
      { name: "aff", keyType: ["ipv4_addr"], flags: ["timeout"], timeoutSeconds: 10800, elements: [] },
    ]);
    assert.deepEqual(table.maps, [
      { name: "vm", keyType: ["ipv4_addr", "inet_proto", "inet_service"], valueType: ["verdict"], elements: [{ key: ["10.96.0.1", "tcp", 80], verdict: { verdict: "goto", chain: "svc-a" } }] },
    ]);
  });

  it("rejects output that is not nft's JSON", () => {
    assert.throws(() => decodeTableJson("table inet t {", "inet", "t"), NftDecodeError);
    assert.throws(() => decodeTableJson("{}", "inet", "t"), /no nftables array/);
  });
});

// nft 1.0.6 `nft -j list table ip t` / `ip6 t6`: nat statements carry no "family" in a one-family
// table (an inet table's do, as in LISTING above).
const IP_NAT = JSON.stringify({"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "t", "handle": 1}}, {"chain": {"family": "ip", "table": "t", "name": "c", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "t", "name": "p", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}, {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 3, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.96.0.1"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}}, {"dnat": {"addr": "10.244.1.3", "port": 8080}}]}}, {"rule": {"family": "ip", "table": "t", "chain": "p", "handle": 4, "expr": [{"snat": {"addr": "192.168.1.1"}}]}}]});
const IP6_NAT = JSON.stringify({"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip6", "name": "t6", "handle": 2}}, {"chain": {"family": "ip6", "table": "t6", "name": "c", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"rule": {"family": "ip6", "table": "t6", "chain": "c", "handle": 2, "expr": [{"dnat": {"addr": "fd00::3"}}]}}]});

describe("nat statements in a one-family table", () => {
  it("take the family of an ip table", () => {
    const [dnat, snat] = decodeTableJson(IP_NAT, "ip", "t").chains.map((c) => c.rules[0]!);
    assert.equal(dnat!.opaque, undefined);
    assert.deepEqual(dnat!.statements.at(-1), { dnat: { family: "ip", address: "10.244.1.3", port: 8080 } });
    assert.deepEqual(snat!.statements, [{ snat: { family: "ip", address: "192.168.1.1" } }]);
  });

  it("take the family of an ip6 table", () => {
    const rule = decodeTableJson(IP6_NAT, "ip6", "t6").chains[0]!.rules[0]!;
    assert.deepEqual(rule.statements, [{ dnat: { family: "ip6", address: "fd00::3" } }]);
  });

  it("stay opaque in an inet table when the family is missing, since the table does not say", () => {
    const inet = IP6_NAT.replaceAll('"ip6"', '"inet"');
    const rule = decodeTableJson(inet, "inet", "t6").chains[0]!.rules[0]!;
    assert.deepEqual(rule.statements, []);
    assert.match(rule.opaque ?? "", /dnat/);
  });
});

describe("reading back the endpoint-map layout", () => {
  // nft 1.0.6 `nft -j list table ip t` for a `typeof numgen … : ip daddr . tcp dport` map and its rule.
  const json = JSON.stringify({ nftables: [
    { table: { family: "ip", name: "t", handle: 1 } },
    { map: { family: "ip", name: "endpoints-tcp-00", table: "t", type: "integer", handle: 2, map: "ipv4_addr . inet_service", elem: [[1024, { concat: ["10.244.1.5", 8080] }]] } },
    { chain: { family: "ip", table: "t", name: "svc", handle: 3 } },
    { rule: { family: "ip", table: "t", chain: "svc", handle: 4, expr: [
      { match: { op: "==", left: { meta: { key: "l4proto" } }, right: "tcp" } },
      { dnat: { family: "ip", addr: { map: { key: { numgen: { mode: "random", mod: 3, offset: 1024 } }, data: "@endpoints-tcp-00" } } } },
    ] } },
    { rule: { family: "ip", table: "t", chain: "svc", handle: 5, expr: [
      { match: { op: "in", left: { ct: { key: "status" } }, right: "dnat" } },
      { masquerade: null },
    ] } },
  ] });
  const table = decodeTableJson(json, "ip", "t");
  it("decodes the numgen-keyed data map, its elements, the DNAT from it and ct status", () => {
    assert.deepEqual(table.maps[0], { name: "endpoints-tcp-00", keyType: ["numgen"], valueType: ["ipv4_addr", "inet_service"], elements: [{ key: [1024], value: ["10.244.1.5", 8080] }] });
    assert.deepEqual(table.chains[0]!.rules[0]!.statements[1], { dnatMap: { family: "ip", mod: 3, offset: 1024, map: "endpoints-tcp-00" } });
    assert.deepEqual(table.chains[0]!.rules[1]!.statements[0], { match: "ct status", value: "dnat" });
  });
});
