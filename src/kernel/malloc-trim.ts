// Giving freed C heap back to the kernel: glibc's malloc_trim(3), through koffi, for a long-lived
// Node process whose start-up (parsing and compiling its modules, decoding the datastore's first
// list) leaves tens of MiB of freed malloc memory behind. glibc returns memory to the kernel by
// itself only from the top of the heap, so a heap fragmented by V8's compiler zones stays resident:
// measured on `podnet dns` with 10,000 Services + 10,000 EndpointSlices, the brk heap held 24 MiB,
// of which malloc_trim(0) released 20 (bench/RESULTS.md, "Cluster DNS").
//
// Only under Node on glibc: Bun, or a libc without malloc_trim, gets `false` and nothing happens.

import v8 from "node:v8";
import vm from "node:vm";
import { loadKoffi } from "./libc.ts";

let trim: ((pad: number) => number) | null | undefined;

function load(): ((pad: number) => number) | null {
  if (process.versions.bun !== undefined || process.platform !== "linux") return null;
  try {
    const fn = loadKoffi().load("libc.so.6").func("int malloc_trim(size_t pad)");
    return (pad) => fn(pad) as number;
  } catch {
    return null;
  }
}

/**
 * Return the free pages of every malloc arena to the kernel (madvise, not only the heap's top).
 * True when glibc released some memory, false when it had none to release or cannot here.
 * It walks every arena while holding its lock: call it after a burst of allocation, not per request.
 */
export function releaseFreedNativeMemory(): boolean {
  if (trim === undefined) trim = load();
  return trim !== null && trim(0) === 1;
}

/**
 * One full, compacting garbage collection, now. Node exposes gc() only with --expose-gc; setting
 * the flag at run time and fetching gc from a fresh context gets it without a start flag (V8 reads
 * the flag when a context is made). A plain gc() does not compact: after a burst (the agent's full
 * sync of 10,000 services) the old generation stays at ~94 MiB of pages for ~42 MiB of live objects,
 * and measured, it even kept V8's own memory reducer from shrinking it later (143 MiB resident
 * 5 s after, against 98 without the gc()). Compacting (V8's flag, on for this one collection)
 * leaves only the live objects' pages; V8 unmaps the freed ones shortly after, on its own thread.
 * Malloc'd memory needs releaseFreedNativeMemory() after it.
 */
export function collectGarbage(): void {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    v8.setFlagsFromString("--compact-on-every-full-gc");
    try {
      gc();
    } finally {
      v8.setFlagsFromString("--no-compact-on-every-full-gc");
    }
  } catch {
    // Memory is only released later, by V8's own schedule.
  }
}
