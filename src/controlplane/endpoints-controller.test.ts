import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { withDefaults } from "../k8s/defaults.ts";
import type { EndpointSlice, Pod, Service } from "../k8s/types.ts";
import { desiredSlices, ENDPOINTSLICE_CONTROLLER, MAX_ENDPOINTS_PER_SLICE, planEndpointSlices, planLoadBalancerStatus } from "./endpoints-controller.ts";

function service(spec: Partial<Service["spec"]> = {}): Service {
  return withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name: "web-svc", namespace: "default", uid: "svc-uid" }, spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }], ...spec } });
}
function pod(name: string, ip: string | undefined, opts: { ready?: boolean; node?: string; labels?: Record<string, string>; namespace?: string; httpPort?: number; deleting?: boolean; phase?: "Running" | "Succeeded" } = {}): Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: opts.namespace ?? "default", uid: `uid-${name}`, labels: opts.labels ?? { app: "web" }, ...(opts.deleting ? { deletionTimestamp: "2026-11-29T00:00:00Z" } : {}) },
    spec: { nodeName: opts.node ?? "n1", containers: [{ name: "c", ports: [{ name: "http", containerPort: opts.httpPort ?? 8080, protocol: "TCP" }] }] },
    status: { phase: opts.phase ?? "Running", ...(ip ? { podIP: ip } : {}), conditions: [{ type: "Ready", status: opts.ready === false ? "False" : "True" }] },
  };
}

describe("endpoints controller", () => {
  it("makes a labelled, owned slice of the selected pods with conditions, node and targetRef", () => {
    const slices = desiredSlices(service(), [pod("a", "10.244.1.5"), pod("b", "10.244.2.5", { ready: false, node: "n2" }), pod("c", "10.244.1.6", { deleting: true }), pod("other", "10.244.1.7", { labels: { app: "api" } }), pod("noip", undefined), pod("done", "10.244.1.8", { phase: "Succeeded" }), pod("elsewhere", "10.244.1.9", { namespace: "x" })]);
    assert.equal(slices.length, 1);
    const slice = slices[0]!;
    assert.deepEqual(slice.metadata.labels, { "kubernetes.io/service-name": "web-svc", "endpointslice.kubernetes.io/managed-by": ENDPOINTSLICE_CONTROLLER });
    assert.deepEqual(slice.metadata.ownerReferences, [{ apiVersion: "v1", kind: "Service", name: "web-svc", uid: "svc-uid", controller: true, blockOwnerDeletion: true }]);
    assert.match(slice.metadata.name, /^web-svc-[0-9a-f]{5}$/);
    assert.equal(slice.addressType, "IPv4");
    assert.deepEqual(slice.ports, [{ name: "", protocol: "TCP", port: 8080 }]);
    assert.deepEqual(slice.endpoints, [
      { addresses: ["10.244.1.5"], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: "Pod", namespace: "default", name: "a", uid: "uid-a" }, nodeName: "n1" },
      { addresses: ["10.244.2.5"], conditions: { ready: false, serving: false, terminating: false }, targetRef: { kind: "Pod", namespace: "default", name: "b", uid: "uid-b" }, nodeName: "n2" },
      { addresses: ["10.244.1.6"], conditions: { ready: false, serving: true, terminating: true }, targetRef: { kind: "Pod", namespace: "default", name: "c", uid: "uid-c" }, nodeName: "n1" },
    ]);
  });
  it("publishNotReadyAddresses marks every endpoint ready", () => {
    const [slice] = desiredSlices(service({ publishNotReadyAddresses: true }), [pod("b", "10.244.2.5", { ready: false }), pod("c", "10.244.1.6", { deleting: true })]);
    assert.deepEqual(slice!.endpoints.map((e) => e.conditions?.ready), [true, true]);
  });
  it("resolves a named targetPort per pod, grouping pods by their ports", () => {
    const slices = desiredSlices(service({ ports: [{ port: 80, targetPort: "http" }] }), [pod("a", "10.244.1.5"), pod("b", "10.244.1.6", { httpPort: 9090 }), pod("c", "10.244.1.7")]);
    assert.equal(slices.length, 2);
    const byPort = new Map(slices.map((s) => [s.ports![0]!.port, s.endpoints.map((e) => e.addresses[0])]));
    assert.deepEqual(byPort.get(8080), ["10.244.1.5", "10.244.1.7"]);
    assert.deepEqual(byPort.get(9090), ["10.244.1.6"]);
  });
  it("splits at 100 endpoints per slice and keeps an empty placeholder when nothing is selected", () => {
    const pods = Array.from({ length: 250 }, (_, i) => pod(`p${String(i).padStart(3, "0")}`, `10.244.${Math.floor(i / 200) + 1}.${(i % 200) + 1}`));
    const slices = desiredSlices(service(), pods);
    assert.deepEqual(slices.map((s) => s.endpoints.length), [MAX_ENDPOINTS_PER_SLICE, MAX_ENDPOINTS_PER_SLICE, 50]);
    assert.equal(new Set(slices.map((s) => s.metadata.name)).size, 3);
    const empty = desiredSlices(service(), []);
    assert.equal(empty.length, 1);
    assert.deepEqual(empty[0]!.endpoints, []);
    assert.deepEqual(desiredSlices(service({ selector: {} }), pods), [], "no selector: endpoints are managed by someone else");
  });
  it("plans only the writes needed: create, update with resourceVersion, delete orphans, leave foreign slices", () => {
    const svc = service();
    const pods = [pod("a", "10.244.1.5")];
    const first = planEndpointSlices([svc], pods, []);
    assert.deepEqual(first.map((w) => w.op), ["create"]);
    const stored = { ...(first[0] as { object: EndpointSlice }).object };
    stored.metadata = { ...stored.metadata, resourceVersion: "7", uid: "s1" };
    assert.deepEqual(planEndpointSlices([svc], pods, [stored]), []);
    const update = planEndpointSlices([svc], [...pods, pod("b", "10.244.1.6")], [stored]);
    assert.equal(update.length, 1);
    assert.equal(update[0]!.op, "update");
    assert.equal((update[0] as { object: EndpointSlice }).object.metadata.resourceVersion, "7");
    assert.equal((update[0] as { object: EndpointSlice }).object.endpoints.length, 2);
    const foreign: EndpointSlice = { ...stored, metadata: { name: "manual", namespace: "default", labels: { "kubernetes.io/service-name": "web-svc" } } };
    assert.deepEqual(planEndpointSlices([], pods, [stored, foreign]), [{ op: "delete", kind: "EndpointSlice", namespace: "default", name: stored.metadata.name, resourceVersion: "7" }]);
  });
  it("writes status.loadBalancer from the LoadBalancer IP claims", () => {
    const lb = service({ type: "LoadBalancer" });
    const writes = planLoadBalancerStatus([lb, service()], new Map([["192.168.1.241", "default/web-svc"]]));
    assert.deepEqual(writes.map((w) => (w as { object: Service }).object.status), [{ loadBalancer: { ingress: [{ ip: "192.168.1.241", ipMode: "VIP" }] } }]);
    const done = { ...lb, status: { loadBalancer: { ingress: [{ ip: "192.168.1.241", ipMode: "VIP" as const }] } } };
    assert.deepEqual(planLoadBalancerStatus([done], new Map([["192.168.1.241", "default/web-svc"]])), []);
    const cleared = planLoadBalancerStatus([{ ...done, spec: { ...done.spec, type: "ClusterIP" } }], new Map());
    assert.deepEqual((cleared[0] as { object: Service }).object.status, {});
  });
});
