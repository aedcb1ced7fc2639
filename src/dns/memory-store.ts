// A small in-memory ObjectStore (src/datastore/objects.ts) for unit tests and the bench: the same
// list-then-watch contract as the etcd store, without a process. Pure logic, no persistence.

import { ConflictError, type ObjectEvent, type ObjectList, type ObjectStore, type ObjectWatchHandler, type ObjectWrite } from "../datastore/objects.ts";
import { isNamespaced, objectKey, type KindMap, type KubeObject, type ObjectKind } from "../k8s/types.ts";

interface Watcher {
  kinds: Set<ObjectKind>;
  handler: ObjectWatchHandler;
}

export class MemoryObjectStore implements ObjectStore {
  private revision = 0;
  private readonly objects = new Map<ObjectKind, Map<string, KubeObject>>();
  private readonly claimPools = new Map<string, Map<string, string>>();
  private readonly watchers = new Set<Watcher>();

  private bucket(kind: ObjectKind): Map<string, KubeObject> {
    let b = this.objects.get(kind);
    if (!b) this.objects.set(kind, (b = new Map()));
    return b;
  }

  async get<K extends ObjectKind>(kind: K, namespace: string | undefined, name: string): Promise<KindMap[K] | undefined> {
    const key = isNamespaced(kind) ? `${namespace ?? "default"}/${name}` : name;
    return structuredClone(this.bucket(kind).get(key)) as KindMap[K] | undefined;
  }

  async list<K extends ObjectKind>(kind: K, namespace?: string): Promise<ObjectList<K>> {
    const items = [...this.bucket(kind).values()].filter((o) => namespace === undefined || o.metadata.namespace === namespace);
    return { items: structuredClone(items) as KindMap[K][], revision: this.revision };
  }

  async claims(pool: string): Promise<Map<string, string>> {
    return new Map(this.claimPools.get(pool) ?? []);
  }

  async commit(writes: readonly ObjectWrite[]): Promise<number> {
    // Check every precondition first: all or nothing.
    for (const w of writes) {
      if (w.op === "create" && this.bucket(w.object.kind).has(this.keyOf(w.object))) throw new ConflictError(`${w.object.kind} ${objectKey(w.object)} exists`);
      if (w.op === "update" || w.op === "delete") {
        const kind = w.op === "update" ? w.object.kind : w.kind;
        const key = w.op === "update" ? this.keyOf(w.object) : isNamespaced(w.kind) ? `${w.namespace ?? "default"}/${w.name}` : w.name;
        const stored = this.bucket(kind).get(key);
        const rv = w.op === "update" ? w.object.metadata.resourceVersion : w.resourceVersion;
        if (w.op === "delete" && !stored) throw new ConflictError(`${kind} ${key} does not exist`);
        if (rv !== undefined && stored && stored.metadata.resourceVersion !== rv) throw new ConflictError(`${kind} ${key} changed`);
      }
      if (w.op === "claim" && this.claimPools.get(w.pool)?.has(w.token)) throw new ConflictError(`${w.pool} ${w.token} is claimed`);
    }
    const revision = ++this.revision;
    const events: ObjectEvent[] = [];
    for (const w of writes) {
      if (w.op === "create" || w.op === "update") {
        const object = structuredClone(w.object);
        if (isNamespaced(object.kind)) object.metadata.namespace ??= "default";
        object.metadata.resourceVersion = String(revision);
        const bucket = this.bucket(object.kind);
        const existed = bucket.has(this.keyOf(object));
        bucket.set(this.keyOf(object), object);
        events.push({ type: existed ? "modified" : "added", kind: object.kind, object, revision });
      } else if (w.op === "delete") {
        const key = isNamespaced(w.kind) ? `${w.namespace ?? "default"}/${w.name}` : w.name;
        const stored = this.bucket(w.kind).get(key);
        this.bucket(w.kind).delete(key);
        if (stored) events.push({ type: "deleted", kind: w.kind, object: stored, revision });
      } else if (w.op === "claim") {
        let pool = this.claimPools.get(w.pool);
        if (!pool) this.claimPools.set(w.pool, (pool = new Map()));
        pool.set(w.token, w.owner);
      } else {
        this.claimPools.get(w.pool)?.delete(w.token);
      }
    }
    for (const event of events) {
      for (const watcher of this.watchers) if (watcher.kinds.has(event.kind)) watcher.handler.onEvent(structuredClone(event));
    }
    return revision;
  }

  /** Convenience for tests: create or replace objects in one commit. */
  async apply(...objects: KubeObject[]): Promise<number> {
    return this.commit(objects.map((object) => ({ op: this.bucket(object.kind).has(this.keyOf(object)) ? "update" : "create", object: { ...object, metadata: { ...object.metadata, resourceVersion: undefined } } }) as ObjectWrite));
  }

  async watchObjects(kinds: readonly ObjectKind[], handler: ObjectWatchHandler): Promise<{ close(): Promise<void> }> {
    const watcher: Watcher = { kinds: new Set(kinds), handler };
    const lists: { [K in ObjectKind]?: KindMap[K][] } = {};
    for (const kind of kinds) (lists as Record<string, KubeObject[]>)[kind] = structuredClone([...this.bucket(kind).values()]);
    handler.onSync(lists, this.revision);
    this.watchers.add(watcher);
    return { close: async () => void this.watchers.delete(watcher) };
  }

  private keyOf(object: KubeObject): string {
    return isNamespaced(object.kind) ? `${object.metadata.namespace ?? "default"}/${object.metadata.name}` : object.metadata.name;
  }
}
