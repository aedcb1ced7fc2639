import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { loadKoffi } from "./libc.ts";
import { releaseFreedNativeMemory } from "./malloc-trim.ts";

/** Resident pages of the C heap (the brk segment, glibc's main arena), in MiB, from /proc/self/smaps. */
function brkHeapMiB(): number {
  let inHeap = false;
  let kb = 0;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inHeap = line.trimEnd().endsWith("[heap]");
    else if (inHeap && line.startsWith("Rss:")) kb += Number(/(\d+)/.exec(line)?.[1]);
  }
  return kb / 1024;
}

describe("releaseFreedNativeMemory (glibc malloc_trim under Node)", () => {
  it("gives freed pages in the middle of the C heap back to the kernel", () => {
    const libc = loadKoffi().load("libc.so.6");
    const malloc = libc.func("void *malloc(size_t size)");
    const memset = libc.func("void *memset(void *s, int c, size_t n)");
    const free = libc.func("void free(void *ptr)");
    // 1,000 blocks of 32 KiB (under glibc's mmap threshold, so in the brk heap), each touched; all
    // freed but the last, which pins the heap's top: glibc's own trimming cannot release them.
    const blocks: unknown[] = [];
    for (let i = 0; i < 1000; i++) {
      const p = malloc(32 * 1024);
      memset(p, 1, 32 * 1024);
      blocks.push(p);
    }
    for (const p of blocks.slice(0, -1)) free(p);
    const before = brkHeapMiB();
    assert.ok(before >= 30, `the freed blocks are still resident before trimming (${before.toFixed(1)} MiB)`);
    assert.equal(releaseFreedNativeMemory(), true);
    const after = brkHeapMiB();
    free(blocks[blocks.length - 1]);
    assert.ok(before - after >= 25, `brk heap ${before.toFixed(1)} → ${after.toFixed(1)} MiB`);
  });
});
