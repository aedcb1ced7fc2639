// A small certificate authority for etcd, made with Debian's `openssl` (3.x): a CA, server and peer
// certificates for etcd, and one client certificate per etcd user (the CN is the user: etcd's
// --client-cert-auth maps it). Keys are EC P-256 (fast to make), written with mode 0600 in a 0700
// directory; nothing is written outside `dir`.

import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runChecked } from "./command.ts";

export const OPENSSL_BINARY = "/usr/bin/openssl";

export interface CertPair {
  certFile: string;
  keyFile: string;
}

export interface CertificateAuthority extends CertPair {
  dir: string;
  /** The CA certificate clients and servers trust. */
  caFile: string;
}

export interface IssueOptions {
  /** File name stem in the CA's directory: <name>.crt and <name>.key. */
  name: string;
  /** Subject CN: for a client, its etcd user. */
  commonName: string;
  /** "server" and "peer" certificates carry subjectAltNames; "peer" is both server and client (etcd's peers are). */
  usage: "server" | "client" | "peer";
  ips?: readonly string[];
  dnsNames?: readonly string[];
  /** Validity in days from now; negative gives a certificate that has already expired (for tests). Default 365. */
  days?: number;
}

const KEY_ARGS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** Make a new CA in `dir` (created 0700): ca.crt and ca.key. */
export async function createCertificateAuthority(dir: string, commonName: string, days = 3650): Promise<CertificateAuthority> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const certFile = join(dir, "ca.crt");
  const keyFile = join(dir, "ca.key");
  await openssl(["req", "-x509", ...KEY_ARGS, "-keyout", keyFile, "-out", certFile, "-subj", `/CN=${commonName}`, "-days", String(days)]);
  chmodSync(keyFile, 0o600);
  return { dir, caFile: certFile, certFile, keyFile };
}

/**
 * Issue a certificate signed by `ca`, with a fresh key; returns its files (key mode 0600). A random
 * serial (no serial file), so several can be issued at once.
 */
export async function issueCertificate(ca: CertificateAuthority, opts: IssueOptions): Promise<CertPair> {
  if (!/^[A-Za-z0-9_.-]+$/.test(opts.name)) throw new Error(`certificate name ${JSON.stringify(opts.name)}: use letters, digits, '.', '-' and '_'`);
  if (!/^[A-Za-z0-9_.:-]+$/.test(opts.commonName)) throw new Error(`commonName ${JSON.stringify(opts.commonName)}: use letters, digits, '.', ':', '-' and '_'`);
  const certFile = join(ca.dir, `${opts.name}.crt`);
  const keyFile = join(ca.dir, `${opts.name}.key`);
  const csrFile = join(ca.dir, `${opts.name}.csr`);
  const extFile = join(ca.dir, `${opts.name}.ext`);
  const extensions = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"];
  extensions.push(`extendedKeyUsage=${opts.usage === "server" ? "serverAuth" : opts.usage === "client" ? "clientAuth" : "serverAuth,clientAuth"}`);
  const altNames = [...(opts.ips ?? []).map((ip) => `IP:${ip}`), ...(opts.dnsNames ?? []).map((d) => `DNS:${d}`)];
  if (altNames.length > 0) extensions.push(`subjectAltName=${altNames.join(",")}`);
  writeFileSync(extFile, `${extensions.join("\n")}\n`, { mode: 0o600 });
  try {
    await openssl(["req", "-new", ...KEY_ARGS, "-keyout", keyFile, "-out", csrFile, "-subj", `/CN=${opts.commonName}`]);
    chmodSync(keyFile, 0o600);
    await openssl([
      "x509", "-req", "-in", csrFile, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-set_serial", `0x${randomBytes(16).toString("hex").replace(/^[89a-f]/, "1")}`,
      "-out", certFile, "-days", String(opts.days ?? 365), "-extfile", extFile,
    ]);
  } finally {
    rmSync(csrFile, { force: true });
    rmSync(extFile, { force: true });
  }
  return { certFile, keyFile };
}

async function openssl(args: readonly string[]): Promise<void> {
  // -batch-like quiet: no config prompts; errors name the command (CommandError).
  await runChecked([OPENSSL_BINARY, ...args], { timeoutMs: 30_000 });
}
