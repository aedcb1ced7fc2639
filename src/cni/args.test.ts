import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { parseCniArgs, rejectUnknownArgs } from "./args.ts";
import { assertCniError } from "./test-helpers.ts";
import { ErrorCode } from "./types.ts";

describe("parseCniArgs", () => {
  it("treats an absent or empty CNI_ARGS as no arguments", () => {
    assert.deepEqual(parseCniArgs(undefined), { ignoreUnknown: false, raw: {} });
    assert.deepEqual(parseCniArgs(""), { ignoreUnknown: false, raw: {} });
  });

  it("reads what podman sends", () => {
    const args = parseCniArgs("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.88.0.5;MAC=02:42:AC:11:00:02");
    assert.equal(args.ignoreUnknown, true);
    assert.deepEqual(args.ip, ["10.88.0.5"]);
    assert.equal(args.mac, "02:42:ac:11:00:02");
    assert.equal(args.k8sPodName, "web");
  });

  it("reads what containerd sends", () => {
    const args = parseCniArgs(
      "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx-1;K8S_POD_INFRA_CONTAINER_ID=4f2a9c;K8S_POD_UID=5b1e-77",
    );
    assert.equal(args.k8sPodNamespace, "default");
    assert.equal(args.k8sPodName, "nginx-1");
    assert.equal(args.k8sPodInfraContainerId, "4f2a9c");
    assert.equal(args.k8sPodUid, "5b1e-77");
    assert.equal(args.ip, undefined);
    assert.equal(args.mac, undefined);
  });

  it("splits IP= on commas, IPv4 and IPv6 alike", () => {
    assert.deepEqual(parseCniArgs("IP=10.1.0.7,fd00::7").ip, ["10.1.0.7", "fd00::7"]);
  });

  it("rejects an invalid address in IP=", () => {
    assertCniError(() => parseCniArgs("IP=10.1.0.300"), ErrorCode.InvalidEnv, /IP=/);
    assertCniError(() => parseCniArgs("IP=10.1.0.7,"), ErrorCode.InvalidEnv, /IP=/);
    assertCniError(() => parseCniArgs("IP=10.1.0.0/24"), ErrorCode.InvalidEnv, /IP=/);
  });

  it("normalises MAC= to lower case with colons and rejects other shapes", () => {
    assert.equal(parseCniArgs("MAC=02-42-AC-11-00-02").mac, "02:42:ac:11:00:02");
    assertCniError(() => parseCniArgs("MAC=02:42:ac:11:00"), ErrorCode.InvalidEnv, /MAC/);
    assertCniError(() => parseCniArgs("MAC=02:42-ac:11:00:02"), ErrorCode.InvalidEnv, /MAC/);
    assertCniError(() => parseCniArgs("MAC=zz:42:ac:11:00:02"), ErrorCode.InvalidEnv, /MAC/);
  });

  it("reads IgnoreUnknown as libcni's boolean", () => {
    for (const value of ["1", "true", "TRUE", "True"]) assert.equal(parseCniArgs(`IgnoreUnknown=${value}`).ignoreUnknown, true);
    for (const value of ["0", "false", "FALSE", ""]) assert.equal(parseCniArgs(`IgnoreUnknown=${value}`).ignoreUnknown, false);
    assertCniError(() => parseCniArgs("IgnoreUnknown=yes"), ErrorCode.InvalidEnv, /IgnoreUnknown/);
  });

  it("keeps unknown keys in raw; rejectUnknownArgs refuses them unless IgnoreUnknown is true", () => {
    const args = parseCniArgs("FOO=bar;K8S_POD_NAME=x");
    assert.equal(args.ignoreUnknown, false);
    assert.deepEqual(args.raw, { FOO: "bar", K8S_POD_NAME: "x" });
    assertCniError(() => rejectUnknownArgs(args), ErrorCode.InvalidEnv, /unknown args \["FOO"\]/);
    rejectUnknownArgs(parseCniArgs("FOO=bar;IgnoreUnknown=1"));
    rejectUnknownArgs(parseCniArgs("IP=10.0.0.2;MAC=02:00:00:00:00:01;K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=d"));
  });

  it("rejects a pair without a key or without '=' as InvalidEnv", () => {
    assertCniError(() => parseCniArgs("FOO"), ErrorCode.InvalidEnv, /invalid pair/);
    assertCniError(() => parseCniArgs("=bar"), ErrorCode.InvalidEnv, /invalid pair/);
    assertCniError(() => parseCniArgs("A=1;B"), ErrorCode.InvalidEnv, /invalid pair/);
  });

  it("skips empty segments and splits only at the first '='", () => {
    assert.deepEqual(parseCniArgs("A=1;;B=x=y;").raw, { A: "1", B: "x=y" });
  });

  it("lets the last of repeated keys win", () => {
    assert.equal(parseCniArgs("K8S_POD_NAME=a;K8S_POD_NAME=b").k8sPodName, "b");
  });

  it("treats __proto__ as an ordinary key", () => {
    const args = parseCniArgs("__proto__=x");
    assert.equal(Object.getPrototypeOf(args.raw), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(args.raw, "__proto__")?.value, "x");
  });

  it("round-trips any set of well-formed pairs through raw (property)", () => {
    const key = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,11}$/).filter((k) => !["IP", "MAC", "IgnoreUnknown"].includes(k));
    const value = fc.stringMatching(/^[A-Za-z0-9_.=\/-]{0,12}$/);
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 6 }), (pairs) => {
        const raw = Object.entries(pairs).map(([k, v]) => `${k}=${v}`).join(";");
        assert.deepEqual(parseCniArgs(raw).raw, Object.fromEntries(Object.entries(pairs)));
      }),
    );
  });

  it("rejects every segment that lacks '=' (property)", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9_]{1,12}$/), (segment) => {
        assertCniError(() => parseCniArgs(`A=1;${segment}`), ErrorCode.InvalidEnv);
      }),
    );
  });
});
