// Failures below the plugin reach the runtime as CNI error JSON with a code that names whose failure
// it was (src/plugin/errors.ts), not as Internal (999), and a failed ADD leaves nothing behind.
// Runs the built binary, as a runtime would.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { PODNET, requireBuild, TestNode } from "./helpers/cni.ts";
import { cleanupAll, Netns, tempDir } from "./helpers/netns.ts";

before(requireBuild);
after(cleanupAll);

function nsenterPath(): string {
  const found = ["/usr/bin/nsenter", "/bin/nsenter", "/usr/sbin/nsenter"].find((path) => existsSync(path));
  if (!found) throw new Error("nsenter not found (util-linux)");
  return found;
}

interface ErrorJson {
  cniVersion?: string;
  code?: number;
  msg?: string;
  details?: string;
}

describe("errors from below the plugin", () => {
  let node: TestNode;
  let pod: Netns;
  let scratch: string;
  before(() => {
    node = new TestNode();
    pod = Netns.create("e");
    scratch = tempDir("cni-errors");
  });
  after(() => {
    pod.delete();
    node.destroy();
  });

  const conf = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ cniVersion: "1.1.0", name: "podnet-test", type: "podnet", ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.9.0/24" }]], dataDir: node.dataDir }, ...extra });
  const env = (containerId: string, netns: string, extra: Record<string, string> = {}) => ({
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: containerId,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: "/nonexistent",
    ...extra,
  });

  async function failedAdd(environment: Record<string, string>, stdin: string): Promise<ErrorJson> {
    const run = await node.raw(PODNET, environment, stdin);
    assert.notEqual(run.exitCode, 0, `ADD should fail; stdout ${run.stdout}`);
    const error = JSON.parse(run.stdout) as ErrorJson;
    assert.equal(error.cniVersion, "1.1.0");
    assert.deepEqual(node.reservations(), [], "no address stays reserved");
    assert.deepEqual(node.hostVeths(), [], "no host veth stays behind");
    return error;
  }

  test("a CNI_NETNS that is a file, not a namespace → InvalidEnv (4)", async () => {
    const notANamespace = join(scratch, "not-a-netns");
    writeFileSync(notANamespace, "");
    const error = await failedAdd(env("err-file", notANamespace), conf());
    assert.equal(error.code, 4, JSON.stringify(error));
  });

  test("a CNI_NETNS that is a namespace of another kind (UTS): the kernel refuses it → Kernel (101) with the errno", async () => {
    // It passes the "is it on nsfs" check, so the refusal comes from setns(2) or from netlink.
    const error = await failedAdd(env("err-uts", "/proc/self/ns/uts"), conf());
    assert.equal(error.code, 101, JSON.stringify(error));
    assert.match(error.details ?? "", /^errno E[A-Z]+/, JSON.stringify(error));
  });

  test("ipMasq when nft cannot be run → Nftables (104), and the ADD is undone", async () => {
    // A PATH with nsenter (which runs the plugin inside the test's node namespace) but without nft, and
    // PODNET_NFT=nft so the plugin takes the nft-command path rather than libnftables in-process: the
    // plugin reaches nft only for ipMasq, after the veth and the address exist.
    const binWithoutNft = join(scratch, "bin");
    mkdirSync(binWithoutNft, { recursive: true });
    symlinkSync(nsenterPath(), join(binWithoutNft, "nsenter"));
    const error = await failedAdd(env("err-nft", pod.path, { PATH: binWithoutNft, PODNET_NFT: "nft" }), conf({ ipMasq: true }));
    assert.equal(error.code, 104, JSON.stringify(error));
    assert.equal(error.details, "nft could not be run");
    assert.match(error.msg ?? "", /nft/);
  });
});
