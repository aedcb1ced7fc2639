// A local copy of the node keys, kept current by the node watch's events, so that a snapshot after a
// change needs no round trip. Pure: the etcd datastore feeds it reads and events.

import type { NodeView } from "./datastore.ts";

export interface MirroredKey {
  key: string;
  value: string;
  modRevision: number;
  /** The node view last built from this key, reused while nothing it depends on changed. */
  view?: { node: NodeView; alive: boolean; acks: string };
}

/**
 * Keys as the watch reports them. `revision` is the store revision the mirror is complete up to: the
 * baseline read's, then each applied event's.
 *
 * A full read becomes the baseline (at the start, after the stream broke, and on every fresh read,
 * which also repairs a mirror gone wrong) only if
 * - no event newer than the read has been seen: the mirror would lack it, and the stream will not
 *   send it again;
 * - the stream neither broke nor (re)connected while the read was in flight (`epoch`): a watch made
 *   anew starts at the store's revision of that moment, so changes between an older read and it
 *   would be in neither.
 * Events that arrive while there is no baseline are dropped: a read accepted afterwards is at least
 * as new as every one of them (the first rule), so it holds them already.
 */
export class KeyMirror {
  private readonly keys = new Map<string, MirroredKey>();
  revision = 0;
  /** Revision of the full read the mirror was last based on: events at or below it are in it already. */
  private baseRevision = 0;
  /** Highest revision of any event seen, baseline or not. */
  private seen = 0;
  /** Bumped whenever the stream breaks or connects: a read started before that cannot be a baseline. */
  epoch = 0;
  private hasBaseline = false;
  private streamUp = false;

  /** Returns true when the read became the baseline. */
  resetTo(revision: number, kvs: readonly MirroredKey[], epoch: number): boolean {
    if (epoch !== this.epoch || revision < this.revision || revision < this.seen) return false;
    this.keys.clear();
    for (const kv of kvs) this.keys.set(kv.key, kv);
    this.revision = revision;
    this.baseRevision = revision;
    this.hasBaseline = true;
    return true;
  }

  put(key: string, value: string, modRevision: number): void {
    this.apply(key, value, modRevision);
  }

  delete(key: string, modRevision: number): void {
    this.apply(key, undefined, modRevision);
  }

  private apply(key: string, value: string | undefined, modRevision: number): void {
    if (modRevision > this.seen) this.seen = modRevision;
    if (!this.hasBaseline) return;
    // Skipped by the baseline's revision, not by `revision`: the keys of one transaction share a
    // revision and arrive as separate events of one response.
    if (modRevision <= this.baseRevision) return;
    if (value === undefined) this.keys.delete(key);
    else this.keys.set(key, { key, value, modRevision });
    if (modRevision > this.revision) this.revision = modRevision;
  }

  /** Nothing up to `revision` is missing (an empty watch response: the watcher is caught up). */
  advance(revision: number): void {
    if (this.hasBaseline && revision > this.revision) this.revision = revision;
    if (revision > this.seen) this.seen = revision;
  }

  connected(): void {
    this.streamUp = true;
    this.epoch++;
  }

  disconnected(): void {
    this.streamUp = false;
    this.hasBaseline = false;
    this.epoch++;
  }

  servesReadsAfter(writeRevision: number): boolean {
    return this.streamUp && this.hasBaseline && this.revision >= writeRevision;
  }

  entries(): Iterable<MirroredKey> {
    return this.keys.values();
  }
}
