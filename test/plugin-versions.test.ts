// Results take the shape of the cniVersion the config asks for.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PluginError } from "../src/runtime/cni-driver.ts";
import { podnetConfList, requireBuild, testNode, type TestNode } from "./helpers/cni.ts";
import { cleanupAll } from "./helpers/netns.ts";

before(requireBuild);
after(cleanupAll);

let node: TestNode;
before(async () => (node = await testNode()));
after(() => node.destroy());

for (const cniVersion of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
  test(`ADD with cniVersion ${cniVersion} answers in that version's shape`, async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir, cniVersion }));
    const pod = node.pod();
    const result = (await net.add(pod.attachment)) as {
      cniVersion: string;
      interfaces: { name: string; sandbox?: string }[];
      ips: { version?: string; address: string; gateway?: string; interface?: number }[];
      routes: { dst: string }[];
    };
    try {
      assert.equal(result.cniVersion, cniVersion);
      assert.equal(result.interfaces.length, 3);
      const ip = result.ips[0];
      assert.ok(ip);
      assert.match(ip.address, /^10\.244\.1\.\d+\/24$/);
      assert.equal(ip.interface, 2);
      if (cniVersion.startsWith("0.")) assert.equal(ip.version, "4", "0.3.x and 0.4.0 results carry ips[].version");
      else assert.equal(ip.version, undefined, "1.x results have no ips[].version");
      assert.deepEqual(Object.keys(result).sort().filter((k) => !["cniVersion", "interfaces", "ips", "routes", "dns"].includes(k)), []);
      if (cniVersion.startsWith("0.3.")) {
        // CHECK arrived in 0.4.0: an older config asking for it is an incompatible version.
        await assert.rejects(net.check(pod.attachment, result), (err: unknown) => err instanceof PluginError && err.code === 1);
      } else {
        await net.check(pod.attachment, result);
      }
    } finally {
      await net.del(pod.attachment, result);
    }
  });
}
