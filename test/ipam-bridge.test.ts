// podnet-ipam as the IPAM of the reference `bridge` plugin (containernetworking-plugins), in
// namespaces this test creates: proves the standalone plugin speaks the protocol a Go plugin
// expects. Needs root. The plugin is compiled with `bun build --compile` into a temp dir, as the
// project's build does, so the binary under test is the current code.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";

const repo = resolve(import.meta.dirname, "..");
const bun = join(repo, "node_modules/@oven/bun-linux-x64/bin/bun");
const referenceBridge = "/usr/lib/cni/bridge";
// Not skipped when something is missing: .ci/run installs it all, and a broken install must fail the run.
const skip = false;
it("runs as root with the reference plugins and bun installed", () => {
  assert.equal(process.getuid?.(), 0, "needs root");
  assert.ok(existsSync(referenceBridge), "needs containernetworking-plugins");
  assert.ok(existsSync(bun), "needs bun (npm ci)");
});

const suffix = Math.random().toString(36).slice(2, 8);
const hostNs = `pnt-ipam-h-${suffix}`;
const podNamespaces: string[] = [];
let work: string;
let binDir: string;
let dataDir: string;

function run(file: string, args: string[], options: { input?: string; env?: Record<string, string> } = {}) {
  const result = spawnSync(file, args, { encoding: "utf8", input: options.input, env: options.env });
  return { status: result.status, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}

function must(file: string, args: string[]): string {
  const result = run(file, args);
  assert.equal(result.status, 0, `${file} ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

/** The pod's own namespace, created on first use. */
function podNs(containerId: string): string {
  const name = `pnt-ipam-p-${suffix}-${containerId}`;
  if (!podNamespaces.includes(name)) {
    must("ip", ["netns", "add", name]);
    podNamespaces.push(name);
  }
  return name;
}

/** Runs the reference bridge plugin inside the host namespace, as a runtime on that node would. */
function bridge(command: string, containerId: string, extraArgs = "") {
  const conf = {
    cniVersion: "1.0.0",
    name: "ipamtest",
    type: "bridge",
    bridge: "pnt0",
    isGateway: true,
    ipam: {
      type: "podnet-ipam",
      dataDir,
      ranges: [[{ subnet: "10.77.0.0/24" }], [{ subnet: "fd00:77::/64" }]],
    },
  };
  return run("ip", ["netns", "exec", hostNs, referenceBridge], {
    input: JSON.stringify(conf),
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      CNI_COMMAND: command,
      CNI_CONTAINERID: containerId,
      CNI_NETNS: `/run/netns/${podNs(containerId)}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: binDir,
      CNI_ARGS: `IgnoreUnknown=1${extraArgs}`,
    },
  });
}

describe("reference bridge + podnet-ipam", { skip, timeout: 60_000 }, () => {
  before(() => {
    work = mkdtempSync(join(tmpdir(), "pnt-ipam-bridge-"));
    binDir = join(work, "bin");
    dataDir = join(work, "data");
    const build = run(bun, ["build", "--compile", "--target=bun-linux-x64", join(repo, "src/ipam/main.ts"), "--outfile", join(binDir, "podnet-ipam")]);
    assert.equal(build.status, 0, build.stderr);
    copyFileSync(referenceBridge, join(binDir, "bridge"));
    must("ip", ["netns", "add", hostNs]);
  });

  after(() => {
    for (const ns of [...podNamespaces, hostNs]) run("ip", ["netns", "del", ns]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("ADD configures eth0 with addresses from podnet-ipam; DEL releases them", () => {
    const add = bridge("ADD", "pod-one");
    assert.equal(add.status, 0, add.stdout + add.stderr);
    const result = JSON.parse(add.stdout) as { ips: Array<{ address: string; gateway: string }> };
    assert.deepEqual(
      result.ips.map((ip) => [ip.address, ip.gateway]),
      [
        ["10.77.0.2/24", "10.77.0.1"],
        ["fd00:77::2/64", "fd00:77::1"],
      ],
    );
    const addresses = must("ip", ["-n", podNs("pod-one"), "-o", "addr", "show", "dev", "eth0"]);
    assert.match(addresses, /inet 10\.77\.0\.2\/24/);
    assert.match(addresses, /inet6 fd00:77::2\/64/);
    const reserved = () => readdirSync(join(dataDir, "ipamtest")).filter((n) => n === "10.77.0.2" || n === "fd00:77::2");
    assert.deepEqual(reserved().sort(), ["10.77.0.2", "fd00:77::2"]);

    const del = bridge("DEL", "pod-one");
    assert.equal(del.status, 0, del.stdout + del.stderr);
    assert.deepEqual(reserved(), []);
    assert.equal(bridge("DEL", "pod-one").status, 0, "a repeated DEL must succeed");
  });

  it("passes CNI_ARGS IP= through to podnet-ipam, and a taken address fails the ADD", () => {
    const add = bridge("ADD", "pod-two", ";IP=10.77.0.99");
    assert.equal(add.status, 0, add.stdout + add.stderr);
    assert.match(add.stdout, /10\.77\.0\.99\/24/);
    const clash = bridge("ADD", "pod-three", ";IP=10.77.0.99");
    assert.notEqual(clash.status, 0);
    assert.match(clash.stdout, /already allocated/);
    assert.equal(bridge("DEL", "pod-two").status, 0);
    assert.equal(bridge("DEL", "pod-three").status, 0);
  });
});
