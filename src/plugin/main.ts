// Entry point of the full podnet CNI executable (dist/cni/podnet-plugin). One file serves both plugins and
// picks by the name it was run under, as busybox does: `podnet-ipam` (a hard link or copy of the
// same file) answers as the IPAM plugin, any other name as the bridge plugin. One executable
// halves the install: each copy of a Bun-compiled program carries the whole runtime.
//
// `podnet serve --socket PATH` runs the resident per-node service instead (service.ts). Runtimes
// do not exec this file directly when the service is used: they exec the forwarder (forwarder.c,
// installed as `podnet`), which sends the call to the service and execs this file, installed as
// `podnet-plugin`, only when the service cannot answer. This file itself never forwards. The
// plugin modules are loaded with import() on first use, from their own chunks of the executable
// (scripts/build.mjs: --splitting), so the IPAM plugin never loads the bridge's.
import { writeSync } from "node:fs";
import { flushTrace, mark } from "../cni/trace.ts"; // first, so its mark is the bundle's first statement
import type { PluginHandlers } from "../cni/skel.ts";
import { pluginForName } from "./dispatch.ts";

/** The bridge verbs, with every error from below the plugin turned into a CNI error (errors.ts). */
async function bridgeHandlers(): Promise<PluginHandlers> {
  const [{ bridgePlugin }, { asCniError }, { mapHandlerErrors }] = await Promise.all([import("./bridge.ts"), import("./errors.ts"), import("../cni/skel.ts")]);
  return mapHandlerErrors(bridgePlugin, asCniError);
}

function finish(code: number): never {
  mark("answer written");
  flushTrace();
  process.exit(code);
}

function writeAll(fd: number, text: string): void {
  const bytes = new TextEncoder().encode(text);
  for (let offset = 0; offset < bytes.length; ) offset += writeSync(fd, bytes, offset);
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args[0] === "serve") {
    const options = new Map<string, string>();
    for (let i = 1; i + 1 < args.length; i += 2) options.set(args[i]!, args[i + 1]!);
    const socket = options.get("--socket");
    // Worker threads for every DEL, and for other calls while the main thread is busy: as many as
    // runtimes commonly run calls at once (8 in bench:cni), since a DEL is mostly the kernel's
    // wait, and fewer threads would queue what the kernel could overlap.
    const workers = Number(options.get("--workers") ?? "8");
    const requestLog = options.get("--request-log");
    const known = new Set(["--socket", "--workers", "--request-log"]);
    if (!socket || !socket.startsWith("/") || !Number.isInteger(workers) || workers < 0 || args.length % 2 === 0 || [...options.keys()].some((k) => !known.has(k)) || (requestLog !== undefined && !requestLog.startsWith("/"))) {
      writeAll(2, "usage: podnet serve --socket /absolute/path.sock [--workers N (default 8; 0: everything on the main thread)] [--request-log /absolute/file]\n");
      return 2;
    }
    await (await import("./service.ts")).serve(socket, await bridgeHandlers(), workers, requestLog);
    writeAll(2, `podnet: serving CNI requests on ${socket} with ${workers} worker threads\n`);
    return -1; // keep running
  }
  mark("modules loaded");
  if (pluginForName(process.argv0) === "ipam") {
    const [skel, ipam] = await Promise.all([import("../cni/skel.ts"), import("../ipam/plugin.ts")]);
    return skel.runPlugin(ipam.ipamPlugin, "podnet-ipam");
  }
  return (await import("../cni/skel.ts")).runPlugin(await bridgeHandlers(), "podnet bridge plugin");
}

void main().then((code) => {
  if (code >= 0) finish(code);
});
