// A real runtime: Debian's podman 4.3 with its CNI backend runs busybox containers (from a
// --rootfs, no image pull) inside a node namespace, on a podnet network. The same scenario runs
// against the reference bridge + host-local as a control, so a failure that shows up in both is
// the harness, and one that shows up only for podnet is the plugin.
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import type { NetworkConfigList } from "../src/runtime/cni-driver.ts";
import { DIST_CNI, podnetConfList, REFERENCE_CNI, requireBuild, TestNode } from "./helpers/cni.ts";
import { cleanupAll } from "./helpers/netns.ts";
import { podmanAvailable, PodmanSandbox } from "./helpers/podman.ts";

// Not skipped when missing: .ci/run installs them, and a broken install must fail the run.
const skip = false;
test("podman and /bin/busybox are installed (apt-get install podman busybox-static, as .ci/run does)", () => {
  assert.ok(podmanAvailable());
});

after(cleanupAll);

interface Flavour {
  title: string;
  conflist: (dataDir: string) => NetworkConfigList;
  /** How this plugin names the host end of a pod's veth. */
  hostVeth: RegExp;
  needsBuild: boolean;
}

// podman 4.3 links libcni 1.1, which parses results only up to CNI 1.0.0, so a network it runs
// must say 1.0.0; podnet converts its result to the version the config asks for.
const flavours: Flavour[] = [
  {
    title: "podnet",
    conflist: (dataDir) => podnetConfList({ dataDir, cniVersion: "1.0.0" }),
    hostVeth: /^pn[0-9a-f]{12}$/,
    needsBuild: true,
  },
  {
    title: "reference bridge + host-local (control)",
    conflist: (dataDir) => ({
      cniVersion: "1.0.0",
      name: "podnet-test",
      plugins: [
        {
          type: "bridge",
          bridge: "cni0",
          isGateway: true,
          isDefaultGateway: true,
          ipam: { type: "host-local", ranges: [[{ subnet: "10.244.1.0/24" }]], dataDir },
        },
      ],
    }),
    hostVeth: /^veth[0-9a-f]{8}$/,
    needsBuild: false,
  },
];

for (const flavour of flavours) {
  describe(`podman (CNI backend) on ${flavour.title}`, { skip }, () => {
    let node: TestNode;
    let podman: PodmanSandbox;

    before(() => {
      if (flavour.needsBuild) requireBuild();
      node = new TestNode("pm");
      podman = new PodmanSandbox({ node: node.ns, conflist: flavour.conflist(node.dataDir), cniPath: [DIST_CNI, REFERENCE_CNI] });
    });
    after(() => {
      // Containers first: their DEL needs the node namespace and the IPAM dir still in place.
      podman?.destroy();
      node?.destroy();
    });

    afterEach(() => podman?.removeAll());

    /** Links in the node other than lo and the bridge: the host ends of pods' veths. */
    function podLinks(): string[] {
      return node.ns.links().filter((l) => l !== "lo" && l !== "cni0");
    }

    test("two containers get distinct 10.244.1.x addresses, reach each other, and rm releases everything", () => {
      // Entries an earlier, interrupted run left in the shared cache are not this test's business.
      const cachedBefore = new Set(podman.cachedResults());
      podman.run({ name: "alpha" });
      // beta answers every TCP connection on port 7000 with its name.
      podman.run({ name: "beta", command: ["sh", "-c", "while true; do echo beta-here | nc -l -p 7000; done"] });
      const alpha = podman.networkOf("alpha");
      const beta = podman.networkOf("beta");

      assert.match(alpha.ip, /^10\.244\.1\.\d+$/);
      assert.match(beta.ip, /^10\.244\.1\.\d+$/);
      assert.notEqual(alpha.ip, beta.ip);
      assert.equal(alpha.gateway, "10.244.1.1");
      assert.match(podman.exec("alpha", "ip", "-o", "-4", "addr", "show", "eth0"), new RegExp(`inet ${alpha.ip.replace(/\./g, "\\.")}/24 `));
      assert.match(podman.exec("alpha", "ip", "route"), /^default via 10\.244\.1\.1 dev eth0/m);

      const links = podLinks();
      assert.equal(links.length, 2, `one host veth per container, got ${links.join(", ")}`);
      for (const link of links) assert.match(link.split("@")[0] ?? link, flavour.hostVeth);
      assert.deepEqual(node.reservations().sort(), [alpha.ip, beta.ip].sort());
      assert.ok(existsSync(alpha.sandboxKey), `podman's netns ${alpha.sandboxKey} exists while the container runs`);
      assert.equal(podman.cachedResults().filter((f) => !cachedBefore.has(f)).length, 2, "libcni cached one result per container");

      podman.exec("alpha", "ping", "-c", "1", "-W", "2", beta.ip);
      podman.exec("beta", "ping", "-c", "1", "-W", "2", alpha.ip);
      assert.equal(connectWithRetry(podman, "alpha", beta.ip, 7000), "beta-here");

      podman.rm("alpha", "beta");
      assert.deepEqual(podman.containerIds(), []);
      assert.deepEqual(podLinks(), [], "rm left a veth in the node");
      assert.deepEqual(node.reservations(), [], "rm left an IPAM reservation");
      assert.ok(!existsSync(alpha.sandboxKey), "podman removed the container's netns");
      assert.ok(!existsSync(beta.sandboxKey), "podman removed the container's netns");
      assert.deepEqual(podman.cachedResults().filter((f) => !cachedBefore.has(f)), [], "podman removed libcni's cached results");
    });

    test("--ip and --mac-address reach the plugin as CNI_ARGS IP= and MAC= and are honoured", () => {
      const mac = "02:42:0a:f4:01:32";
      podman.run({ name: "fixed", ip: "10.244.1.50", mac });
      const fixed = podman.networkOf("fixed");
      assert.equal(fixed.ip, "10.244.1.50");
      assert.equal(fixed.mac, mac);
      assert.match(podman.exec("fixed", "ip", "-o", "-4", "addr", "show", "eth0"), /inet 10\.244\.1\.50\/24 /);
      assert.match(podman.exec("fixed", "ip", "-o", "link", "show", "eth0"), new RegExp(`link/ether ${mac} `));
      assert.deepEqual(node.reservations(), ["10.244.1.50"]);

      // The requested address is taken: a second container asking for it must fail and leave nothing.
      const clash = podman.podman("run", "-d", "--name", "clash", "--network", podman.network, "--ip", "10.244.1.50", "--rootfs", podman.rootfs, "sleep", "600");
      assert.notEqual(clash.status, 0, "a second container got an address that is already reserved");
      podman.podman("rm", "-f", "--ignore", "clash");
      assert.equal(podLinks().length, 1, "the failed run left a veth in the node");
      assert.deepEqual(node.reservations(), ["10.244.1.50"]);

      podman.rm("fixed");
      assert.deepEqual(podLinks(), []);
      assert.deepEqual(node.reservations(), []);
      assert.ok(!existsSync(fixed.sandboxKey));
    });

    test("podman stop runs DEL; a later rm (a repeated DEL) still succeeds and leaves nothing", () => {
      podman.run({ name: "stopper" });
      const stopper = podman.networkOf("stopper");
      assert.equal(node.reservations().length, 1);
      const stop = podman.podman("stop", "-t", "0", "stopper");
      assert.equal(stop.status, 0, stop.stderr);
      assert.deepEqual(podLinks(), [], "stop left a veth");
      assert.deepEqual(node.reservations(), [], "stop left a reservation");
      podman.rm("stopper");
      assert.deepEqual(podman.containerIds(), []);
      assert.ok(!existsSync(stopper.sandboxKey));
    });

    test("a container that exits on its own is torn down by conmon's cleanup, with its minimal environment", () => {
      podman.run({ name: "brief", command: ["sleep", "1"] });
      assert.equal(node.reservations().length, 1);
      const released = waitFor(() => podLinks().length === 0 && node.reservations().length === 0, 20_000);
      assert.ok(released, `after the container exited: veths ${podLinks().join(", ") || "none"}, reservations ${node.reservations().join(", ") || "none"}`);
      podman.rm("brief");
    });
  });
}

describe("podman (CNI backend) on a podnet network written at 1.1.0", { skip }, () => {
  let node: TestNode;
  let podman: PodmanSandbox;
  before(() => {
    requireBuild();
    node = new TestNode("pm");
    podman = new PodmanSandbox({ node: node.ns, conflist: podnetConfList({ dataDir: node.dataDir }), cniPath: [DIST_CNI, REFERENCE_CNI] });
  });
  after(() => {
    podman?.destroy();
    node?.destroy();
  });

  // podman 4.3's libcni cannot read a 1.1.0 result; it then runs DEL, which must leave nothing.
  test("podman rejects podnet's 1.1.0 result, and its DEL afterwards leaves no veth and no reservation", () => {
    const run = podman.podman("run", "-d", "--name", "too-new", "--network", podman.network, "--rootfs", podman.rootfs, "sleep", "600");
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /unsupported CNI result version "1\.1\.0"/);
    podman.podman("rm", "-f", "--ignore", "too-new");
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(), []);
  });
});

function waitFor(condition: () => boolean, timeoutMs: number): boolean {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    spinWait(250);
  }
  return condition();
}

/** nc in the client container; the server loop may be between two listens, so retry briefly. */
function connectWithRetry(podman: PodmanSandbox, from: string, ip: string, port: number): string {
  let last = "";
  for (let attempt = 0; attempt < 10; attempt += 1) {
    const run = podman.tryExec(from, "sh", "-c", `nc -w 2 ${ip} ${port} </dev/null`);
    last = run.stdout.trim();
    if (run.status === 0 && last !== "") return last;
    spinWait(200);
  }
  return last;
}

function spinWait(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
