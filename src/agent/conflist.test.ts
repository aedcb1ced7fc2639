import { test } from "node:test";
import assert from "node:assert/strict";
import { buildConflist } from "./conflist.ts";

const base = { podSubnet: "10.244.1.0/24", bridge: "cni0", mtu: 1500, ipamDataDir: "/var/lib/cni/podnet", readyFile: "/run/podnet/agent.ready", cniVersion: "1.1.0" };

test("the conflist names the node's CNI service socket only when the agent was given one", () => {
  const plain = JSON.parse(buildConflist(base)) as { plugins: Record<string, unknown>[] };
  assert.equal("serviceSocket" in plain.plugins[0]!, false);
  const withService = JSON.parse(buildConflist({ ...base, serviceSocket: "/run/podnet/cni.sock" })) as { plugins: Record<string, unknown>[] };
  assert.equal(withService.plugins[0]!.serviceSocket, "/run/podnet/cni.sock");
  assert.deepEqual({ ...withService.plugins[0], serviceSocket: undefined }, { ...plain.plugins[0], serviceSocket: undefined }, "nothing else changes");
});
