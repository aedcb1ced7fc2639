// Every bad input gets the spec's error JSON with the right code, a non-zero exit, and leaves nothing behind.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PODNET, requireBuild, testNode, type TestNode } from "./helpers/cni.ts";
import { cleanupAll, Netns } from "./helpers/netns.ts";

before(requireBuild);
after(cleanupAll);

describe("bad input", () => {
  let node: TestNode;
  let pod: Netns;
  before(async () => {
    node = await testNode();
    pod = Netns.create("p");
  });
  after(() => {
    pod.delete();
    node.destroy();
  });

  const goodConf = (dataDir: string, cniVersion = "1.1.0") =>
    JSON.stringify({ cniVersion, name: "podnet-test", type: "podnet", ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.1.0/24" }]], dataDir } });

  const goodEnv = () => ({ CNI_COMMAND: "ADD", CNI_CONTAINERID: "bad-input-1", CNI_NETNS: pod.path, CNI_IFNAME: "eth0", CNI_PATH: "/nonexistent" });

  const cases: { name: string; code: number; env?: (e: Record<string, string>) => Record<string, string>; stdin?: (dataDir: string) => string }[] = [
    { name: "malformed JSON", code: 6, stdin: () => "{not json" },
    { name: "empty stdin on ADD", code: 6, stdin: () => "" },
    { name: "missing CNI_COMMAND", code: 4, env: ({ CNI_COMMAND: _omit, ...e }) => e },
    { name: "unknown verb", code: 4, env: (e) => ({ ...e, CNI_COMMAND: "FROB" }) },
    { name: "missing CNI_CONTAINERID", code: 4, env: ({ CNI_CONTAINERID: _omit, ...e }) => e },
    { name: "container ID starting with a dash", code: 4, env: (e) => ({ ...e, CNI_CONTAINERID: "-abc" }) },
    { name: "container ID with a space", code: 4, env: (e) => ({ ...e, CNI_CONTAINERID: "abc def" }) },
    { name: "interface name too long", code: 4, env: (e) => ({ ...e, CNI_IFNAME: "eth0123456789012" }) },
    { name: "interface name with a slash", code: 4, env: (e) => ({ ...e, CNI_IFNAME: "eth/0" }) },
    { name: "interface name '..'", code: 4, env: (e) => ({ ...e, CNI_IFNAME: ".." }) },
    { name: "unknown CNI_ARGS key without IgnoreUnknown", code: 4, env: (e) => ({ ...e, CNI_ARGS: "K8S_POD_NAME=web;COLOR=blue" }) },
    { name: "malformed CNI_ARGS", code: 4, env: (e) => ({ ...e, CNI_ARGS: "IgnoreUnknown=1;IP" }) },
    { name: "missing CNI_NETNS on ADD", code: 4, env: ({ CNI_NETNS: _omit, ...e }) => e },
    { name: "netns that does not exist", code: 4, env: (e) => ({ ...e, CNI_NETNS: "/run/netns/pnt-does-not-exist" }) },
    { name: "unsupported cniVersion", code: 1, stdin: (d) => goodConf(d, "0.2.0") },
    { name: "unknown future cniVersion", code: 1, stdin: (d) => goodConf(d, "9.9.9") },
    { name: "missing network name", code: 7, stdin: (d) => JSON.stringify({ ...JSON.parse(goodConf(d)), name: undefined }) },
    { name: "bad CIDR", code: 7, stdin: (d) => goodConf(d).replace("10.244.1.0/24", "10.244.1.0/33") },
    { name: "CIDR that is not an address", code: 7, stdin: (d) => goodConf(d).replace("10.244.1.0/24", "cluster/24") },
    { name: "rangeStart outside the subnet", code: 7, stdin: (d) => JSON.stringify({ ...JSON.parse(goodConf(d)), ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.1.0/24", rangeStart: "10.244.2.5" }]], dataDir: d } }) },
    { name: "bad mtu", code: 7, stdin: (d) => JSON.stringify({ ...JSON.parse(goodConf(d)), mtu: "big" }) },
    { name: "missing ipam", code: 7, stdin: (d) => JSON.stringify({ ...JSON.parse(goodConf(d)), ipam: undefined }) },
  ];

  for (const c of cases) {
    test(`${c.name} → code ${c.code}, nothing left behind`, async () => {
      const env = c.env ? c.env(goodEnv()) : goodEnv();
      const stdin = c.stdin ? c.stdin(node.dataDir) : goodConf(node.dataDir);
      const run = await node.raw(PODNET, env, stdin);
      assert.notEqual(run.exitCode, 0, `exit code; stdout ${run.stdout}`);
      const error = JSON.parse(run.stdout) as { cniVersion?: string; code?: number; msg?: string; details?: string };
      assert.equal(error.code, c.code, `code for ${c.name}: ${run.stdout}`);
      assert.equal(typeof error.msg, "string");
      assert.ok((error.msg ?? "").length > 0);
      assert.equal(typeof error.cniVersion, "string");
      assert.deepEqual(node.hostVeths(), []);
      assert.deepEqual(node.reservations(), []);
      assert.ok(!pod.links().includes("eth0"));
    });
  }

  test("VERSION lists every supported version", async () => {
    const run = await node.raw(PODNET, { CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: "1.1.0" }));
    assert.equal(run.exitCode, 0);
    const answer = JSON.parse(run.stdout) as { supportedVersions: string[] };
    assert.deepEqual([...answer.supportedVersions].sort(), ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
  });
});
