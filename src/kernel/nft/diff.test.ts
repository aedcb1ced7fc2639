import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { diffTables, priorityNumber } from "./diff.ts";
import type { NftChain, NftChange, NftTable } from "./model.ts";
import type { NftTableState } from "./readback.ts";

const svcChain = (endpoints: string[]): NftChain => ({
  name: "svc-web",
  rules: [{ statements: [{ numgenVmap: endpoints.map((e) => ({ verdict: "goto" as const, chain: e })) }], comment: "web" }],
});

function proxyTable(over: Partial<NftTable> = {}): NftTable {
  return {
    family: "inet",
    name: "podnet-proxy",
    sets: [{ name: "no-endpoints", keyType: ["ipv4_addr", "inet_proto", "inet_service"], elements: [["10.96.0.9", "tcp", 80]] }],
    maps: [{ name: "service-ips", keyType: ["ipv4_addr", "inet_proto", "inet_service"], valueType: ["verdict"], elements: [{ key: ["10.96.0.1", "tcp", 80], verdict: { verdict: "goto", chain: "svc-web" } }] }],
    chains: [
      { name: "services", base: { type: "nat", hook: "prerouting", priority: "dstnat", policy: "accept" }, rules: [{ statements: [{ vmapLookup: ["ip daddr", "meta l4proto", "th dport"], map: "service-ips" }] }] },
      svcChain(["ep-a", "ep-b"]),
      { name: "ep-a", rules: [{ statements: [{ dnat: { family: "ip", address: "10.244.1.5", port: 8080 } }] }] },
      { name: "ep-b", rules: [{ statements: [{ dnat: { family: "ip", address: "10.244.2.5", port: 8080 } }] }] },
    ],
    ...over,
  };
}

const ops = (changes: readonly NftChange[]) => changes.map((c) => c.op);

describe("diffing tables", () => {
  it("nothing to do yields an empty transaction", () => {
    assert.deepEqual(diffTables(proxyTable(), proxyTable()).changes, []);
  });

  it("a missing table is created whole, ensureTable first, objects before the rules that use them", () => {
    const { changes } = diffTables(proxyTable(), undefined);
    assert.deepEqual(ops(changes), ["ensureTable", "addSet", "addMap", "addChain", "addChain", "addChain", "addChain", "replaceChain", "replaceChain", "replaceChain", "replaceChain", "addElements", "addElements"]);
  });

  it("an element-only change yields only element operations", () => {
    const desired = proxyTable({
      sets: [{ name: "no-endpoints", keyType: ["ipv4_addr", "inet_proto", "inet_service"], elements: [["10.96.0.10", "udp", 53]] }],
    });
    assert.deepEqual(diffTables(desired, proxyTable()).changes, [
      { op: "deleteElements", setOrMap: "no-endpoints", keys: [["10.96.0.9", "tcp", 80]] },
      { op: "addElements", setOrMap: "no-endpoints", elements: [["10.96.0.10", "udp", 53]] },
    ]);
  });

  it("a map element whose verdict changed is deleted and added again", () => {
    const desired = proxyTable();
    const current = proxyTable({ maps: [{ ...desired.maps[0]!, elements: [{ key: ["10.96.0.1", "tcp", 80], verdict: { verdict: "goto", chain: "ep-a" } }] }] });
    assert.deepEqual(diffTables(desired, current).changes, [
      { op: "deleteElements", setOrMap: "service-ips", keys: [["10.96.0.1", "tcp", 80]] },
      { op: "addElements", setOrMap: "service-ips", elements: desired.maps[0]!.elements },
    ]);
  });

  it("a changed chain yields one replace of that chain and nothing else", () => {
    const desired = proxyTable();
    const chains = desired.chains.map((c) => (c.name === "svc-web" ? svcChain(["ep-a"]) : c));
    const { changes } = diffTables(desired, proxyTable({ chains }));
    assert.deepEqual(changes, [{ op: "replaceChain", chain: svcChain(["ep-a", "ep-b"]) }]);
  });

  it("a chain whose rule comment changed is replaced", () => {
    const desired = proxyTable();
    const chains = desired.chains.map((c) => (c.name === "svc-web" ? { ...c, rules: [{ ...c.rules[0]!, comment: "old" }] } : c));
    assert.deepEqual(ops(diffTables(desired, proxyTable({ chains })).changes), ["replaceChain"]);
  });

  it("removed chains are emptied first and then deleted, after the rules that jumped to them changed", () => {
    const current = proxyTable();
    const desired = proxyTable({ chains: current.chains.filter((c) => c.name !== "ep-b").map((c) => (c.name === "svc-web" ? svcChain(["ep-a"]) : c)) });
    const { changes } = diffTables(desired, current);
    assert.deepEqual(ops(changes), ["replaceChain", "replaceChain", "deleteChain"]);
    assert.equal((changes[0] as { chain: NftChain }).chain.name, "svc-web");
    assert.deepEqual(changes[1], { op: "replaceChain", chain: { name: "ep-b", rules: [] } });
    assert.deepEqual(changes[2], { op: "deleteChain", name: "ep-b" });
  });

  it("removed sets and maps are deleted last", () => {
    const desired = proxyTable({ sets: [], maps: [] });
    const { changes } = diffTables(desired, proxyTable());
    assert.deepEqual(changes, [{ op: "deleteSet", name: "no-endpoints" }, { op: "deleteMap", name: "service-ips" }]);
  });

  it("a set whose type changed is recreated, with every chain emptied before and refilled after", () => {
    const current = proxyTable();
    const desired = proxyTable({ sets: [{ name: "no-endpoints", keyType: ["ipv4_addr", "inet_service"], elements: [["10.96.0.9", 80]] }] });
    const { changes } = diffTables(desired, current);
    const order = ops(changes);
    assert.deepEqual(order.slice(0, 4), ["replaceChain", "replaceChain", "replaceChain", "replaceChain"], "emptied");
    assert.ok(changes.slice(0, 4).every((c) => c.op === "replaceChain" && c.chain.rules.length === 0));
    assert.deepEqual(order.slice(4, 6), ["deleteSet", "addSet"]);
    assert.equal(order.filter((o) => o === "replaceChain").length, 8, "each chain emptied, then refilled");
    assert.deepEqual(changes.at(-1), { op: "addElements", setOrMap: "no-endpoints", elements: [["10.96.0.9", 80]] });
  });

  it("a base chain moved to another priority is deleted and created again", () => {
    const desired = proxyTable();
    const current = proxyTable({ chains: desired.chains.map((c) => (c.base ? { ...c, base: { ...c.base, priority: "dstnat + 1" } } : c)) });
    const order = ops(diffTables(desired, current).changes);
    assert.ok(order.includes("deleteChain") && order.includes("addChain"), order.join(","));
  });

  it("compares priorities by value, as the kernel reports them", () => {
    assert.equal(priorityNumber("inet", "srcnat"), 100);
    assert.equal(priorityNumber("ip", "dstnat - 5"), -105);
    assert.equal(priorityNumber("bridge", "srcnat"), 300);
    const desired = proxyTable();
    const current = proxyTable({ chains: desired.chains.map((c) => (c.base ? { ...c, base: { ...c.base, priority: -100 } } : c)) });
    assert.deepEqual(diffTables(desired, current).changes, []);
  });

  it("a policy change replaces the chain", () => {
    const desired = proxyTable();
    const current = proxyTable({ chains: desired.chains.map((c) => (c.base ? { ...c, base: { ...c.base, policy: "drop" } } : c)) });
    assert.deepEqual(ops(diffTables(desired, current).changes), ["replaceChain"]);
  });

  it("sees through nft's normal form: sorted sets, bitmask matches, host prefixes, tcp for th, hex marks", () => {
    const desired: NftTable = {
      family: "inet", name: "t", maps: [],
      sets: [{ name: "cidrs", keyType: ["ipv4_addr"], flags: ["interval"], elements: [["10.0.0.1/32"], ["10.1.0.0/16"]] }],
      chains: [{ name: "c", rules: [
        { statements: [{ match: "ct state", value: ["new", "established"] }, { match: "meta mark", value: "0x4000" }, { verdict: "accept" }] },
        { statements: [{ match: "meta l4proto", value: "tcp" }, { match: "th dport", value: [443, 80] }, { match: "iifname", value: "eth0" }, { verdict: "accept" }] },
        { statements: [{ match: "ct state", value: "new" }, { reject: "tcp reset" }] },
      ] }],
    };
    const current: NftTableState = {
      family: "inet", name: "t", maps: [], counters: [],
      sets: [{ name: "cidrs", keyType: ["ipv4_addr"], flags: ["interval"], elements: [["10.1.0.0/16"], ["10.0.0.1"]] }],
      chains: [{ name: "c", handle: 1, rules: [
        { handle: 2, statements: [{ match: "ct state", value: ["established", "new"] }, { match: "meta mark", value: 16384 }, { verdict: "accept" }] },
        { handle: 3, statements: [{ match: "meta l4proto", value: "tcp" }, { match: "tcp dport", value: [80, 443] }, { match: "meta iifname", value: "eth0" }, { verdict: "accept" }] },
        { handle: 4, statements: [{ match: "meta l4proto", value: "tcp" }, { match: "ct state", value: "new" }, { reject: "tcp reset" }] },
      ] }],
    };
    assert.deepEqual(diffTables(desired, current).changes, []);
  });

  it("a rule nft could not decode never equals a wanted one", () => {
    const desired: NftTable = { family: "ip", name: "t", sets: [], maps: [], chains: [{ name: "c", rules: [{ statements: [{ verdict: "accept" }] }] }] };
    const current: NftTableState = { family: "ip", name: "t", sets: [], maps: [], counters: [], chains: [{ name: "c", handle: 1, rules: [{ handle: 2, statements: [], opaque: '[{"queue":{}}]' }] }] };
    assert.deepEqual(ops(diffTables(desired, current).changes), ["replaceChain"]);
  });

  it("adds named counters before the rules that count into them, and deletes stale ones after", () => {
    const rule = { statements: [{ namedCounter: "spoofed" }, { verdict: "drop" as const }] };
    const desired: NftTable = { family: "inet", name: "t", sets: [], maps: [], counters: [{ name: "spoofed" }], chains: [{ name: "c", rules: [rule] }] };
    assert.deepEqual(ops(diffTables(desired, undefined).changes), ["ensureTable", "addCounter", "addChain", "replaceChain"]);
    assert.deepEqual(diffTables(desired, desired).changes, []);
    const gone = diffTables({ ...desired, counters: [], chains: [{ name: "c", rules: [] }] }, desired).changes;
    assert.deepEqual(ops(gone), ["replaceChain", "deleteCounter"]);
  });

  it("leaves a dynamic set's elements to the packet path", () => {
    const aff = { name: "aff", keyType: ["ipv4_addr" as const], flags: ["dynamic" as const, "timeout" as const], timeoutSeconds: 60 };
    const desired: NftTable = { family: "ip", name: "t", maps: [], chains: [], sets: [{ ...aff, elements: [] }] };
    // nft 1.0.6 does not report the dynamic flag back.
    const current: NftTable = { family: "ip", name: "t", maps: [], chains: [], sets: [{ ...aff, flags: ["timeout"], elements: [["10.0.0.7"]] }] };
    assert.deepEqual(diffTables(desired, current).changes, []);
  });
});
