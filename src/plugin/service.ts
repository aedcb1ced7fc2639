// `podnet serve --socket PATH`: the resident per-node service. It runs the same bridge plugin code
// as the exec'd binary, but warm: no runtime start, no module loading, no FFI set-up, JIT-compiled
// after the first pods. The exec'd plugin forwards ADD and CHECK here (forward.ts) when its config
// names the socket; the service declines (a `local` reply) whatever it cannot answer exactly as
// the exec'd plugin would, and the plugin then does the work itself. DEL is always declined, but
// in arrival order, which makes it a fence behind any ADD still in progress (service-protocol.ts).
//
// Served requests run on worker threads (`--workers N`, default 4), so concurrent ADDs run at once
// as concurrent plugin processes would; with `--workers 0`, one at a time on the main thread.
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

/** The CNI command of a request line, or "" when it has none; never throws. */
function commandOf(line: string): string {
  try {
    const command = (JSON.parse(line) as { env?: { CNI_COMMAND?: unknown } }).env?.CNI_COMMAND;
    return typeof command === "string" ? command : "";
  } catch {
    return "";
  }
}

/**
 * Worker threads that each answer one request at a time (service-worker.ts). Several ADDs then run
 * at once, as they do when a runtime execs several plugins: setns(2) and the netlink sockets are
 * per thread, and the IPAM store's flock(2) is taken on a descriptor each thread opens, so threads
 * exclude each other exactly as processes do.
 */
class WorkerPool {
  private readonly idle: Worker[] = [];
  private readonly waiting: { line: string; resolve: (reply: ServiceReply) => void }[] = [];

  constructor(
    count: number,
    private readonly ownNetns: string,
  ) {
    for (let i = 0; i < count; i++) this.idle.push(this.spawn());
  }

  private spawn(): Worker {
    return new Worker(new URL("./service-worker.ts", import.meta.url).href);
  }

  run(line: string): Promise<ServiceReply> {
    return new Promise((resolve) => {
      this.waiting.push({ line, resolve });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length > 0 && this.waiting.length > 0) {
      const worker = this.idle.pop()!;
      const job = this.waiting.shift()!;
      worker.onmessage = (event: MessageEvent<ServiceReply>) => {
        this.idle.push(worker);
        job.resolve(event.data);
        this.pump();
      };
      worker.onerror = () => {
        // A worker that died mid-request may have done part of it: the plugin, told to work
        // alone, redoes the ADD, which is idempotent, exactly as after a crash of the service.
        worker.terminate();
        this.idle.push(this.spawn());
        job.resolve({ local: true, reason: "the service's worker failed" });
        this.pump();
      };
      worker.postMessage({ line: job.line, ownNetns: this.ownNetns });
    }
  }
}

/**
 * Listens on socketPath until the process is killed; returns once listening. With workers > 0,
 * served requests run on that many worker threads; with 0, on this thread, one at a time.
 */
export function serve(socketPath: string, handlers: PluginHandlers, workers = 0): void {
  const ownNetns = netnsIdentity();
  removeStaleSocket(socketPath);
  const pool = workers > 0 ? new WorkerPool(workers, ownNetns) : undefined;
  let inThread: Promise<unknown> = Promise.resolve();
  const execute = (line: string): Promise<ServiceReply> => {
    if (pool) return pool.run(line);
    // One at a time: a second flock(2) on the store from this thread would wait for itself.
    const reply = inThread.then(() => answer(line, handlers, ownNetns));
    inThread = reply.catch(() => undefined);
    return reply;
  };

  // Requests in arrival order. A request that is not served (DEL above all) is answered only
  // when every request that arrived before it has finished: the fence of service-protocol.ts.
  let nextSeq = 0;
  const running = new Set<number>();
  const fences: { seq: number; release: () => void }[] = [];
  const clear = (seq: number): boolean => ![...running].some((s) => s < seq);
  const releaseFences = (): void => {
    for (const fence of [...fences]) {
      if (!clear(fence.seq)) continue;
      fences.splice(fences.indexOf(fence), 1);
      fence.release();
    }
  };
  const handle = async (line: string): Promise<ServiceReply> => {
    const seq = nextSeq++;
    if (SERVED_COMMANDS.has(commandOf(line))) {
      running.add(seq);
      try {
        return await execute(line);
      } finally {
        running.delete(seq);
        releaseFences();
      }
    }
    if (!clear(seq)) await new Promise<void>((release) => fences.push({ seq, release }));
    return answer(line, handlers, ownNetns);
  };

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
        handle(conn.received.slice(0, newline))
          .then((reply) => {
            conn.pending = new TextEncoder().encode(`${JSON.stringify(reply)}\n`);
            flush(socket);
          })
          // A caller that hung up cannot be answered; the others still are.
          .catch(() => undefined);
      },
      drain: flush,
    },
  });
  // Only root may ask: the service creates links and reserves addresses on anyone's behalf.
  chmodSync(socketPath, 0o600);
}
