// `podnet serve --socket PATH`: the resident per-node service. It runs the same bridge plugin code
// as the exec'd binary, but warm: no runtime start, no module loading, no FFI set-up, JIT-compiled
// after the first pods. The exec'd plugin forwards ADD and CHECK here (forward.ts) when its config
// names the socket; the service declines (a `local` reply) whatever it cannot answer exactly as
// the exec'd plugin would, and the plugin then does the work itself. DEL is always declined, but
// in arrival order, which makes it a fence behind any ADD still in progress (service-protocol.ts).
//
// Requests are answered one at a time, in arrival order: every handler is synchronous, and the IPAM
// store's flock(2) would deadlock against itself if two requests of one process overlapped.
// Crash safety is the plugin's own: a service killed mid-ADD leaves what a plugin killed at the
// same point leaves, and the plugin, seeing no complete reply, redoes the ADD, which is idempotent
// (the attachment's reserved address is handed back, a stale host veth is replaced).
import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import { runPlugin, type PluginHandlers, type PluginIo } from "../cni/skel.ts";
import { flushTrace, mark } from "../cni/trace.ts";
import { netnsIdentity } from "./forward.ts";
import { parseRequest, SERVED_COMMANDS, type ServiceReply } from "./service-protocol.ts";

/** IPAM types the service serves: in-process ones. A delegated IPAM would run with the service's environment. */
const SERVED_IPAM_TYPES = new Set(["podnet-ipam"]);

function ipamTypeOf(stdin: string): unknown {
  try {
    const conf: unknown = JSON.parse(stdin);
    return typeof conf === "object" && conf !== null ? (conf as { ipam?: { type?: unknown } }).ipam?.type : undefined;
  } catch {
    return undefined;
  }
}

/** One request line to one reply; never throws. */
export async function answer(line: string, handlers: PluginHandlers, ownNetns: string): Promise<ServiceReply> {
  let request;
  try {
    request = parseRequest(line);
  } catch (error) {
    return { local: true, reason: `bad request: ${(error as Error).message}` };
  }
  if (request.netns !== ownNetns) return { local: true, reason: `the caller's network namespace ${request.netns} is not the service's ${ownNetns}` };
  const command = request.env.CNI_COMMAND ?? "";
  if (!SERVED_COMMANDS.has(command)) return { local: true, reason: `${command || "no command"} runs in the plugin` };
  const ipamType = ipamTypeOf(request.stdin);
  // Malformed stdin is served: runPlugin reports it exactly as the exec'd plugin would.
  if (ipamType !== undefined && !SERVED_IPAM_TYPES.has(String(ipamType))) return { local: true, reason: `IPAM type ${String(ipamType)} is exec'd, not served` };
  let stdout = "";
  let stderr = "";
  const stdin = new TextEncoder().encode(request.stdin);
  const io: PluginIo = {
    env: request.env,
    readStdin: () => stdin,
    writeStdout: (s) => {
      stdout += s;
    },
    writeStderr: (s) => {
      stderr += s;
    },
  };
  mark("service start");
  const exitCode = await runPlugin(handlers, "podnet bridge plugin (service)", io);
  mark("service done");
  flushTrace(`service ${command}`);
  return { exitCode, stdout, stderr };
}

function removeStaleSocket(path: string): void {
  try {
    if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket; not removing it`);
    unlinkSync(path);
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOENT") throw error;
  }
}

interface Connection {
  received: string;
  answered: boolean;
  pending: Uint8Array;
}

/** Listens on socketPath until the process is killed; returns once listening. */
export function serve(socketPath: string, handlers: PluginHandlers): void {
  const ownNetns = netnsIdentity();
  removeStaleSocket(socketPath);
  let queue: Promise<void> = Promise.resolve();
  const flush = (socket: { write(data: Uint8Array): number; end(): void; data: Connection }): void => {
    const conn = socket.data;
    if (conn.pending.length === 0) return;
    const written = socket.write(conn.pending);
    if (written > 0) conn.pending = conn.pending.subarray(written);
    if (conn.pending.length === 0) socket.end();
  };
  Bun.listen<Connection>({
    unix: socketPath,
    socket: {
      open(socket) {
        socket.data = { received: "", answered: false, pending: new Uint8Array() };
      },
      data(socket, chunk) {
        const conn = socket.data;
        conn.received += new TextDecoder().decode(chunk);
        const newline = conn.received.indexOf("\n");
        if (newline < 0 || conn.answered) return;
        conn.answered = true;
        const line = conn.received.slice(0, newline);
        queue = queue
          .then(async () => {
            const reply = await answer(line, handlers, ownNetns);
            conn.pending = new TextEncoder().encode(`${JSON.stringify(reply)}\n`);
            flush(socket);
          })
          // A caller that hung up cannot be answered; the next request must still be served.
          .catch(() => undefined);
      },
      drain: flush,
    },
  });
  // Only root may ask: the service creates links and reserves addresses on anyone's behalf.
  chmodSync(socketPath, 0o600);
}
