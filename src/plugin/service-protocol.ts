// What the podnet executable and its resident per-node service (`podnet serve`) say to each other
// over a unix socket. One request, one reply, each a single JSON line; the connection then closes.
//
// The exec'd plugin only forwards: the CNI_* variables and stdin go over, the reply says what to
// print and the exit code. A reply that is missing, cut short or says `local` makes the plugin do
// the work itself, so a service that is down, dying or unsuitable changes nothing but speed.
// Kept free of imports so that the forwarding path loads nothing else (src/plugin/main.ts).

/** The config key naming the service's socket; without it the plugin never tries to forward. */
export const SERVICE_SOCKET_KEY = "serviceSocket";

/** The CNI variables a plugin reads; the service sees exactly these, never its own environment. */
export const FORWARDED_VARIABLES = ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"] as const;

/**
 * Verbs the plugin sends to the service. VERSION, STATUS and GC are cheap or rare and always run
 * in the plugin.
 */
export const FORWARDED_COMMANDS: ReadonlySet<string> = new Set(["ADD", "CHECK", "DEL"]);

/**
 * Verbs the service does itself. DEL is sent but always answered `local`: its cost is the kernel's
 * veth deletion (15-22 ms, mostly waiting), which overlaps across concurrent plugin processes but
 * would queue up in a single-threaded service (README, "Design"). Sending it anyway makes it a
 * fence: the service answers in arrival order, so by the time a DEL hears back, every request sent
 * before it, such as an ADD whose plugin the runtime killed while the service worked on it, is
 * finished, and the DEL cannot run before an ADD it is meant to undo.
 */
export const SERVED_COMMANDS: ReadonlySet<string> = new Set(["ADD", "CHECK"]);

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

/** Parses a reply line; undefined for anything that is not a complete, well-formed reply. */
export function parseReply(text: string): ServiceReply | undefined {
  if (!text.endsWith("\n")) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const reply = value as Record<string, unknown>;
  if (reply.local === true && typeof reply.reason === "string") return { local: true, reason: reply.reason };
  if (typeof reply.exitCode === "number" && Number.isInteger(reply.exitCode) && typeof reply.stdout === "string" && typeof reply.stderr === "string") {
    return { exitCode: reply.exitCode, stdout: reply.stdout, stderr: reply.stderr };
  }
  return undefined;
}

/** Parses a request line; throws with the field at fault. */
export function parseRequest(text: string): ServiceRequest {
  const value: unknown = JSON.parse(text);
  if (typeof value !== "object" || value === null) throw new Error("request is not a JSON object");
  const request = value as Record<string, unknown>;
  if (typeof request.stdin !== "string") throw new Error('request field "stdin" must be a string');
  if (typeof request.netns !== "string") throw new Error('request field "netns" must be a string');
  const env = request.env;
  if (typeof env !== "object" || env === null) throw new Error('request field "env" must be an object');
  const picked: Record<string, string> = {};
  for (const name of FORWARDED_VARIABLES) {
    const v = (env as Record<string, unknown>)[name];
    if (v === undefined) continue;
    if (typeof v !== "string") throw new Error(`request field "env.${name}" must be a string`);
    picked[name] = v;
  }
  return { env: picked, stdin: request.stdin, netns: request.netns };
}
