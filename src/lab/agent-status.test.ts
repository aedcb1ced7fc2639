import { test } from "node:test";
import assert from "node:assert/strict";
import { conditionLines, describeAgentNetwork, type AgentStatusView } from "./agent-status.ts";

const vxlan: AgentStatusView = {
  ready: true,
  backend: "vxlan",
  podMtu: 1450,
  reconcilers: {
    routes: {
      condition: null,
      backendStatus: {
        device: "podnet.1",
        vtepMac: "02:aa:00:00:00:01",
        peers: [
          { name: "node2", nodeIp: "192.168.2.12", via: "vxlan", vtepMac: "02:aa:00:00:00:02" },
          { name: "node3", nodeIp: "192.168.1.13", via: "direct" },
        ],
      },
    },
  },
};

test("a vxlan node: backend, MTU, VTEP MAC and each peer's way", () => {
  assert.deepEqual(describeAgentNetwork("node1", vxlan), [
    "node1: backend vxlan, MTU 1450, VTEP MAC 02:aa:00:00:00:01 on podnet.1",
    "  peer node2    192.168.2.12   vxlan → 02:aa:00:00:00:02",
    "  peer node3    192.168.1.13   direct route",
  ]);
});

test("a host-gw node with a condition, and a NotReady one", () => {
  const hostGw: AgentStatusView = {
    ready: false,
    backend: "host-gw",
    podMtu: 1500,
    notReadyReasons: ["masquerade: nft failed"],
    reconcilers: { routes: { condition: { reason: "PeersNotOnLink", message: "host-gw cannot route to node2", peers: [{ name: "node2", nodeIp: "192.168.2.12" }] } } },
  };
  assert.deepEqual(describeAgentNetwork("node1", hostGw), [
    "node1: backend host-gw, MTU 1500",
    "  condition PeersNotOnLink: host-gw cannot route to node2",
    "  NotReady: masquerade: nft failed",
  ]);
  assert.deepEqual(conditionLines(new Map([["node1", hostGw], ["node2", vxlan], ["node3", undefined]])), ["node1: PeersNotOnLink: host-gw cannot route to node2"]);
});
