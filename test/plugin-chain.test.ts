// podnet as the first plugin of a chain, as kubelet and podman use it: the next plugin gets podnet's
// result as prevResult, DEL runs in reverse, and the example conflist works as shipped.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadConfigList, type NetworkConfigList } from "../src/runtime/cni-driver.ts";
import { DIST_CNI, ipOf, REFERENCE_CNI, requireBuild, ROOT, testNode, type TestNode } from "./helpers/cni.ts";
import { cleanupAll } from "./helpers/netns.ts";

process.on("exit", cleanupAll);

describe("chaining", () => {
  let node: TestNode;
  before(async () => {
    requireBuild();
    node = await testNode("ch");
  });
  after(() => node.destroy());

  test("the reference tuning plugin after podnet gets its result as prevResult and changes the pod's eth0", async () => {
    // Debian's tuning (1.1.1) speaks up to 1.0.0, so the chain does too.
    const list: NetworkConfigList = {
      cniVersion: "1.0.0",
      name: "podnet-chain",
      plugins: [
        { type: "podnet", bridge: "cni0", isGateway: true, isDefaultGateway: true, ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.6.0/24" }]], dataDir: node.dataDir } },
        { type: "tuning", mtu: 1400, sysctl: { "net.ipv4.conf.eth0.accept_redirects": "0" } },
      ],
    };
    const net = node.network(list, [DIST_CNI, REFERENCE_CNI]);
    const pod = node.pod();
    const result = await net.add(pod.attachment);
    // tuning passes podnet's result on: the runtime's final result is podnet's, whole.
    assert.match(ipOf(result), /^10\.244\.6\.\d+$/);
    const interfaces = result.interfaces as { name: string; sandbox?: string }[];
    assert.ok(interfaces.some((i) => i.name === "eth0" && i.sandbox === pod.attachment.netns), JSON.stringify(interfaces));
    assert.match(pod.ns.exec("ip", "link", "show", "eth0"), /mtu 1400 /, "tuning found eth0 through podnet's result and set its MTU");
    assert.equal(pod.ns.exec("cat", "/proc/sys/net/ipv4/conf/eth0/accept_redirects").trim(), "0");
    await net.check(pod.attachment, result);
    await net.del(pod.attachment, result);
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations("podnet-chain"), []);
  });

  test("examples/10-podnet.conflist works as shipped (only its IPAM dir moved into the test's)", async () => {
    const example = loadConfigList(join(ROOT, "examples/10-podnet.conflist"));
    const plugin = example.plugins[0] as { ipam: { dataDir?: string } };
    assert.equal(plugin.ipam.dataDir, "/var/lib/cni/networks");
    plugin.ipam.dataDir = node.dataDir;
    const net = node.network(example);
    const [a, b] = [node.pod(), node.pod()];
    const [ra, rb] = [await net.add(a.attachment), await net.add(b.attachment)];
    assert.match(ipOf(ra), /^10\.244\.1\.\d+$/);
    assert.notEqual(ipOf(ra), ipOf(rb));
    a.ns.exec("ping", "-c", "1", "-W", "2", ipOf(rb));
    await net.del(a.attachment, ra);
    await net.del(b.attachment, rb);
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(example.name), []);
  });
});
