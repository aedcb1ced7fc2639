// podnet-ipam as the IPAM of the reference `bridge` plugin (containernetworking-plugins), in
// namespaces this test creates: proves the standalone plugin speaks the protocol a Go plugin
// expects. Needs root. The reference bridge is driven through src/runtime, as every test drives
// plugins, and finds the built dist/cni/podnet-ipam on CNI_PATH (npm test builds it first).
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PluginError, type Attachment, type CniNetwork } from "../src/runtime/cni-driver.ts";
import { DIST_CNI, REFERENCE_CNI, TestNode } from "./helpers/cni.ts";

// Not skipped when something is missing: .ci/run installs it all, and a broken install must fail the run.
it("runs as root with the reference plugins and the built podnet-ipam", () => {
  assert.equal(process.getuid?.(), 0, "needs root");
  assert.ok(existsSync(join(REFERENCE_CNI, "bridge")), "needs containernetworking-plugins");
  assert.ok(existsSync(join(DIST_CNI, "podnet-ipam")), "needs dist/cni/podnet-ipam (npm run build)");
});

describe("reference bridge + podnet-ipam", { timeout: 60_000 }, () => {
  let node: TestNode;
  let network: CniNetwork;
  const pods = new Map<string, Attachment>();

  /** The attachment of a pod with its own namespace, created on first use. */
  const pod = (name: string, args?: Record<string, string>): Attachment => {
    let attachment = pods.get(name);
    if (!attachment) {
      attachment = { ...node.pod().attachment, containerId: `ipam-bridge-${name}` };
      pods.set(name, attachment);
    }
    return args ? { ...attachment, args } : attachment;
  };
  const addressesOf = (name: string): string => {
    const netns = node.pods.find((ns) => ns.path === pods.get(name)!.netns)!;
    return netns.ip("-o", "addr", "show", "dev", "eth0");
  };

  before(() => {
    node = new TestNode("ipb");
    network = node.network(
      {
        cniVersion: "1.0.0",
        name: "ipamtest",
        plugins: [{ type: "bridge", bridge: "pnt0", isGateway: true, ipam: { type: "podnet-ipam", dataDir: node.dataDir, ranges: [[{ subnet: "10.77.0.0/24" }], [{ subnet: "fd00:77::/64" }]] } }],
      },
      [DIST_CNI, REFERENCE_CNI],
    );
  });
  after(() => node?.destroy());

  it("ADD configures eth0 with addresses from podnet-ipam; DEL releases them", async () => {
    const result = (await network.add(pod("one"))) as { ips: Array<{ address: string; gateway: string }> };
    assert.deepEqual(
      result.ips.map((ip) => [ip.address, ip.gateway]),
      [
        ["10.77.0.2/24", "10.77.0.1"],
        ["fd00:77::2/64", "fd00:77::1"],
      ],
    );
    const addresses = addressesOf("one");
    assert.match(addresses, /inet 10\.77\.0\.2\/24/);
    assert.match(addresses, /inet6 fd00:77::2\/64/);
    const reserved = () => readdirSync(join(node.dataDir, "ipamtest")).filter((n) => n === "10.77.0.2" || n === "fd00:77::2");
    assert.deepEqual(reserved().sort(), ["10.77.0.2", "fd00:77::2"]);

    await network.del(pod("one"));
    assert.deepEqual(reserved(), []);
    await network.del(pod("one")); // a repeated DEL must succeed
  });

  it("passes CNI_ARGS IP= through to podnet-ipam, and a taken address fails the ADD", async () => {
    const result = await network.add(pod("two", { IP: "10.77.0.99" }));
    assert.match(JSON.stringify(result), /10\.77\.0\.99\/24/);
    await assert.rejects(network.add(pod("three", { IP: "10.77.0.99" })), (error) => error instanceof PluginError && /already allocated/.test(error.message));
    await network.del(pod("two"));
    await network.del(pod("three"));
  });
});
