// The EndpointSlice controller of kube-controller-manager, as pure planning: Services and Pods in,
// the EndpointSlices each selector-bearing Service should have out, and the writes that bring the
// stored slices there. Source: k8s.io/kubernetes pkg/controller/endpointslice (reconciler.go) and
// staging endpointslice/utils.go (podToEndpoint, getEndpointPorts, ShouldPodBeInEndpoints).
//
// - An endpoint per pod the selector picks that has an IP and has not finished; conditions as
//   podToEndpoint sets them: serving = pod Ready, terminating = being deleted, ready = serving and
//   not terminating, or always with publishNotReadyAddresses.
// - Ports per pod: a named targetPort is looked up among that pod's container ports (so pods of
//   one service may listen on different numbers); pods are grouped by their resolved ports, each
//   group into slices of at most 100 endpoints (the controller's --max-endpoints-per-slice default).
// - Slices carry the kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by labels
//   and an owner reference to their Service. Slices managed by another controller are left alone.

import { createHash } from "node:crypto";
import type { ObjectWrite } from "../datastore/objects.ts";
import { serviceSelects } from "../k8s/selector.ts";
import { LABEL_MANAGED_BY, LABEL_SERVICE_NAME, type Endpoint, type EndpointPort, type EndpointSlice, type Pod, type Service } from "../k8s/types.ts";
import { isPodReady } from "./deployment-controller.ts";

/** The managed-by value of kube-controller-manager's EndpointSlice controller, whose job this is. */
export const ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io";
export const MAX_ENDPOINTS_PER_SLICE = 100;

const ns = (o: { metadata: { namespace?: string } }) => o.metadata.namespace ?? "default";

function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : v));
}

/** FindPort (pkg/api/v1/pod): a number as is; a name among the pod's container ports of that protocol. */
export function resolveTargetPort(pod: Pod, targetPort: number | string | undefined, servicePort: number, protocol: string): number | undefined {
  if (targetPort === undefined) return servicePort;
  if (typeof targetPort === "number") return targetPort;
  for (const container of pod.spec.containers ?? []) {
    for (const port of container.ports ?? []) {
      if (port.name === targetPort && (port.protocol ?? "TCP") === protocol) return port.containerPort;
    }
  }
  return undefined;
}

function shouldBeEndpoint(pod: Pod): boolean {
  if (!pod.status?.podIP) return false;
  return pod.status.phase !== "Succeeded" && pod.status.phase !== "Failed";
}

function podEndpoint(service: Service, pod: Pod): Endpoint {
  const serving = isPodReady(pod);
  const terminating = pod.metadata.deletionTimestamp !== undefined;
  const endpoint: Endpoint = {
    addresses: [pod.status!.podIP!],
    conditions: { ready: service.spec.publishNotReadyAddresses === true || (serving && !terminating), serving, terminating },
    targetRef: { kind: "Pod", namespace: ns(pod), name: pod.metadata.name, ...(pod.metadata.uid ? { uid: pod.metadata.uid } : {}) },
  };
  if (pod.spec.nodeName) endpoint.nodeName = pod.spec.nodeName;
  // A pod whose subdomain is the service's name gets a DNS name under it (podToEndpoint).
  if (pod.spec.hostname && pod.spec.subdomain === service.metadata.name) endpoint.hostname = pod.spec.hostname;
  return endpoint;
}

function sliceName(service: Service, groupKey: string, chunk: number): string {
  const digest = createHash("sha256").update(`${ns(service)}/${service.metadata.name}#${groupKey}#${chunk}`).digest("hex").slice(0, 5);
  return `${service.metadata.name}-${digest}`;
}

/** The slices `service` should have, given every pod of the cluster; [] for services without a selector. */
export function desiredSlices(service: Service, pods: readonly Pod[]): EndpointSlice[] {
  if (!service.spec.selector || Object.keys(service.spec.selector).length === 0 || service.spec.type === "ExternalName") return [];
  const groups = new Map<string, { ports: EndpointPort[]; endpoints: Endpoint[] }>();
  const selected = pods
    .filter((p) => ns(p) === ns(service) && serviceSelects(service.spec.selector, p.metadata.labels) && shouldBeEndpoint(p))
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  for (const pod of selected) {
    const ports: EndpointPort[] = [];
    for (const port of service.spec.ports ?? []) {
      const protocol = port.protocol ?? "TCP";
      const number = resolveTargetPort(pod, port.targetPort, port.port, protocol);
      if (number === undefined) continue;
      ports.push({ name: port.name ?? "", protocol, port: number, ...(port.appProtocol ? { appProtocol: port.appProtocol } : {}) });
    }
    const key = stableJson(ports);
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { ports, endpoints: [] }));
    group.endpoints.push(podEndpoint(service, pod));
  }
  const slices: EndpointSlice[] = [];
  const labels = { [LABEL_SERVICE_NAME]: service.metadata.name, [LABEL_MANAGED_BY]: ENDPOINTSLICE_CONTROLLER };
  const owner = { apiVersion: "v1", kind: "Service", name: service.metadata.name, uid: service.metadata.uid ?? "", controller: true, blockOwnerDeletion: true };
  const sliceOf = (name: string, ports: EndpointPort[], endpoints: Endpoint[]): EndpointSlice => ({
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name, namespace: ns(service), labels: { ...labels }, ownerReferences: [{ ...owner }] },
    addressType: "IPv4",
    endpoints,
    ports,
  });
  for (const [key, group] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
    for (let chunk = 0; chunk * MAX_ENDPOINTS_PER_SLICE < group.endpoints.length; chunk++) {
      slices.push(sliceOf(sliceName(service, key, chunk), group.ports, group.endpoints.slice(chunk * MAX_ENDPOINTS_PER_SLICE, (chunk + 1) * MAX_ENDPOINTS_PER_SLICE)));
    }
  }
  // A service with no endpoints still has one empty placeholder slice (the reconciler's placeholder),
  // so consumers see "no endpoints" explicitly.
  if (slices.length === 0) slices.push(sliceOf(sliceName(service, "empty", 0), [], []));
  return slices;
}

function isManaged(slice: EndpointSlice): boolean {
  return slice.metadata.labels?.[LABEL_MANAGED_BY] === ENDPOINTSLICE_CONTROLLER && slice.metadata.labels?.[LABEL_SERVICE_NAME] !== undefined;
}

const contentOf = (s: EndpointSlice) => stableJson({ labels: s.metadata.labels, owners: s.metadata.ownerReferences, addressType: s.addressType, endpoints: s.endpoints, ports: s.ports ?? [] });

/**
 * The writes that turn the stored managed slices into the desired ones for every service:
 * create new, update changed (with resourceVersion preconditions), delete those of services that
 * are gone or lost their selector. Unchanged slices cost no write.
 */
export function planEndpointSlices(services: readonly Service[], pods: readonly Pod[], slices: readonly EndpointSlice[]): ObjectWrite[] {
  const podsByNamespace = new Map<string, Pod[]>();
  for (const pod of pods) {
    const list = podsByNamespace.get(ns(pod));
    if (list) list.push(pod);
    else podsByNamespace.set(ns(pod), [pod]);
  }
  const current = new Map(slices.filter(isManaged).map((s) => [`${ns(s)}/${s.metadata.name}`, s]));
  const writes: ObjectWrite[] = [];
  const wanted = new Set<string>();
  for (const service of services) {
    for (const slice of desiredSlices(service, podsByNamespace.get(ns(service)) ?? [])) {
      const key = `${ns(slice)}/${slice.metadata.name}`;
      wanted.add(key);
      const have = current.get(key);
      if (!have) writes.push({ op: "create", object: slice });
      else if (contentOf(have) !== contentOf(slice)) {
        writes.push({ op: "update", object: { ...slice, metadata: { ...slice.metadata, ...(have.metadata.resourceVersion ? { resourceVersion: have.metadata.resourceVersion } : {}), ...(have.metadata.uid ? { uid: have.metadata.uid } : {}), ...(have.metadata.creationTimestamp ? { creationTimestamp: have.metadata.creationTimestamp } : {}) } } });
      }
    }
  }
  for (const [key, slice] of current) {
    if (wanted.has(key)) continue;
    writes.push({ op: "delete", kind: "EndpointSlice", namespace: ns(slice), name: slice.metadata.name, ...(slice.metadata.resourceVersion ? { resourceVersion: slice.metadata.resourceVersion } : {}) });
  }
  return writes;
}

/**
 * status.loadBalancer of each Service, from the LoadBalancer IP claims (token → "namespace/name"):
 * the update writes for services whose status says otherwise (missing after a crash between
 * claim and status, or left over after a type change).
 */
export function planLoadBalancerStatus(services: readonly Service[], loadBalancerClaims: ReadonlyMap<string, string>): ObjectWrite[] {
  const ipOf = new Map<string, string>();
  for (const [ip, owner] of loadBalancerClaims) if (!ipOf.has(owner)) ipOf.set(owner, ip);
  const writes: ObjectWrite[] = [];
  for (const service of services) {
    const ip = service.spec.type === "LoadBalancer" ? ipOf.get(`${ns(service)}/${service.metadata.name}`) : undefined;
    const wantStatus = service.spec.type === "LoadBalancer" ? { loadBalancer: ip ? { ingress: [{ ip, ipMode: "VIP" as const }] } : {} } : undefined;
    const have = service.status?.loadBalancer?.ingress ?? [];
    const want = wantStatus?.loadBalancer.ingress ?? [];
    if (stableJson(have) === stableJson(want)) continue;
    const next: Service = { ...service, status: wantStatus ?? {} };
    writes.push({ op: "update", object: next });
  }
  return writes;
}
