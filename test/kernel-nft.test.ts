// The typed nftables layer against the real kernel, in namespaces this test creates: a table with
// every kind of statement is applied, read back through `nft -j`, and diffs to nothing; element
// and chain deltas change only what they name; owners' tables survive one another.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MASQUERADE_TABLE, NftMasquerade, masqueradeTable as agentMasqueradeTable } from "../src/agent/masquerade.ts";
import { withNetns } from "../src/kernel/netns.ts";
import {
  NftError, NftTableSync, nftBackend, readCounters, applyTransaction, readTable, readTableAsync, syncTableSync,
} from "../src/kernel/nft.ts";
import { diffTables } from "../src/kernel/nft/diff.ts";
import { runLibnftables } from "../src/kernel/nft/libnftables.ts";
import { decodeTableJson } from "../src/kernel/nft/readback.ts";
import type { NftChain, NftTable } from "../src/kernel/nft/model.ts";
import { NftModelError } from "../src/kernel/nft/render.ts";
import { addMasquerade, masqueradeTable as pluginMasqueradeTable, removeMasquerade } from "../src/plugin/masquerade.ts";
import { Netns, cleanupAll } from "./helpers/netns.ts";

const TABLE = "pnt-proxy";

function endpointChain(name: string, address: string): NftChain {
  return {
    name,
    rules: [
      { statements: [{ match: "ip saddr", value: address }, { setMarkOr: 0x4000 }], comment: "hairpin" },
      { statements: [{ updateSet: "affinity", key: ["ip saddr"] }] },
      { statements: [{ match: "meta l4proto", value: "tcp" }, { dnat: { family: "ip", address, port: 8080 } }] },
    ],
  };
}

/** A service-proxy-shaped table that uses every statement kind of the model. */
function proxyTable(endpoints: string[], extraElements: (string | number)[][] = []): NftTable {
  const chains = endpoints.map((address, i) => endpointChain(`ep-${i}`, address));
  return {
    family: "inet",
    name: TABLE,
    sets: [
      { name: "no-endpoints", keyType: ["ipv4_addr", "inet_proto", "inet_service"], elements: [["10.96.0.9", "tcp", 80], ...extraElements] },
      { name: "cluster", keyType: ["ipv4_addr"], flags: ["interval"], autoMerge: true, elements: [["10.244.0.0/16"], ["192.168.1.1"]], comment: "cluster CIDRs" },
      { name: "affinity", keyType: ["ipv4_addr"], flags: ["dynamic", "timeout"], timeoutSeconds: 10800, elements: [] },
      { name: "pod-ips", keyType: ["ifname", "ipv4_addr"], elements: [["veth1", "10.244.1.2"]] },
    ],
    maps: [
      { name: "service-ips", keyType: ["ipv4_addr", "inet_proto", "inet_service"], valueType: ["verdict"], elements: [{ key: ["10.96.0.1", "tcp", 80], verdict: { verdict: "goto", chain: "svc-web" } }] },
      { name: "snat-to", keyType: ["ipv4_addr"], valueType: ["ipv4_addr"], elements: [{ key: ["10.0.0.1"], value: ["192.168.1.1"] }] },
    ],
    chains: [
      { name: "svc-web", rules: [{ statements: [{ numgenVmap: chains.map((c) => ({ verdict: "goto" as const, chain: c.name })) }], comment: "default/web:http" }] },
      ...chains,
      { name: "services", base: { type: "nat", hook: "prerouting", priority: "dstnat", policy: "accept" }, rules: [
        { statements: [{ vmapLookup: ["ip daddr", "meta l4proto", "th dport"], map: "service-ips" }] },
        { statements: [{ match: "fib daddr type", value: "local" }, { lookup: ["ip daddr", "meta l4proto", "th dport"], set: "no-endpoints" }, { verdict: "jump", chain: "svc-web" }] },
        { statements: [{ inlineVmap: ["meta l4proto", "th dport"], entries: [{ key: ["tcp", 80], verdict: { verdict: "goto", chain: "svc-web" } }, { key: ["udp", 53], verdict: { verdict: "continue" } }] }] },
      ] },
      { name: "masquerading", base: { type: "nat", hook: "postrouting", priority: "srcnat + 5", policy: "accept" }, rules: [
        { statements: [{ match: "meta mark", value: 0x4000 }, { masquerade: { fullyRandom: true } }] },
        { statements: [{ lookup: ["ip saddr"], set: "cluster" }, { lookup: ["ip daddr"], set: "cluster", negate: true }, { masquerade: {} }] },
        { statements: [{ match: "ip daddr", value: "198.51.100.1" }, { snat: { family: "ip", address: "192.168.1.1" } }] },
      ] },
      { name: "filter", base: { type: "filter", hook: "forward", priority: 0, policy: "accept" }, rules: [
        { statements: [{ match: "ct state", value: ["new", "established"] }, { match: "ct status", value: "dnat" }, { counter: true }, { verdict: "continue" }] },
        { statements: [{ match: "ct state", value: "new" }, { lookup: ["ip daddr", "meta l4proto", "th dport"], set: "no-endpoints" }, { reject: "tcp reset" }] },
        { statements: [{ lookup: ["ip daddr", "meta l4proto", "th dport"], set: "no-endpoints" }, { reject: "icmp port-unreachable" }] },
        { statements: [{ match: "ip daddr", value: "10.96.0.0/12" }, { reject: "icmpx admin-prohibited" }] },
        { statements: [{ match: "ip daddr", value: "10.97.0.0/16" }, { reject: "icmpx port-unreachable" }] },
        { statements: [{ match: "ip daddr", value: "10.98.0.0/16" }, { reject: "icmp host-unreachable" }] },
        { statements: [{ match: "iifname", value: "veth1" }, { lookup: ["iifname", "ip saddr"], set: "pod-ips", negate: true }, { log: { prefix: "podnet spoof: " } }, { verdict: "drop" }] },
        { statements: [{ match: "meta iifname", value: ["veth2", "veth3"] }, { match: "meta nfproto", value: "ipv4" }, { match: "tcp dport", value: [80, 443] }, { match: "th sport", value: "1024-65535" }, { nftrace: true }] },
        { statements: [{ match: "ip6 saddr", value: "fd00::/8" }, { match: "ip6 daddr", op: "!=", value: "fd00::1" }, { match: "oifname", value: "lo" }, { verdict: "return" }] },
      ] },
    ],
  };
}

let node: Netns;
before(() => (node = Netns.create("nft")));
after(() => {
  node?.delete();
  cleanupAll();
});

describe("typed tables in the kernel", () => {
  it("applies a table with every statement kind, reads it back, and then has nothing to do", () => {
    const desired = proxyTable(["10.244.1.5", "10.244.2.5"]);
    const first = syncTableSync(desired, node.path);
    assert.equal(first.changes[0]?.op, "ensureTable");
    const current = readTable("inet", TABLE, node.path);
    assert.ok(current);
    for (const chain of current.chains) for (const rule of chain.rules) assert.equal(rule.opaque, undefined, `undecoded rule in ${chain.name}: ${rule.opaque}`);
    assert.deepEqual(current.chains.map((c) => c.name).sort(), desired.chains.map((c) => c.name).sort());
    assert.deepEqual(diffTables(desired, current).changes, []);
    assert.deepEqual(syncTableSync(desired, node.path).changes, [], "a second sync changes nothing");
    assert.equal(readTable("inet", TABLE), undefined, "nothing reached the test's own namespace");
  });

  it("an element change touches only elements: rule handles stay as they were", () => {
    const before = readTable("inet", TABLE, node.path)!;
    const desired = proxyTable(["10.244.1.5", "10.244.2.5"], [["10.96.0.20", "udp", 53]]);
    const tx = syncTableSync(desired, node.path);
    assert.deepEqual(tx.changes, [{ op: "addElements", setOrMap: "no-endpoints", elements: [["10.96.0.20", "udp", 53]] }]);
    const afterAdd = readTable("inet", TABLE, node.path)!;
    assert.deepEqual(afterAdd.chains.map((c) => c.rules.map((r) => r.handle)), before.chains.map((c) => c.rules.map((r) => r.handle)));
    assert.ok(afterAdd.sets.find((s) => s.name === "no-endpoints")!.elements.some((e) => e.join() === "10.96.0.20,udp,53"));
    assert.deepEqual(syncTableSync(proxyTable(["10.244.1.5", "10.244.2.5"]), node.path).changes.map((c) => c.op), ["deleteElements"]);
  });

  it("an endpoint removed replaces its service chain, deletes its own, and leaves the rest", () => {
    const before = readTable("inet", TABLE, node.path)!;
    const tx = syncTableSync(proxyTable(["10.244.1.5"]), node.path);
    assert.deepEqual(tx.changes.map((c) => c.op), ["replaceChain", "replaceChain", "deleteChain"]);
    const afterRemove = readTable("inet", TABLE, node.path)!;
    assert.equal(afterRemove.chains.find((c) => c.name === "ep-1"), undefined);
    const handles = (t: typeof before, name: string) => t.chains.find((c) => c.name === name)!.rules.map((r) => r.handle);
    assert.deepEqual(handles(afterRemove, "filter"), handles(before, "filter"), "untouched chain keeps its rules");
    assert.notDeepEqual(handles(afterRemove, "svc-web"), handles(before, "svc-web"));
  });

  it("repairs a rule deleted by hand", () => {
    const desired = proxyTable(["10.244.1.5"]);
    const masq = readTable("inet", TABLE, node.path)!.chains.find((c) => c.name === "masquerading")!;
    node.exec("nft", "delete", "rule", "inet", TABLE, "masquerading", "handle", String(masq.rules[1]!.handle));
    const tx = syncTableSync(desired, node.path);
    assert.deepEqual(tx.changes.map((c) => (c.op === "replaceChain" ? `${c.op} ${c.chain.name}` : c.op)), ["replaceChain masquerading"]);
    assert.deepEqual(diffTables(desired, readTable("inet", TABLE, node.path)).changes, []);
  });

  it("the incremental path never lists the table, and a failure sends the next sync back to a full read", async () => {
    const sync = new NftTableSync(node.path);
    assert.equal((await sync.sync(proxyTable(["10.244.1.5"]))).changes.length, 0, "first sync reads back and finds it current");
    // Changed behind the model's back: the incremental path cannot see it...
    node.exec("nft", "add", "element", "inet", TABLE, "no-endpoints", "{ 10.96.0.77 . tcp . 81 }");
    const delta = await sync.sync(proxyTable(["10.244.1.5", "10.244.3.5"]));
    assert.deepEqual(delta.changes.map((c) => c.op), ["addChain", "replaceChain", "replaceChain"]);
    const stale = readTable("inet", TABLE, node.path)!.sets.find((s) => s.name === "no-endpoints")!;
    assert.ok(stale.elements.some((e) => e.join() === "10.96.0.77,tcp,81"), "incremental sync read nothing back");
    // ...and a known delta is applied as given.
    const next = proxyTable(["10.244.1.5", "10.244.3.5"], [["10.96.0.30", "tcp", 443]]);
    await sync.apply({ family: "inet", table: TABLE, changes: [{ op: "addElements", setOrMap: "no-endpoints", elements: [["10.96.0.30", "tcp", 443]] }] }, next);
    // A delta the kernel refuses (a chain that does not exist) fails whole and resets the model.
    await assert.rejects(sync.apply({ family: "inet", table: TABLE, changes: [{ op: "deleteChain", name: "no-such-chain" }] }, next), NftError);
    const repair = await sync.sync(next);
    assert.deepEqual(repair.changes, [{ op: "deleteElements", setOrMap: "no-endpoints", keys: [["10.96.0.77", "tcp", 81]] }], "the full read found the stray element");
  });

  it("concurrent syncs of one NftTableSync run one after another, each on top of the one before", async () => {
    const sync = new NftTableSync(node.path);
    const one = proxyTable(["10.244.1.5"]);
    const two = proxyTable(["10.244.1.5", "10.244.4.5"]);
    const [first, second] = await Promise.all([sync.sync(one), sync.sync(two)]);
    assert.ok(first.changes.length > 0, "the first brought the table to one endpoint");
    assert.deepEqual(second.changes.map((c) => c.op), ["addChain", "replaceChain", "replaceChain"], "the second only added the new endpoint");
    assert.deepEqual(diffTables(two, readTable("inet", TABLE, node.path)).changes, []);
  });

  it("a transaction the kernel refuses changes nothing, and bad input is refused before nft runs", () => {
    const before = readTable("inet", TABLE, node.path)!;
    assert.throws(() => applyTransaction({ family: "inet", table: TABLE, changes: [
      { op: "addElements", setOrMap: "no-endpoints", elements: [["10.96.0.99", "tcp", 99]] },
      { op: "replaceChain", chain: { name: "svc-web", rules: [{ statements: [{ verdict: "goto", chain: "missing-chain" }] }] } },
    ] }, node.path), (e: unknown) => e instanceof NftError && /missing-chain|No such file/.test(e.stderr));
    assert.throws(() => applyTransaction({ family: "inet", table: TABLE, changes: [
      { op: "addElements", setOrMap: "no-endpoints", elements: [["10.96.0.98", "tcp", 98]] },
      { op: "replaceChain", chain: { name: "svc-web", rules: [{ statements: [{ verdict: "accept" }], comment: 'a "quoted" comment' }] } },
    ] }, node.path), NftModelError);
    assert.deepEqual(readTable("inet", TABLE, node.path), before);
  });

  it("named counters count packets, and are read without listing the table", () => {
    const table: NftTable = {
      family: "inet", name: "pnt-counted", sets: [], maps: [],
      counters: [{ name: "probes", comment: "packets to 127.0.0.9" }],
      chains: [{ name: "out", base: { type: "filter", hook: "output", priority: 0, policy: "accept" }, rules: [
        { statements: [{ match: "ip daddr", value: "127.0.0.9" }, { match: "meta l4proto", value: "icmp" }, { namedCounter: "probes" }] },
      ] }],
    };
    syncTableSync(table, node.path);
    assert.deepEqual(readCounters("inet", "pnt-counted", node.path), [{ name: "probes", comment: "packets to 127.0.0.9", packets: 0, bytes: 0 }]);
    node.exec("ping", "-c", "2", "-i", "0.2", "-W", "1", "127.0.0.9");
    const [probes] = readCounters("inet", "pnt-counted", node.path) ?? [];
    assert.equal(probes?.packets, 2);
    assert.deepEqual(syncTableSync(table, node.path).changes, [], "a counter's value is not a difference");
    assert.equal(readCounters("inet", "pnt-no-such-table", node.path), undefined);
    applyTransaction({ family: "inet", table: "pnt-counted", changes: [{ op: "deleteTable" }] }, node.path);
  });

  it("libnftables in-process and the nft command see the same table", () => {
    process.stderr.write(`# kernel-nft: backend ${nftBackend()}\n`);
    const viaCommand = decodeTableJson(node.exec("nft", "-j", "list", "table", "inet", TABLE), "inet", TABLE);
    const viaLibrary = runLibnftables(`list table inet ${TABLE}`, node.path, true);
    assert.equal(viaLibrary.status, 0, viaLibrary.stderr);
    assert.deepEqual(decodeTableJson(viaLibrary.stdout, "inet", TABLE), viaCommand);
    const refused = runLibnftables(`list table inet pnt-no-such-table`, node.path);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /No such file or directory/);
  });

  it("readTableAsync agrees with readTable, and a missing table reads as undefined", async () => {
    assert.deepEqual(await readTableAsync("inet", TABLE, node.path), readTable("inet", TABLE, node.path));
    assert.equal(await readTableAsync("ip", "pnt-no-such-table", node.path), undefined);
  });
});

describe("shapes for anti-spoofing (issue 13): netdev ingress on a veth, arp and bridge tables", () => {
  it("each applies, reads back and has nothing more to do", () => {
    node.ip("link", "add", "pntv0", "type", "veth", "peer", "name", "pntv1");
    const tables: NftTable[] = [
      {
        family: "netdev", name: "pnt-spoof", maps: [],
        counters: [{ name: "spoofed" }],
        sets: [{ name: "pods", keyType: ["ifname", "ipv4_addr"], elements: [["pntv0", "10.244.1.2"]] }],
        chains: [{ name: "in-pntv0", base: { type: "filter", hook: "ingress", device: "pntv0", priority: -500, policy: "accept" }, rules: [
          { statements: [{ match: "ip saddr", op: "!=", value: "10.244.1.2" }, { namedCounter: "spoofed" }, { verdict: "drop" }] },
          { statements: [{ lookup: ["iifname", "ip saddr"], set: "pods", negate: true }, { verdict: "drop" }] },
          { statements: [{ match: "arp saddr ip", op: "!=", value: "10.244.1.2" }, { verdict: "drop" }] },
          { statements: [{ match: "ether saddr", value: "02:00:00:00:00:01" }, { match: "ether type", value: "arp" }, { verdict: "drop" }] },
        ] }],
      },
      {
        family: "arp", name: "pnt-arp", sets: [], maps: [],
        chains: [{ name: "in", base: { type: "filter", hook: "input", priority: 0, policy: "accept" }, rules: [
          { statements: [{ match: "arp operation", value: "reply" }, { match: "arp saddr ip", value: "10.0.0.1" }, { match: "arp saddr ether", value: "02:00:00:00:00:01" }, { verdict: "accept" }] },
        ] }],
      },
      {
        family: "bridge", name: "pnt-br", sets: [], maps: [],
        chains: [{ name: "forward-pods", base: { type: "filter", hook: "forward", priority: "filter", policy: "accept" }, rules: [
          { statements: [{ match: "iifname", value: "pntv0" }, { match: "ether saddr", op: "!=", value: "02:00:00:00:00:01" }, { verdict: "drop" }] },
        ] }],
      },
    ];
    for (const table of tables) {
      assert.notDeepEqual(syncTableSync(table, node.path).changes, []);
      const current = readTable(table.family, table.name, node.path);
      assert.ok(current, `${table.family} ${table.name} exists`);
      for (const chain of current.chains) for (const rule of chain.rules) assert.equal(rule.opaque, undefined, `undecoded rule in ${table.name}: ${rule.opaque}`);
      assert.deepEqual(diffTables(table, current).changes, [], `${table.family} ${table.name} diffs to nothing`);
      applyTransaction({ family: table.family, table: table.name, changes: [{ op: "deleteTable" }] }, node.path);
    }
    node.ip("link", "del", "pntv0");
  });
});

describe("owners keep their own tables", () => {
  const network = "pnt_nft_net";
  const pluginTable = pluginMasqueradeTable(network, [], []).name;
  const pods = [{ address: "10.244.1.7/24" }, { address: "10.244.1.8/24" }];
  const inNode = <T>(fn: () => T): T => withNetns(node.path, fn);

  it("the agent reconciles its table: installed once, then left alone, and changed in place", async () => {
    const agent = new NftMasquerade(node.path);
    assert.equal(await agent.ensure("10.244.0.0/16"), true);
    const handle = readTable("ip", MASQUERADE_TABLE, node.path)!.chains[0]!.handle;
    assert.deepEqual(await Promise.all([agent.ensure("10.244.0.0/16"), agent.ensure("10.244.0.0/16")]), [false, false]);
    assert.equal(await agent.ensure("10.245.0.0/16"), true, "a new cluster CIDR is applied");
    const table = readTable("ip", MASQUERADE_TABLE, node.path)!;
    assert.equal(table.chains[0]!.handle, handle, "the chain was replaced in place, not the table recreated");
    assert.deepEqual(diffTables(agentMasqueradeTable("10.245.0.0/16"), table).changes, []);
    assert.equal(await agent.ensure("10.244.0.0/16"), true);
  });

  it("the agent's table survives the plugin's table being flushed and deleted", async () => {
    inNode(() => addMasquerade(network, pods, ["10.244.0.0/16"]));
    const agentBefore = readTable("ip", MASQUERADE_TABLE, node.path);
    node.exec("nft", "flush", "table", "inet", pluginTable);
    node.exec("nft", "delete", "table", "inet", pluginTable);
    assert.deepEqual(readTable("ip", MASQUERADE_TABLE, node.path), agentBefore);
    assert.equal(await new NftMasquerade(node.path).ensure("10.244.0.0/16"), false, "nothing for the agent to repair");
  });

  it("the plugin's table survives the agent's re-sync, even one that changes the agent's table", async () => {
    inNode(() => addMasquerade(network, pods, ["10.244.0.0/16"]));
    const pluginBefore = readTable("inet", pluginTable, node.path);
    assert.ok(pluginBefore);
    assert.deepEqual(pluginBefore.sets.find((s) => s.name === "masq4")!.elements.map((e) => e[0]).sort(), ["10.244.1.7", "10.244.1.8"]);
    const agent = new NftMasquerade(node.path);
    assert.equal(await agent.ensure("10.245.0.0/16"), true);
    assert.equal(await agent.ensure("10.244.0.0/16"), true);
    // And the agent's own table flushed and deleted by hand: the agent restores it, the plugin's stays.
    node.exec("nft", "delete", "table", "ip", MASQUERADE_TABLE);
    assert.equal(await agent.ensure("10.244.0.0/16"), true);
    assert.deepEqual(readTable("inet", pluginTable, node.path), pluginBefore);
  });

  it("the plugin's ADD and DEL change only set elements, and DEL of an absent pod is no error", () => {
    const before = readTable("inet", pluginTable, node.path)!;
    inNode(() => removeMasquerade(network, [{ address: "10.244.1.7" }]));
    inNode(() => removeMasquerade(network, [{ address: "10.244.1.7" }, { address: "fd00::7" }]));
    const afterDel = readTable("inet", pluginTable, node.path)!;
    assert.deepEqual(afterDel.sets.find((s) => s.name === "masq4")!.elements, [["10.244.1.8"]]);
    assert.deepEqual(afterDel.chains.map((c) => c.rules.map((r) => r.handle)), before.chains.map((c) => c.rules.map((r) => r.handle)));
    // The plugin's table read back matches its model for the pod that is left (exempt sets auto-merge, so only masq is compared).
    const wanted = pluginMasqueradeTable(network, [{ address: "10.244.1.8/24" }], ["10.244.0.0/16"]);
    const diff = diffTables(wanted, afterDel).changes;
    assert.ok(diff.every((c) => c.op === "addElements" || c.op === "deleteElements"), JSON.stringify(diff));
    assert.ok(!diff.some((c) => (c.op === "addElements" || c.op === "deleteElements") && c.setOrMap.startsWith("masq")), JSON.stringify(diff));
  });
});
