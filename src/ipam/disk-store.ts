// IpamStore on disk, in host-local's layout, so tools that read host-local's directories still work:
//
//   <dataDir>/<network>/
//     lock                   flock(2)ed for the length of every operation
//     10.244.1.7             one file per reserved address: "<containerId>\r\n<ifname>"
//     last_reserved_ip.0     the round-robin cursor of range set 0
//     .podnet-tmp.*          files being written; only ever present for a process that died
//
// Crash safety: a plugin may be SIGKILLed at any instant, and DEL finds reservations by reading
// them, so a reservation file must never be seen half-written. It is written under a temporary
// name and then link(2)ed to the address's name: the link is the atomic test-and-set (EEXIST when
// taken) and publishes a complete file. Cursors are written the same way and rename(2)d.
// Temporary files are only created while the lock is held, so any found when taking the lock
// belong to a dead process and are removed.
//
// The lock is released by the kernel when a process dies, so a killed plugin never wedges the store.
import {
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { mark } from "../cni/trace.ts";
import { CniError, ErrorCode } from "../cni/types.ts";
import { flock, LOCK_EX, LOCK_UN } from "../kernel/libc.ts";
import { formatIp, parseIp, tryParseIp, type IpAddress } from "../net/address.ts";
import type { IpamStore, Reservation } from "./store.ts";

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";
export const LOCK_FILE = "lock";
export const LAST_RESERVED_PREFIX = "last_reserved_ip.";
export const TEMP_PREFIX = ".podnet-tmp.";
const LINE_BREAK = "\r\n";

export interface DiskStoreOptions {
  /** Tells which range set an address belongs to (the file format has no room for it); -1 if none. */
  rangeSetOf?: (ip: string) => number;
}

function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error ? String((error as { code: unknown }).code) : undefined;
}

/** Parses a reservation file's content. host-local before v0.7 wrote the container ID alone. */
export function parseReservationContent(content: string): { containerId: string; ifname: string } {
  const trimmed = content.trim();
  const lineBreak = trimmed.search(/\r?\n/);
  if (lineBreak < 0) return { containerId: trimmed, ifname: "" };
  return { containerId: trimmed.slice(0, lineBreak).trim(), ifname: trimmed.slice(lineBreak).trim() };
}

export function formatReservationContent(containerId: string, ifname: string): string {
  return `${containerId.trim()}${LINE_BREAK}${ifname}`;
}

/** A legacy file (no ifname) belongs to every interface of its container, as host-local reads it. */
function belongsTo(r: Reservation, containerId: string, ifname: string): boolean {
  return r.containerId === containerId.trim() && (r.ifname === ifname || r.ifname === "");
}

export class DiskStore implements IpamStore {
  private lockDepth = 0;
  private tempCounter = 0;
  /**
   * The reservations as read while the current lock is held. Every writer holds the lock, so
   * nothing else can change them until it is released; this saves re-reading every file for
   * each range set of one ADD.
   */
  private snapshot: Reservation[] | undefined;
  /**
   * The directory's entries as listed when the lock was taken (to remove stale temporary files),
   * reused by the first full read under the same lock; dropped at the first write.
   */
  private listedAtLock: string[] | undefined;

  private constructor(
    readonly dir: string,
    private readonly rangeSetOf: (ip: string) => number,
  ) {}

  /** Opens (creating if needed) the store of one network. */
  static open(dataDir: string, network: string, options: DiskStoreOptions = {}): DiskStore {
    if (!network || network === "." || network === ".." || /[/\0]/.test(network)) {
      throw new CniError(ErrorCode.InvalidConfig, `ipam: network name ${JSON.stringify(network)} cannot name a directory`);
    }
    const dir = join(dataDir, network);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
    } catch (error) {
      throw new CniError(ErrorCode.Io, `ipam: cannot create store directory ${dir}: ${(error as Error).message}`);
    }
    return new DiskStore(dir, options.rangeSetOf ?? (() => -1));
  }

  withLock<T>(fn: () => T): T {
    if (this.lockDepth > 0) {
      this.lockDepth++;
      try {
        return fn();
      } finally {
        this.lockDepth--;
      }
    }
    const lockPath = join(this.dir, LOCK_FILE);
    let fd: number;
    try {
      // Opened for writing so that a read-only store fails here, before any allocation is tried.
      fd = openSync(lockPath, "a", 0o644);
    } catch (error) {
      throw new CniError(ErrorCode.Io, `ipam: cannot open lock file ${lockPath}: ${(error as Error).message}`);
    }
    try {
      try {
        flock(fd, LOCK_EX);
      } catch (error) {
        throw new CniError(ErrorCode.Io, `ipam: cannot lock ${lockPath}: ${(error as Error).message}`);
      }
      mark("ipam lock taken");
      this.lockDepth = 1;
      try {
        this.removeStaleTemps();
        return fn();
      } finally {
        this.lockDepth = 0;
        this.snapshot = undefined;
        this.listedAtLock = undefined;
        try {
          flock(fd, LOCK_UN);
        } catch {
          // close() below releases the lock anyway.
        }
        mark("ipam lock released");
      }
    } finally {
      closeSync(fd);
    }
  }

  reserve(r: Reservation): boolean {
    const ip = this.canonical(r.ip);
    return this.withLock(() =>
      this.io(`reserve ${ip}`, () => {
        const path = join(this.dir, ip);
        // Under the lock the snapshot is the directory, so a taken address costs no system call.
        if (this.snapshot ? this.snapshot.some((r) => r.ip === ip) : existsSync(path)) return false;
        this.listedAtLock = undefined;
        const content = formatReservationContent(r.containerId, r.ifname);
        const temp = this.writeTemp(content);
        try {
          linkSync(temp, path);
          this.snapshot?.push({ ip, ...parseReservationContent(content), rangeSetId: this.rangeSetOf(ip) });
          return true;
        } catch (error) {
          if (errnoCode(error) === "EEXIST") return false;
          throw error;
        } finally {
          unlinkSync(temp);
        }
      }),
    );
  }

  lastReserved(rangeSetId: number): string | undefined {
    const path = this.cursorPath(rangeSetId);
    return this.withLock(() =>
      this.io(`read ${path}`, () => {
        try {
          const ip = tryParseIp(readFileSync(path, "utf8"));
          return ip && formatIp(ip);
        } catch (error) {
          if (errnoCode(error) === "ENOENT") return undefined;
          throw error;
        }
      }),
    );
  }

  setLastReserved(rangeSetId: number, ip: string): void {
    const text = this.canonical(ip);
    const path = this.cursorPath(rangeSetId);
    this.withLock(() =>
      this.io(`write ${path}`, () => {
        const temp = this.writeTemp(text);
        try {
          renameSync(temp, path);
        } catch (error) {
          unlinkSync(temp);
          throw error;
        }
      }),
    );
  }

  findByAttachment(containerId: string, ifname: string): Reservation[] {
    return this.list().filter((r) => belongsTo(r, containerId, ifname));
  }

  releaseByAttachment(containerId: string, ifname: string): Reservation[] {
    return this.withLock(() => {
      const released = this.findByAttachment(containerId, ifname);
      for (const r of released) this.release(r.ip);
      return released;
    });
  }

  list(): Reservation[] {
    return this.withLock(() => {
      this.snapshot ??= this.readAll();
      return this.snapshot.map((r) => ({ ...r }));
    });
  }

  private readAll(): Reservation[] {
    return this.io("list", () => {
      const reservations: Reservation[] = [];
      for (const name of this.listedAtLock ?? readdirSync(this.dir)) {
        const ip = tryParseIp(name);
        if (!ip || name.startsWith(TEMP_PREFIX)) continue;
        let content: string;
        try {
          content = readFileSync(join(this.dir, name), "utf8");
        } catch (error) {
          if (errnoCode(error) === "ENOENT" || errnoCode(error) === "EISDIR") continue;
          throw error;
        }
        const text = formatIp(ip);
        reservations.push({ ip: text, ...parseReservationContent(content), rangeSetId: this.rangeSetOf(text) });
      }
      return reservations;
    });
  }

  release(ip: string): void {
    const address = this.parse(ip);
    const text = formatIp(address);
    this.withLock(() =>
      this.io(`release ${text}`, () => {
        if (this.snapshot) this.snapshot = this.snapshot.filter((r) => r.ip !== text);
        this.listedAtLock = undefined;
        if (this.unlinkIfPresent(text)) return;
        // A file written by another tool may spell the address differently (e.g. "10.0.0.7 " or upper-case hex).
        for (const name of readdirSync(this.dir)) {
          const other = tryParseIp(name);
          if (other && other.family === address.family && other.value === address.value) this.unlinkIfPresent(name);
        }
      }),
    );
  }

  private unlinkIfPresent(name: string): boolean {
    try {
      unlinkSync(join(this.dir, name));
      return true;
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return false;
      throw error;
    }
  }

  private parse(ip: string): IpAddress {
    try {
      return parseIp(ip);
    } catch (error) {
      throw new CniError(ErrorCode.Internal, `ipam: store given a bad address: ${(error as Error).message}`);
    }
  }

  private canonical(ip: string): string {
    return formatIp(this.parse(ip));
  }

  private cursorPath(rangeSetId: number): string {
    if (!Number.isInteger(rangeSetId) || rangeSetId < 0) {
      throw new CniError(ErrorCode.Internal, `ipam: bad range set id ${rangeSetId}`);
    }
    return join(this.dir, `${LAST_RESERVED_PREFIX}${rangeSetId}`);
  }

  /** Writes a complete file under a fresh temporary name in the store's directory; returns its path. */
  private writeTemp(content: string): string {
    const path = join(this.dir, `${TEMP_PREFIX}${process.pid}.${++this.tempCounter}.${Math.random().toString(36).slice(2, 10)}`);
    writeFileSync(path, content, { mode: 0o644, flag: "wx" });
    return path;
  }

  private removeStaleTemps(): void {
    this.io("remove stale temporary files", () => {
      const names = readdirSync(this.dir);
      for (const name of names) {
        if (name.startsWith(TEMP_PREFIX)) this.unlinkIfPresent(name);
      }
      this.listedAtLock = names.filter((name) => !name.startsWith(TEMP_PREFIX));
    });
  }

  private io<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      if (error instanceof CniError) throw error;
      throw new CniError(ErrorCode.Io, `ipam: store ${this.dir}: ${what}: ${(error as Error).message}`);
    }
  }
}
