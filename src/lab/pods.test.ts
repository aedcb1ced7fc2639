import { test } from "node:test";
import assert from "node:assert/strict";
import { conflistSubnet, resultIPv4 } from "./pods.ts";

test("the subnet comes from ranges or the host-local shorthand", () => {
  const ranges = { cniVersion: "1.1.0", name: "n", plugins: [{ type: "podnet", ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.7.0/24" }]] } }, { type: "portmap" }] };
  assert.equal(conflistSubnet(ranges), "10.244.7.0/24");
  const shorthand = { cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge", ipam: { type: "host-local", subnet: "10.244.3.0/24" } }] };
  assert.equal(conflistSubnet(shorthand), "10.244.3.0/24");
  assert.equal(conflistSubnet({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge" }] }), undefined);
});

test("the pod IP is the first IPv4 address, without its prefix", () => {
  assert.equal(resultIPv4({ cniVersion: "1.1.0", ips: [{ address: "fd00::2/64" }, { address: "10.244.1.9/24" }] }), "10.244.1.9");
  assert.equal(resultIPv4({ cniVersion: "1.1.0", ips: [] }), undefined);
  assert.equal(resultIPv4({ cniVersion: "1.1.0" }), undefined);
  assert.equal(resultIPv4({ cniVersion: "1.1.0", ips: [{ address: 7 }, "x"] }), undefined);
});
