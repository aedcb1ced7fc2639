// Interop both ways with Debian's reference plugins (containernetworking-plugins 1.1.1):
//   - the reference `bridge` using podnet's standalone IPAM plugin (`podnet-ipam`);
//   - podnet delegating IPAM by exec to the reference `host-local`.
// The reference plugins speak CNI up to 1.0.0, so a network they take part in is written at
// 1.0.0 (or older); podnet's own config stays at 1.1.0 where the spec lets it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PluginError, type NetworkConfigList } from "../src/runtime/cni-driver.ts";
import { DIST_CNI, ipOf, podnetConfList, REFERENCE_CNI, requireBuild, TestNode } from "./helpers/cni.ts";
import { cleanupAll, type Netns } from "./helpers/netns.ts";

const CNI_PATH = [DIST_CNI, REFERENCE_CNI];
const SUBNET = "10.244.1.0/24";

before(requireBuild);
after(cleanupAll);

/** The reference bridge plugin, with podnet's IPAM plugin as its `ipam.type`. */
// The reference bridge takes one address per family on its bridge, so each subnet gets its own bridge.
function referenceBridgeWithPodnetIpam(name: string, cniVersion: string, dataDir: string, range: Record<string, string> = { subnet: SUBNET }, bridge = "cni0"): NetworkConfigList {
  return {
    cniVersion,
    name,
    plugins: [{ type: "bridge", bridge, isGateway: true, isDefaultGateway: true, ipam: { type: "podnet-ipam", ranges: [[range]], dataDir } }],
  };
}

/** podnet, with the reference host-local as its `ipam.type`. */
function podnetWithHostLocal(name: string, cniVersion: string, dataDir: string, range: Record<string, string> = { subnet: SUBNET }, bridge = "cni0"): NetworkConfigList {
  const list = podnetConfList({ dataDir, cniVersion, bridge, ipam: { type: "host-local", ranges: [[range]], dataDir } });
  list.name = name;
  return list;
}

/** The host ends of pods' veths in the node. */
function podLinks(node: TestNode): string[] {
  return (JSON.parse(node.ns.ip("-j", "link", "show", "type", "veth")) as { ifname: string }[]).map((l) => l.ifname);
}

/** A pod interface's IPv4 addresses; the reference bridge leaves IPv6 link-local on, podnet may not. */
function ipv4Addresses(pod: Netns, dev = "eth0"): string[] {
  return pod.addresses(dev).filter((a) => !a.includes(":"));
}

/** IPv6 addresses stay tentative until duplicate address detection ends, about a second after they are added. */
function pingUntilDadDone(from: Netns, ip: string): void {
  let last = "";
  for (let attempt = 0; attempt < 10; attempt += 1) {
    const run = from.try("ping", "-6", "-c", "1", "-W", "1", ip);
    if (run.status === 0) return;
    last = run.stdout + run.stderr;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
  }
  assert.fail(`ping -6 ${ip} from ${from.name} never succeeded: ${last}`);
}

/**
 * Two pods on `net`: distinct addresses from SUBNET, reserved in `name`'s store, on eth0 with the
 * bridge's gateway as default route; they ping each other; DEL releases both. `more` adds the
 * direction's own checks while both pods are up.
 */
async function twoPodsReachEachOther(node: TestNode, net: ReturnType<TestNode["network"]>, name: string, cniVersion: string,
  more: (a: ReturnType<TestNode["pod"]>, ra: Record<string, unknown>) => Promise<void>): Promise<void> {
  const a = node.pod();
  const b = node.pod();
  const ra = await net.add(a.attachment);
  const rb = await net.add(b.attachment);
  try {
    assert.equal(ra.cniVersion, cniVersion, "the plugin answers in the config's version");
    const ipA = ipOf(ra);
    const ipB = ipOf(rb);
    assert.notEqual(ipA, ipB);
    assert.match(ipA, /^10\.244\.1\.\d+$/);
    assert.deepEqual(node.reservations(name).sort(), [ipA, ipB].sort(), "both addresses are reserved in the IPAM plugin's store");
    assert.deepEqual(ipv4Addresses(a.ns), [`${ipA}/24`]);
    assert.equal(a.ns.routes().find((r) => r.dst === "default")?.gateway, "10.244.1.1", "the gateway IPAM chose is the pod's default route");
    assert.ok(node.ns.addresses("cni0").includes("10.244.1.1/24"), "the gateway is on the bridge");
    a.ns.exec("ping", "-c", "1", "-W", "2", ipB);
    b.ns.exec("ping", "-c", "1", "-W", "2", ipA);
    await more(a, ra);
  } finally {
    await net.del(a.attachment, ra);
    await net.del(b.attachment, rb);
  }
  assert.deepEqual(node.reservations(name), [], "DEL released the IPAM plugin's reservations");
  assert.deepEqual(podLinks(node), []);
}

function isPluginError(code: number | undefined, msg: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof PluginError, `expected a PluginError, got ${String(err)}`);
    if (code !== undefined) assert.equal(err.code, code, err.message);
    assert.match(err.message, msg);
    return true;
  };
}

describe("reference bridge with podnet-ipam", () => {
  let node: TestNode;
  before(() => (node = new TestNode("ib")));
  after(() => node.destroy());

  // 1.0.0 is the newest the reference bridge accepts; 0.4.0 and 0.3.1 are what older runtimes write.
  for (const cniVersion of ["1.0.0", "0.4.0", "0.3.1"]) {
    test(`at ${cniVersion}: two pods get distinct IPs from podnet's store, reach each other, and DEL releases them`, async () => {
      const name = `refbr-${cniVersion.replace(/\./g, "")}`;
      const net = node.network(referenceBridgeWithPodnetIpam(name, cniVersion, node.dataDir), CNI_PATH);
      await twoPodsReachEachOther(node, net, name, cniVersion, async (a, ra) => {
        if (cniVersion !== "0.3.1") await net.check(a.attachment, ra);
      });
    });
  }

  test("a requested IP in CNI_ARGS reaches podnet-ipam through the bridge; DEL is idempotent without prevResult", async () => {
    const name = "refbr-static";
    const net = node.network(referenceBridgeWithPodnetIpam(name, "1.0.0", node.dataDir), CNI_PATH);
    const pod = node.pod();
    const att = { ...pod.attachment, args: { IP: "10.244.1.77" } };
    const result = await net.add(att);
    assert.equal(ipOf(result), "10.244.1.77");
    assert.deepEqual(node.reservations(name), ["10.244.1.77"]);

    const other = node.pod();
    const clash = { ...other.attachment, args: { IP: "10.244.1.77" } };
    await assert.rejects(net.add(clash), isPluginError(103, /10\.244\.1\.77/));
    assert.deepEqual(node.reservations(name), ["10.244.1.77"], "the refused pod reserved nothing");
    // The reference bridge makes the veth before it calls IPAM and leaves it when IPAM fails;
    // the runtime's DEL after a failed ADD (libcni and podman both send one) removes it.
    await net.del(clash);
    assert.equal(podLinks(node).length, 1);

    await net.del(att, result);
    await net.del(att);
    await net.del({ ...att, netns: "" });
    assert.deepEqual(node.reservations(name), []);
    assert.deepEqual(podLinks(node), []);
  });

  test("an exhausted podnet-ipam range fails the bridge's ADD with podnet's error and reserves nothing", async () => {
    const name = "refbr-full";
    const range = { subnet: "10.244.7.0/24", rangeStart: "10.244.7.10", rangeEnd: "10.244.7.10", gateway: "10.244.7.1" };
    const net = node.network(referenceBridgeWithPodnetIpam(name, "1.0.0", node.dataDir, range, "cni7"), CNI_PATH);
    const first = node.pod();
    const result = await net.add(first.attachment);
    assert.equal(ipOf(result), "10.244.7.10");
    const second = node.pod();
    await assert.rejects(net.add(second.attachment), isPluginError(100, /no free address/i));
    assert.deepEqual(node.reservations(name), ["10.244.7.10"], "the failed ADD reserved nothing");
    await net.del(second.attachment);
    assert.equal(podLinks(node).length, 1, "after the runtime's DEL only the first pod's veth is left");
    await net.del(first.attachment, result);
    assert.deepEqual(node.reservations(name), []);
    assert.deepEqual(podLinks(node), []);
  });

  test("dual-stack range sets and IPAM routes from podnet-ipam are applied by the bridge", async () => {
    const name = "refbr-dual";
    const list = referenceBridgeWithPodnetIpam(name, "1.0.0", node.dataDir, { subnet: "10.244.4.0/24" }, "cni4");
    const ipam = list.plugins[0]!.ipam as Record<string, unknown>;
    ipam.ranges = [[{ subnet: "10.244.4.0/24" }], [{ subnet: "fd00:244:4::/64" }]];
    // The reference bridge adds both default routes itself for isDefaultGateway, and fails on a
    // duplicate ("file exists"), so IPAM contributes only the extra route.
    ipam.routes = [{ dst: "192.168.50.0/24" }];
    const net = node.network(list, CNI_PATH);
    const a = node.pod();
    const b = node.pod();
    let ra: Record<string, unknown> | undefined;
    let rb: Record<string, unknown> | undefined;
    try {
      ra = await net.add(a.attachment);
      rb = await net.add(b.attachment);
      const [v4, v6] = [ipOf(ra, 0), ipOf(ra, 1)];
      assert.match(v4, /^10\.244\.4\.\d+$/);
      assert.match(v6, /^fd00:244:4::/);
      assert.ok(a.ns.addresses("eth0").includes(`${v6}/64`), "the IPv6 address from the second range set is on eth0");
      assert.equal(a.ns.routes().find((r) => r.dst === "192.168.50.0/24")?.gateway, "10.244.4.1", "an IPAM route without gw goes via the range's gateway");
      assert.equal(a.ns.routes("-6").find((r) => r.dst === "default")?.gateway, "fd00:244:4::1");
      assert.deepEqual(node.reservations(name).sort(), [v4, v6, ipOf(rb, 0), ipOf(rb, 1)].sort());
      a.ns.exec("ping", "-c", "1", "-W", "2", ipOf(rb, 0));
      pingUntilDadDone(a.ns, ipOf(rb, 1));
    } finally {
      // The reference bridge keeps its veth when ADD fails; the runtime's DEL removes it.
      await net.del(a.attachment, ra);
      await net.del(b.attachment, rb);
    }
    assert.deepEqual(node.reservations(name), []);
    assert.deepEqual(podLinks(node), []);
  });

  test("the reference bridge refuses a 1.1.0 config with code 1 before podnet-ipam reserves anything", async () => {
    const name = "refbr-110";
    const net = node.network(referenceBridgeWithPodnetIpam(name, "1.1.0", node.dataDir), CNI_PATH);
    const pod = node.pod();
    const linksBefore = podLinks(node);
    await assert.rejects(net.add(pod.attachment), isPluginError(1, /incompatible CNI versions/i));
    assert.deepEqual(node.reservations(name), []);
    assert.deepEqual(podLinks(node), linksBefore);
  });
});

describe("podnet with the reference host-local", () => {
  let node: TestNode;
  before(() => (node = new TestNode("ih")));
  after(() => node.destroy());

  // At 1.1.0 host-local first answers "incompatible version" and podnet retries at 1.0.0.
  for (const cniVersion of ["1.1.0", "1.0.0"]) {
    test(`at ${cniVersion}: two pods get distinct IPs from host-local, reach each other, and DEL releases host-local's files`, async () => {
      const name = `pnhl-${cniVersion.replace(/\./g, "")}`;
      const net = node.network(podnetWithHostLocal(name, cniVersion, node.dataDir), CNI_PATH);
      // podnet answers in the config's version whatever host-local spoke, and names its veths.
      await twoPodsReachEachOther(node, net, name, cniVersion, async (a, ra) => {
        for (const link of podLinks(node)) assert.match(link, /^pn[0-9a-f]{12}$/);
        await net.check(a.attachment, ra);
      });
    });
  }

  test("a requested IP in CNI_ARGS reaches host-local through podnet; DEL is idempotent without prevResult or netns", async () => {
    const name = "pnhl-static";
    const net = node.network(podnetWithHostLocal(name, "1.1.0", node.dataDir), CNI_PATH);
    const pod = node.pod();
    const att = { ...pod.attachment, args: { IP: "10.244.1.88" } };
    const result = await net.add(att);
    assert.equal(ipOf(result), "10.244.1.88");
    assert.deepEqual(node.reservations(name), ["10.244.1.88"]);
    await net.del(att, result);
    await net.del(att);
    await net.del({ ...att, netns: "" });
    assert.deepEqual(node.reservations(name), []);
    assert.deepEqual(podLinks(node), []);
  });

  test("an exhausted host-local range gives a clear error naming host-local and leaves no veth", async () => {
    const name = "pnhl-full";
    const range = { subnet: "10.244.6.0/24", rangeStart: "10.244.6.10", rangeEnd: "10.244.6.10", gateway: "10.244.6.1" };
    const net = node.network(podnetWithHostLocal(name, "1.1.0", node.dataDir, range, "cni6"), CNI_PATH);
    const first = node.pod();
    const result = await net.add(first.attachment);
    assert.equal(ipOf(result), "10.244.6.10");
    const second = node.pod();
    await assert.rejects(net.add(second.attachment), (err: unknown) => {
      assert.ok(err instanceof PluginError, String(err));
      assert.match(err.msg, /no IP addresses available/i, "host-local's own message comes through");
      assert.match(err.details, /host-local/, "the details say which delegate failed");
      return true;
    });
    assert.equal(podLinks(node).length, 1, "the failed ADD left no veth");
    assert.deepEqual(second.ns.links(), ["lo"], "the failed ADD left nothing in the pod");
    assert.deepEqual(node.reservations(name), ["10.244.6.10"]);
    await net.del(first.attachment, result);
    await net.del(second.attachment);
    assert.deepEqual(node.reservations(name), []);
    assert.deepEqual(podLinks(node), []);
  });

  test("an ADD that fails after host-local reserved gives the address back through host-local's DEL", async () => {
    const name = "pnhl-rollback";
    const net = node.network(podnetWithHostLocal(name, "1.1.0", node.dataDir), CNI_PATH);
    const pod = node.pod();
    // eth0 already exists in the pod, so the veth cannot be made after IPAM has run.
    pod.ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer");
    await assert.rejects(net.add(pod.attachment), PluginError);
    assert.deepEqual(node.reservations(name), [], "host-local still holds an address for the failed ADD");
    assert.deepEqual(podLinks(node), []);
  });

  test("dual-stack ranges and IPAM routes from host-local are applied by podnet", async () => {
    const name = "pnhl-dual";
    const list = podnetWithHostLocal(name, "1.1.0", node.dataDir, { subnet: "10.244.3.0/24" }, "cni3");
    const ipam = list.plugins[0]!.ipam as Record<string, unknown>;
    ipam.ranges = [[{ subnet: "10.244.3.0/24" }], [{ subnet: "fd00:244:3::/64" }]];
    // Unlike the reference bridge, podnet takes default routes from IPAM that isDefaultGateway also implies.
    ipam.routes = [{ dst: "0.0.0.0/0" }, { dst: "192.168.60.0/24" }, { dst: "::/0" }];
    const net = node.network(list, CNI_PATH);
    const a = node.pod();
    const b = node.pod();
    let ra: Record<string, unknown> | undefined;
    let rb: Record<string, unknown> | undefined;
    try {
      ra = await net.add(a.attachment);
      rb = await net.add(b.attachment);
      const [v4, v6] = [ipOf(ra, 0), ipOf(ra, 1)];
      assert.match(v4, /^10\.244\.3\.\d+$/);
      assert.match(v6, /^fd00:244:3::/);
      assert.ok(a.ns.addresses("eth0").includes(`${v6}/64`), "the IPv6 address from the second range set is on eth0");
      assert.equal(a.ns.routes().find((r) => r.dst === "192.168.60.0/24")?.gateway, "10.244.3.1", "an IPAM route without gw goes via the range's gateway");
      assert.equal(a.ns.routes("-6").find((r) => r.dst === "default")?.gateway, "fd00:244:3::1");
      assert.deepEqual(node.reservations(name).sort(), [v4, v6, ipOf(rb, 0), ipOf(rb, 1)].sort());
      a.ns.exec("ping", "-c", "1", "-W", "2", ipOf(rb, 0));
      pingUntilDadDone(a.ns, ipOf(rb, 1));
      await net.check(a.attachment, ra);
    } finally {
      await net.del(a.attachment, ra);
      await net.del(b.attachment, rb);
    }
    assert.deepEqual(node.reservations(name), []);
    assert.deepEqual(podLinks(node), []);
  });

  // host-local 1.1.1 predates STATUS and GC: given either verb it complains of a missing
  // container ID (code 3). A node whose IPAM plugin is older than CNI 1.1 is still ready, and
  // podnet's own part of GC (stale host veths) must still happen.
  test("STATUS succeeds although the delegated host-local predates STATUS", async () => {
    const net = node.network(podnetWithHostLocal("pnhl-status", "1.1.0", node.dataDir), CNI_PATH);
    await net.status();
  });

  test("GC removes the veths of stale attachments although host-local predates GC", async () => {
    const name = "pnhl-gc";
    const net = node.network(podnetWithHostLocal(name, "1.1.0", node.dataDir, { subnet: "10.244.5.0/24" }, "cni5"), CNI_PATH);
    const keep = node.pod();
    const leak = node.pod();
    const rKeep = await net.add(keep.attachment);
    const rLeak = await net.add(leak.attachment);
    try {
      await net.gc([{ containerID: keep.attachment.containerId, ifname: "eth0" }]);
      assert.equal(podLinks(node).length, 1, "GC left the stale attachment's veth");
      assert.deepEqual(keep.ns.links().sort(), ["eth0", "lo"], "GC touched a valid attachment");
    } finally {
      await net.del(leak.attachment, rLeak);
      await net.del(keep.attachment, rKeep);
    }
    assert.deepEqual(node.reservations(name), []);
    assert.deepEqual(podLinks(node), []);
  });

  test("an IPAM type that is not in CNI_PATH is a config error (7) and leaves no veth", async () => {
    const list = podnetConfList({ dataDir: node.dataDir, ipam: { type: "no-such-ipam", ranges: [[{ subnet: SUBNET }]] } });
    list.name = "pnhl-missing";
    const net = node.network(list, CNI_PATH);
    const pod = node.pod();
    await assert.rejects(net.add(pod.attachment), isPluginError(7, /no-such-ipam/));
    assert.deepEqual(podLinks(node), []);
    assert.deepEqual(pod.ns.links(), ["lo"]);
  });
});
