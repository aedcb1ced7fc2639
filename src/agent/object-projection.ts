// What the agent keeps of each cluster object: only the fields its reconcilers read, made at ingest
// by the object feed. The agent holds every Service and EndpointSlice of the cluster (20,000 objects
// with 10,000 services), and most of a stored object is of no use to a node: uid, timestamps,
// annotations (kubectl's last-applied-configuration alone is a copy of the whole object),
// managedFields, ownerReferences, the selector, every endpoint's targetRef, hostname and zone.
//
// A projection is still a valid object of its kind (only optional fields are left out), so the
// reconcilers and src/services read it through the same types. Values that repeat across objects
// (namespaces, node names, protocols, port names, endpoint conditions) are shared: one string or one
// frozen object for all, instead of one copy per object from JSON.parse.
//
// A reconciler that needs another field adds it here (and the feed's test names it).

import { LABEL_SERVICE_NAME, type Endpoint, type EndpointConditions, type EndpointPort, type EndpointSlice, type KindMap, type ObjectKind, type ObjectMeta, type Service, type ServicePort, type ServiceSpec } from "../k8s/types.ts";

/**
 * Strings that repeat across objects, one copy each. Only fields with few distinct values go
 * through it (namespaces, node names, protocols, port names), so it stays small; it is cleared
 * when it passes MAX_INTERNED, in case a cluster has unusually many.
 */
const MAX_INTERNED = 50_000;
const interned = new Map<string, string>();
function intern<T extends string | undefined>(text: T): T {
  if (text === undefined) return text;
  const known = interned.get(text);
  if (known !== undefined) return known as T;
  if (interned.size >= MAX_INTERNED) interned.clear();
  interned.set(text, text);
  return text;
}

/** The 27 combinations of ready/serving/terminating (each true, false or unset), one frozen object each. */
const conditionsCache = new Map<string, EndpointConditions>();
function sharedConditions(conditions: EndpointConditions | undefined): EndpointConditions | undefined {
  if (conditions === undefined) return undefined;
  const { ready, serving, terminating } = conditions;
  const key = `${ready}|${serving}|${terminating}`;
  let shared = conditionsCache.get(key);
  if (!shared) {
    shared = Object.freeze({
      ...(ready !== undefined ? { ready } : {}),
      ...(serving !== undefined ? { serving } : {}),
      ...(terminating !== undefined ? { terminating } : {}),
    });
    conditionsCache.set(key, shared);
  }
  return shared;
}

/**
 * Identity and versioning only: name, namespace, uid if asked (the proxy compiler's fingerprint tells
 * a recreated Service apart by it), resourceVersion, deletionTimestamp, and the labels in `keepLabels`.
 */
function compactMeta(metadata: ObjectMeta, keepLabels: readonly string[], keepUid: boolean): ObjectMeta {
  let labels: Record<string, string> | undefined;
  if (metadata.labels) {
    for (const key of keepLabels) {
      const value = metadata.labels[key];
      if (value !== undefined) (labels ??= {})[key] = value;
    }
  }
  // One object literal with every field (an absent one left undefined, which JSON and the
  // readers treat as absent): V8 then keeps all fields inside the object, where adding them one by
  // one would give each object a second, out-of-object property store.
  return {
    name: metadata.name,
    namespace: intern(metadata.namespace),
    uid: keepUid ? metadata.uid : undefined,
    resourceVersion: metadata.resourceVersion,
    deletionTimestamp: metadata.deletionTimestamp,
    labels,
  };
}

function compactServicePort(port: ServicePort): ServicePort {
  return {
    name: intern(port.name),
    protocol: intern(port.protocol),
    port: port.port,
    targetPort: typeof port.targetPort === "string" ? intern(port.targetPort) : port.targetPort,
    nodePort: port.nodePort,
  };
}

/**
 * The spec fields the service proxy and the LoadBalancer announcer read (src/services): type,
 * addresses, ports, traffic policies, session affinity, source ranges. The selector is left out:
 * nodes never select pods, the endpoints controller does. Policies and types are a handful of
 * words, so they are shared; addresses are unique and kept as they are.
 */
export function compactService(service: Service): Service {
  const spec: ServiceSpec = service.spec ?? {};
  const ingress = service.status?.loadBalancer?.ingress;
  return {
    apiVersion: service.apiVersion,
    kind: service.kind,
    metadata: compactMeta(service.metadata, [], true),
    spec: {
      type: intern(spec.type),
      clusterIP: spec.clusterIP,
      clusterIPs: spec.clusterIPs,
      ports: spec.ports?.map(compactServicePort),
      externalIPs: spec.externalIPs,
      externalName: spec.externalName,
      externalTrafficPolicy: intern(spec.externalTrafficPolicy),
      internalTrafficPolicy: intern(spec.internalTrafficPolicy),
      sessionAffinity: intern(spec.sessionAffinity),
      sessionAffinityConfig: spec.sessionAffinityConfig,
      loadBalancerIP: spec.loadBalancerIP,
      loadBalancerSourceRanges: spec.loadBalancerSourceRanges,
      loadBalancerClass: spec.loadBalancerClass,
      healthCheckNodePort: spec.healthCheckNodePort,
      publishNotReadyAddresses: spec.publishNotReadyAddresses,
    },
    status: ingress !== undefined ? { loadBalancer: { ingress } } : undefined,
  };
}

function compactEndpoint(endpoint: Endpoint): Endpoint {
  return { addresses: endpoint.addresses, conditions: sharedConditions(endpoint.conditions), nodeName: intern(endpoint.nodeName) };
}

function compactEndpointPort(port: EndpointPort): EndpointPort {
  return { name: intern(port.name), protocol: intern(port.protocol), port: port.port };
}

/**
 * Addresses, node name and conditions of each endpoint (what kube-proxy's endpointslicecache.go
 * reads, less topology hints and zones, which podnet does not use), the ports, and the service-name
 * label that ties the slice to its Service.
 */
export function compactEndpointSlice(slice: EndpointSlice): EndpointSlice {
  return {
    apiVersion: slice.apiVersion,
    kind: slice.kind,
    metadata: compactMeta(slice.metadata, [LABEL_SERVICE_NAME], false),
    addressType: intern(slice.addressType),
    endpoints: (slice.endpoints ?? []).map(compactEndpoint),
    ports: slice.ports?.map(compactEndpointPort),
  };
}

/** The agent's projection of an object of `kind`; kinds the agent has no projection for are kept whole. */
export function compactObject<K extends ObjectKind>(kind: K, object: KindMap[K]): KindMap[K] {
  switch (kind) {
    case "Service":
      return compactService(object as Service) as KindMap[K];
    case "EndpointSlice":
      return compactEndpointSlice(object as EndpointSlice) as KindMap[K];
    default:
      return object;
  }
}
