// An etcd3 client that follows its certificate files: when the client certificate, key or CA on disk
// change (a rotation), a new etcd3 client is built from them and new requests go to it, without a
// restart. etcd checks a client certificate only in the TLS handshake, so open streams (watches, lease
// keepalives) on the old client keep working; users that hold streams reopen them on onReplaced.
// The old clients are closed with this one.

import { statSync } from "node:fs";
import { Etcd3, type IOptions } from "etcd3";
import { etcd3Options, readTlsCredentials, type EtcdConnection } from "./etcd-client-options.ts";

/** What the datastore's parts use to reach etcd: the current client, and word when it is replaced. */
export interface EtcdClientSource {
  readonly client: Etcd3;
  /** Call `listener` after each replacement of the client; returns a function that stops it. */
  onReplaced(listener: () => void): () => void;
}

/** A fixed client that is never replaced (tests and benchmarks that build their own Etcd3). */
export function fixedClientSource(client: Etcd3): EtcdClientSource {
  return { client, onReplaced: () => () => undefined };
}

export interface ReloadingClientOptions {
  /** etcd3 options besides hosts and credentials (timeouts, gRPC options). */
  base?: Omit<IOptions, "hosts" | "credentials" | "auth">;
  /** How often the certificate files are stat'ed; default 2000 ms. */
  checkIntervalMs?: number;
  log?: (line: string) => void;
}

export class ReloadingEtcdClient implements EtcdClientSource {
  private current: Etcd3;
  private readonly retired: Etcd3[] = [];
  private readonly listeners = new Set<() => void>();
  private signature: string;
  private readonly timer: NodeJS.Timeout | undefined;
  private lastProblem = "";
  /** How many times the certificate files were loaded again; for tests and metrics. */
  reloads = 0;

  constructor(
    private readonly connection: Pick<EtcdConnection, "endpoints" | "tls" | "caFile" | "auth">,
    private readonly options: ReloadingClientOptions = {},
  ) {
    this.current = new Etcd3(etcd3Options(connection, options.base));
    this.signature = this.filesSignature();
    if (connection.tls) {
      const { commonName, validTo } = readTlsCredentials(connection.tls);
      options.log?.(`etcd client certificate ${connection.tls.certFile} (CN ${commonName}) valid until ${validTo.toISOString()}; watching it for rotation`);
      this.timer = setInterval(() => this.checkFiles(), options.checkIntervalMs ?? 2000);
      this.timer.unref();
    }
  }

  get client(): Etcd3 {
    return this.current;
  }

  onReplaced(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Look at the files now (the timer does this periodically); returns true if the client was replaced. */
  checkFiles(): boolean {
    const tls = this.connection.tls;
    if (!tls) return false;
    const signature = this.filesSignature();
    if (signature === this.signature) return false;
    let credentials;
    let next: Etcd3;
    try {
      credentials = readTlsCredentials(tls);
      next = new Etcd3(etcd3Options(this.connection, this.options.base));
    } catch (err) {
      // Mid-rotation (a new certificate beside the old key) or a broken file: keep the working client
      // and look again next time; say so once per distinct problem.
      const problem = (err as Error).message;
      if (problem !== this.lastProblem) this.options.log?.(`etcd certificate files changed but cannot be used yet: ${problem}`);
      this.lastProblem = problem;
      return false;
    }
    this.lastProblem = "";
    this.signature = signature;
    this.retired.push(this.current);
    this.current = next;
    this.reloads++;
    this.options.log?.(`etcd client certificate reloaded from ${tls.certFile} (CN ${credentials.commonName}, valid until ${credentials.validTo.toISOString()})`);
    for (const listener of this.listeners) listener();
    return true;
  }

  private filesSignature(): string {
    const tls = this.connection.tls;
    if (!tls) return "";
    return [tls.caFile, tls.certFile, tls.keyFile]
      .map((path) => {
        try {
          const s = statSync(path);
          return `${s.ino}:${s.size}:${s.mtimeMs}`;
        } catch {
          return "missing";
        }
      })
      .join("|");
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.listeners.clear();
    for (const old of this.retired.splice(0)) old.close();
    this.current.close();
  }
}
