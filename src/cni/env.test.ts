import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { interfaceNameProblem, parseEnv } from "./env.ts";
import { assertCniError } from "./test-helpers.ts";
import { ErrorCode } from "./types.ts";

const attachment = { CNI_CONTAINERID: "c0ffee", CNI_NETNS: "/run/netns/pod1", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin:/usr/lib/cni" };

describe("parseEnv", () => {
  it("reads a complete ADD environment", () => {
    const env = parseEnv({ CNI_COMMAND: "ADD", ...attachment, CNI_ARGS: "K8S_POD_NAME=web" });
    assert.equal(env.command, "ADD");
    assert.equal(env.containerId, "c0ffee");
    assert.equal(env.netns, "/run/netns/pod1");
    assert.equal(env.ifname, "eth0");
    assert.equal(env.args.k8sPodName, "web");
    assert.deepEqual(env.path, ["/opt/cni/bin", "/usr/lib/cni"]);
  });

  it("rejects a missing or empty CNI_COMMAND, naming it", () => {
    assertCniError(() => parseEnv({ ...attachment }), ErrorCode.InvalidEnv, /CNI_COMMAND/);
    assertCniError(() => parseEnv({ CNI_COMMAND: "", ...attachment }), ErrorCode.InvalidEnv, /CNI_COMMAND/);
  });

  it("rejects an unknown verb, naming it", () => {
    assertCniError(() => parseEnv({ CNI_COMMAND: "INIT", ...attachment }), ErrorCode.InvalidEnv, /unknown CNI_COMMAND: INIT/);
    assertCniError(() => parseEnv({ CNI_COMMAND: "add", ...attachment }), ErrorCode.InvalidEnv, /unknown CNI_COMMAND: add/);
  });

  for (const command of ["ADD", "CHECK"]) {
    it(`${command} requires CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME and names each missing one`, () => {
      assertCniError(() => parseEnv({ CNI_COMMAND: command }), ErrorCode.InvalidEnv, /\[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME\]/);
      assertCniError(() => parseEnv({ CNI_COMMAND: command, ...attachment, CNI_NETNS: "" }), ErrorCode.InvalidEnv, /\[CNI_NETNS\]/);
      assertCniError(() => parseEnv({ CNI_COMMAND: command, ...attachment, CNI_IFNAME: undefined }), ErrorCode.InvalidEnv, /\[CNI_IFNAME\]/);
    });
  }

  it("DEL tolerates an empty CNI_NETNS but needs the container ID and interface", () => {
    const env = parseEnv({ CNI_COMMAND: "DEL", ...attachment, CNI_NETNS: "" });
    assert.equal(env.netns, "");
    assertCniError(() => parseEnv({ CNI_COMMAND: "DEL", CNI_IFNAME: "eth0" }), ErrorCode.InvalidEnv, /\[CNI_CONTAINERID\]/);
    assertCniError(() => parseEnv({ CNI_COMMAND: "DEL", CNI_CONTAINERID: "x" }), ErrorCode.InvalidEnv, /\[CNI_IFNAME\]/);
  });

  for (const command of ["STATUS", "GC", "VERSION"]) {
    it(`${command} needs only CNI_COMMAND and ignores attachment variables`, () => {
      const env = parseEnv({ CNI_COMMAND: command });
      assert.equal(env.command, command);
      assert.deepEqual(env.path, []);
      // Garbage in attachment variables must not matter to a verb that has no attachment.
      parseEnv({ CNI_COMMAND: command, CNI_CONTAINERID: "-bad", CNI_IFNAME: "a/b", CNI_ARGS: "garbage" });
    });
  }

  it("drops empty entries of CNI_PATH", () => {
    assert.deepEqual(parseEnv({ CNI_COMMAND: "VERSION", CNI_PATH: ":/a::/b:" }).path, ["/a", "/b"]);
  });

  it("refuses unknown CNI_ARGS keys without IgnoreUnknown on ADD and CHECK, never on DEL", () => {
    for (const command of ["ADD", "CHECK"]) {
      assertCniError(() => parseEnv({ CNI_COMMAND: command, ...attachment, CNI_ARGS: "FOO=1" }), ErrorCode.InvalidEnv, /unknown args/);
      assert.equal(parseEnv({ CNI_COMMAND: command, ...attachment, CNI_ARGS: "IgnoreUnknown=1;FOO=1" }).args.raw.FOO, "1");
    }
    assert.equal(parseEnv({ CNI_COMMAND: "DEL", ...attachment, CNI_ARGS: "FOO=1" }).args.raw.FOO, "1");
  });

  it("passes CNI_ARGS errors through as InvalidEnv", () => {
    assertCniError(() => parseEnv({ CNI_COMMAND: "ADD", ...attachment, CNI_ARGS: "oops" }), ErrorCode.InvalidEnv, /CNI_ARGS/);
  });

  it("rejects container IDs that break libcni's rule", () => {
    for (const id of ["-lead", "_lead", ".lead", "has space", "semi;colon", "slash/y", "ünïcode"]) {
      assertCniError(() => parseEnv({ CNI_COMMAND: "ADD", ...attachment, CNI_CONTAINERID: id }), ErrorCode.InvalidEnv, /CNI_CONTAINERID/);
    }
  });

  it("accepts every container ID matching ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ (property)", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,70}$/), (id) => {
        assert.equal(parseEnv({ CNI_COMMAND: "DEL", ...attachment, CNI_CONTAINERID: id }).containerId, id);
      }),
    );
  });

  it("rejects every container ID holding a character outside the rule (property)", () => {
    const good = fc.stringMatching(/^[a-zA-Z0-9_.-]{0,10}$/);
    const bad = fc.string({ minLength: 1, maxLength: 1, unit: "binary" }).filter((c) => !/[a-zA-Z0-9_.-]/.test(c));
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9]$/), good, bad, good, (first, before, forbidden, after) => {
        const id = `${first}${before}${forbidden}${after}`;
        assertCniError(() => parseEnv({ CNI_COMMAND: "ADD", ...attachment, CNI_CONTAINERID: id }), ErrorCode.InvalidEnv);
      }),
    );
  });

  it("rejects the interface names the kernel would refuse", () => {
    for (const ifname of [".", "..", "eth/0", "eth:0", "eth 0", "eth\t0", "abcdefghijklmnop", "ééééééééé"]) {
      assertCniError(() => parseEnv({ CNI_COMMAND: "ADD", ...attachment, CNI_IFNAME: ifname }), ErrorCode.InvalidEnv, /CNI_IFNAME/);
    }
    assert.equal(parseEnv({ CNI_COMMAND: "ADD", ...attachment, CNI_IFNAME: "abcdefghijklmno" }).ifname, "abcdefghijklmno");
    assert.equal(parseEnv({ CNI_COMMAND: "ADD", ...attachment, CNI_IFNAME: "net1.100" }).ifname, "net1.100");
  });

  it("accepts 1 to 15 characters without '/', ':' or whitespace, except '.' and '..' (property)", () => {
    const safe = fc.stringMatching(/^[a-zA-Z0-9_.@#%+=-]{1,15}$/).filter((n) => n !== "." && n !== "..");
    fc.assert(fc.property(safe, (ifname) => assert.equal(interfaceNameProblem(ifname), undefined)));
  });

  it("rejects any name containing '/', ':' or whitespace (property)", () => {
    const part = fc.stringMatching(/^[a-z0-9]{0,6}$/);
    fc.assert(
      fc.property(part, fc.constantFrom("/", ":", " ", "\t", "\n", "\r", "\v", "\f", "\u00a0"), part, (a, forbidden, b) => {
        assert.notEqual(interfaceNameProblem(`${a}${forbidden}${b}`), undefined);
      }),
    );
  });

  it("rejects any name longer than 15 bytes (property)", () => {
    fc.assert(fc.property(fc.stringMatching(/^[a-z0-9]{16,40}$/), (ifname) => assert.match(interfaceNameProblem(ifname) ?? "", /longer/)));
  });
});
