import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NftStatement, NftTable, NftTransaction } from "./model.ts";
import { NftModelError, renderRuleBody, renderStatement, renderTable, renderTransaction } from "./render.ts";

const r = (s: NftStatement) => renderStatement("s", s);

describe("rendering statements", () => {
  const cases: [NftStatement, string][] = [
    [{ match: "ip saddr", value: "10.244.0.0/16" }, "ip saddr 10.244.0.0/16"],
    [{ match: "ip daddr", op: "!=", value: "10.244.0.0/16" }, "ip daddr != 10.244.0.0/16"],
    [{ match: "ip daddr", op: "==", value: "10.0.0.1" }, "ip daddr 10.0.0.1"],
    [{ match: "ct state", value: ["new", "established"] }, "ct state { new, established }"],
    [{ match: "tcp dport", value: [80, 443] }, "tcp dport { 80, 443 }"],
    [{ match: "udp dport", value: "1000-2000" }, "udp dport 1000-2000"],
    [{ match: "iifname", value: "veth1" }, 'iifname "veth1"'],
    [{ match: "meta oifname", value: ["eth0", "eth1"] }, 'meta oifname { "eth0", "eth1" }'],
    [{ match: "fib daddr type", value: "local" }, "fib daddr type local"],
    [{ match: "meta mark", value: 0x4000 }, "meta mark 16384"],
    [{ dnatMap: { family: "ip", mod: 5, offset: 2048, map: "endpoints-tcp-1f" } }, "dnat ip to numgen random mod 5 offset 2048 map @endpoints-tcp-1f"],
    [{ dnatMap: { family: "ip", mod: 1, offset: 0, map: "m" } }, "dnat ip to numgen random mod 1 map @m"],
    [{ match: "ct status", value: "dnat" }, "ct status dnat"],
    [{ match: "ip6 saddr", value: "fd00::/8" }, "ip6 saddr fd00::/8"],
    [{ match: "ether saddr", value: "02:00:00:00:00:01" }, "ether saddr 02:00:00:00:00:01"],
    [{ match: "arp saddr ip", value: "10.244.1.2" }, "arp saddr ip 10.244.1.2"],
    [{ lookup: ["ip daddr", "meta l4proto", "th dport"], set: "svc" }, "ip daddr . meta l4proto . th dport @svc"],
    [{ lookup: ["iifname", "ip saddr"], set: "pods", negate: true }, "iifname . ip saddr != @pods"],
    [{ vmapLookup: ["ip daddr", "meta l4proto", "th dport"], map: "service-ips" }, "ip daddr . meta l4proto . th dport vmap @service-ips"],
    [{ numgenVmap: [{ verdict: "goto", chain: "ep-a" }, { verdict: "goto", chain: "ep-b" }] }, "numgen random mod 2 vmap { 0 : goto ep-a, 1 : goto ep-b }"],
    [{ inlineVmap: ["meta l4proto", "th dport"], entries: [{ key: ["tcp", 80], verdict: { verdict: "jump", chain: "web" } }, { key: ["udp", 53], verdict: { verdict: "drop" } }] },
      "meta l4proto . th dport vmap { tcp . 80 : jump web, udp . 53 : drop }"],
    [{ inlineVmap: ["iifname"], entries: [{ key: ["veth1"], verdict: { verdict: "accept" } }] }, 'iifname vmap { "veth1" : accept }'],
    [{ dnat: { family: "ip", address: "10.244.1.5", port: 8080 } }, "dnat ip to 10.244.1.5:8080"],
    [{ dnat: { family: "ip", address: "10.244.1.5" } }, "dnat ip to 10.244.1.5"],
    [{ dnat: { family: "ip6", address: "fd00::5", port: 80 } }, "dnat ip6 to [fd00::5]:80"],
    [{ snat: { family: "ip", address: "192.168.1.10" } }, "snat ip to 192.168.1.10"],
    [{ masquerade: {} }, "masquerade"],
    [{ masquerade: { fullyRandom: true } }, "masquerade fully-random"],
    [{ setMarkOr: 0x4000 }, "meta mark set meta mark or 0x00004000"],
    [{ updateSet: "affinity-a", key: ["ip saddr"] }, "update @affinity-a { ip saddr }"],
    [{ counter: true }, "counter"],
    [{ namedCounter: "spoofed" }, "counter name spoofed"],
    [{ reject: "tcp reset" }, "reject with tcp reset"],
    [{ reject: "icmp port-unreachable" }, "reject with icmp type port-unreachable"],
    [{ reject: "icmpx admin-prohibited" }, "reject with icmpx type admin-prohibited"],
    [{ nftrace: true }, "meta nftrace set 1"],
    [{ log: { prefix: "podnet spoof: " } }, 'log prefix "podnet spoof: "'],
    [{ verdict: "accept" }, "accept"],
    [{ verdict: "drop" }, "drop"],
    [{ verdict: "return" }, "return"],
    [{ verdict: "continue" }, "continue"],
    [{ verdict: "jump", chain: "services" }, "jump services"],
    [{ verdict: "goto", chain: "svc-x/y" }, "goto svc-x/y"],
  ];
  for (const [statement, text] of cases) {
    it(text, () => assert.equal(r(statement), text));
  }

  it("puts a rule's comment last, quoted", () => {
    assert.equal(renderRuleBody("rule", { statements: [{ masquerade: {} }], comment: "leaving the cluster" }), 'masquerade comment "leaving the cluster"');
  });
});

describe("rejecting what nft text cannot carry safely", () => {
  const rejects: [string, () => unknown, RegExp][] = [
    ["a chain name with a space", () => r({ verdict: "jump", chain: "a b" }), /s\.chain: "a b" is not a valid nft name/],
    ["a chain name with a semicolon", () => r({ verdict: "goto", chain: "x;flush ruleset" }), /not a valid nft name/],
    ["a chain named after an nft keyword", () => r({ verdict: "jump", chain: "fwd" }), /s\.chain: "fwd" is an nft keyword/],
    ["a set named after an nft keyword", () => r({ lookup: ["ip saddr"], set: "counter" }), /"counter" is an nft keyword/],
    ["an empty set name", () => r({ lookup: ["ip saddr"], set: "" }), /s\.set: "" is not a valid nft name/],
    ["a value that would end the statement", () => r({ match: "ip saddr", value: "10.0.0.1; flush ruleset" }), /s\.value\[0\]: .* is not a plain nft value/],
    ["a value with a brace", () => r({ match: "ip saddr", value: "}" }), /not a plain nft value/],
    ["a negative number", () => r({ match: "th dport", value: -1 }), /not a non-negative integer/],
    ["an interface name with a quote", () => r({ match: "iifname", value: 'eth0"' }), /not an interface name/],
    ["an interface name of 16 bytes", () => r({ match: "oifname", value: "a234567890123456" }), /not an interface name/],
    ["a comment with a quote", () => renderRuleBody("rule", { statements: [{ verdict: "accept" }], comment: 'say "hi"' }), /rule\.comment: .*quote/],
    ["a comment with a newline", () => renderRuleBody("rule", { statements: [{ verdict: "accept" }], comment: "a\nb" }), /control character/],
    ["a comment over 128 bytes", () => renderRuleBody("rule", { statements: [{ verdict: "accept" }], comment: "x".repeat(129) }), /longer than 128 bytes/],
    ["a log prefix with a backslash", () => r({ log: { prefix: "a\\" } }), /s\.log\.prefix/],
    ["a rule without statements", () => renderRuleBody("rule", { statements: [] }), /rule\.statements: a rule needs at least one statement/],
    ["an empty match list", () => r({ match: "ip saddr", value: [] }), /empty value list/],
    ["a 33-bit mark", () => r({ setMarkOr: 2 ** 32 }), /not a 32-bit mark/],
    ["an empty numgen", () => r({ numgenVmap: [] }), /needs at least one verdict/],
  ];
  for (const [what, run, message] of rejects) {
    it(what, () => assert.throws(run, (e: unknown) => e instanceof NftModelError && message.test(e.message)));
  }

  it("a bad table name or family", () => {
    assert.throws(() => renderTransaction({ family: "inet", table: "bad name", changes: [{ op: "ensureTable" }] }), /table: "bad name"/);
    assert.throws(() => renderTransaction({ family: "ipx" as "ip", table: "t", changes: [{ op: "ensureTable" }] }), /family: "ipx"/);
  });

  it("a bad priority, hook or set flag", () => {
    const chain = (priority: string) => renderTransaction({ family: "ip", table: "t", changes: [{ op: "addChain", chain: { name: "c", base: { type: "nat", hook: "postrouting", priority }, rules: [] } }] });
    assert.equal(chain("srcnat - 10"), "add chain ip t c { type nat hook postrouting priority srcnat - 10; }\n");
    assert.throws(() => chain("srcnat; flush ruleset"), /changes\[0\]\.chain\.base\.priority/);
    assert.throws(() => renderTransaction({ family: "ip", table: "t", changes: [{ op: "addSet", set: { name: "s", keyType: ["ipv4_addr"], autoMerge: true, elements: [] } }] }), /only interval sets can auto-merge/);
  });
});

describe("rendering transactions", () => {
  const tx = (changes: NftTransaction["changes"]): NftTransaction => ({ family: "inet", table: "podnet-svc", changes });

  it("renders an empty transaction as nothing", () => {
    assert.equal(renderTransaction(tx([])), "");
  });

  it("adds and deletes single elements, naming only their set or map", () => {
    const script = renderTransaction(tx([
      { op: "addElements", setOrMap: "svc", elements: [["10.96.0.1", "tcp", 80], ["10.96.0.2", "udp", 53]] },
      { op: "deleteElements", setOrMap: "svc", keys: [["10.96.0.3", "tcp", 443]] },
      { op: "addElements", setOrMap: "service-ips", elements: [{ key: ["10.96.0.1", "tcp", 80], verdict: { verdict: "goto", chain: "svc-web" } }] },
      { op: "addElements", setOrMap: "snat-to", elements: [{ key: ["10.0.0.1"], value: ["192.168.1.1"] }] },
    ]));
    assert.equal(script, [
      "add element inet podnet-svc svc { 10.96.0.1 . tcp . 80, 10.96.0.2 . udp . 53 }",
      "delete element inet podnet-svc svc { 10.96.0.3 . tcp . 443 }",
      "add element inet podnet-svc service-ips { 10.96.0.1 . tcp . 80 : goto svc-web }",
      "add element inet podnet-svc snat-to { 10.0.0.1 : 192.168.1.1 }",
      "",
    ].join("\n"));
  });

  it("makes an element delete idempotent when asked: add first, then delete", () => {
    assert.equal(renderTransaction(tx([{ op: "deleteElements", setOrMap: "masq4", keys: [["10.0.0.5"]], ifPresent: true }])),
      "add element inet podnet-svc masq4 { 10.0.0.5 }\ndelete element inet podnet-svc masq4 { 10.0.0.5 }\n");
  });

  it("quotes interface-name elements when the table says which sets hold them", () => {
    const keys = new Map([["pods", [true, false]]]);
    assert.equal(renderTransaction(tx([{ op: "addElements", setOrMap: "pods", elements: [["veth1", "10.0.0.5"]] }]), keys),
      'add element inet podnet-svc pods { "veth1" . 10.0.0.5 }\n');
  });

  it("replaces a chain by flushing and refilling it, deletes one after emptying it, and handles sets, maps and counters", () => {
    const script = renderTransaction(tx([
      { op: "replaceChain", chain: { name: "svc-web", rules: [{ statements: [{ numgenVmap: [{ verdict: "goto", chain: "ep-1" }] }] }] } },
      { op: "deleteChain", name: "svc-old" },
      { op: "deleteSet", name: "s" },
      { op: "deleteMap", name: "m" },
      { op: "addCounter", counter: { name: "spoofed", comment: "dropped for a forged source" } },
      { op: "addCounter", counter: { name: "plain" } },
      { op: "deleteCounter", name: "old" },
    ]));
    assert.equal(script, [
      "add chain inet podnet-svc svc-web",
      "flush chain inet podnet-svc svc-web",
      "add rule inet podnet-svc svc-web numgen random mod 1 vmap { 0 : goto ep-1 }",
      "flush chain inet podnet-svc svc-old",
      "delete chain inet podnet-svc svc-old",
      "delete set inet podnet-svc s",
      "delete map inet podnet-svc m",
      'add counter inet podnet-svc spoofed { comment "dropped for a forged source"; }',
      "add counter inet podnet-svc plain",
      "delete counter inet podnet-svc old",
      "",
    ].join("\n"));
  });

  it("writes sets and maps with their flags, timeout and comment", () => {
    const script = renderTransaction(tx([
      { op: "addSet", set: { name: "aff", keyType: ["ipv4_addr"], flags: ["dynamic", "timeout"], timeoutSeconds: 10800, elements: [], comment: "affinity" } },
      { op: "addSet", set: { name: "exempt4", keyType: ["ipv4_addr"], flags: ["interval"], autoMerge: true, elements: [["10.244.0.0/16"]] } },
      { op: "addMap", map: { name: "service-ips", keyType: ["ipv4_addr", "inet_proto", "inet_service"], valueType: ["verdict"], elements: [] } },
      { op: "addChain", chain: { name: "in", base: { type: "filter", hook: "ingress", device: "veth1", priority: -500, policy: "accept" }, rules: [] } },
    ]));
    assert.equal(script, [
      'add set inet podnet-svc aff { type ipv4_addr; flags dynamic,timeout; timeout 10800s; comment "affinity"; }',
      "add set inet podnet-svc exempt4 { type ipv4_addr; flags interval; auto-merge; }",
      "add element inet podnet-svc exempt4 { 10.244.0.0/16 }",
      "add map inet podnet-svc service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }",
      'add chain inet podnet-svc in { type filter hook ingress device "veth1" priority -500; policy accept; }',
      "",
    ].join("\n"));
  });

  it("writes a whole table: objects first, then rules, then elements", () => {
    const table: NftTable = {
      family: "ip", name: "podnet", comment: "agent",
      sets: [{ name: "s", keyType: ["ipv4_addr"], elements: [["10.0.0.1"]] }],
      maps: [],
      chains: [{ name: "post", base: { type: "nat", hook: "postrouting", priority: "srcnat", policy: "accept" }, rules: [{ statements: [{ lookup: ["ip saddr"], set: "s" }, { masquerade: {} }] }] }],
    };
    assert.equal(renderTable(table), [
      'add table ip podnet { comment "agent"; }',
      "add set ip podnet s { type ipv4_addr; }",
      "add chain ip podnet post { type nat hook postrouting priority srcnat; policy accept; }",
      "add chain ip podnet post { type nat hook postrouting priority srcnat; policy accept; }",
      "flush chain ip podnet post",
      "add rule ip podnet post ip saddr @s masquerade",
      "add element ip podnet s { 10.0.0.1 }",
      "",
    ].join("\n"));
  });

  it("splits a long element list into lines of 500", () => {
    const elements = Array.from({ length: 1201 }, (_, i) => [`10.0.${i >> 8}.${i & 255}`]);
    const lines = renderTransaction(tx([{ op: "addElements", setOrMap: "big", elements }])).trimEnd().split("\n");
    assert.equal(lines.length, 3);
    assert.equal(lines.map((l) => l.split(",").length).join(" "), "500 500 201");
  });
});
