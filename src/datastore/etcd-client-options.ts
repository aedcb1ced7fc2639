// How every podnet etcd client connects: the flags (the agent, `podnet node`, `podnet dns`, the lab's
// control plane), their checks, and the etcd3 options they become. One place, so every client refuses
// the same things with the same words.
//
// Flag names are flannel's (--etcd-cafile, --etcd-certfile, --etcd-keyfile, --etcd-username); the
// password comes only from a file (--etcd-password-file), since argv is world-readable in /proc.
// A plain-http endpoint is refused unless --etcd-insecure says so, and then the client warns at start.

import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IOptions } from "etcd3";

export interface EtcdTlsFiles {
  /** PEM CA bundle that signed etcd's server certificate. */
  caFile: string;
  /** PEM client certificate (chain) and its key, for etcd's --client-cert-auth. */
  certFile: string;
  keyFile: string;
}

export interface EtcdConnection {
  endpoints: string[];
  /** Mutual TLS: the CA and this client's certificate and key. */
  tls?: EtcdTlsFiles;
  /** Only the CA that verifies etcd, for a client that proves itself with a password instead. */
  caFile?: string;
  /** etcd user and the file holding its password; without it, a client certificate's CN is the user. */
  auth?: { username: string; passwordFile: string };
  /** The operator allowed plain http (no TLS, no client authentication). */
  insecure: boolean;
}

/** The parseArgs options of the etcd flags; spread them into a command's own. */
export const ETCD_CLIENT_FLAGS = {
  etcd: { type: "string" },
  "etcd-cafile": { type: "string" },
  "etcd-certfile": { type: "string" },
  "etcd-keyfile": { type: "string" },
  "etcd-username": { type: "string" },
  "etcd-password-file": { type: "string" },
  "etcd-insecure": { type: "boolean" },
} as const;

export const ETCD_CLIENT_USAGE = `  --etcd URLS              etcd client URLs, comma-separated (https://…; http only with --etcd-insecure)
  --etcd-cafile FILE       CA bundle that signed etcd's server certificate
  --etcd-certfile FILE     client certificate for etcd's client-certificate authentication
  --etcd-keyfile FILE      its private key (both are re-read when they change on disk)
  --etcd-username NAME     etcd user (default: the client certificate's CN, as etcd maps it)
  --etcd-password-file F   file holding that user's password (never on the command line)
  --etcd-insecure          allow plain http to etcd (no TLS, no authentication): for tests only
`;

/** A flag value that cannot be used; the message names the flag. */
export class EtcdFlagError extends Error {}

type FlagValues = { [K in keyof typeof ETCD_CLIENT_FLAGS]?: (typeof ETCD_CLIENT_FLAGS)[K]["type"] extends "boolean" ? boolean : string };

/** Check the etcd flags of a command and turn them into a connection; throws EtcdFlagError naming the flag. */
export function parseEtcdConnection(values: FlagValues): EtcdConnection {
  const endpoints = (values.etcd ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (endpoints.length === 0) throw new EtcdFlagError("--etcd is required");
  for (const endpoint of endpoints) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new EtcdFlagError(`--etcd: ${JSON.stringify(endpoint)} is not a URL (want https://HOST:PORT)`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new EtcdFlagError(`--etcd: ${JSON.stringify(endpoint)} must be https:// (or http:// with --etcd-insecure)`);
  }
  const insecure = values["etcd-insecure"] === true;
  const plain = endpoints.filter((e) => e.startsWith("http:"));
  const secure = endpoints.filter((e) => e.startsWith("https:"));
  if (plain.length > 0 && !insecure) {
    throw new EtcdFlagError(`--etcd: ${plain.join(",")} is plain http: anyone on the path can read and rewrite the cluster's routing. Use https:// with --etcd-cafile/--etcd-certfile/--etcd-keyfile, or say --etcd-insecure`);
  }
  if (plain.length > 0 && secure.length > 0) throw new EtcdFlagError("--etcd: mixes http:// and https:// endpoints");

  const caFile = values["etcd-cafile"];
  const certFile = values["etcd-certfile"];
  const keyFile = values["etcd-keyfile"];
  if ((certFile === undefined) !== (keyFile === undefined)) throw new EtcdFlagError("--etcd-certfile and --etcd-keyfile go together");
  if (plain.length > 0 && (caFile !== undefined || certFile !== undefined)) throw new EtcdFlagError("--etcd-cafile/--etcd-certfile/--etcd-keyfile need https:// endpoints");
  const connection: EtcdConnection = { endpoints, insecure };
  if (certFile !== undefined && keyFile !== undefined) {
    if (caFile === undefined) throw new EtcdFlagError("--etcd-certfile needs --etcd-cafile (the CA that signed etcd's server certificate)");
    connection.tls = { caFile, certFile, keyFile };
    // Read once now, so a bad file is a usage error at start, not a retry loop later.
    readTlsCredentials(connection.tls);
  } else if (caFile !== undefined) {
    // Server verification only: the client then proves itself with --etcd-username (etcd without
    // --client-cert-auth). Checked here so a wrong path fails at start.
    readPem("--etcd-cafile", caFile);
    connection.caFile = caFile;
  }

  const username = values["etcd-username"];
  const passwordFile = values["etcd-password-file"];
  if ((username === undefined) !== (passwordFile === undefined)) throw new EtcdFlagError("--etcd-username and --etcd-password-file go together");
  if (username !== undefined && passwordFile !== undefined) {
    if (username === "") throw new EtcdFlagError("--etcd-username is empty");
    if (plain.length > 0) throw new EtcdFlagError("--etcd-username over plain http would send the password in clear; use https://");
    connection.auth = { username, passwordFile };
    readPassword(passwordFile);
  }
  return connection;
}

/** The warning an insecure client prints at start, or undefined. */
export function insecureWarning(connection: EtcdConnection): string | undefined {
  if (!connection.insecure || connection.endpoints.every((e) => e.startsWith("https:"))) return undefined;
  return `WARNING: --etcd-insecure: talking to etcd over plain http (${connection.endpoints.join(",")}) without TLS or authentication; anyone who reaches etcd can rewrite the cluster`;
}

export interface TlsCredentials {
  rootCertificate: Buffer;
  certChain: Buffer;
  privateKey: Buffer;
  /** When the client certificate stops being valid (its notAfter). */
  validTo: Date;
  /** The certificate's subject CN: etcd's user for this client when auth is on and no password is used. */
  commonName: string;
}

/** Read and check the three PEM files; throws EtcdFlagError naming the file that is wrong. */
export function readTlsCredentials(files: EtcdTlsFiles): TlsCredentials {
  const rootCertificate = readPem("--etcd-cafile", files.caFile);
  const certChain = readPem("--etcd-certfile", files.certFile);
  const privateKey = readPem("--etcd-keyfile", files.keyFile);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certChain);
    new X509Certificate(rootCertificate);
  } catch (err) {
    throw new EtcdFlagError(`--etcd-certfile/--etcd-cafile: not a PEM certificate (${(err as Error).message})`);
  }
  let key;
  try {
    key = createPrivateKey(privateKey);
  } catch (err) {
    throw new EtcdFlagError(`--etcd-keyfile ${files.keyFile}: not a PEM private key (${(err as Error).message})`);
  }
  // A rotation writes the files one after another: a certificate with the old key is not a pair yet.
  if (!cert.checkPrivateKey(key)) throw new EtcdFlagError(`--etcd-keyfile ${files.keyFile} is not the key of --etcd-certfile ${files.certFile}`);
  const commonName = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? "";
  return { rootCertificate, certChain, privateKey, validTo: new Date(cert.validTo), commonName };
}

function readPem(flag: string, path: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new EtcdFlagError(`${flag} ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!data.includes("-----BEGIN ")) throw new EtcdFlagError(`${flag} ${path}: not PEM`);
  return data;
}

function readPassword(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new EtcdFlagError(`--etcd-password-file ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const password = text.replace(/\r?\n$/, "");
  if (password === "") throw new EtcdFlagError(`--etcd-password-file ${path} is empty`);
  return password;
}

/** etcd3 options for one connection, with the credentials as they are on disk now. */
export function etcd3Options(connection: Pick<EtcdConnection, "endpoints" | "tls" | "caFile" | "auth">, base: Omit<IOptions, "hosts" | "credentials" | "auth"> = {}): IOptions {
  const options: IOptions = { ...base, hosts: connection.endpoints };
  if (connection.tls) {
    const { rootCertificate, certChain, privateKey } = readTlsCredentials(connection.tls);
    options.credentials = { rootCertificate, certChain, privateKey };
  } else if (connection.caFile) {
    options.credentials = { rootCertificate: readPem("--etcd-cafile", connection.caFile) };
  }
  // Neither: etcd3 verifies an https server against the system's CAs.
  if (connection.auth) options.auth = { username: connection.auth.username, password: readPassword(connection.auth.passwordFile) };
  return options;
}

/**
 * A short explanation for errors that mean etcd refused who we are, so an operator sees "certificate
 * expired" rather than a bare gRPC UNAVAILABLE. Other errors pass through unchanged.
 */
export function explainEtcdError(err: unknown, connection: Pick<EtcdConnection, "tls">): string {
  const text = err instanceof Error ? err.message : String(err);
  if (/permission denied/i.test(text)) return `etcd refused the operation: permission denied for this client's role (${text})`;
  if (/user name is empty|authentication failed|invalid auth token/i.test(text)) return `etcd authentication failed: ${text}`;
  if (connection.tls) {
    try {
      const { validTo } = readTlsCredentials(connection.tls);
      if (validTo.getTime() < Date.now()) return `etcd refused the client certificate ${connection.tls.certFile}: it expired at ${validTo.toISOString()} (${text})`;
    } catch {
      // The files themselves are wrong: the plain error is all there is.
    }
  }
  if (/certificate|handshake|SSL|TLS|Connection dropped|No connection established/i.test(text)) {
    return `etcd TLS connection failed (is the client certificate signed by the CA etcd trusts, and etcd's by --etcd-cafile?): ${text}`;
  }
  return text;
}
