import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { conntrackDeleteArgs, parseUdpFlows } from "./conntrack.ts";

describe("conntrack", () => {
  it("reads conntrack's listing: the original tuple first, the reply tuple second", () => {
    const text = [
      "udp      17 28 src=10.244.1.2 dst=10.96.0.23 sport=40000 dport=8080 src=10.244.1.3 dst=10.244.1.2 sport=8080 dport=40000 mark=0 use=1",
      "udp      17 175 src=10.244.1.2 dst=10.96.0.24 sport=40001 dport=53 src=10.244.2.3 dst=10.244.1.2 sport=53 dport=40001 [ASSURED] mark=0 use=1",
      "tcp      6 431999 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 use=1",
      "",
    ].join("\n");
    assert.deepEqual(parseUdpFlows(text), [
      { originalDst: "10.96.0.23", originalPort: 8080, replySrc: "10.244.1.3" },
      { originalDst: "10.96.0.24", originalPort: 53, replySrc: "10.244.2.3" },
    ]);
  });
  it("builds a delete filter, and names the bad field", () => {
    assert.deepEqual(conntrackDeleteArgs({ originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.1.5" }), ["-D", "-f", "ipv4", "-p", "udp", "--orig-port-dst", "53", "--orig-dst", "10.96.0.10", "--reply-src", "10.244.1.5"]);
    assert.throws(() => conntrackDeleteArgs({ originalPort: 0 }), /originalPort/);
    assert.throws(() => conntrackDeleteArgs({ originalPort: 53, replySrc: "10.244.1.500" }), /replySrc/);
  });
});
