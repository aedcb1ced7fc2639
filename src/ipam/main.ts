// podnet-ipam: the standalone IPAM plugin (built to dist/cni/podnet-ipam), so that other
// plugins, such as the reference `bridge`, can use podnet's address management.
// Do not import this file: it runs the plugin and exits. Import ipam.ts instead.
import { runPlugin, type PluginContext, type PluginHandlers } from "../cni/skel.ts";
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

void runPlugin(handlers, "podnet-ipam").then((code) => process.exit(code));
