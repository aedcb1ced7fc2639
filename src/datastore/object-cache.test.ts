import { test } from "node:test";
import assert from "node:assert/strict";
import { ObjectCache, watchIntoCache, type CacheChange } from "./object-cache.ts";
import type { ObjectEvent, ObjectStore, ObjectWatchHandler } from "./objects.ts";
import type { EndpointSlice, Namespace, Service } from "../k8s/types.ts";

const svc = (name: string, namespace: string, labels: Record<string, string> = {}, rv = "1"): Service => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace, labels, resourceVersion: rv },
  spec: {},
});
const ns = (name: string): Namespace => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
const slice = (name: string, namespace: string): EndpointSlice => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name, namespace },
  addressType: "IPv4",
  endpoints: [],
});
const names = (objects: { metadata: { namespace?: string; name: string } }[]) =>
  objects.map((o) => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name));
const event = (type: ObjectEvent["type"], object: Service, revision: number): ObjectEvent => ({ type, kind: "Service", object, revision });

test("a sync replaces each kind's contents; lists are sorted by namespace then name", () => {
  const cache = new ObjectCache(["Service", "Namespace"]);
  assert.equal(cache.synced, false);
  cache.onSync({ Service: [svc("b", "team"), svc("a", "team"), svc("z", "default")], Namespace: [ns("team"), ns("default")] }, 10);
  assert.equal(cache.synced, true);
  assert.deepEqual(names(cache.list("Service")), ["default/z", "team/a", "team/b"]);
  assert.deepEqual(names(cache.list("Service", "team")), ["team/a", "team/b"]);
  assert.deepEqual(names(cache.list("Namespace")), ["default", "team"]);
  assert.equal(cache.get("Namespace", undefined, "team")?.metadata.name, "team");
  assert.equal(cache.get("Service", undefined, "z")?.metadata.namespace, "default", "no namespace means default");
  // A re-sync after a reconnect replaces, it does not merge.
  cache.onSync({ Service: [svc("c", "team")], Namespace: [] }, 20);
  assert.deepEqual(names(cache.list("Service")), ["team/c"]);
  assert.deepEqual(cache.list("Namespace"), []);
  assert.equal(cache.get("Service", "team", "a"), undefined);
});

test("events patch the index and reach only the listeners of their kind, with the previous object", () => {
  const cache = new ObjectCache(["Service", "EndpointSlice"]);
  const serviceChanges: CacheChange<"Service">[] = [];
  const sliceChanges: CacheChange<"EndpointSlice">[] = [];
  cache.onChange("Service", (c) => serviceChanges.push(c));
  const unsubscribe = cache.onChange("EndpointSlice", (c) => sliceChanges.push(c));
  cache.onSync({ Service: [svc("web", "default")], EndpointSlice: [] }, 5);
  cache.onEvent(event("modified", svc("web", "default", { v: "2" }, "6"), 6));
  cache.onEvent({ type: "added", kind: "EndpointSlice", object: slice("web-abc", "default"), revision: 7 });
  cache.onEvent(event("deleted", svc("web", "default", { v: "2" }, "8"), 8));
  assert.deepEqual(serviceChanges.map((c) => c.type), ["sync", "modified", "deleted"]);
  const modified = serviceChanges[1]!;
  assert.ok(modified.type === "modified");
  assert.deepEqual(modified.previous?.metadata.labels, {});
  assert.deepEqual(modified.object.metadata.labels, { v: "2" });
  assert.deepEqual(sliceChanges.map((c) => c.type), ["sync", "added"]);
  assert.deepEqual(cache.list("Service"), []);
  assert.deepEqual(names(cache.list("EndpointSlice")), ["default/web-abc"]);
  assert.equal(cache.revision, 8);
  unsubscribe();
  cache.onEvent({ type: "deleted", kind: "EndpointSlice", object: slice("web-abc", "default"), revision: 9 });
  assert.equal(sliceChanges.length, 2, "no call after unsubscribing");
  assert.deepEqual(cache.list("EndpointSlice"), []);
});

test("events the last list already holds are skipped, but every object of one commit applies", () => {
  const cache = new ObjectCache(["Service"]);
  cache.onSync({ Service: [svc("a", "default", {}, "10")] }, 10);
  cache.onEvent(event("deleted", svc("a", "default"), 9));
  assert.deepEqual(names(cache.list("Service")), ["default/a"], "event 9 is older than the list at 10");
  cache.onEvent(event("added", svc("b", "default"), 11));
  cache.onEvent(event("added", svc("c", "default"), 11));
  assert.deepEqual(names(cache.list("Service")), ["default/a", "default/b", "default/c"]);
});

test("select matches labels; a kind the cache does not watch is an error naming it", () => {
  const cache = new ObjectCache(["Service"]);
  cache.onSync({ Service: [svc("a", "x", { app: "web", tier: "fe" }), svc("b", "x", { app: "web" }), svc("c", "y", { app: "web", tier: "fe" })] }, 1);
  assert.deepEqual(names(cache.select("Service", "x", { app: "web", tier: "fe" })), ["x/a"]);
  assert.deepEqual(names(cache.select("Service", undefined, { tier: "fe" })), ["x/a", "y/c"]);
  assert.throws(() => cache.list("Pod"), /kind: this cache does not watch Pod/);
  cache.onEvent({ type: "added", kind: "Pod", object: { apiVersion: "v1", kind: "Pod", metadata: { name: "p" }, spec: { containers: [] } }, revision: 2 });
  assert.equal(cache.revision, 1, "an event of another kind is ignored");
});

test("watchIntoCache subscribes the cache to exactly its kinds and attaches listeners before the first sync", async () => {
  let watchedKinds: readonly string[] = [];
  let handler: ObjectWatchHandler | undefined;
  let closed = false;
  const store: Pick<ObjectStore, "watchObjects"> = {
    async watchObjects(kinds, h) {
      watchedKinds = kinds;
      handler = h;
      h.onSync({ Service: [svc("a", "default")] }, 3);
      return { close: async () => void (closed = true) };
    },
  };
  const seen: string[] = [];
  const { cache, close } = await watchIntoCache(store, ["Service"], (c) => c.onChange("Service", (change) => seen.push(change.type)));
  assert.deepEqual(watchedKinds, ["Service"]);
  assert.equal(handler, cache);
  assert.deepEqual(seen, ["sync"]);
  assert.deepEqual(names(cache.list("Service")), ["default/a"]);
  await close();
  assert.equal(closed, true);
});
