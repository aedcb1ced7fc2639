import { test } from "node:test";
import assert from "node:assert/strict";
import { KeyMirror } from "./etcd-datastore.ts";

const kv = (key: string, value: string, modRevision: number) => ({ key, value, modRevision });
const contents = (m: KeyMirror) => Object.fromEntries([...m.entries()].map((e) => [e.key, e.value]));

test("serves nothing until the stream is up and a full read gave it a baseline", () => {
  const m = new KeyMirror();
  assert.equal(m.servesReadsAfter(0), false);
  m.connected();
  assert.equal(m.servesReadsAfter(0), false);
  m.resetTo(10, [kv("a", "1", 5)]);
  assert.equal(m.servesReadsAfter(0), true);
  assert.deepEqual(contents(m), { a: "1" });
});

test("events seen before the baseline are replayed on top of it, except those the read already holds", () => {
  const m = new KeyMirror();
  m.connected();
  m.put("a", "old", 8); // already in the read at 10
  m.put("b", "new", 11); // after the read
  m.delete("c", 12);
  m.resetTo(10, [kv("a", "read", 8), kv("c", "gone-soon", 9)]);
  assert.deepEqual(contents(m), { a: "read", b: "new" });
});

test("a stale full read never replaces newer events", () => {
  const m = new KeyMirror();
  m.connected();
  m.resetTo(10, [kv("a", "1", 10)]);
  m.put("a", "2", 15);
  m.advance(15);
  m.disconnected();
  m.connected();
  // A read that started before the break and answers after it is older than what was seen.
  m.resetTo(12, [kv("a", "1", 10)]);
  assert.equal(m.servesReadsAfter(0), false, "no baseline from a stale read");
  m.resetTo(20, [kv("a", "3", 18)]);
  assert.deepEqual(contents(m), { a: "3" });
  assert.equal(m.servesReadsAfter(20), true);
});

test("does not answer for a write it has not seen yet", () => {
  const m = new KeyMirror();
  m.connected();
  m.resetTo(10, []);
  assert.equal(m.servesReadsAfter(11), false);
  m.put("a", "mine", 11);
  m.advance(11);
  assert.equal(m.servesReadsAfter(11), true);
});

test("a broken stream stops serving reads until the next baseline", () => {
  const m = new KeyMirror();
  m.connected();
  m.resetTo(10, []);
  m.disconnected();
  assert.equal(m.servesReadsAfter(0), false);
  m.connected();
  assert.equal(m.servesReadsAfter(0), false);
});
