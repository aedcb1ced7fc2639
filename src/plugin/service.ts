// `podnet serve --socket PATH`: the resident per-node service. It runs the same bridge plugin code
// as the full plugin executable, but warm: no runtime start, no module loading, no FFI set-up,
// JIT-compiled after the first pods. The forwarder that runtimes exec (forwarder.c, `podnet`)
// sends it every CNI call whose config names this socket; the service declines (a `local` reply)
// whatever it cannot answer exactly as the full plugin would, and the forwarder then execs the
// full plugin, which does the work itself.
//
// DELs run on worker threads (`--workers N`), each with a thread of its own that deletes the veth
// (service-worker.ts), so their kernel waits overlap as concurrent plugin processes' would, and a
// DEL is answered once the kernel announces the veth gone (bridge.ts, deleteLinksElsewhere).
// Everything else runs on the main thread, which runs the plugin code faster than a worker thread
// does, when nothing else is in flight, and on a worker when something is.
// With `--workers 0` everything runs one at a time on the main thread.
// Requests for the same attachment (container ID and interface) run one after another in arrival
// order, so a DEL never overtakes the ADD it undoes; a request whose forwarder is gone before the
// request starts (the runtime killed it) is dropped, as if it had never been sent.
// Crash safety is the plugin's own: a service killed mid-request leaves what a plugin killed at
// the same point leaves, and the forwarder, seeing no complete reply, execs the full plugin, which
// redoes the request: ADD and DEL are idempotent (the attachment's reserved address is handed
// back, a stale host veth is replaced; DEL of what is gone succeeds).
import { appendFileSync, chmodSync, lstatSync, statSync, unlinkSync } from "node:fs";
import { runPlugin, type PluginHandlers, type PluginIo } from "../cni/skel.ts";
import { flushTrace, mark } from "../cni/trace.ts";
import { encodeReply, parseRequest, SERVICE_SOCKET_KEY, type ServiceReply, type ServiceRequest } from "./service-protocol.ts";

/** IPAM types the service serves: in-process ones. A delegated IPAM would run with the service's environment. */
const SERVED_IPAM_TYPES = new Set(["podnet-ipam"]);

/** "dev:ino" of this thread's network namespace, the identity forwarder.c sends for its own. */
export function netnsIdentity(): string {
  const st = statSync("/proc/thread-self/ns/net");
  return `${st.dev}:${st.ino}`;
}

/** Who the service is: the callers it may serve must be in its namespace and name its socket. */
export interface ServiceIdentity {
  netns: string;
  socket: string;
}

/** Why this request must run in the full plugin instead, or undefined when the service can answer it exactly. */
function declineReason(request: ServiceRequest, own: ServiceIdentity): string | undefined {
  if (request.netns !== own.netns) return `the caller's network namespace ${request.netns} is not the service's ${own.netns}`;
  let conf: unknown;
  try {
    conf = JSON.parse(request.stdin);
  } catch {
    return "the config is not JSON; the plugin reports that";
  }
  if (typeof conf !== "object" || conf === null || Array.isArray(conf)) return "the config is not a JSON object; the plugin reports that";
  const fields = conf as Record<string, unknown>;
  if (fields[SERVICE_SOCKET_KEY] !== own.socket) return `the config's ${SERVICE_SOCKET_KEY} is not ${own.socket}`;
  const ipamType = (fields.ipam as { type?: unknown } | undefined)?.type;
  if (ipamType !== undefined && !SERVED_IPAM_TYPES.has(String(ipamType))) return `IPAM type ${String(ipamType)} is exec'd, not served`;
  return undefined;
}

/** One request to one reply; never throws. */
export async function answer(request: ServiceRequest, handlers: PluginHandlers, own: ServiceIdentity): Promise<ServiceReply> {
  const reason = declineReason(request, own);
  if (reason !== undefined) return { local: true, reason };
  const command = request.env.CNI_COMMAND ?? "";
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
  let exitCode: number;
  try {
    exitCode = await runPlugin(handlers, "podnet bridge plugin (service)", io);
  } catch (error) {
    // runPlugin reports every handler error itself; anything escaping it is the service's own fault.
    return { local: true, reason: `the service failed: ${(error as Error).message}` };
  }
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
  received: Uint8Array;
  started: boolean;
  /** The forwarder hung up (it was killed): nobody waits for an answer. */
  gone: boolean;
  pending: Uint8Array;
}

interface Job {
  request: ServiceRequest;
  wanted: () => boolean;
  resolve: (reply: ServiceReply | undefined) => void;
}

/** Messages from the main thread to a worker (service-worker.ts). */
export type ToWorker = { kind: "request"; request: ServiceRequest; own: ServiceIdentity };

/** Messages from a worker to the main thread. */
export type FromWorker = { kind: "ready" } | { kind: "reply"; reply: ServiceReply };

/**
 * Worker threads that each answer one request at a time (service-worker.ts). Several requests then
 * run at once, as they do when a runtime execs several plugins: setns(2) and the netlink sockets
 * are per thread, and the IPAM store's flock(2) is taken on a descriptor each thread opens, so
 * threads exclude each other exactly as processes do.
 */
class WorkerPool {
  private readonly idle: Worker[] = [];
  private readonly waiting: Job[] = [];
  /** Resolves once every first worker has warmed up (service-worker.ts). */
  readonly ready: Promise<void>;

  constructor(
    count: number,
    private readonly own: ServiceIdentity,
  ) {
    const warming: Promise<void>[] = [];
    const spawnWarm = (): Worker => {
      const worker = this.spawn();
      warming.push(
        new Promise<void>((resolve) => {
          // Listeners, not onmessage/onerror: those are the request's, and a request may come first.
          worker.addEventListener("message", (event: MessageEvent<FromWorker>) => {
            if (event.data.kind === "ready") resolve();
          });
          worker.addEventListener("error", () => resolve());
        }),
      );
      return worker;
    };
    for (let i = 0; i < count; i++) this.idle.push(spawnWarm());
    this.ready = Promise.all(warming).then(() => undefined);
  }

  private spawn(): Worker {
    return new Worker(new URL("./service-worker.ts", import.meta.url).href);
  }

  run(request: ServiceRequest, wanted: () => boolean): Promise<ServiceReply | undefined> {
    return new Promise((resolve) => {
      this.waiting.push({ request, wanted, resolve });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length > 0 && this.waiting.length > 0) {
      const job = this.waiting.shift()!;
      if (!job.wanted()) {
        job.resolve(undefined);
        continue;
      }
      const worker = this.idle.pop()!;
      worker.onmessage = (event: MessageEvent<FromWorker>) => {
        const message = event.data;
        if (message.kind !== "reply") return;
        this.idle.push(worker);
        job.resolve(message.reply);
        this.pump();
      };
      worker.onerror = () => {
        // A worker that died mid-request may have done part of it: the full plugin, told to work
        // alone, redoes the request, which is idempotent, exactly as after a crash of the service.
        worker.terminate();
        this.idle.push(this.spawn());
        job.resolve({ local: true, reason: "the service's worker failed" });
        this.pump();
      };
      worker.postMessage({ kind: "request", request: job.request, own: this.own } satisfies ToWorker);
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Listens on socketPath until the process is killed; resolves once listening with its workers
 * warm. With workers > 0, served requests run on that many worker threads; with 0, on this
 * thread, one at a time.
 */
/**
 * One line per request the service answered itself (not those it handed back to the forwarder):
 * time, command, container ID, interface, exit code. For operators, and for tests that must know the
 * service, not the full plugin, did the work. Appended synchronously: a line per call costs microseconds.
 */
function logRequest(file: string, request: ServiceRequest, exitCode: number): void {
  const env = request.env;
  try {
    appendFileSync(file, `${new Date().toISOString()} ${env.CNI_COMMAND ?? "?"} ${env.CNI_CONTAINERID ?? "-"} ${env.CNI_IFNAME ?? "-"} exit ${exitCode}\n`);
  } catch {
    // A log that cannot be written loses a line; the answer is not affected.
  }
}

export async function serve(socketPath: string, handlers: PluginHandlers, workers = 0, requestLog?: string): Promise<void> {
  const own: ServiceIdentity = { netns: netnsIdentity(), socket: socketPath };
  removeStaleSocket(socketPath);
  const pool = workers > 0 ? new WorkerPool(workers, own) : undefined;
  let inThread: Promise<unknown> = Promise.resolve();
  let inFlight = 0;
  const runHere = (request: ServiceRequest, wanted: () => boolean): Promise<ServiceReply | undefined> => {
    // One at a time: a second flock(2) on the store from this thread would wait for itself.
    const reply = inThread.then(() => (wanted() ? answer(request, handlers, own) : undefined));
    inThread = reply.catch(() => undefined);
    return reply;
  };
  const choose = (request: ServiceRequest, wanted: () => boolean): Promise<ServiceReply | undefined> => {
    if (!pool) return runHere(request, wanted);
    // DELs go to the workers: a DEL's veth deletion holds the thread that sends it for 13-23 ms, most
    // of it after the veth is gone from view (kernel/link-watch.ts); a worker's deleter thread takes
    // that wait, and those of concurrent DELs overlap as across processes. Anything else runs here when
    // nothing else is in flight, since this thread ran an ADD in 10-16 ms where a worker thread
    // took 16-28 ms (bench/RESULTS.md). In a burst everything goes to the workers: this thread
    // then only moves requests and replies, so none waits for another's work here, and the burst
    // runs on as many threads as plugin processes would.
    if (request.env.CNI_COMMAND === "DEL" || inFlight > 0) return pool.run(request, wanted);
    return runHere(request, wanted);
  };
  const execute = (request: ServiceRequest, wanted: () => boolean): Promise<ServiceReply | undefined> => {
    const reply = choose(request, wanted);
    inFlight++;
    void reply.catch(() => undefined).finally(() => inFlight--);
    return reply;
  };

  // The last request of each attachment, in arrival order: the next one for it starts after that.
  const byAttachment = new Map<string, Promise<unknown>>();
  const handle = (request: ServiceRequest, wanted: () => boolean): Promise<ServiceReply | undefined> => {
    const id = request.env.CNI_CONTAINERID;
    if (id === undefined) return execute(request, wanted);
    const key = `${id}\0${request.env.CNI_IFNAME ?? ""}`;
    const before = byAttachment.get(key) ?? Promise.resolve();
    const reply = before.then(() => execute(request, wanted));
    const settled = reply.catch(() => undefined);
    byAttachment.set(key, settled);
    void settled.then(() => {
      if (byAttachment.get(key) === settled) byAttachment.delete(key);
    });
    return reply;
  };

  type Socket = { write(data: Uint8Array): number; end(): void; data: Connection };
  const flush = (socket: Socket): void => {
    const conn = socket.data;
    if (conn.pending.length === 0) return;
    const written = socket.write(conn.pending);
    if (written > 0) conn.pending = conn.pending.subarray(written);
    if (conn.pending.length === 0) socket.end();
  };
  const reply = (socket: Socket, answer: ServiceReply): void => {
    socket.data.pending = encodeReply(answer);
    flush(socket);
  };
  Bun.listen<Connection>({
    unix: socketPath,
    socket: {
      open(socket) {
        socket.data = { received: new Uint8Array(), started: false, gone: false, pending: new Uint8Array() };
      },
      data(socket, chunk) {
        const conn = socket.data;
        if (conn.started) return;
        conn.received = concat(conn.received, chunk);
        let request: ServiceRequest | undefined;
        try {
          request = parseRequest(conn.received);
        } catch (error) {
          conn.started = true;
          reply(socket, { local: true, reason: `bad request: ${(error as Error).message}` });
          return;
        }
        if (request === undefined) return;
        conn.started = true;
        conn.received = new Uint8Array();
        handle(request, () => !conn.gone)
          .then((answer) => {
            if (answer !== undefined && !conn.gone) reply(socket, answer);
            if (requestLog && answer !== undefined && !answer.local) logRequest(requestLog, request!, answer.exitCode);
          })
          // A caller that hung up cannot be answered; the others still are.
          .catch(() => undefined);
      },
      drain: flush,
      end(socket) {
        socket.data.gone = true;
      },
      close(socket) {
        socket.data.gone = true;
      },
    },
  });
  // Only root may ask: the service creates links and reserves addresses on anyone's behalf.
  chmodSync(socketPath, 0o600);
  await pool?.ready;
}
