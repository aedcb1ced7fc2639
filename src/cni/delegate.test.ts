import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execPlugin, findPlugin, queryPluginVersions } from "./delegate.ts";
import { assertCniError } from "./test-helpers.ts";
import { ErrorCode } from "./types.ts";

let root: string;
let bin: string;

function writePlugin(dir: string, name: string, body: string, mode = 0o755): void {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, mode);
}

const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c0ffee", CNI_NETNS: "/run/netns/none", CNI_IFNAME: "eth0", CNI_PATH: "", EXTRA: "kept" };
const conf = { cniVersion: "0.4.0", name: "podnet", type: "podnet", ipam: { type: "recorder" } };

before(() => {
  root = mkdtempSync(join(tmpdir(), "pnt-cni-delegate-"));
  bin = join(root, "bin");
  // Records what it was given and answers a 0.4.0 IPAM result on ADD.
  writePlugin(
    bin,
    "recorder",
    `cat > "${root}/stdin.$CNI_COMMAND"
env > "${root}/env.$CNI_COMMAND"
if [ "$CNI_COMMAND" = ADD ]; then
  printf '%s' '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.5.0.9/16","gateway":"10.5.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}'
else
  printf 'ignored output'
fi`,
  );
  writePlugin(bin, "busy", `printf '%s' '{"cniVersion":"0.4.0","code":11,"msg":"store busy","details":"lock held by 42"}'; exit 1`);
  writePlugin(bin, "garbage", `echo 'panic: runtime error'; exit 3`);
  writePlugin(bin, "suicide", `kill -9 $$`);
  writePlugin(bin, "notjson", `echo 'hello'`);
  writePlugin(bin, "badresult", `printf '%s' '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.300/24"}]}'`);
  // Speaks up to 1.0.0, like Debian's host-local 1.1.1.
  writePlugin(
    bin,
    "oldie",
    `input=$(cat)
case "$CNI_COMMAND" in
  VERSION) printf '%s' '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}'; exit 0;;
esac
case "$input" in
  *'"cniVersion":"1.1.0"'*) printf '%s' '{"code":1,"msg":"incompatible CNI versions","details":"plugin supports up to 1.0.0"}'; exit 1;;
esac
printf '%s' "$input" > "${root}/oldie.stdin"
printf '%s' '{"cniVersion":"1.0.0","ips":[{"address":"10.6.0.2/24"}]}'`,
  );
  // Lookup order: a directory without it, one with a non-executable copy, then the real one.
  writePlugin(join(root, "noexec"), "shadowed", "exit 99", 0o644);
  writePlugin(join(root, "exec"), "shadowed", `printf '%s' '{"cniVersion":"1.1.0","ips":[{"address":"10.7.0.2/24"}]}'`);
  mkdirSync(join(root, "exec", "adir"), { recursive: true });
});

after(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("execPlugin", () => {
  it("runs the delegate with the caller's env, CNI_COMMAND overridden, and the conf on stdin", () => {
    const result = execPlugin("recorder", { command: "ADD", cniPath: [bin], conf, env: { ...env, CNI_COMMAND: "DEL" } });
    assert.deepEqual(result, { cniVersion: "1.1.0", ips: [{ address: "10.5.0.9/16", gateway: "10.5.0.1" }], routes: [{ dst: "0.0.0.0/0" }], dns: {} });
    assert.deepEqual(JSON.parse(readFileSync(join(root, "stdin.ADD"), "utf8")), conf);
    const childEnv = readFileSync(join(root, "env.ADD"), "utf8").split("\n");
    for (const line of ["CNI_COMMAND=ADD", "CNI_CONTAINERID=c0ffee", "CNI_IFNAME=eth0", "CNI_NETNS=/run/netns/none", "EXTRA=kept"]) {
      assert.ok(childEnv.includes(line), `child env lacks ${line}`);
    }
  });

  it("returns undefined for verbs without a result and ignores their stdout", () => {
    for (const command of ["DEL", "CHECK", "STATUS", "GC"] as const) {
      assert.equal(execPlugin("recorder", { command, cniPath: [bin], conf, env }), undefined);
      assert.ok(existsSync(join(root, `stdin.${command}`)), `${command} ran`);
    }
  });

  it("rethrows the delegate's error with its code and msg, naming the plugin in details", () => {
    const err = assertCniError(() => execPlugin("busy", { command: "ADD", cniPath: [bin], conf, env }), 11, /^store busy$/);
    assert.match(err.details, /"busy"/);
    assert.match(err.details, /lock held by 42/);
  });

  it("reports a delegate that fails without error JSON as Delegate (102)", () => {
    const err = assertCniError(() => execPlugin("garbage", { command: "DEL", cniPath: [bin], conf, env }), ErrorCode.Delegate, /exited with status 3/);
    assert.match(err.details, /panic: runtime error/);
    assertCniError(() => execPlugin("suicide", { command: "DEL", cniPath: [bin], conf, env }), ErrorCode.Delegate, /killed by SIGKILL/);
  });

  it("reports an ADD answer that is not a valid result as Decode (6)", () => {
    assertCniError(() => execPlugin("notjson", { command: "ADD", cniPath: [bin], conf, env }), ErrorCode.Decode, /no valid JSON/);
    assertCniError(() => execPlugin("badresult", { command: "ADD", cniPath: [bin], conf, env }), ErrorCode.Decode, /"badresult" returned an invalid result/);
  });

  it("retries once with the newest common older version when the delegate is too old", () => {
    const newer = { ...conf, cniVersion: "1.1.0" };
    assert.deepEqual(execPlugin("oldie", { command: "ADD", cniPath: [bin], conf: newer, env }), { cniVersion: "1.1.0", ips: [{ address: "10.6.0.2/24" }] });
    assert.equal(JSON.parse(readFileSync(join(root, "oldie.stdin"), "utf8")).cniVersion, "1.0.0");
    assertCniError(() => execPlugin("oldie", { command: "ADD", cniPath: [bin], conf: newer, env, versionFallback: false }), ErrorCode.IncompatibleVersion);
    // GC and STATUS exist only from 1.1.0: a delegate whose VERSION stops earlier has no part in
    // them and is skipped, rather than failing the caller's GC or STATUS.
    assert.equal(execPlugin("oldie", { command: "GC", cniPath: [bin], conf: newer, env }), undefined);
    assert.equal(execPlugin("oldie", { command: "STATUS", cniPath: [bin], conf: newer, env }), undefined);
    // One that fails STATUS without showing it predates it keeps its error.
    assertCniError(() => execPlugin("busy", { command: "STATUS", cniPath: [bin], conf: newer, env }), 11, /^store busy$/);
  });
});

describe("findPlugin", () => {
  it("takes the first executable regular file along CNI_PATH", () => {
    const path = [join(root, "missing"), "", join(root, "noexec"), join(root, "exec")];
    assert.equal(findPlugin("shadowed", path), join(root, "exec", "shadowed"));
  });

  it("reports a missing plugin as InvalidConfig, naming it and the path", () => {
    const err = assertCniError(() => findPlugin("nonesuch", [bin]), ErrorCode.InvalidConfig, /"nonesuch"/);
    assert.match(err.message, new RegExp(bin));
    assertCniError(() => findPlugin("adir", [join(root, "exec")]), ErrorCode.InvalidConfig);
    assertCniError(() => findPlugin("recorder", []), ErrorCode.InvalidConfig);
  });

  it("refuses types that are paths", () => {
    for (const type of ["../bin/recorder", "/bin/sh", "sub/dir", "..", ".", ""]) {
      assertCniError(() => execPlugin(type, { command: "ADD", cniPath: [bin], conf, env }), ErrorCode.InvalidConfig);
    }
  });
});

describe("the reference plugins", () => {
  const reference = "/usr/lib/cni";
  const available = existsSync(join(reference, "host-local"));

  it("host-local answers VERSION through the exec path", { skip: !available && "containernetworking-plugins not installed" }, () => {
    const info = queryPluginVersions("host-local", { cniPath: [reference], env: {}, cniVersion: "1.0.0" });
    assert.equal(info.cniVersion, "1.0.0");
    assert.ok(info.supportedVersions.includes("0.4.0"));
  });

  it("host-local allocates and releases through ADD and DEL (files only, no kernel)", { skip: !available && "containernetworking-plugins not installed" }, () => {
    const dataDir = join(root, "host-local");
    // 1.1.0 on purpose: Debian's host-local 1.1.1 stops at 1.0.0, so this also exercises the fallback.
    const ipamConf = { cniVersion: "1.1.0", name: "pnt-cni-test", type: "podnet", ipam: { type: "host-local", subnet: "10.123.0.0/24", dataDir } };
    const hostEnv = { ...env, CNI_PATH: reference };
    const result = execPlugin("host-local", { command: "ADD", cniPath: [reference], conf: ipamConf, env: hostEnv });
    assert.deepEqual(result?.ips, [{ address: "10.123.0.2/24", gateway: "10.123.0.1" }]);
    assert.ok(readdirSync(join(dataDir, "pnt-cni-test")).includes("10.123.0.2"));
    execPlugin("host-local", { command: "DEL", cniPath: [reference], conf: ipamConf, env: hostEnv });
    assert.ok(!readdirSync(join(dataDir, "pnt-cni-test")).includes("10.123.0.2"));
  });
});
