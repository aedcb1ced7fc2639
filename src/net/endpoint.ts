// An address with a port, as written on command lines and in resolv.conf-like settings:
// "10.0.0.1:53", "[fd00::1]:53", and, where the caller has a default, "10.0.0.1", "fd00::1",
// "[fd00::1]" (default port) or "9100", ":9100" (default host). The address part goes through
// parseIp, so it is exactly as strict as every other address in podnet; names are refused.
import { formatIp, parseIp } from "./address.ts";

export interface HostPort {
  /** The address in canonical text (RFC 5952 for IPv6), without brackets. */
  readonly host: string;
  readonly port: number;
}

export interface ParseHostPortOptions {
  /** Used when the text has no port ("10.0.0.1", "[fd00::1]", a bare "fd00::1"). */
  defaultPort?: number;
  /** Used when the text is only a port ("9100" or ":9100"). */
  defaultHost?: string;
  /** The lowest port accepted; default 0 (a listener's "any free port"). */
  minPort?: number;
}

export class HostPortParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HostPortParseError";
  }
}

function portOf(digits: string, minPort: number): number {
  const port = /^[0-9]{1,5}$/.test(digits) ? Number(digits) : NaN;
  if (!(port >= minPort && port <= 65535)) throw new HostPortParseError(`port must be ${minPort}-65535, got ${JSON.stringify(digits)}`);
  return port;
}

function hostOf(address: string): string {
  try {
    return formatIp(parseIp(address));
  } catch {
    throw new HostPortParseError(`not an IP address: ${JSON.stringify(address)}`);
  }
}

/** Parses ADDR:PORT (IPv6 in brackets), with the defaults the caller allows; throws HostPortParseError naming the text. */
export function parseHostPort(text: string, options: ParseHostPortOptions = {}): HostPort {
  const minPort = options.minPort ?? 0;
  const shapeError = () => new HostPortParseError(`expected ADDR:PORT, got ${JSON.stringify(text)}`);
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    const port = bracketed[2] ?? (options.defaultPort === undefined ? undefined : String(options.defaultPort));
    if (port === undefined) throw shapeError();
    return { host: hostOf(bracketed[1]!), port: portOf(port, minPort) };
  }
  const colons = text.split(":").length - 1;
  if (colons === 0) {
    if (options.defaultHost !== undefined && /^[0-9]+$/.test(text)) return { host: hostOf(options.defaultHost), port: portOf(text, minPort) };
    if (options.defaultPort === undefined) throw shapeError();
    return { host: hostOf(text), port: portOf(String(options.defaultPort), minPort) };
  }
  if (colons === 1) {
    const at = text.indexOf(":");
    const address = text.slice(0, at);
    if (address === "" && options.defaultHost === undefined) throw shapeError();
    return { host: hostOf(address === "" ? options.defaultHost! : address), port: portOf(text.slice(at + 1), minPort) };
  }
  // Two or more colons without brackets: a bare IPv6 address, which cannot carry a port.
  if (options.defaultPort === undefined) throw shapeError();
  return { host: hostOf(text), port: portOf(String(options.defaultPort), minPort) };
}

/** "10.0.0.1:53" or "[fd00::1]:53". */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
