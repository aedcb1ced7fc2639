import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getSysctl, sysctlPath } from "./sysctl.ts";

describe("sysctl keys", () => {
  it("maps dotted and slashed keys under /proc/sys", () => {
    assert.equal(sysctlPath("net.ipv4.ip_forward"), "/proc/sys/net/ipv4/ip_forward");
    assert.equal(sysctlPath("net/ipv4/conf/eth0.100/forwarding"), "/proc/sys/net/ipv4/conf/eth0.100/forwarding");
  });

  it("rejects keys that would leave /proc/sys", () => {
    assert.throws(() => sysctlPath("net/../../etc/shadow"), /invalid sysctl key/);
    assert.throws(() => sysctlPath("net..ipv4"), /invalid sysctl key/);
  });

  it("reads a value without its trailing newline", () => {
    assert.match(getSysctl("kernel.ostype"), /^Linux$/);
  });
});
