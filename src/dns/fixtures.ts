// Building Kubernetes objects for DNS tests and the bench, in the API's own shapes.

import { LABEL_SERVICE_NAME, type Endpoint, type EndpointSlice, type Namespace, type Pod, type Service, type ServicePort } from "../k8s/types.ts";

export function namespace(name: string): Namespace {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name } };
}

export function clusterIPService(ns: string, name: string, clusterIPs: string[], ports: ServicePort[] = [{ name: "http", port: 80, protocol: "TCP" }]): Service {
  return { apiVersion: "v1", kind: "Service", metadata: { name, namespace: ns }, spec: { type: "ClusterIP", clusterIP: clusterIPs[0], clusterIPs, ports } };
}

export function headlessService(ns: string, name: string, ports: ServicePort[] = [{ name: "http", port: 80, protocol: "TCP" }]): Service {
  return { apiVersion: "v1", kind: "Service", metadata: { name, namespace: ns }, spec: { type: "ClusterIP", clusterIP: "None", clusterIPs: ["None"], ports } };
}

export function externalNameService(ns: string, name: string, externalName: string): Service {
  return { apiVersion: "v1", kind: "Service", metadata: { name, namespace: ns }, spec: { type: "ExternalName", externalName } };
}

export interface EndpointSpec {
  ip: string;
  hostname?: string;
  ready?: boolean;
}

export function endpointSlice(ns: string, service: string, endpoints: EndpointSpec[], ports: { name?: string; port: number; protocol?: "TCP" | "UDP" }[] = [{ name: "http", port: 8080, protocol: "TCP" }], sliceName = `${service}-abc12`): EndpointSlice {
  const family = endpoints.some((e) => e.ip.includes(":")) ? "IPv6" : "IPv4";
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name: sliceName, namespace: ns, labels: { [LABEL_SERVICE_NAME]: service } },
    addressType: family,
    endpoints: endpoints.map((e): Endpoint => ({ addresses: [e.ip], conditions: { ready: e.ready ?? true }, ...(e.hostname ? { hostname: e.hostname } : {}) })),
    ports: ports.map((p) => ({ name: p.name ?? "", port: p.port, protocol: p.protocol ?? "TCP" })),
  };
}

export function pod(ns: string, name: string, ip: string): Pod {
  return { apiVersion: "v1", kind: "Pod", metadata: { name, namespace: ns }, spec: { containers: [{ name: "c" }] }, status: { phase: "Running", podIP: ip, podIPs: [{ ip }] } };
}
