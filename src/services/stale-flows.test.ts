import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseUdpFlows } from "../kernel/conntrack.ts";
import { staleUdpFlowsAtStart } from "./stale-flows.ts";

describe("stale UDP flows at a full sync", () => {
  const frontends = [
    { ip: "10.96.0.10", port: 53, endpointIps: ["10.244.1.5"] },
    { port: 30053, endpointIps: ["10.244.1.5"] }, // a NodePort
    { ip: "10.96.0.11", port: 53, endpointIps: [] },
  ];
  it("keeps flows to live endpoints and flows it does not proxy, clears the rest once per filter", () => {
    const stale = staleUdpFlowsAtStart(frontends, [
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.1.5" },
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.2.7" },
      { originalDst: "10.96.0.10", originalPort: 53, replySrc: "10.244.2.7" },
      { originalDst: "192.168.1.11", originalPort: 30053, replySrc: "10.244.2.7" },
      { originalDst: "192.168.1.99", originalPort: 30053, replySrc: "10.244.2.7" }, // not this node's address
      { originalDst: "10.96.0.11", originalPort: 53, replySrc: "10.244.1.5" }, // the service lost all endpoints
      { originalDst: "8.8.8.8", originalPort: 53, replySrc: "8.8.8.8" },
    ], ["192.168.1.11"]);
    assert.deepEqual(stale, [
      { frontendIp: "10.96.0.10", port: 53, endpointIp: "10.244.2.7" },
      { frontendIp: "192.168.1.11", port: 30053, endpointIp: "10.244.2.7" },
      { frontendIp: "10.96.0.11", port: 53, endpointIp: "10.244.1.5" },
    ]);
  });
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
});
