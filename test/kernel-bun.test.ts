// Root test: the kernel module under Bun (bun:ffi backend), both with `bun run` and as a
// `bun build --compile` binary like the CNI plugin. The binary runs from a directory with
// no node_modules, which proves it does not need koffi. Each run gets fresh namespaces.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

const root = new URL("..", import.meta.url).pathname;
const bun = join(root, "node_modules/@oven/bun-linux-x64/bin/bun");
const fixture = join(root, "test/fixtures/kernel-bun-smoke.ts");
const created: string[] = [];
let workDir: string;

interface SmokeReport {
  backend: string;
  runtime: string;
  host: { kind?: string; up: boolean; masterIndex?: number } | null;
  eth0: { kind?: string; up: boolean } | null;
  podAddresses: string[];
  podRoutes: string[];
  bench?: { iterations: number; perPodMedianMs: number; perPodMinMs: number; routes1000MedianMs: number; routesListed: number };
}

/** A node and a pod namespace for one run; removed in `after`. */
function namespaces(): [string, string] {
  const suffix = randomBytes(3).toString("hex");
  const names = [`pnt-k-${suffix}-node`, `pnt-k-${suffix}-pod`] as const;
  for (const name of names) {
    execFileSync("ip", ["netns", "add", name]);
    created.push(name);
  }
  return [`/run/netns/${names[0]}`, `/run/netns/${names[1]}`];
}

function run(command: string, args: string[], cwd: string): SmokeReport {
  // Without NODE_EXTRA_CA_CERTS and the like; the fixture needs nothing from the environment.
  const result = spawnSync(command, args, { cwd, encoding: "utf8", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  assert.equal(result.status, 0, `${command} failed:\n${result.stdout}\n${result.stderr}`);
  return JSON.parse(result.stdout) as SmokeReport;
}

function checkReport(report: SmokeReport): void {
  assert.equal(report.backend, "bun:ffi");
  assert.match(report.runtime, /^bun /);
  assert.equal(report.host?.kind, "veth");
  assert.equal(report.host?.up, true);
  assert.ok(report.host?.masterIndex);
  assert.equal(report.eth0?.up, true);
  assert.ok(report.podAddresses.includes("10.98.0.2/24"));
  assert.ok(report.podRoutes.includes("0.0.0.0/0 via 10.98.0.1"));
}

before(() => {
  workDir = mkdtempSync(join(tmpdir(), "pnt-k-bun-"));
});

after(() => {
  for (const name of created) spawnSync("ip", ["netns", "del", name]);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe("kernel module under Bun", () => {
  it("bun run: per-pod sequence through bun:ffi, and the pod really answers", () => {
    const [nodeNs, podNs] = namespaces();
    checkReport(run(bun, ["run", fixture, nodeNs, podNs], root));
    const podName = podNs.slice("/run/netns/".length);
    execFileSync("ip", ["netns", "exec", podName, "ping", "-c1", "-W2", "10.98.0.1"]);
  });

  it("bun build --compile: the binary works without node_modules (no koffi)", () => {
    const binary = join(workDir, "kernel-smoke");
    // The same flags as scripts/build.mjs uses for the CNI plugin; --bytecode in particular
    // rejects some constructs (import.meta) that plain bundles accept.
    const build = spawnSync(bun, ["build", "--compile", "--minify", "--bytecode", "--target=bun-linux-x64", fixture, "--outfile", binary], { cwd: root, encoding: "utf8" });
    assert.equal(build.status, 0, build.stderr);
    const [nodeNs, podNs] = namespaces();
    const report = run(binary, [nodeNs, podNs, "--bench", "20"], workDir);
    checkReport(report);
    assert.equal(report.bench?.routesListed, 1000);
    process.stderr.write(
      `# kernel-bun (compiled): per-pod median ${report.bench?.perPodMedianMs} ms over ${report.bench?.iterations}, ` +
        `1,000 routes batched median ${report.bench?.routes1000MedianMs} ms\n`,
    );
  });
});
