// What the exec'd forwarder (forwarder.c, installed as `podnet`) and the resident per-node service
// (`podnet serve`) say to each other over a unix socket: one request, one reply, then the service
// closes the connection. Plain lines and byte counts, so that the C side needs no JSON:
//
//   request:  "podnet-cni 1\n" "netns <dev>:<ino>\n" ("env NAME=value\n")* "stdin <bytes>\n" <stdin>
//   reply:    "exit <code> <stdout bytes> <stderr bytes>\n" <stdout> <stderr>
//          or "local <reason>\n"
//
// A reply that is missing, cut short or says `local` makes the forwarder exec the full plugin,
// which does the work itself, so a service that is down, dying or unsuitable changes only speed.

/** The config key naming the service's socket; without it the forwarder never tries the service. */
export const SERVICE_SOCKET_KEY = "serviceSocket";

/** The CNI variables a plugin reads; the service sees exactly these, never its own environment. */
export const FORWARDED_VARIABLES = ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"] as const;

const MAGIC = "podnet-cni 1";
/** Requests carry a network config: far below this. A larger claim is a broken or hostile peer. */
const MAX_STDIN_BYTES = 16 << 20;
const MAX_HEADER_BYTES = 64 << 10;

export interface ServiceRequest {
  env: Record<string, string>;
  stdin: string;
  /**
   * "dev:ino" of the caller's network namespace. The plugin works on the namespace it runs in, so
   * a service in any other namespace must decline.
   */
  netns: string;
}

export type ServiceReply = { local: true; reason: string } | { local?: false; exitCode: number; stdout: string; stderr: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeRequest(request: ServiceRequest): Uint8Array {
  const stdin = encoder.encode(request.stdin);
  const env = Object.entries(request.env)
    .map(([name, value]) => `env ${name}=${value}\n`)
    .join("");
  const header = encoder.encode(`${MAGIC}\nnetns ${request.netns}\n${env}stdin ${stdin.length}\n`);
  const out = new Uint8Array(header.length + stdin.length);
  out.set(header);
  out.set(stdin, header.length);
  return out;
}

/**
 * Parses a request from the bytes received so far: undefined while it is incomplete; throws with
 * the field at fault when it can never become a valid request. Unknown variables are dropped.
 */
export function parseRequest(bytes: Uint8Array): ServiceRequest | undefined {
  const env: Record<string, string> = {};
  let netns: string | undefined;
  let offset = 0;
  let first = true;
  for (;;) {
    const newline = bytes.indexOf(10, offset);
    if (newline < 0) {
      if (bytes.length - offset > MAX_HEADER_BYTES) throw new Error("request header line too long");
      return undefined;
    }
    const line = decoder.decode(bytes.subarray(offset, newline));
    offset = newline + 1;
    if (first) {
      if (line !== MAGIC) throw new Error(`request does not start with "${MAGIC}"`);
      first = false;
      continue;
    }
    const space = line.indexOf(" ");
    const field = space < 0 ? line : line.slice(0, space);
    const value = space < 0 ? "" : line.slice(space + 1);
    if (field === "netns") {
      if (!/^\d+:\d+$/.test(value)) throw new Error(`request field "netns" must be dev:ino, not ${JSON.stringify(value)}`);
      netns = value;
    } else if (field === "env") {
      const equals = value.indexOf("=");
      if (equals <= 0) throw new Error(`request field "env" must be NAME=value, not ${JSON.stringify(value)}`);
      const name = value.slice(0, equals);
      if ((FORWARDED_VARIABLES as readonly string[]).includes(name)) env[name] = value.slice(equals + 1);
    } else if (field === "stdin") {
      const length = Number(value);
      if (!/^\d+$/.test(value) || length > MAX_STDIN_BYTES) throw new Error(`request field "stdin" must be a byte count up to ${MAX_STDIN_BYTES}, not ${JSON.stringify(value)}`);
      if (netns === undefined) throw new Error('request field "netns" is missing');
      if (bytes.length - offset < length) return undefined;
      if (bytes.length - offset > length) throw new Error("request has bytes after its stdin");
      return { env, stdin: decoder.decode(bytes.subarray(offset, offset + length)), netns };
    } else {
      throw new Error(`request has an unknown field ${JSON.stringify(field)}`);
    }
  }
}

export function encodeReply(reply: ServiceReply): Uint8Array {
  if (reply.local) return encoder.encode(`local ${reply.reason.replace(/\n/g, " ")}\n`);
  const stdout = encoder.encode(reply.stdout);
  const stderr = encoder.encode(reply.stderr);
  const header = encoder.encode(`exit ${reply.exitCode} ${stdout.length} ${stderr.length}\n`);
  const out = new Uint8Array(header.length + stdout.length + stderr.length);
  out.set(header);
  out.set(stdout, header.length);
  out.set(stderr, header.length + stdout.length);
  return out;
}

/**
 * Parses a whole reply (the connection has closed); undefined for anything that is not complete
 * and well formed, which the forwarder treats as "do the work locally".
 */
export function parseReply(bytes: Uint8Array): ServiceReply | undefined {
  const newline = bytes.indexOf(10);
  if (newline < 0) return undefined;
  const header = decoder.decode(bytes.subarray(0, newline));
  if (header.startsWith("local ") && newline === bytes.length - 1) return { local: true, reason: header.slice(6) };
  const match = /^exit (-?\d+) (\d+) (\d+)$/.exec(header);
  if (!match) return undefined;
  const outLength = Number(match[2]);
  const errLength = Number(match[3]);
  if (bytes.length !== newline + 1 + outLength + errLength) return undefined;
  const body = bytes.subarray(newline + 1);
  return { exitCode: Number(match[1]), stdout: decoder.decode(body.subarray(0, outLength)), stderr: decoder.decode(body.subarray(outLength)) };
}
