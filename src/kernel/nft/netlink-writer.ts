// Applies NftTransactions to the kernel as nf_tables netlink batches (netlink-encode.ts), one
// batch per transaction, atomic as `nft -f`. It never reads the kernel's ruleset: nft 1.0.6 reads
// every chain of the table into its cache before it evaluates a rule or element command, which
// at 10,000 chains costs ~80 ms per transaction and seconds for a full table.
//
// Element changes name only their set, so the writer remembers the types of the sets and maps it
// created; a transaction touching elements of a set it has not seen (an agent that restarted and
// has not done its full sync) is NftNotEncodable, as is any statement outside the encoder's
// subset: the caller applies those through libnftables.
//
// The socket is opened on first use in the namespace given (else the caller's) and kept: a
// netlink socket stays in the namespace it was made in.

import { NETLINK_NETFILTER, NetlinkSocket } from "../netlink/socket.ts";
import type { NftTransaction } from "./model.ts";
import { encodeTransaction, schemaChangesOf, type EncodedTransaction, type SetSchema } from "./netlink-encode.ts";

export { NftNotEncodable } from "./netlink-encode.ts";

export interface NetlinkApplyStats {
  messages: number;
  bytes: number;
  encodeMs: number;
  kernelMs: number;
}

export class NftNetlinkWriter {
  private socket: NetlinkSocket | undefined;
  /** Set and map types by "family table", then by set name. */
  private readonly schemas = new Map<string, Map<string, SetSchema>>();
  last: NetlinkApplyStats | undefined;

  constructor(private readonly netnsPath?: string) {}

  /**
   * Applies `tx` in one batch. Throws NftNotEncodable (nothing was sent) or the kernel's refusal
   * (nothing was changed: the batch is aborted as a whole).
   */
  apply(tx: NftTransaction): void {
    if (tx.changes.length === 0) return;
    const started = performance.now();
    const tableKey = `${tx.family} ${tx.table}`;
    const known = this.schemas.get(tableKey);
    const encoded = encodeTransaction(tx, (name) => known?.get(name));
    const batch = encoded.batch;
    const encodedAt = performance.now();
    this.socket ??= NetlinkSocket.open(this.netnsPath, NETLINK_NETFILTER);
    try {
      this.socket.nfBatch(batch, (i) => `${encoded.ops[i] ?? "batch"} in table ${tx.family} ${tx.table}`);
    } catch (error) {
      // Whatever the kernel now holds is unknown to us only if the batch was not atomic; it is, but a
      // failed socket may have lost the reply: forget the socket, keep the schemas of committed work.
      if (!(error instanceof Error && error.name === "KernelError")) this.closeSocket();
      throw error;
    }
    this.remember(tableKey, encoded);
    this.last = { messages: encoded.ops.length, bytes: batch.byteLength, encodeMs: encodedAt - started, kernelMs: performance.now() - encodedAt };
  }

  /** Takes note of the sets and maps of a transaction that was applied by someone else (the child process). */
  recordApplied(tx: NftTransaction): void {
    this.remember(`${tx.family} ${tx.table}`, schemaChangesOf(tx));
  }

  private remember(tableKey: string, changes: Pick<EncodedTransaction, "schemaChanges" | "tableDeleted">): void {
    const known = this.schemas.get(tableKey);
    const table = changes.tableDeleted ? new Map<string, SetSchema>() : (known ?? new Map<string, SetSchema>());
    for (const [name, schema] of changes.schemaChanges) {
      if (schema === undefined) table.delete(name);
      else table.set(name, schema);
    }
    this.schemas.set(tableKey, table);
  }

  /** Forgets what it knows of a table (someone else may have replaced it). */
  forget(family: string, table: string): void {
    this.schemas.delete(`${family} ${table}`);
  }

  close(): void {
    this.closeSocket();
  }

  private closeSocket(): void {
    try {
      this.socket?.close();
    } finally {
      this.socket = undefined;
    }
  }
}
