// Entry point of the podnet CNI executable (dist/cni/podnet). One file serves both plugins and
// picks by the name it was run under, as busybox does: `podnet-ipam` (a hard link or copy of the
// same file) answers as the IPAM plugin, any other name as the bridge plugin. One executable
// halves the install: each copy of a Bun-compiled program carries the whole runtime.
//
// `podnet serve --socket PATH` runs the resident per-node service instead (service.ts). When the
// config names that socket (`serviceSocket`), the bridge plugin forwards ADD and CHECK to it and
// does the work itself only if the service does not answer; DEL asks first and then runs here
// (service-protocol.ts says why). The plugin modules are therefore loaded with import() on first
// use, from their own chunks of the executable (scripts/build.mjs: --splitting): a forwarded call
// neither loads nor initialises them.
import { writeSync } from "node:fs";
import { flushTrace, mark } from "../cni/trace.ts"; // first, so its mark is the bundle's first statement
import type { PluginHandlers, PluginIo } from "../cni/skel.ts";
import { pluginForName } from "./dispatch.ts";
import { forward, netnsIdentity } from "./forward.ts";
import { FORWARDED_COMMANDS, FORWARDED_VARIABLES, SERVICE_SOCKET_KEY, type ServiceRequest } from "./service-protocol.ts";

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

/** The socket named by the config, if stdin is a JSON object that names one; never throws. */
function serviceSocketOf(stdin: Uint8Array): string | undefined {
  try {
    const conf: unknown = JSON.parse(new TextDecoder().decode(stdin));
    const socket = typeof conf === "object" && conf !== null ? (conf as Record<string, unknown>)[SERVICE_SOCKET_KEY] : undefined;
    return typeof socket === "string" && socket.startsWith("/") ? socket : undefined;
  } catch {
    return undefined;
  }
}

async function runBridge(): Promise<number> {
  const skel = await import("../cni/skel.ts");
  const command = process.env.CNI_COMMAND ?? "";
  if (!FORWARDED_COMMANDS.has(command)) return skel.runPlugin(await bridgeHandlers(), "podnet bridge plugin");
  // stdin is read once here, as the skel reads it; the local path below gets the same bytes.
  const processIo = skel.processIo();
  let stdin: Uint8Array;
  try {
    stdin = processIo.readStdin();
  } catch {
    // The skel reports an unreadable stdin in the spec's terms when it tries again.
    return skel.runPlugin(await bridgeHandlers(), "podnet bridge plugin");
  }
  const socket = serviceSocketOf(stdin);
  if (socket !== undefined) {
    const env: Record<string, string> = {};
    for (const name of FORWARDED_VARIABLES) {
      const value = process.env[name];
      if (value !== undefined) env[name] = value;
    }
    const request: ServiceRequest = { env, stdin: new TextDecoder().decode(stdin), netns: netnsIdentity() };
    mark("forwarding");
    const reply = await forward(socket, request);
    mark("service replied");
    if (reply && !reply.local) {
      if (reply.stderr) writeAll(2, reply.stderr);
      writeAll(1, reply.stdout);
      return reply.exitCode;
    }
  }
  const io: PluginIo = { ...processIo, readStdin: () => stdin };
  return skel.runPlugin(await bridgeHandlers(), "podnet bridge plugin", io);
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args[0] === "serve") {
    const options = new Map<string, string>();
    for (let i = 1; i + 1 < args.length; i += 2) options.set(args[i]!, args[i + 1]!);
    const socket = options.get("--socket");
    const workers = Number(options.get("--workers") ?? "4");
    if (!socket || !socket.startsWith("/") || !Number.isInteger(workers) || workers < 0 || args.length % 2 === 0) {
      writeAll(2, "usage: podnet serve --socket /absolute/path.sock [--workers N (default 4; 0: serve on the main thread)]\n");
      return 2;
    }
    (await import("./service.ts")).serve(socket, await bridgeHandlers(), workers);
    writeAll(2, `podnet: serving CNI requests on ${socket} with ${workers} worker threads\n`);
    return -1; // keep running
  }
  mark("modules loaded");
  if (pluginForName(process.argv0) === "ipam") {
    const [skel, ipam] = await Promise.all([import("../cni/skel.ts"), import("../ipam/plugin.ts")]);
    return skel.runPlugin(ipam.ipamPlugin, "podnet-ipam");
  }
  return runBridge();
}

void main().then((code) => {
  if (code >= 0) finish(code);
});
