// The dispatcher every podnet CNI binary runs, in the role of libcni's skel: read the
// environment and stdin, gate each verb on the config's version, call the handler,
// and speak the spec's output format. Handlers only see validated input and only
// return or throw; they never write to stdout.
import { readSync, writeSync, fstatSync } from "node:fs";
import { parseNetConf } from "./config.ts";
import { parseEnv } from "./env.ts";
import { errorJson } from "./error.ts";
import { compareVersions, convertResult, isSupportedVersion, minimumVersionFor, upgradeResult, versionResponse } from "./version.ts";
import { CURRENT_VERSION, CniError, ErrorCode, SUPPORTED_VERSIONS, type CniEnv, type CniResult, type NetConf } from "./types.ts";

export interface PluginContext {
  env: CniEnv;
  conf: NetConf;
  stdin: Uint8Array;
}

export interface PluginHandlers {
  add(ctx: PluginContext): CniResult | Promise<CniResult>;
  del(ctx: PluginContext): void | Promise<void>;
  check(ctx: PluginContext): void | Promise<void>;
  status(ctx: PluginContext): void | Promise<void>;
  gc(ctx: PluginContext): void | Promise<void>;
}

export interface PluginIo {
  env: Record<string, string | undefined>;
  readStdin(): Uint8Array;
  writeStdout(s: string): void;
  writeStderr(s: string): void;
}

/**
 * Runs one CNI invocation and returns the exit code: 0 on success, 1 after printing an
 * error result. Never throws. The caller exits with the code (`process.exit` is safe:
 * the default io writes synchronously).
 *
 * Unlike libcni, a missing CNI_COMMAND is an error (exit 1) rather than a quiet exit 0;
 * the `about` line still goes to stderr for the human who ran the binary by hand.
 */
/**
 * The handlers with every failure passed through `map` before it reaches runPlugin, which encodes it.
 * A plugin maps the errors of its own layers (the kernel's, say) to CniErrors here, since this layer
 * knows none of them.
 */
export function mapHandlerErrors(handlers: PluginHandlers, map: (err: unknown) => unknown): PluginHandlers {
  const wrap =
    <R>(fn: (ctx: PluginContext) => R | Promise<R>) =>
    async (ctx: PluginContext): Promise<R> => {
      try {
        return await fn(ctx);
      } catch (err) {
        throw map(err);
      }
    };
  return { add: wrap(handlers.add), del: wrap(handlers.del), check: wrap(handlers.check), status: wrap(handlers.status), gc: wrap(handlers.gc) };
}

export async function runPlugin(handlers: PluginHandlers, about: string, io: PluginIo = processIo()): Promise<number> {
  // Errors carry the config's version once it is known, as the spec asks.
  let responseVersion: string = CURRENT_VERSION;
  try {
    if (!io.env.CNI_COMMAND) io.writeStderr(`${about}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(", ")}\n`);
    const env = parseEnv(io.env);
    if (env.command === "VERSION") {
      // Stdin only says which version the runtime speaks; libcni does not even read it.
      let requested: string | undefined;
      try {
        requested = peekVersion(io.readStdin());
      } catch {
        requested = undefined;
      }
      io.writeStdout(`${JSON.stringify(versionResponse(requested))}\n`);
      return 0;
    }

    const stdin = readInput(io);
    const requested = peekVersion(stdin);
    if (isSupportedVersion(requested)) responseVersion = requested;

    const conf = parseNetConf(stdin);
    responseVersion = conf.cniVersion;
    const minimum = minimumVersionFor(env.command);
    if (compareVersions(conf.cniVersion, minimum) < 0) {
      throw new CniError(ErrorCode.IncompatibleVersion, `config version does not allow ${env.command}`, `${env.command} needs cniVersion ${minimum} or later, config is ${conf.cniVersion}`);
    }
    const ctx: PluginContext = { env, conf, stdin };

    switch (env.command) {
      case "ADD": {
        const result = checkedResult(await handlers.add(ctx));
        io.writeStdout(`${JSON.stringify(convertResult(result, conf.cniVersion))}\n`);
        return 0;
      }
      case "DEL":
        await handlers.del(ctx);
        return 0;
      case "CHECK":
        if (conf.prevResult === undefined) throw new CniError(ErrorCode.InvalidConfig, "CHECK requires prevResult", "the runtime must pass the result of the preceding ADD");
        await handlers.check(ctx);
        return 0;
      case "STATUS":
        await handlers.status(ctx);
        return 0;
      case "GC":
        // Without the list every attachment would look stale; refuse rather than release them all.
        if (conf["cni.dev/valid-attachments"] === undefined) {
          throw new CniError(ErrorCode.InvalidConfig, "GC requires cni.dev/valid-attachments", 'the runtime must pass the attachments still in use (spec name: "cni.dev/attachments")');
        }
        await handlers.gc(ctx);
        return 0;
    }
  } catch (err) {
    if (!(err instanceof CniError)) io.writeStderr(`${about}: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    io.writeStdout(`${errorJson(err, responseVersion)}\n`);
    return 1;
  }
}

function readInput(io: PluginIo): Uint8Array {
  try {
    return io.readStdin();
  } catch (err) {
    throw new CniError(ErrorCode.Io, `error reading from stdin: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The config's cniVersion if stdin is a JSON object carrying one; never throws. */
function peekVersion(stdin: Uint8Array): string | undefined {
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(stdin));
    if (typeof parsed === "object" && parsed !== null && "cniVersion" in parsed && typeof parsed.cniVersion === "string") return parsed.cniVersion;
  } catch {
    // VERSION may come with empty or odd stdin; full parsing reports problems for other verbs.
  }
  return undefined;
}

/** A handler's result is checked like any result from outside, so a plugin bug cannot print malformed JSON. */
function checkedResult(result: CniResult): CniResult {
  try {
    return upgradeResult({ ...result, cniVersion: CURRENT_VERSION });
  } catch (err) {
    throw new CniError(ErrorCode.Internal, `plugin produced an invalid result: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Synchronous stdio, so that nothing is lost when the caller exits right after. */
export function processIo(): PluginIo {
  return {
    env: process.env,
    readStdin: () => readAllSync(0),
    writeStdout: (s) => writeAllSync(1, s),
    writeStderr: (s) => {
      try {
        writeAllSync(2, s);
      } catch {
        // Logging must never turn a result into a failure.
      }
    },
  };
}

function readAllSync(fd: number): Uint8Array {
  // A terminal on stdin means a human ran the binary: do not wait for input that is not coming.
  if (fstatSync(fd).isCharacterDevice()) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const chunk = new Uint8Array(65536);
    let read: number;
    try {
      read = readSync(fd, chunk, 0, chunk.length, null);
    } catch (err) {
      if (isErrno(err, "EAGAIN")) {
        pause();
        continue;
      }
      if (isErrno(err, "EOF")) break;
      throw err;
    }
    if (read === 0) break;
    chunks.push(chunk.subarray(0, read));
    total += read;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function writeAllSync(fd: number, s: string): void {
  const bytes = new TextEncoder().encode(s);
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(fd, bytes, offset, bytes.length - offset);
    } catch (err) {
      if (!isErrno(err, "EAGAIN")) throw err;
      pause();
    }
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && "code" in err && err.code === code;
}

/** A non-blocking pipe (set so by the parent) reports EAGAIN; wait a millisecond without spinning. */
function pause(): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
}
