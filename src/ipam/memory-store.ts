// An IpamStore held in a Map, for allocator tests. Not shared between processes.
import type { IpamStore, Reservation } from "./store.ts";

export class MemoryStore implements IpamStore {
  private readonly reservations = new Map<string, Reservation>();
  private readonly cursors = new Map<number, string>();
  private lockDepth = 0;

  withLock<T>(fn: () => T): T {
    this.lockDepth++;
    try {
      return fn();
    } finally {
      this.lockDepth--;
    }
  }

  /** Whether a caller is inside withLock; lets tests assert that mutations happen under the lock. */
  get locked(): boolean {
    return this.lockDepth > 0;
  }

  reserve(r: Reservation): boolean {
    if (this.reservations.has(r.ip)) return false;
    this.reservations.set(r.ip, { ...r });
    return true;
  }

  lastReserved(rangeSetId: number): string | undefined {
    return this.cursors.get(rangeSetId);
  }

  setLastReserved(rangeSetId: number, ip: string): void {
    this.cursors.set(rangeSetId, ip);
  }

  findByAttachment(containerId: string, ifname: string): Reservation[] {
    return this.list().filter((r) => r.containerId === containerId && r.ifname === ifname);
  }

  releaseByAttachment(containerId: string, ifname: string): Reservation[] {
    const released = this.findByAttachment(containerId, ifname);
    for (const r of released) this.reservations.delete(r.ip);
    return released;
  }

  list(): Reservation[] {
    return [...this.reservations.values()].map((r) => ({ ...r }));
  }

  release(ip: string): void {
    this.reservations.delete(ip);
  }
}
