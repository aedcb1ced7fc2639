// libnftables (Debian's libnftables1, `libnftables.so.1`) called in-process, instead of starting an
// `nft` process: the same parser and the same atomic batch, without the fork and exec. Through
// koffi under Node and bun:ffi under Bun, as libc.ts; loaded on first use, so nothing of it
// reaches a process that never calls it.
//
// setns(2) moves one thread, and libnftables talks to the kernel over a netlink socket from the
// calling thread. For another namespace, the context is created and every command is run inside
// withNetns, synchronously, so nothing else runs while the thread is switched.

import { loadKoffi } from "../libc.ts";
import { withNetns } from "../netns.ts";

const NFT_CTX_DEFAULT = 0;
const NFT_CTX_OUTPUT_JSON = 1 << 4;

interface Binding {
  ctxNew(flags: number): unknown;
  ctxFree(ctx: unknown): void;
  bufferOutput(ctx: unknown): number;
  bufferError(ctx: unknown): number;
  outputBuffer(ctx: unknown): string;
  errorBuffer(ctx: unknown): string;
  setOutputFlags(ctx: unknown, flags: number): void;
  run(ctx: unknown, script: string): number;
}

let binding: Binding | undefined;

const LIBNFTABLES = "libnftables.so.1";

function bindKoffi(): Binding {
  const koffi = loadKoffi();
  const lib = koffi.load(LIBNFTABLES);
  koffi.opaque("nft_ctx");
  return {
    ctxNew: lib.func("nft_ctx *nft_ctx_new(uint32_t flags)"),
    ctxFree: lib.func("void nft_ctx_free(nft_ctx *ctx)"),
    bufferOutput: lib.func("int nft_ctx_buffer_output(nft_ctx *ctx)"),
    bufferError: lib.func("int nft_ctx_buffer_error(nft_ctx *ctx)"),
    outputBuffer: lib.func("const char *nft_ctx_get_output_buffer(nft_ctx *ctx)"),
    errorBuffer: lib.func("const char *nft_ctx_get_error_buffer(nft_ctx *ctx)"),
    setOutputFlags: lib.func("void nft_ctx_output_set_flags(nft_ctx *ctx, uint32_t flags)"),
    run: lib.func("int nft_run_cmd_from_buffer(nft_ctx *ctx, const char *buf)"),
  };
}

function bindBun(): Binding {
  type BunFfi = typeof import("bun:ffi");
  // `require` exists inside ESM under Bun; Node never reaches this function.
  const ffi = require("bun:ffi") as BunFfi;
  const { FFIType } = ffi;
  const { symbols } = ffi.dlopen(LIBNFTABLES, {
    nft_ctx_new: { args: [FFIType.u32], returns: FFIType.ptr },
    nft_ctx_free: { args: [FFIType.ptr], returns: FFIType.void },
    nft_ctx_buffer_output: { args: [FFIType.ptr], returns: FFIType.i32 },
    nft_ctx_buffer_error: { args: [FFIType.ptr], returns: FFIType.i32 },
    nft_ctx_get_output_buffer: { args: [FFIType.ptr], returns: FFIType.cstring },
    nft_ctx_get_error_buffer: { args: [FFIType.ptr], returns: FFIType.cstring },
    nft_ctx_output_set_flags: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.void },
    nft_run_cmd_from_buffer: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  });
  type Ptr = import("bun:ffi").Pointer;
  return {
    ctxNew: (flags) => symbols.nft_ctx_new(flags),
    ctxFree: (ctx) => symbols.nft_ctx_free(ctx as Ptr),
    bufferOutput: (ctx) => symbols.nft_ctx_buffer_output(ctx as Ptr),
    bufferError: (ctx) => symbols.nft_ctx_buffer_error(ctx as Ptr),
    outputBuffer: (ctx) => String(symbols.nft_ctx_get_output_buffer(ctx as Ptr)),
    errorBuffer: (ctx) => String(symbols.nft_ctx_get_error_buffer(ctx as Ptr)),
    setOutputFlags: (ctx, flags) => symbols.nft_ctx_output_set_flags(ctx as Ptr, flags),
    run: (ctx, script) => symbols.nft_run_cmd_from_buffer(ctx as Ptr, Buffer.from(`${script}\0`)),
  };
}

function bind(): Binding {
  binding ??= typeof Bun !== "undefined" ? bindBun() : bindKoffi();
  return binding;
}

/** True when libnftables can be loaded here; loads it. */
export function libnftablesAvailable(): boolean {
  try {
    bind();
    return true;
  } catch {
    return false;
  }
}

export interface LibnftablesResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs commands (a script, or `list table …`) in a fresh context, created and used inside
 * `netnsPath` when given, else in the calling thread's namespace; `json` asks for JSON output, as
 * `nft -j`. A context opens its netlink socket when it is made, in the namespace of the thread that
 * makes it, so none is kept between calls: a cached one would keep talking to the namespace it was
 * made in, even after the caller switched (the plugin under withNetns), and would hold a deleted
 * namespace alive. A context costs about 0.2 ms.
 */
export function runLibnftables(script: string, netnsPath?: string, json = false): LibnftablesResult {
  const lib = bind();
  const call = (): LibnftablesResult => {
    const ctx = lib.ctxNew(NFT_CTX_DEFAULT);
    if (!ctx) throw new Error("libnftables: nft_ctx_new failed");
    try {
      lib.bufferOutput(ctx);
      lib.bufferError(ctx);
      if (json) lib.setOutputFlags(ctx, NFT_CTX_OUTPUT_JSON);
      const status = lib.run(ctx, script);
      return { status, stdout: lib.outputBuffer(ctx) ?? "", stderr: lib.errorBuffer(ctx) ?? "" };
    } finally {
      lib.ctxFree(ctx);
    }
  };
  return netnsPath === undefined ? call() : withNetns(netnsPath, call);
}
