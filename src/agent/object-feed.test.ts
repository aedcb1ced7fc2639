import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ObjectStore, ObjectWatchHandler } from "../datastore/objects.ts";
import type { EndpointSlice, Service } from "../k8s/types.ts";
import type { AgentInputs } from "./inputs.ts";
import { feedObjects, objectKindsIn, objectKey } from "./object-feed.ts";
import { InputHub, ReconcilerRunner } from "./reconciler.ts";

/** Only the watch half of an ObjectStore: the feed uses nothing else. */
function watchOnlyStore(): { store: ObjectStore; handler: () => ObjectWatchHandler; watchedKinds: () => readonly string[] } {
  let handler: ObjectWatchHandler | undefined;
  let kinds: readonly string[] = [];
  const unused = () => Promise.reject(new Error("not used by the feed"));
  const store: ObjectStore = {
    get: unused,
    list: unused,
    claims: unused,
    commit: unused,
    async watchObjects(k, h) {
      kinds = k;
      handler = h;
      return { close: async () => undefined };
    },
  };
  return { store, handler: () => handler!, watchedKinds: () => kinds };
}

const service = (name: string, clusterIP: string): Service =>
  ({ apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default" }, spec: { clusterIP, ports: [{ port: 80 }] } }) as Service;
const slice = (name: string): EndpointSlice =>
  ({ apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name, namespace: "default" }, addressType: "IPv4", endpoints: [] }) as unknown as EndpointSlice;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("object feed", () => {
  it("finds the object kinds among inputs", () => {
    assert.deepEqual(objectKindsIn(["config", "EndpointSlice", "snapshot", "Service"]), ["Service", "EndpointSlice"]);
    assert.deepEqual(objectKindsIn(["config", "self"]), []);
    assert.equal(objectKey(service("web", "10.96.0.5")), "default/web");
  });

  it("publishes each kind on list and on events, waking only the reconcilers that read that kind", async () => {
    const hub = new InputHub<AgentInputs>();
    const runner = new ReconcilerRunner(hub, { log: () => undefined });
    const seen: string[] = [];
    let routesSyncs = 0;
    runner.add({
      name: "services",
      inputs: ["Service"],
      gatesReadiness: false,
      sync({ Service: cache }) {
        seen.push([...cache.objects.values()].map((s) => `${s.metadata.name}=${s.spec.clusterIP}`).join(",") + `@${cache.revision}`);
      },
    });
    runner.add({ name: "routes", inputs: ["snapshot"], gatesReadiness: false, sync: () => void routesSyncs++ });
    runner.start();
    hub.set("snapshot", { revision: 1, config: undefined, nodes: [] });
    const { store, handler, watchedKinds } = watchOnlyStore();
    await feedObjects(store, hub, ["Service", "EndpointSlice"]);
    assert.deepEqual(watchedKinds(), ["Service", "EndpointSlice"]);
    handler().onSync({ Service: [service("a", "10.96.0.1")], EndpointSlice: [] }, 10);
    await sleep(20);
    assert.deepEqual(seen, ["a=10.96.0.1@10"]);
    handler().onEvent({ type: "added", kind: "Service", object: service("b", "10.96.0.2"), revision: 11 });
    await sleep(20);
    handler().onEvent({ type: "modified", kind: "Service", object: service("a", "10.96.0.9"), revision: 12 });
    await sleep(20);
    handler().onEvent({ type: "added", kind: "EndpointSlice", object: slice("a-x"), revision: 13 });
    await sleep(20);
    handler().onEvent({ type: "deleted", kind: "Service", object: service("b", "10.96.0.2"), revision: 14 });
    await sleep(20);
    assert.deepEqual(seen, ["a=10.96.0.1@10", "a=10.96.0.1,b=10.96.0.2@11", "a=10.96.0.9,b=10.96.0.2@12", "a=10.96.0.9@14"], "the EndpointSlice did not wake it");
    assert.equal(hub.get("EndpointSlice")?.objects.size, 1);
    assert.equal(routesSyncs, 1, "object changes never woke the routes reconciler");
    // A re-list replaces, not merges.
    handler().onSync({ Service: [service("c", "10.96.0.3")], EndpointSlice: [] }, 20);
    await sleep(20);
    assert.equal(seen.at(-1), "c=10.96.0.3@20");
    assert.equal(hub.get("EndpointSlice")?.objects.size, 0);
    await runner.stop();
  });
});
