// Cluster objects (Services, EndpointSlices, Pods, …) as reconciler inputs. The agent opens one
// ObjectStore watch for exactly the kinds its reconcilers declare, and publishes each kind as an
// KindInput under the kind's name. So a reconciler that declares `inputs: ["config", "Service",
// "EndpointSlice"]` is woken by Service and EndpointSlice changes only, never by node changes, and the
// routes reconciler is never woken by an EndpointSlice.

import type { ObjectEvent, ObjectStore } from "../datastore/objects.ts";
import { OBJECT_KINDS, type KindMap, type ObjectKind } from "../k8s/types.ts";
import { compactObject } from "./object-projection.ts";
import type { InputHub } from "./reconciler.ts";

/** Every object of one kind, by "namespace/name" (or "name" for cluster-scoped kinds). */
export interface KindInput<K extends ObjectKind> {
  readonly kind: K;
  /** Datastore revision of the last change applied. */
  readonly revision: number;
  /**
   * The objects. The map is the feed's own and is updated in place by later events (copying it per
   * event would cost O(objects) each time): read what you need synchronously at the start of a sync.
   */
  readonly objects: ReadonlyMap<string, KindMap[K]>;
}

export type ObjectInputs = { [K in ObjectKind]: KindInput<K> };

export function objectKey(object: { metadata: { name: string; namespace?: string } }): string {
  return object.metadata.namespace ? `${object.metadata.namespace}/${object.metadata.name}` : object.metadata.name;
}

/** The object kinds among some reconcilers' inputs. */
export function objectKindsIn(inputs: Iterable<PropertyKey>): ObjectKind[] {
  const wanted = new Set(inputs);
  return OBJECT_KINDS.filter((kind) => wanted.has(kind));
}

/**
 * Watch `kinds` in `store` and keep the hub's KindInput of each current: replaced whole on every
 * (re)list, updated per event, published (waking the kind's reconcilers) after each. Objects are
 * kept as the agent's projection of them (object-projection.ts), never whole.
 */
export async function feedObjects<M extends ObjectInputs>(
  store: ObjectStore,
  hub: InputHub<M>,
  kinds: readonly ObjectKind[],
  onConnection?: (connected: boolean) => void,
): Promise<{ close(): Promise<void> }> {
  const maps = new Map<ObjectKind, Map<string, KindMap[ObjectKind]>>();
  function publish<K extends ObjectKind>(kind: K, revision: number): void {
    const objects = (maps.get(kind) ?? new Map()) as Map<string, KindMap[K]>;
    maps.set(kind, objects);
    const cache: KindInput<K> = { kind, revision, objects };
    hub.set(kind, cache as unknown as M[K]);
  }
  return store.watchObjects(kinds, {
    onSync(lists, revision) {
      for (const kind of kinds) {
        const map = new Map<string, KindMap[ObjectKind]>();
        for (const object of (lists[kind] ?? []) as KindMap[ObjectKind][]) map.set(objectKey(object), compactObject(kind, object));
        maps.set(kind, map);
        publish(kind, revision);
      }
    },
    onEvent(event: ObjectEvent) {
      let map = maps.get(event.kind);
      if (!map) maps.set(event.kind, (map = new Map()));
      const key = objectKey(event.object);
      if (event.type === "deleted") map.delete(key);
      else map.set(key, compactObject(event.kind, event.object));
      publish(event.kind, event.revision);
    },
    ...(onConnection ? { onConnection } : {}),
  });
}
