import assert from "node:assert/strict";
import { describe, it } from "node:test";
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
});
