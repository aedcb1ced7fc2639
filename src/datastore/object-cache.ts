// An in-memory index of cluster objects, fed by ObjectStore.watchObjects: what the DNS server, the
// service proxy and the lab's controllers read instead of asking the datastore. Like a client-go
// informer's indexer: one map per kind and namespace, replaced on every sync, patched by each event,
// with listeners per kind. Pure: it never talks to a store itself. The objects it hands out are the
// ones the watch delivered, shared by every reader: treat them as read-only.

import { isNamespaced, type KindMap, type ObjectKind } from "../k8s/types.ts";
import type { ObjectEvent, ObjectStore, ObjectWatchHandler } from "./objects.ts";
import { DEFAULT_NAMESPACE } from "./object-keys.ts";

/** What changed in one kind: a whole new list (sync), or one object. */
export type CacheChange<K extends ObjectKind> =
  | { type: "sync"; kind: K; revision: number }
  | { type: "added" | "modified"; kind: K; object: KindMap[K]; previous: KindMap[K] | undefined; revision: number }
  | { type: "deleted"; kind: K; object: KindMap[K]; revision: number };

export type CacheListener<K extends ObjectKind> = (change: CacheChange<K>) => void;

/** Cluster-scoped objects sit under this namespace key. */
const CLUSTER_SCOPE = "";

export class ObjectCache implements ObjectWatchHandler {
  /** kind → namespace → name → object. */
  private readonly byKind = new Map<ObjectKind, Map<string, Map<string, KindMap[ObjectKind]>>>();
  private readonly listeners = new Map<ObjectKind, Set<CacheListener<ObjectKind>>>();
  /** Store revision the cache is complete up to (the last sync or event); 0 before the first sync. */
  revision = 0;
  /** Revision of the last full list: events at or below it are in the cache already. */
  private syncRevision = 0;
  /** Whether the connection that feeds the cache is up; reads still answer while it is down (stale). */
  connected = false;

  constructor(readonly kinds: readonly ObjectKind[]) {
    for (const kind of kinds) this.byKind.set(kind, new Map());
  }

  /** True once the first full list arrived. */
  get synced(): boolean {
    return this.revision > 0;
  }

  get<K extends ObjectKind>(kind: K, namespace: string | undefined, name: string): KindMap[K] | undefined {
    return this.namespaces(kind).get(namespaceKey(kind, namespace))?.get(name) as KindMap[K] | undefined;
  }

  /** Objects of a kind, in one namespace or (undefined) all, sorted by namespace then name. */
  list<K extends ObjectKind>(kind: K, namespace?: string): KindMap[K][] {
    const namespaces = this.namespaces(kind);
    const selected = namespace === undefined || !isNamespaced(kind)
      ? [...namespaces.keys()].sort()
      : [namespaceKey(kind, namespace)];
    const out: KindMap[K][] = [];
    for (const ns of selected) {
      const names = namespaces.get(ns);
      if (!names) continue;
      for (const name of [...names.keys()].sort()) out.push(names.get(name) as KindMap[K]);
    }
    return out;
  }

  /** Objects whose labels include every pair of `labels` (a matchLabels selector). */
  select<K extends ObjectKind>(kind: K, namespace: string | undefined, labels: Readonly<Record<string, string>>): KindMap[K][] {
    const wanted = Object.entries(labels);
    return this.list(kind, namespace).filter((object) => wanted.every(([key, value]) => object.metadata.labels?.[key] === value));
  }

  /** Call `listener` after every change to `kind`; returns the function that unsubscribes. */
  onChange<K extends ObjectKind>(kind: K, listener: CacheListener<K>): () => void {
    this.namespaces(kind);
    let set = this.listeners.get(kind);
    if (!set) this.listeners.set(kind, (set = new Set()));
    const erased = listener as CacheListener<ObjectKind>;
    set.add(erased);
    return () => set.delete(erased);
  }

  onSync(lists: { [K in ObjectKind]?: KindMap[K][] }, revision: number): void {
    this.revision = revision;
    this.syncRevision = revision;
    for (const kind of this.kinds) {
      const namespaces = new Map<string, Map<string, KindMap[ObjectKind]>>();
      for (const object of (lists[kind] ?? []) as KindMap[ObjectKind][]) {
        const ns = namespaceKey(kind, object.metadata.namespace);
        let names = namespaces.get(ns);
        if (!names) namespaces.set(ns, (names = new Map()));
        names.set(object.metadata.name, object);
      }
      this.byKind.set(kind, namespaces);
    }
    for (const kind of this.kinds) this.emit(kind, { type: "sync", kind, revision });
  }

  onEvent(event: ObjectEvent): void {
    if (!this.byKind.has(event.kind)) return;
    // An event the last list already holds is not applied twice. Judged by the list's revision, not
    // by the latest event's: the objects of one commit share a revision and arrive as separate events.
    if (event.revision <= this.syncRevision) return;
    if (event.revision > this.revision) this.revision = event.revision;
    const namespaces = this.namespaces(event.kind);
    const ns = namespaceKey(event.kind, event.object.metadata.namespace);
    const name = event.object.metadata.name;
    let names = namespaces.get(ns);
    if (event.type === "deleted") {
      names?.delete(name);
      if (names?.size === 0) namespaces.delete(ns);
      this.emit(event.kind, { type: "deleted", kind: event.kind, object: event.object, revision: event.revision });
      return;
    }
    if (!names) namespaces.set(ns, (names = new Map()));
    const previous = names.get(name);
    names.set(name, event.object);
    this.emit(event.kind, { type: event.type, kind: event.kind, object: event.object, previous, revision: event.revision });
  }

  onConnection(connected: boolean): void {
    this.connected = connected;
  }

  private namespaces(kind: ObjectKind): Map<string, Map<string, KindMap[ObjectKind]>> {
    const namespaces = this.byKind.get(kind);
    if (!namespaces) throw new Error(`kind: this cache does not watch ${kind} (it watches ${this.kinds.join(", ")})`);
    return namespaces;
  }

  private emit(kind: ObjectKind, change: CacheChange<ObjectKind>): void {
    for (const listener of this.listeners.get(kind) ?? []) listener(change);
  }
}

function namespaceKey(kind: ObjectKind, namespace: string | undefined): string {
  if (!isNamespaced(kind)) return CLUSTER_SCOPE;
  return namespace === undefined || namespace === "" ? DEFAULT_NAMESPACE : namespace;
}

/**
 * Open a watch of `kinds` into a new cache; resolves once the first sync is in. Listeners added
 * before the first sync: pass `beforeSync`, which runs after the cache exists and before the watch starts.
 */
export async function watchIntoCache(
  store: Pick<ObjectStore, "watchObjects">,
  kinds: readonly ObjectKind[],
  beforeSync?: (cache: ObjectCache) => void,
): Promise<{ cache: ObjectCache; close(): Promise<void> }> {
  const cache = new ObjectCache(kinds);
  beforeSync?.(cache);
  const watch = await store.watchObjects(kinds, cache);
  return { cache, close: () => watch.close() };
}
