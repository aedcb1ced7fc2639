// Cluster objects in a real etcd: atomic commits with preconditions, claims under contention, watches
// typed by kind, re-sync after the watch's history was compacted away, and the node watch staying
// quiet while objects change. etcd listens on 127.0.0.1 only; nothing in the network is touched.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { startEtcd, freeLoopbackPorts, type EtcdServer } from "../src/supervise/etcd-server.ts";
import { EtcdDatastore } from "../src/datastore/etcd-datastore.ts";
import { DEFAULT_CLUSTER_CONFIG } from "../src/datastore/datastore.ts";
import { ConflictError, type ObjectEvent, type ObjectWatchHandler } from "../src/datastore/objects.ts";
import { LABEL_SERVICE_NAME, type Deployment, type EndpointSlice, type KindMap, type ObjectKind, type Pod, type Service } from "../src/k8s/types.ts";

let prefixCounter = 0;
const uniquePrefix = () => `/podnet-objtest-${process.pid}-${prefixCounter++}/`;

function service(name: string, namespace?: string, clusterIP?: string): Service {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, ...(namespace ? { namespace } : {}), labels: { app: name } },
    spec: { selector: { app: name }, ports: [{ port: 80, protocol: "TCP" }], ...(clusterIP ? { clusterIP } : {}) },
  };
}

function pod(name: string, namespace = "default"): Pod {
  return { apiVersion: "v1", kind: "Pod", metadata: { name, namespace }, spec: { containers: [{ name: "c" }] } };
}

/** A watch handler that records everything, and lets a test wait for a condition on what it saw. */
class Recorder implements ObjectWatchHandler {
  syncs: { lists: { [K in ObjectKind]?: KindMap[K][] }; revision: number }[] = [];
  events: ObjectEvent[] = [];
  onConnection?: (connected: boolean) => void;
  onSync(lists: { [K in ObjectKind]?: KindMap[K][] }, revision: number): void {
    this.syncs.push({ lists, revision });
  }
  onEvent(event: ObjectEvent): void {
    this.events.push(event);
  }
  async until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.events.map(summary))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

const summary = (e: ObjectEvent) => `${e.type} ${e.kind} ${e.object.metadata.namespace ?? ""}/${e.object.metadata.name}@${e.revision}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("cluster objects in etcd", () => {
  let dir: string;
  let etcd: EtcdServer;
  const stores: EtcdDatastore[] = [];
  const open = (prefix: string) => {
    const ds = new EtcdDatastore({ endpoints: etcd.endpoints, prefix });
    stores.push(ds);
    return ds;
  };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pnt-objects-"));
    etcd = await startEtcd({ dataDir: dir, startTimeoutMs: 60_000 });
  });
  after(async () => {
    for (const ds of stores) await ds.close();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("create stores the Kubernetes JSON with resourceVersion, uid, creationTimestamp and the default namespace", async () => {
    const { objects } = open(uniquePrefix());
    const revision = await objects.commit([{ op: "create", object: service("web") }]);
    const stored = await objects.get("Service", "default", "web");
    assert.ok(stored);
    assert.equal(stored.metadata.namespace, "default");
    assert.equal(stored.metadata.resourceVersion, String(revision));
    assert.match(stored.metadata.uid ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(stored.metadata.creationTimestamp ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.deepEqual(stored.spec, service("web").spec);
    assert.deepEqual((await objects.list("Service")).items.map((s) => s.metadata.name), ["web"]);
    assert.deepEqual((await objects.list("Service", "other")).items, []);
  });

  it("every kind round-trips: cluster-scoped Namespaces, namespaced Deployments and EndpointSlices, generated names", async () => {
    const { objects } = open(uniquePrefix());
    const slice: EndpointSlice = {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: "web-1", namespace: "team", labels: { [LABEL_SERVICE_NAME]: "web" } },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.244.1.5"], conditions: { ready: true } }],
      ports: [{ port: 8080, protocol: "TCP" }],
    };
    const deployment: Deployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: "team" },
      spec: { replicas: 2, selector: { matchLabels: { app: "web" } }, template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "c" }] } } },
    };
    const generated: Pod = { ...pod("", "team"), metadata: { name: "", generateName: "web-", namespace: "team" } };
    await objects.commit([
      { op: "create", object: { apiVersion: "v1", kind: "Namespace", metadata: { name: "team" } } },
      { op: "create", object: slice },
      { op: "create", object: deployment },
      { op: "create", object: generated },
    ]);
    assert.equal((await objects.get("Namespace", undefined, "team"))?.metadata.namespace, undefined);
    assert.deepEqual((await objects.get("EndpointSlice", "team", "web-1"))?.endpoints, slice.endpoints);
    assert.equal((await objects.get("Deployment", "team", "web"))?.spec.replicas, 2);
    const pods = (await objects.list("Pod", "team")).items;
    assert.equal(pods.length, 1);
    assert.match(pods[0]!.metadata.name, /^web-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    assert.deepEqual((await objects.list("EndpointSlice", "default")).items, []);
  });

  it("a batch with one failing precondition writes nothing, and the error names that object", async () => {
    const { objects } = open(uniquePrefix());
    await objects.commit([{ op: "create", object: service("taken") }, { op: "claim", pool: "ClusterIP", token: "10.96.0.5", owner: "default/taken" }]);
    const before = await objects.list("Service");
    await assert.rejects(
      objects.commit([
        { op: "create", object: service("fresh") },
        { op: "claim", pool: "ClusterIP", token: "10.96.0.6", owner: "default/fresh" },
        { op: "create", object: service("taken") },
      ]),
      (err: unknown) => err instanceof ConflictError && /Service default\/taken already exists/.test(err.message),
    );
    assert.equal(await objects.get("Service", "default", "fresh"), undefined);
    assert.deepEqual([...(await objects.claims("ClusterIP"))], [["10.96.0.5", "default/taken"]]);
    assert.deepEqual((await objects.list("Service")).items, before.items);
    await assert.rejects(
      objects.commit([{ op: "create", object: service("fresh") }, { op: "claim", pool: "ClusterIP", token: "10.96.0.5", owner: "default/fresh" }]),
      /ClusterIP 10\.96\.0\.5 is already claimed by default\/taken/,
    );
    assert.equal(await objects.get("Service", "default", "fresh"), undefined);
  });

  it("update and delete honour resourceVersion; an update keeps uid and creationTimestamp", async () => {
    const { objects } = open(uniquePrefix());
    await objects.commit([{ op: "create", object: service("web") }]);
    const first = await objects.get("Service", "default", "web");
    assert.ok(first);
    const changed: Service = { ...first, metadata: { ...first.metadata, uid: "forged", labels: { app: "v2" } } };
    await objects.commit([{ op: "update", object: changed }]);
    const second = await objects.get("Service", "default", "web");
    assert.ok(second);
    assert.equal(second.metadata.uid, first.metadata.uid);
    assert.equal(second.metadata.creationTimestamp, first.metadata.creationTimestamp);
    assert.deepEqual(second.metadata.labels, { app: "v2" });
    assert.ok(Number(second.metadata.resourceVersion) > Number(first.metadata.resourceVersion));
    // The first version is stale now.
    await assert.rejects(objects.commit([{ op: "update", object: first }]), (err: unknown) =>
      err instanceof ConflictError && /Service default\/web has changed: resourceVersion is \d+, not \d+/.test(err.message));
    await assert.rejects(objects.commit([{ op: "delete", kind: "Service", namespace: "default", name: "web", resourceVersion: first.metadata.resourceVersion }]), ConflictError);
    await assert.rejects(objects.commit([{ op: "update", object: service("ghost") }]), /Service default\/ghost does not exist/);
    await objects.commit([{ op: "delete", kind: "Service", namespace: "default", name: "web", resourceVersion: second.metadata.resourceVersion }]);
    assert.equal(await objects.get("Service", "default", "web"), undefined);
    await assert.rejects(objects.commit([{ op: "delete", kind: "Service", name: "web" }]), /Service default\/web does not exist/);
  });

  it("bad input is refused with the field named, and nothing is written", async () => {
    const { objects } = open(uniquePrefix());
    const bad: [unknown, RegExp][] = [
      [{ op: "create", object: { ...service("x"), kind: "Secret" } }, /writes\[0\]\.object\.kind: "Secret" is not one of/],
      [{ op: "create", object: { ...service("x"), apiVersion: "v2" } }, /writes\[0\]\.object\.apiVersion/],
      [{ op: "create", object: service("Bad_Name") }, /writes\[0\]\.object\.metadata\.name: "Bad_Name"/],
      [{ op: "create", object: service("x", "UPPER") }, /writes\[0\]\.object\.metadata\.namespace: "UPPER"/],
      [{ op: "claim", pool: "a/b", token: "1", owner: "o" }, /writes\[0\]\.pool: must not contain/],
      [{ op: "frobnicate" }, /writes\[0\]\.op: "frobnicate"/],
    ];
    for (const [write, message] of bad) {
      await assert.rejects(objects.commit([write as never]), message);
    }
    await assert.rejects(
      objects.commit([{ op: "create", object: service("x") }, { op: "delete", kind: "Service", name: "x" }]),
      /writes\[1\]: touches Service default\/x, as writes\[0\] does/,
    );
    assert.deepEqual((await objects.list("Service")).items, []);
  });

  it("a claimed token is handed out once, however many clients commit for it at the same time", async () => {
    const prefix = uniquePrefix();
    const clients = Array.from({ length: 12 }, () => open(prefix).objects);
    const results = await Promise.allSettled(
      clients.map((objects, i) =>
        objects.commit([
          { op: "create", object: service(`svc${i}`, undefined, "10.96.0.20") },
          { op: "claim", pool: "ClusterIP", token: "10.96.0.20", owner: `default/svc${i}` },
        ]),
      ),
    );
    const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    assert.equal(winners.length, 1, "exactly one commit wins the claim");
    for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof ConflictError, String(r.reason));
    const claims = await clients[0]!.claims("ClusterIP");
    assert.deepEqual([...claims], [["10.96.0.20", `default/svc${winners[0]}`]]);
    assert.deepEqual((await clients[0]!.list("Service")).items.map((s) => s.metadata.name), [`svc${winners[0]}`]);
  });

  it("a watch gets only its kinds: onSync with the lists, then added, modified and deleted in revision order", async () => {
    const { objects } = open(uniquePrefix());
    await objects.commit([{ op: "create", object: service("before") }, { op: "create", object: pod("p0") }]);
    const services = new Recorder();
    const both = new Recorder();
    const serviceWatch = await objects.watchObjects(["Service"], services);
    const bothWatch = await objects.watchObjects(["Pod", "Service"], both);
    try {
      assert.equal(services.syncs.length, 1);
      assert.deepEqual(services.syncs[0]!.lists.Service?.map((s) => s.metadata.name), ["before"]);
      assert.equal(services.syncs[0]!.lists.Pod, undefined);
      assert.deepEqual(both.syncs[0]!.lists.Pod?.map((p) => p.metadata.name), ["p0"]);

      await objects.commit([{ op: "create", object: pod("p1") }]);
      await objects.commit([{ op: "create", object: service("web") }]);
      const web = await objects.get("Service", "default", "web");
      assert.ok(web);
      await objects.commit([{ op: "update", object: { ...web, metadata: { ...web.metadata, labels: { app: "v2" } } } }]);
      await objects.commit([{ op: "create", object: pod("p2") }]);
      const deletedAt = await objects.commit([{ op: "delete", kind: "Service", name: "web" }]);
      await objects.commit([{ op: "delete", kind: "Pod", name: "p1" }]);

      await both.until("the pod deletion", () => both.events.some((e) => e.type === "deleted" && e.kind === "Pod"));
      await services.until("the service deletion", () => services.events.some((e) => e.type === "deleted"));
      await sleep(200); // a pod event sent to the service watcher would arrive by now
      assert.deepEqual(services.events.map((e) => `${e.type} ${e.kind} ${e.object.metadata.name}`), [
        "added Service web",
        "modified Service web",
        "deleted Service web",
      ]);
      const deleted = services.events[2]!;
      assert.equal(deleted.revision, deletedAt);
      assert.equal(deleted.object.metadata.resourceVersion, String(deletedAt));
      assert.deepEqual(deleted.object.metadata.labels, { app: "v2" }, "a deleted event carries the last stored object");
      assert.deepEqual(both.events.map((e) => `${e.type} ${e.kind} ${e.object.metadata.name}`), [
        "added Pod p1",
        "added Service web",
        "modified Service web",
        "added Pod p2",
        "deleted Service web",
        "deleted Pod p1",
      ]);
      const revisions = both.events.map((e) => e.revision);
      assert.deepEqual(revisions, [...revisions].sort((a, b) => a - b));
      assert.ok(revisions[0]! > both.syncs[0]!.revision, "events start after the synced revision");
    } finally {
      await serviceWatch.close();
      await bothWatch.close();
    }
  });

  it("node watch listeners do not fire when objects or claims change", async () => {
    const prefix = uniquePrefix();
    const ds = open(prefix);
    await ds.ensureClusterConfig(DEFAULT_CLUSTER_CONFIG);
    let changes = 0;
    const watch = await ds.watch({ onChange: () => changes++ });
    try {
      await sleep(300);
      const settled = changes;
      await ds.objects.commit([{ op: "create", object: service("web") }, { op: "claim", pool: "NodePort", token: "30080", owner: "default/web" }]);
      await ds.objects.commit([{ op: "create", object: pod("p") }]);
      await sleep(500);
      assert.equal(changes, settled, "no node change happened");
      // The same listener does fire for a node key, so the silence above is not a dead watch.
      await ds.registerNode({ name: "n1", nodeIp: "192.168.5.1" });
      const deadline = Date.now() + 5000;
      while (changes === settled && Date.now() < deadline) await sleep(20);
      assert.ok(changes > settled);
      assert.deepEqual((await ds.snapshot({ fresh: true })).nodes.map((n) => n.name), ["n1"]);
    } finally {
      await watch.close();
    }
  });
});

describe("an object watch across an etcd restart", () => {
  it("re-lists and calls onSync again when the history it would resume from was compacted", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pnt-objects-restart-"));
    const [clientPort, peerPort, otherClientPort] = await freeLoopbackPorts(3);
    let etcd = await startEtcd({ dataDir: dir, clientPort, peerPort, startTimeoutMs: 60_000 });
    const prefix = uniquePrefix();
    const ds = new EtcdDatastore({ endpoints: etcd.endpoints, prefix });
    const recorder = new Recorder();
    const connection: boolean[] = [];
    recorder.onConnection = (up: boolean) => connection.push(up);
    let watch: { close(): Promise<void> } | undefined;
    try {
      await ds.objects.commit([{ op: "create", object: service("one") }]);
      watch = await ds.objects.watchObjects(["Service"], recorder);
      await ds.objects.commit([{ op: "create", object: service("two") }]);
      await recorder.until("service two", () => recorder.events.length === 1);
      await etcd.stop();
      // The same data on another client port, which the watching client does not know: there,
      // change the services and compact away the history the watch would resume from.
      etcd = await startEtcd({ dataDir: dir, clientPort: otherClientPort, peerPort, startTimeoutMs: 60_000 });
      const writer = new Etcd3({ hosts: etcd.endpoints });
      const other = new EtcdDatastore({ endpoints: etcd.endpoints, prefix });
      try {
        const deleted = await other.objects.commit([{ op: "delete", kind: "Service", name: "one" }]);
        await other.objects.commit([{ op: "create", object: service("three") }]);
        await writer.kv.compact({ revision: String(deleted + 1), physical: true });
      } finally {
        writer.close();
        await other.close();
      }
      await etcd.stop();
      etcd = await startEtcd({ dataDir: dir, clientPort, peerPort, startTimeoutMs: 60_000 });
      await recorder.until("a second onSync", () => recorder.syncs.length === 2, 30_000);
      assert.deepEqual(recorder.syncs[1]!.lists.Service?.map((s) => s.metadata.name).sort(), ["three", "two"]);
      assert.deepEqual(recorder.events.map(summary).length, 1, "the changes made while it was away come with the list, not as events");
      assert.ok(connection.includes(false), "the consumer was told the stream broke");
      // And the new watch delivers what follows.
      await ds.objects.commit([{ op: "create", object: service("four") }]);
      await recorder.until("service four", () => recorder.events.some((e) => e.object.metadata.name === "four"));
    } finally {
      await watch?.close().catch(() => undefined);
      await ds.close();
      await etcd.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
