// The storage contract the allocator works against. Two implementations: DiskStore (the plugin,
// host-local's on-disk layout) and MemoryStore (pure allocator tests).

/** One reserved address. `ip` is canonical text (see ip.ts formatIp). */
export interface Reservation {
  ip: string;
  containerId: string;
  ifname: string;
  /** Index of the range set the address came from; -1 when the store cannot tell. */
  rangeSetId: number;
}

export interface IpamStore {
  /** Runs fn while holding the store's exclusive lock (serialises concurrent plugin processes). Re-entrant. */
  withLock<T>(fn: () => T): T;
  /** Reserves r.ip for the attachment; false if that IP is taken. Atomic. */
  reserve(r: Reservation): boolean;
  /** The cursor of round-robin allocation for a range set. */
  lastReserved(rangeSetId: number): string | undefined;
  setLastReserved(rangeSetId: number, ip: string): void;
  findByAttachment(containerId: string, ifname: string): Reservation[];
  /** Releases and returns every reservation of the attachment. */
  releaseByAttachment(containerId: string, ifname: string): Reservation[];
  list(): Reservation[];
  /** Releases one address; no error if it was free. */
  release(ip: string): void;
}
