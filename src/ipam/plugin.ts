// The podnet-ipam plugin's verbs, for the skel dispatcher. The one plugin executable serves them
// when it is run under the name `podnet-ipam` (src/plugin/main.ts); main.ts here is a standalone
// entry for building the IPAM plugin alone.
import { mapHandlerErrors, type PluginContext, type PluginHandlers } from "../cni/skel.ts";
import { CniError, ErrorCode } from "../cni/types.ts";
import { errnoName, SysError } from "../kernel/libc.ts";
import { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamStatus, openStoreFor, requestedIps } from "./ipam.ts";

function attachmentOf(ctx: PluginContext) {
  return { containerId: ctx.env.containerId, ifname: ctx.env.ifname };
}

const handlers: PluginHandlers = {
  add: (ctx) => ipamAdd(ctx.conf, attachmentOf(ctx), requestedIps(ctx), openStoreFor(ctx.conf)),
  del: (ctx) => ipamDel(ctx.conf, attachmentOf(ctx), openStoreFor(ctx.conf)),
  check: (ctx) => ipamCheck(ctx.conf, attachmentOf(ctx), openStoreFor(ctx.conf)),
  status: (ctx) => ipamStatus(ctx.conf, openStoreFor(ctx.conf)),
  gc: (ctx) => {
    ipamGc(ctx.conf, ctx.conf["cni.dev/valid-attachments"] ?? [], openStoreFor(ctx.conf));
  },
};

/** flock(2) on the store is this plugin's one system call: a refusal is Kernel (101), as in the bridge plugin (src/plugin/errors.ts). */
function asCniError(err: unknown): unknown {
  if (err instanceof SysError) return new CniError(ErrorCode.Kernel, err.message, `errno ${errnoName(err.errno)} from ${err.syscall}`);
  return err;
}

export const ipamPlugin: PluginHandlers = mapHandlerErrors(handlers, asCniError);
