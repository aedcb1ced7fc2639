import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { runPlugin, type PluginContext, type PluginHandlers, type PluginIo } from "./skel.ts";
import { CniError, ErrorCode, type CniResult } from "./types.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  calls: Array<{ verb: string; ctx: PluginContext }>;
}

const attachment = { CNI_CONTAINERID: "c0ffee", CNI_NETNS: "/run/netns/pod1", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" };

const RESULT: CniResult = {
  cniVersion: "1.1.0",
  interfaces: [{ name: "eth0", mac: "0a:58:0a:16:00:05", mtu: 1500, sandbox: "/run/netns/pod1" }],
  ips: [{ address: "10.22.0.5/24", gateway: "10.22.0.1", interface: 0 }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.22.0.1", priority: 5 }],
};

type Overrides = Partial<Record<keyof PluginHandlers, (ctx: PluginContext) => unknown>>;

async function run(env: Record<string, string | undefined>, stdin: string | object, overrides: Overrides = {}): Promise<Run> {
  const calls: Run["calls"] = [];
  let stdout = "";
  let stderr = "";
  const record = (verb: keyof PluginHandlers) => (ctx: PluginContext) => {
    calls.push({ verb, ctx });
    return overrides[verb]?.(ctx);
  };
  const handlers: PluginHandlers = {
    add: async (ctx) => {
      calls.push({ verb: "add", ctx });
      return (overrides.add ? await overrides.add(ctx) : RESULT) as CniResult;
    },
    del: record("del") as PluginHandlers["del"],
    check: record("check") as PluginHandlers["check"],
    status: record("status") as PluginHandlers["status"],
    gc: record("gc") as PluginHandlers["gc"],
  };
  const io: PluginIo = {
    env,
    readStdin: () => new TextEncoder().encode(typeof stdin === "string" ? stdin : JSON.stringify(stdin)),
    writeStdout: (s) => (stdout += s),
    writeStderr: (s) => (stderr += s),
  };
  const code = await runPlugin(handlers, "podnet test plugin", io);
  return { code, stdout, stderr, calls };
}

const conf = (version: string, extra: object = {}) => ({ cniVersion: version, name: "podnet", type: "podnet", ...extra });

function errorOf(r: Run): { cniVersion: string; code: number; msg: string; details: string } {
  assert.equal(r.code, 1, `expected failure, stdout: ${r.stdout}`);
  return JSON.parse(r.stdout);
}

describe("runPlugin: VERSION", () => {
  it("answers with the requested version and the supported list, calling no handler", async () => {
    const r = await run({ CNI_COMMAND: "VERSION" }, { cniVersion: "1.0.0" });
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.stdout), { cniVersion: "1.0.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
    assert.equal(r.calls.length, 0);
  });

  it("answers with empty, odd or unreadable stdin", async () => {
    assert.equal(JSON.parse((await run({ CNI_COMMAND: "VERSION" }, "")).stdout).cniVersion, "1.1.0");
    assert.equal(JSON.parse((await run({ CNI_COMMAND: "VERSION" }, "not json")).stdout).cniVersion, "1.1.0");
    let stdout = "";
    const code = await runPlugin({} as PluginHandlers, "x", {
      env: { CNI_COMMAND: "VERSION" },
      readStdin: () => {
        throw new Error("EBADF");
      },
      writeStdout: (s) => (stdout += s),
      writeStderr: () => undefined,
    });
    assert.equal(code, 0);
    assert.equal(JSON.parse(stdout).cniVersion, "1.1.0");
  });
});

describe("runPlugin: ADD", () => {
  it("passes validated env and conf to the handler and prints the result in the config's version", async () => {
    const r = await run({ CNI_COMMAND: "ADD", ...attachment, CNI_ARGS: "K8S_POD_NAME=web" }, conf("0.4.0"));
    assert.equal(r.code, 0);
    assert.equal(r.calls[0]?.ctx.env.args.k8sPodName, "web");
    assert.equal(r.calls[0]?.ctx.conf.name, "podnet");
    assert.ok(r.stdout.endsWith("\n"));
    assert.deepEqual(JSON.parse(r.stdout), {
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0", mac: "0a:58:0a:16:00:05", sandbox: "/run/netns/pod1" }],
      ips: [{ version: "4", address: "10.22.0.5/24", gateway: "10.22.0.1", interface: 0 }],
      routes: [{ dst: "0.0.0.0/0", gw: "10.22.0.1" }],
    });
  });

  it("prints a 1.1.0 result unchanged", async () => {
    const r = await run({ CNI_COMMAND: "ADD", ...attachment }, conf("1.1.0"));
    assert.deepEqual(JSON.parse(r.stdout), RESULT);
  });

  it("labels the output with the config's version whatever the handler wrote", async () => {
    const r = await run({ CNI_COMMAND: "ADD", ...attachment }, conf("1.0.0"), { add: () => ({ ...RESULT, cniVersion: "0.3.1" }) });
    assert.equal(JSON.parse(r.stdout).cniVersion, "1.0.0");
  });

  it("refuses to print a malformed handler result", async () => {
    const r = await run({ CNI_COMMAND: "ADD", ...attachment }, conf("1.1.0"), { add: () => ({ cniVersion: "1.1.0", ips: [{ address: "10.0.0.1" }] }) });
    const err = errorOf(r);
    assert.equal(err.code, ErrorCode.Internal);
    assert.match(err.msg, /invalid result/);
  });
});

describe("runPlugin: errors", () => {
  it("prints a handler's CniError in the config's version and exits 1", async () => {
    const r = await run({ CNI_COMMAND: "ADD", ...attachment }, conf("0.3.1"), {
      add: () => {
        throw new CniError(ErrorCode.TryAgainLater, "store locked", "retry");
      },
    });
    assert.deepEqual(errorOf(r), { cniVersion: "0.3.1", code: 11, msg: "store locked", details: "retry" });
  });

  it("turns a plain Error into code 999: message on stdout, stack only on stderr", async () => {
    const r = await run({ CNI_COMMAND: "DEL", ...attachment }, conf("1.1.0"), {
      del: () => {
        throw new TypeError("cannot read properties of undefined");
      },
    });
    const err = errorOf(r);
    assert.equal(err.code, 999);
    assert.equal(err.msg, "cannot read properties of undefined");
    assert.ok(!r.stdout.includes("skel.test.ts"), "no stack on stdout");
    assert.match(r.stderr, /skel\.test\.ts/);
    assert.equal(r.stdout.trim().split("\n").length, 1, "exactly one JSON line");
  });

  it("reports a missing CNI_COMMAND as InvalidEnv and shows the about line on stderr", async () => {
    const r = await run({ ...attachment }, conf("1.1.0"));
    const err = errorOf(r);
    assert.equal(err.code, ErrorCode.InvalidEnv);
    assert.match(err.msg, /CNI_COMMAND/);
    assert.match(r.stderr, /podnet test plugin/);
  });

  it("reports an unknown verb as InvalidEnv", async () => {
    assert.equal(errorOf(await run({ CNI_COMMAND: "INIT", ...attachment }, conf("1.1.0"))).code, ErrorCode.InvalidEnv);
  });

  it("reports undecodable config as Decode and invalid config as InvalidConfig, in the config's version when readable", async () => {
    assert.equal(errorOf(await run({ CNI_COMMAND: "ADD", ...attachment }, "{oops")).code, ErrorCode.Decode);
    const err = errorOf(await run({ CNI_COMMAND: "ADD", ...attachment }, { cniVersion: "0.4.0", type: "podnet" }));
    assert.deepEqual([err.code, err.cniVersion], [ErrorCode.InvalidConfig, "0.4.0"]);
  });

  it("reports an I/O failure on stdin as Io", async () => {
    let stdout = "";
    const code = await runPlugin({} as PluginHandlers, "x", {
      env: { CNI_COMMAND: "DEL", ...attachment },
      readStdin: () => {
        throw new Error("EIO");
      },
      writeStdout: (s) => (stdout += s),
      writeStderr: () => undefined,
    });
    assert.equal(code, 1);
    assert.equal(JSON.parse(stdout).code, ErrorCode.Io);
  });
});

describe("runPlugin: DEL, CHECK, STATUS, GC", () => {
  it("DEL prints nothing on success, even without a netns (containerd's second DEL)", async () => {
    const r = await run({ CNI_COMMAND: "DEL", ...attachment, CNI_NETNS: "" }, conf("1.1.0"));
    assert.deepEqual([r.code, r.stdout, r.calls.map((c) => c.verb)], [0, "", ["del"]]);
  });

  it("CHECK needs cniVersion 0.4.0 or later", async () => {
    const r = await run({ CNI_COMMAND: "CHECK", ...attachment }, conf("0.3.1", { prevResult: { cniVersion: "0.3.1" } }));
    assert.equal(errorOf(r).code, ErrorCode.IncompatibleVersion);
    assert.equal(r.calls.length, 0);
  });

  it("CHECK needs a prevResult", async () => {
    const r = await run({ CNI_COMMAND: "CHECK", ...attachment }, conf("1.0.0"));
    assert.equal(errorOf(r).code, ErrorCode.InvalidConfig);
    assert.equal(r.calls.length, 0);
  });

  it("CHECK hands the handler the prevResult in the 1.1 shape", async () => {
    const prevResult = { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.22.0.5/24" }] };
    const r = await run({ CNI_COMMAND: "CHECK", ...attachment }, conf("0.4.0", { prevResult }));
    assert.deepEqual([r.code, r.stdout], [0, ""]);
    assert.deepEqual(r.calls[0]?.ctx.conf.prevResult, { cniVersion: "1.1.0", ips: [{ address: "10.22.0.5/24" }] });
  });

  for (const verb of ["STATUS", "GC"]) {
    it(`${verb} needs cniVersion 1.1.0`, async () => {
      const r = await run({ CNI_COMMAND: verb }, conf("1.0.0", { "cni.dev/valid-attachments": [] }));
      const err = errorOf(r);
      assert.equal(err.code, ErrorCode.IncompatibleVersion);
      assert.match(err.msg, new RegExp(verb));
      assert.equal(r.calls.length, 0);
    });
  }

  it("STATUS passes the handler's verdict through (50: not ready)", async () => {
    assert.deepEqual(await run({ CNI_COMMAND: "STATUS" }, conf("1.1.0")).then((r) => [r.code, r.stdout]), [0, ""]);
    const r = await run({ CNI_COMMAND: "STATUS" }, conf("1.1.0"), {
      status: () => {
        throw new CniError(ErrorCode.NotReady, "range exhausted");
      },
    });
    assert.equal(errorOf(r).code, 50);
  });

  it("GC needs the attachment list and hands it over", async () => {
    assert.equal(errorOf(await run({ CNI_COMMAND: "GC" }, conf("1.1.0"))).code, ErrorCode.InvalidConfig);
    const list = [{ containerID: "c1", ifname: "eth0" }];
    const r = await run({ CNI_COMMAND: "GC" }, conf("1.1.0", { "cni.dev/attachments": list }));
    assert.equal(r.code, 0);
    assert.deepEqual(r.calls[0]?.ctx.conf["cni.dev/valid-attachments"], list);
  });
});

describe("runPlugin as a real process", () => {
  const fixture = fileURLToPath(new URL("./testdata/fixture-plugin.ts", import.meta.url));
  const bun = fileURLToPath(new URL("../../node_modules/@oven/bun-linux-x64/bin/bun", import.meta.url));
  const runtimes: Array<[string, string[]]> = [["node", [process.execPath, "--import", "tsx", fixture]]];
  if (existsSync(bun)) runtimes.push(["bun", [bun, fixture]]);

  for (const [name, [command, ...args]] of runtimes) {
    it(`works over real stdio under ${name}`, () => {
      const base = { PATH: process.env.PATH ?? "", ...attachment };
      const exec = (env: Record<string, string>, input: string) => spawnSync(command!, args, { env: { ...base, ...env }, input, encoding: "utf8" });

      const version = exec({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"0.4.0"}');
      assert.equal(version.status, 0, version.stderr);
      assert.equal(JSON.parse(version.stdout).cniVersion, "0.4.0");

      const add = exec({ CNI_COMMAND: "ADD" }, JSON.stringify(conf("0.3.1")));
      assert.equal(add.status, 0, add.stderr);
      assert.deepEqual(JSON.parse(add.stdout), {
        cniVersion: "0.3.1",
        interfaces: [{ name: "eth0", sandbox: "/run/netns/pod1" }],
        ips: [{ version: "4", address: "10.22.0.5/24", gateway: "10.22.0.1", interface: 0 }],
      });

      const del = exec({ CNI_COMMAND: "DEL" }, JSON.stringify(conf("1.1.0")));
      assert.equal(del.status, 1);
      assert.deepEqual(JSON.parse(del.stdout), { cniVersion: "1.1.0", code: 999, msg: "fixture DEL always fails", details: "" });
      assert.match(del.stderr, /fixture DEL always fails/);
    });
  }
});
