import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { withDefaults } from "../k8s/defaults.ts";
import type { Deployment, EndpointSlice, Pod, Service } from "../k8s/types.ts";
import { formatColumns, humanDuration, noResourcesMessage, printNodes, printObjects, printTable } from "./printer.ts";

const now = new Date("2026-11-29T12:00:00Z");
const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000).toISOString();

function svc(name: string, spec: Partial<Service["spec"]>, status?: Service["status"]): Service {
  return withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name, creationTimestamp: ago(300) }, spec: { selector: { app: "web" }, ports: [{ port: 80 }], ...spec }, ...(status ? { status } : {}) });
}

describe("get printer", () => {
  it("formats ages as kubectl does", () => {
    const cases: [number, string][] = [[45, "45s"], [119, "119s"], [200, "3m20s"], [900, "15m"], [5 * 3600 + 180, "5h3m"], [30 * 3600, "30h"], [6 * 86400 + 7200, "6d2h"], [40 * 86400, "40d"], [(2 * 365 + 10) * 86400, "2y10d"], [9 * 365 * 86400, "9y"]];
    for (const [s, text] of cases) assert.equal(humanDuration(s * 1000), text, `${s}s`);
  });
  it("prints services with types, external IPs and ports", () => {
    const out = printTable("Service", [
      svc("web-svc", { clusterIP: "10.96.0.1" }),
      svc("np", { type: "NodePort", clusterIP: "10.96.0.2", ports: [{ port: 80, nodePort: 30080 }, { name: "dns", port: 53, protocol: "UDP", nodePort: 30053 }] }),
      svc("lb", { type: "LoadBalancer", clusterIP: "10.96.0.3", ports: [{ port: 443, nodePort: 31443 }] }, { loadBalancer: { ingress: [{ ip: "192.168.1.241" }] } }),
      svc("pending", { type: "LoadBalancer", clusterIP: "10.96.0.4", ports: [{ port: 80, nodePort: 31000 }] }),
      svc("ext", { type: "ExternalName", externalName: "db.example.com", ports: [] }),
      svc("hl", { clusterIP: "None" }),
    ], { now });
    assert.equal(out, [
      "NAME      TYPE           CLUSTER-IP   EXTERNAL-IP      PORT(S)                     AGE",
      "ext       ExternalName   <none>       db.example.com   <none>                      5m",
      "hl        ClusterIP      None         <none>           80/TCP                      5m",
      "lb        LoadBalancer   10.96.0.3    192.168.1.241    443:31443/TCP               5m",
      "np        NodePort       10.96.0.2    <none>           80:30080/TCP,53:30053/UDP   5m",
      "pending   LoadBalancer   10.96.0.4    <pending>        80:31000/TCP                5m",
      "web-svc   ClusterIP      10.96.0.1    <none>           80/TCP                      5m",
      "",
    ].join("\n"));
    assert.match(printTable("Service", [svc("web-svc", { clusterIP: "10.96.0.1" })], { now, wide: true, allNamespaces: true }), /^NAMESPACE   NAME      TYPE .* SELECTOR\ndefault     web-svc .* app=web\n$/);
  });
  it("prints pods, with IP and NODE when wide", () => {
    const pod = (name: string, ready: boolean, extra: Partial<Pod["metadata"]> = {}): Pod => ({
      apiVersion: "v1", kind: "Pod", metadata: { name, namespace: "default", creationTimestamp: ago(45), ...extra }, spec: { nodeName: "n1", containers: [{ name: "c" }] },
      status: { phase: ready ? "Running" : "Pending", podIP: "10.244.1.5", conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
    });
    assert.equal(printTable("Pod", [pod("web-1", true), pod("web-2", false), pod("web-3", true, { deletionTimestamp: ago(1) })], { now }), [
      "NAME    READY   STATUS        RESTARTS   AGE",
      "web-1   1/1     Running       0          45s",
      "web-2   0/1     Pending       0          45s",
      "web-3   1/1     Terminating   0          45s",
      "",
    ].join("\n"));
    assert.match(printTable("Pod", [pod("web-1", true)], { now, wide: true }), /^NAME +READY +STATUS +RESTARTS +AGE +IP +NODE +NOMINATED NODE +READINESS GATES\nweb-1 +1\/1 +Running +0 +45s +10\.244\.1\.5 +n1 +<none> +<none>\n$/);
  });
  it("prints deployments, endpoint slices and nodes", () => {
    const d: Deployment = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web", creationTimestamp: ago(3600) }, spec: { replicas: 3, selector: { matchLabels: { app: "web" } }, template: { spec: { containers: [{ name: "web", image: "agnhost" }] } } }, status: { readyReplicas: 2, updatedReplicas: 3, availableReplicas: 2 } };
    assert.equal(printTable("Deployment", [d], { now }), "NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    2/3     3            2           60m\n");
    const slice: EndpointSlice = { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: "web-svc-abcde", creationTimestamp: ago(60) }, addressType: "IPv4", ports: [{ port: 8080 }], endpoints: ["1", "2", "3", "4", "5"].map((i) => ({ addresses: [`10.244.1.${i}`] })) };
    assert.equal(printTable("EndpointSlice", [slice], { now }), "NAME            ADDRESSTYPE   PORTS   ENDPOINTS                                      AGE\nweb-svc-abcde   IPv4          8080    10.244.1.1,10.244.1.2,10.244.1.3 + 2 more...   60s\n");
    assert.equal(printNodes([{ name: "n2", ready: false, internalIp: "192.168.1.12" }, { name: "n1", ready: true, internalIp: "192.168.1.11", podCidr: "10.244.1.0/24" }], { now, wide: true }), [
      "NAME   STATUS     ROLES    AGE         VERSION   INTERNAL-IP    POD-CIDR",
      "n1     Ready      <none>   <unknown>   podnet    192.168.1.11   10.244.1.0/24",
      "n2     NotReady   <none>   <unknown>   podnet    192.168.1.12   <none>",
      "",
    ].join("\n"));
    assert.equal(printTable("Pod", []), "");
    assert.equal(noResourcesMessage("default"), "No resources found in default namespace.");
    assert.equal(formatColumns([["A", "B"], ["long", "x"]]), "A      B\nlong   x\n");
  });
  it("prints Kubernetes objects as JSON and YAML, several as a List", () => {
    const s = svc("web-svc", { clusterIP: "10.96.0.1" });
    assert.deepEqual(JSON.parse(printObjects([s], "json")), s);
    const list = JSON.parse(printObjects([s, s], "json"));
    assert.equal(list.kind, "List");
    assert.equal(list.items.length, 2);
    assert.equal(JSON.parse(printObjects([s], "json", { asList: true })).kind, "List");
    assert.deepEqual(parse(printObjects([s], "yaml")), s);
  });
});
