// The README's two commands on a fresh machine (issue 7, item 9): the first sets up, builds, brings up
// the lab and checks it; the second sets up and runs the tests; CI runs the second. These tests hold the
// README, the scripts and .ci/run to one another, and check the setup's decisions with a stand-in
// dpkg-query, so no package is installed or removed here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { accessSync, constants, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..");

/** The commands of the README's ```sh blocks in "On a fresh machine", in order. */
function freshMachineCommands(): string[] {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## On a fresh machine"), readme.indexOf("\n## ", readme.indexOf("## On a fresh machine") + 1));
  return [...section.matchAll(/```sh\n([^\n]+)\n```/g)].map((match) => match[1]!);
}

test("the README's fresh-machine section has exactly two commands, both executable scripts", () => {
  const commands = freshMachineCommands();
  assert.deepEqual(commands, ["./scripts/lab", "./scripts/test"]);
  for (const command of commands) accessSync(join(ROOT, command), constants.X_OK);
});

test("CI runs the README's test command and nothing of its own", () => {
  const ci = readFileSync(join(ROOT, ".ci/run"), "utf8");
  const steps = ci.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("#") && !/^(set |cd )/.test(line));
  assert.deepEqual(steps, [`exec ${freshMachineCommands()[1]}`]);
});

test("both commands run the setup first, then the npm script the README describes", () => {
  const lab = readFileSync(join(ROOT, "scripts/lab"), "utf8");
  const tests = readFileSync(join(ROOT, "scripts/test"), "utf8");
  assert.match(lab, /^scripts\/setup\.sh\nexec npm run --silent lab -- "\$@"$/m);
  assert.match(tests, /^scripts\/setup\.sh\nexec npm test -- "\$@"$/m);
});

test("`./scripts/lab --help` sets up (nothing to do on a set-up machine) and reaches the podnet lab command", () => {
  const run = spawnSync(join(ROOT, "scripts/lab"), ["--help"], { cwd: ROOT, encoding: "utf8", timeout: 300_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.doesNotMatch(run.stdout, /setup: (installing|npm ci)/, "a set-up machine has nothing to install");
  assert.match(run.stdout, /usage: podnet lab/);
});

test("the setup installs what later features use, besides today's tools", () => {
  const setup = readFileSync(join(ROOT, "scripts/setup.sh"), "utf8");
  const list = /PACKAGES=\(([^)]*)\)/.exec(setup)?.[1]?.split(/\s+/).filter(Boolean) ?? [];
  for (const needed of ["iproute2", "nftables", "etcd-server", "podman", "containernetworking-plugins", "busybox-static", "conntrack", "bind9-dnsutils", "dnsperf", "iperf3", "dnsmasq-base", "iptables", "wget", "curl", "python3", "chromium", "graphviz", "openssl"]) {
    assert.ok(list.includes(needed), `scripts/setup.sh does not install ${needed}`);
  }
});

test("the setup asks apt only for missing packages and runs npm ci only for a missing or stale node_modules", () => {
  // A copy of the script in a scratch checkout, with a dpkg-query that reports dnsperf as not installed.
  const scratch = mkdtempSync(join(tmpdir(), "podnet-setup-"));
  try {
    mkdirSync(join(scratch, "scripts"));
    copyFileSync(join(ROOT, "scripts/setup.sh"), join(scratch, "scripts/setup.sh"));
    mkdirSync(join(scratch, "bin"));
    writeFileSync(join(scratch, "bin/dpkg-query"), '#!/bin/sh\nfor last; do :; done\n[ "$last" = dnsperf ] && exit 1\nprintf "ii "\n', { mode: 0o755 });
    writeFileSync(join(scratch, "package-lock.json"), "{}");
    const check = () =>
      spawnSync(join(scratch, "scripts/setup.sh"), ["--check"], { encoding: "utf8", env: { ...process.env, PATH: `${join(scratch, "bin")}:${process.env.PATH}` } });

    let run = check();
    assert.equal(run.status, 1);
    assert.match(run.stdout, /^missing Debian packages: dnsperf$/m);
    assert.match(run.stdout, /node_modules is missing/);

    mkdirSync(join(scratch, "node_modules"));
    writeFileSync(join(scratch, "node_modules/.package-lock.json"), "{}");
    utimesSync(join(scratch, "package-lock.json"), new Date(1000), new Date(1000));
    run = check();
    assert.doesNotMatch(run.stdout, /node_modules/, "node_modules newer than the lock file is current");

    utimesSync(join(scratch, "node_modules/.package-lock.json"), new Date(500), new Date(500));
    run = check();
    assert.match(run.stdout, /older than package-lock\.json/);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

test("on this machine, after setup, nothing is missing (setup is idempotent)", () => {
  const run = spawnSync(join(ROOT, "scripts/setup.sh"), ["--check"], { cwd: ROOT, encoding: "utf8" });
  assert.equal(run.status, 0, run.stdout + run.stderr);
});
