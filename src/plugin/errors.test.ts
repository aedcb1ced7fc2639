import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mapHandlerErrors, type PluginContext, type PluginHandlers } from "../cni/skel.ts";
import { CniError, ErrorCode } from "../cni/types.ts";
import { SysError } from "../kernel/libc.ts";
import { KernelError } from "../kernel/netlink/socket.ts";
import { NftError } from "../kernel/nft.ts";
import { asCniError } from "./errors.ts";

function mapped(err: unknown): CniError {
  const result = asCniError(err);
  assert.ok(result instanceof CniError, `not mapped: ${String(err)}`);
  return result;
}

describe("asCniError", () => {
  it("a kernel refusal over netlink is Kernel (101) with the symbolic errno", () => {
    const error = mapped(new KernelError("add link pn0123", 17));
    assert.deepEqual([error.code, error.details], [ErrorCode.Kernel, "errno EEXIST"]);
    assert.match(error.message, /^add link pn0123: /);
  });

  it("a failed system call is Kernel (101) with the errno and the call", () => {
    const error = mapped(new SysError("setns", 22, "/proc/self/ns/uts"));
    assert.deepEqual([error.code, error.details], [ErrorCode.Kernel, "errno EINVAL from setns"]);
    assert.match(error.message, /setns \/proc\/self\/ns\/uts/);
  });

  it("nft failing is Nftables (104), saying whether it ran", () => {
    const refused = mapped(new NftError("nft -f /tmp/x", 1, "Error: Could not process rule"));
    assert.deepEqual([refused.code, refused.details], [ErrorCode.Nftables, "nft exited with status 1"]);
    assert.match(refused.message, /Could not process rule/);
    assert.equal(mapped(new NftError("nft -f /tmp/x", null, "spawnSync nft ENOENT")).details, "nft could not be run");
  });

  it("leaves CniErrors and podnet bugs alone", () => {
    const cni = new CniError(ErrorCode.InvalidConfig, "bad");
    assert.equal(asCniError(cni), cni);
    const bug = new TypeError("x is undefined");
    assert.equal(asCniError(bug), bug);
  });
});

describe("mapHandlerErrors", () => {
  it("passes every verb's failure, sync or async, through the map, and results through untouched", async () => {
    const ctx = {} as PluginContext;
    const handlers: PluginHandlers = {
      add: () => ({ cniVersion: "1.1.0" }),
      del: () => {
        throw new SysError("setns", 22);
      },
      check: async () => {
        throw new KernelError("route", 3);
      },
      status: () => undefined,
      gc: async () => {
        throw new NftError("nft", 1, "no");
      },
    };
    const wrapped = mapHandlerErrors(handlers, asCniError);
    assert.deepEqual(await wrapped.add(ctx), { cniVersion: "1.1.0" });
    await wrapped.status(ctx);
    await assert.rejects(async () => wrapped.del(ctx), (err: CniError) => err.code === ErrorCode.Kernel);
    await assert.rejects(async () => wrapped.check(ctx), (err: CniError) => err.code === ErrorCode.Kernel && err.details === "errno ESRCH");
    await assert.rejects(async () => wrapped.gc(ctx), (err: CniError) => err.code === ErrorCode.Nftables);
  });
});
