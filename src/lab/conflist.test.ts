import { test } from "node:test";
import assert from "node:assert/strict";
import { conflistSubnet, parseConfList, pluginConfig, resultIPv4 } from "./conflist.ts";

const list = parseConfList(
  JSON.stringify({
    cniVersion: "1.1.0",
    name: "podnet",
    plugins: [
      { type: "podnet", bridge: "podnet0", ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.7.0/24" }]] } },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  }),
);

test("each plugin gets the list's name and cniVersion; the chain passes prevResult on", () => {
  const first = pluginConfig(list, 0);
  assert.equal(first.name, "podnet");
  assert.equal(first.cniVersion, "1.1.0");
  assert.equal(first.type, "podnet");
  assert.equal("prevResult" in first, false);
  const prev = { cniVersion: "1.1.0", ips: [{ address: "10.244.7.2/24" }] };
  const second = pluginConfig(list, 1, prev);
  assert.deepEqual(second.prevResult, prev);
  assert.equal(second.type, "portmap");
  assert.throws(() => pluginConfig(list, 2), RangeError);
});

test("a plugin's own name or cniVersion is overridden by the list's", () => {
  const l = parseConfList(JSON.stringify({ cniVersion: "1.0.0", name: "net", plugins: [{ type: "x", name: "other", cniVersion: "0.3.1" }] }));
  const conf = pluginConfig(l, 0);
  assert.equal(conf.name, "net");
  assert.equal(conf.cniVersion, "1.0.0");
});

test("malformed conflists are refused with the reason", () => {
  assert.throws(() => parseConfList("{"), /not JSON/);
  assert.throws(() => parseConfList(JSON.stringify({ name: "n", plugins: [{ type: "x" }] })), /cniVersion/);
  assert.throws(() => parseConfList(JSON.stringify({ cniVersion: "1.0.0", plugins: [{ type: "x" }] })), /name/);
  assert.throws(() => parseConfList(JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [] })), /non-empty/);
  assert.throws(() => parseConfList(JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "../evil" }] })), /type/);
});

test("the subnet comes from ranges or the host-local shorthand", () => {
  assert.equal(conflistSubnet(list), "10.244.7.0/24");
  const shorthand = parseConfList(JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge", ipam: { type: "host-local", subnet: "10.244.3.0/24" } }] }));
  assert.equal(conflistSubnet(shorthand), "10.244.3.0/24");
  const none = parseConfList(JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge" }] }));
  assert.equal(conflistSubnet(none), undefined);
});

test("the pod IP is the first IPv4 address, without its prefix", () => {
  assert.equal(resultIPv4({ cniVersion: "1.1.0", ips: [{ address: "fd00::2/64" }, { address: "10.244.1.9/24" }] }), "10.244.1.9");
  assert.equal(resultIPv4({ cniVersion: "1.1.0", ips: [] }), undefined);
  assert.equal(resultIPv4({ cniVersion: "1.1.0" }), undefined);
});
