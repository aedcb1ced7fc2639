import { test } from "node:test";
import assert from "node:assert/strict";
import { KeyMirror } from "./key-mirror.ts";

const kv = (key: string, value: string, modRevision: number) => ({ key, value, modRevision });
const contents = (m: KeyMirror) => Object.fromEntries([...m.entries()].map((e) => [e.key, e.value]));

test("serves nothing until the stream is up and a full read gave it a baseline", () => {
  const m = new KeyMirror();
  assert.equal(m.servesReadsAfter(0), false);
  m.connected();
  assert.equal(m.servesReadsAfter(0), false);
  assert.ok(m.resetTo(10, [kv("a", "1", 5)], m.epoch));
  assert.equal(m.servesReadsAfter(0), true);
  assert.deepEqual(contents(m), { a: "1" });
});

test("events seen before the baseline are covered by a read at or after them", () => {
  const m = new KeyMirror();
  m.connected();
  const epoch = m.epoch;
  m.put("a", "old", 8); // already in the read at 10
  m.delete("c", 9); // already in the read at 10
  assert.equal(m.resetTo(10, [kv("a", "read", 8)], epoch), true);
  assert.deepEqual(contents(m), { a: "read" });
  const m2 = new KeyMirror();
  m2.connected();
  const e2 = m2.epoch;
  m2.put("b", "new", 11);
  assert.equal(m2.resetTo(12, [kv("b", "new", 11), kv("d", "x", 12)], e2), true);
  assert.deepEqual(contents(m2), { b: "new", d: "x" });
});

test("a read older than an event already seen is not a baseline", () => {
  const m = new KeyMirror();
  m.connected();
  const epoch = m.epoch;
  m.put("b", "new", 11);
  assert.equal(m.resetTo(10, [], epoch), false, "it would drop event 11, which the stream will not send again");
  assert.equal(m.servesReadsAfter(0), false);
});

test("a read that spans a break of the stream is not a baseline", () => {
  const m = new KeyMirror();
  m.connected();
  const epoch = m.epoch;
  m.disconnected(); // events seen in between are gone with the held-back list
  m.connected();
  assert.equal(m.resetTo(10, [kv("a", "1", 5)], epoch), false);
  assert.equal(m.resetTo(10, [kv("a", "1", 5)], m.epoch), true);
});

test("a batch's header revision does not let the mirror skip events still to come", () => {
  const m = new KeyMirror();
  m.connected();
  m.resetTo(10, [], m.epoch);
  // etcd catching a slow watcher up: a batch of events whose header says the store is at 30.
  m.put("a", "1", 12);
  m.put("b", "1", 15);
  // The next batch, still older than 30, must apply.
  m.put("c", "1", 20);
  assert.deepEqual(contents(m), { a: "1", b: "1", c: "1" });
  assert.equal(m.servesReadsAfter(25), false, "not complete up to 25 until an empty response says so");
  m.advance(30);
  assert.equal(m.servesReadsAfter(25), true);
});

test("a fresh read rebases a mirror that has a baseline, when nothing newer has been applied", () => {
  const m = new KeyMirror();
  m.connected();
  m.resetTo(10, [kv("a", "wrong", 9)], m.epoch);
  assert.equal(m.resetTo(12, [kv("a", "right", 11)], m.epoch), true);
  assert.deepEqual(contents(m), { a: "right" });
  m.put("a", "newer", 14);
  assert.equal(m.resetTo(13, [kv("a", "right", 11)], m.epoch), false, "the read is older than event 14");
  assert.deepEqual(contents(m), { a: "newer" });
});

test("every key of one transaction applies, though they share a revision", () => {
  const m = new KeyMirror();
  m.connected();
  m.resetTo(3, [], m.epoch);
  m.put("subnets/x", "peer", 4);
  m.put("nodes/peer", "{}", 4);
  m.put("alive/peer", "1", 4);
  assert.deepEqual(Object.keys(contents(m)).sort(), ["alive/peer", "nodes/peer", "subnets/x"]);
  m.delete("alive/peer", 5);
  m.delete("nodes/peer", 5);
  assert.deepEqual(Object.keys(contents(m)), ["subnets/x"]);
});

test("does not answer for a write it has not seen yet", () => {
  const m = new KeyMirror();
  m.connected();
  m.resetTo(10, [], m.epoch);
  assert.equal(m.servesReadsAfter(11), false);
  m.put("a", "mine", 11);
  assert.equal(m.servesReadsAfter(11), true);
});

test("a broken stream stops serving reads until the next baseline", () => {
  const m = new KeyMirror();
  m.connected();
  m.resetTo(10, [], m.epoch);
  m.disconnected();
  assert.equal(m.servesReadsAfter(0), false);
  m.connected();
  assert.equal(m.servesReadsAfter(0), false);
});

test("a read that started before a watch was made anew is not a baseline", () => {
  const m = new KeyMirror();
  m.connected();
  assert.ok(m.resetTo(10, [], m.epoch));
  m.disconnected(); // etcd cancelled the watch (its revision was compacted)
  const epoch = m.epoch; // a read starts now and answers at revision 12
  m.connected(); // the new watch starts at the store's revision of this moment, say 14: 13 is in neither
  assert.equal(m.resetTo(12, [], epoch), false);
  assert.equal(m.servesReadsAfter(0), false);
  assert.equal(m.resetTo(14, [], m.epoch), true, "a read after the new watch exists is");
});
