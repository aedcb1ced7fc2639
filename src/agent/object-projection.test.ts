import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { EndpointSlice, Service } from "../k8s/types.ts";
import { compactEndpointSlice, compactObject, compactService } from "./object-projection.ts";
import { compileProxyTable } from "../services/proxy-compiler.ts";
import { ipsToAnnounce } from "../services/lb-announcer.ts";
import { tryParseCidr } from "../net/cidr.ts";

const bulky = {
  uid: "0b4a5c1e-0000-4000-8000-000000000001",
  creationTimestamp: "2026-11-29T03:00:00Z",
  annotations: { "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(2000) },
  managedFields: [{ manager: "kubectl", operation: "Apply", fieldsV1: { "f:spec": {} } }],
  ownerReferences: [{ apiVersion: "v1", kind: "Service", name: "web", uid: "u" }],
};

const service: Service = {
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "web", namespace: "shop", resourceVersion: "41", labels: { app: "web" }, ...bulky },
  spec: {
    type: "LoadBalancer",
    selector: { app: "web" },
    clusterIP: "10.96.0.20",
    clusterIPs: ["10.96.0.20"],
    ports: [{ name: "http", port: 80, targetPort: "http", protocol: "TCP", nodePort: 30080 }, { name: "dns", port: 53, targetPort: 5353, protocol: "UDP", nodePort: 30053 }],
    externalIPs: ["192.168.1.99"],
    externalTrafficPolicy: "Local",
    internalTrafficPolicy: "Cluster",
    sessionAffinity: "ClientIP",
    sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } },
    loadBalancerSourceRanges: ["192.168.1.0/28"],
  },
  status: { loadBalancer: { ingress: [{ ip: "192.168.1.240" }] } },
};

const slice: EndpointSlice = {
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: "web-abc", namespace: "shop", resourceVersion: "42", labels: { "kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "podnet" }, ...bulky },
  addressType: "IPv4",
  ports: [{ name: "http", protocol: "TCP", port: 8080, appProtocol: "http" }, { name: "dns", protocol: "UDP", port: 5353 }],
  endpoints: [
    { addresses: ["10.244.1.5"], nodeName: "node1", zone: "a", hostname: "h", targetRef: { kind: "Pod", name: "web-1", namespace: "shop", uid: "p1" }, conditions: { ready: true, serving: true, terminating: false } },
    { addresses: ["10.244.2.5"], nodeName: "node2", conditions: { ready: false, serving: true, terminating: true } },
    { addresses: ["10.244.2.6"], nodeName: "node2", conditions: { ready: true, serving: true, terminating: false } },
  ],
};

describe("the agent's object projection", () => {
  it("keeps what the proxy reads and nothing of the metadata's bulk", () => {
    // Absent fields may be present as undefined (see compactMeta): compare what JSON keeps.
    const json = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
    const s = json(compactService(service));
    assert.deepEqual(s.metadata, { name: "web", namespace: "shop", uid: bulky.uid, resourceVersion: "41" });
    assert.equal(s.spec.selector, undefined);
    assert.deepEqual(s.spec.ports, service.spec.ports);
    assert.deepEqual(s.status, service.status);
    for (const field of ["type", "clusterIP", "externalIPs", "externalTrafficPolicy", "internalTrafficPolicy", "sessionAffinity", "sessionAffinityConfig", "loadBalancerSourceRanges"] as const) {
      assert.deepEqual(s.spec[field], service.spec[field], field);
    }
    const e = json(compactEndpointSlice(slice));
    assert.deepEqual(e.metadata, { name: "web-abc", namespace: "shop", resourceVersion: "42", labels: { "kubernetes.io/service-name": "web" } });
    assert.deepEqual(e.endpoints[0], { addresses: ["10.244.1.5"], nodeName: "node1", conditions: { ready: true, serving: true, terminating: false } });
    assert.deepEqual(e.ports, [{ name: "http", protocol: "TCP", port: 8080 }, { name: "dns", protocol: "UDP", port: 5353 }]);
    assert.ok(JSON.stringify(e).length < JSON.stringify(slice).length / 4);
  });

  it("gives the proxy compiler and the announcer the same answers as the whole objects", () => {
    const node = { nodeName: "node2", nodeIps: ["192.168.1.12"], podCidr: "10.244.2.0/24", clusterCidr: "10.244.0.0/16" };
    const whole = compileProxyTable([service], [slice], node).table;
    const compact = compileProxyTable([compactObject("Service", service)], [compactObject("EndpointSlice", slice)], node).table;
    assert.deepEqual(compact, whole);
    const segment = { ownSegment: tryParseCidr("192.168.1.0/24")!, nodeIps: new Map([["node1", "192.168.1.11"], ["node2", "192.168.1.12"]]) };
    assert.deepEqual(
      ipsToAnnounce("node2", [compactService(service)], [compactEndpointSlice(slice)], ["node1", "node2"], segment),
      ipsToAnnounce("node2", [service], [slice], ["node1", "node2"], segment),
    );
  });

  it("shares repeated values between objects instead of copying them", () => {
    const a = compactEndpointSlice(JSON.parse(JSON.stringify(slice)) as EndpointSlice);
    const b = compactEndpointSlice(JSON.parse(JSON.stringify(slice)) as EndpointSlice);
    assert.equal(a.endpoints[0]!.conditions, b.endpoints[2]!.conditions, "one frozen conditions object for ready/serving/not terminating");
    assert.ok(Object.isFrozen(a.endpoints[0]!.conditions));
    assert.notEqual(a.endpoints[0]!.conditions, a.endpoints[1]!.conditions);
  });

  it("keeps kinds it has no projection for whole", () => {
    const namespace = { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", annotations: { a: "b" } } } as const;
    assert.equal(compactObject("Namespace", namespace), namespace);
  });
});
