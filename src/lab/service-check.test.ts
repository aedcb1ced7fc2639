import { test } from "node:test";
import assert from "node:assert/strict";
import type { EndpointSlice, Service } from "../k8s/types.ts";
import { judgeServiceProbe, planServiceProbes, readyEndpoints, SPREAD_REQUESTS, type ServiceProbe } from "./service-check.ts";

const service = (name: string, spec: Partial<Service["spec"]>, lb?: string): Service => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: "default" },
  spec: { type: "ClusterIP", ports: [{ port: 80, targetPort: 8080, protocol: "TCP" }], ...spec },
  ...(lb ? { status: { loadBalancer: { ingress: [{ ip: lb }] } } } : {}),
});
const slice = (svc: string, endpoints: [string, boolean][]): EndpointSlice => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: `${svc}-x`, namespace: "default", labels: { "kubernetes.io/service-name": svc } },
  addressType: "IPv4",
  endpoints: endpoints.map(([ip, ready]) => ({ addresses: [ip], conditions: { ready } })),
  ports: [{ port: 8080, protocol: "TCP" }],
});
const clients = [
  { name: "default/client", netns: "c", ip: "10.244.1.9" },
  { name: "default/web-1", netns: "w", ip: "10.244.0.2" },
];
const external = { name: "external", netns: "e" };

test("only ready endpoints of the service's own slices count", () => {
  const slices = [slice("web", [["10.244.0.2", true], ["10.244.0.3", false]]), slice("other", [["10.244.0.9", true]])];
  assert.deepEqual(readyEndpoints(service("web", {}), slices), ["10.244.0.2"]);
});

test("plan: spread and client IP from every pod, hairpin from an endpoint, NodePorts and LB IPs from outside, refusal without endpoints", () => {
  const services = [
    service("web", { type: "LoadBalancer", clusterIP: "10.96.0.1", ports: [{ port: 80, nodePort: 30000, protocol: "TCP" }] }, "192.168.1.241"),
    service("sticky", { clusterIP: "10.96.0.2", sessionAffinity: "ClientIP" }),
    service("empty", { clusterIP: "10.96.0.3" }),
    service("headless", { clusterIP: "None" }),
  ];
  const slices = [slice("web", [["10.244.0.2", true], ["10.244.1.2", true]]), slice("sticky", [["10.244.0.2", true], ["10.244.1.2", true]])];
  const probes = planServiceProbes(services, slices, clients, external, ["192.168.1.11", "192.168.1.12"]);
  const labels = (client: string): string[] => probes.filter((p) => p.client === client).map((p) => p.label);
  assert.deepEqual(labels("default/client"), [
    "default/web 10.96.0.1:80",
    "default/web 10.96.0.1:80 clientip",
    "default/sticky 10.96.0.2:80 affinity",
    "default/sticky 10.96.0.2:80 clientip",
    "default/empty 10.96.0.3:80 no endpoints",
  ]);
  assert.ok(labels("default/web-1").includes("default/web 10.96.0.1:80 hairpin"));
  assert.ok(!labels("default/web-1").includes("default/web 10.96.0.1:80 clientip"), "a hairpin connection is masqueraded: no client IP check");
  assert.deepEqual(labels("external"), [
    "default/web NodePort 192.168.1.11:30000",
    "default/web NodePort 192.168.1.12:30000",
    "default/web LoadBalancer 192.168.1.241:80",
  ]);
  assert.equal(probes.find((p) => p.label === "default/web 10.96.0.1:80")?.count, SPREAD_REQUESTS);
});

test("judging: spread, affinity, client IP, refusal time", () => {
  const probe = (expect: ServiceProbe["expect"]): ServiceProbe => ({ client: "c", label: "l", host: "10.96.0.1", port: 80, path: "/", count: 4, expect });
  const answers = (...a: string[]) => ({ label: "l", answers: a, errors: [] });
  assert.equal(judgeServiceProbe(probe({ kind: "spread", minDistinct: 2 }), answers("a", "b", "a", "a")).ok, true);
  assert.match(judgeServiceProbe(probe({ kind: "spread", minDistinct: 2 }), answers("a", "a", "a", "a")).problem ?? "", /all 4 answers from a/);
  assert.equal(judgeServiceProbe(probe({ kind: "sticky" }), answers("b", "b", "b", "b")).ok, true);
  assert.match(judgeServiceProbe(probe({ kind: "sticky" }), answers("b", "a", "b", "b")).problem ?? "", /affinity broken/);
  assert.equal(judgeServiceProbe(probe({ kind: "clientip", ip: "10.244.1.9" }), answers("10.244.1.9:41234")).ok, true);
  assert.match(judgeServiceProbe(probe({ kind: "clientip", ip: "10.244.1.9" }), answers("10.244.1.1:41234")).problem ?? "", /SNAT/);
  const refused = (code: string, ms: number) => ({ label: "l", answers: [], errors: [{ code, ms }] });
  assert.equal(judgeServiceProbe(probe({ kind: "refused" }), refused("ECONNREFUSED", 3)).ok, true);
  assert.match(judgeServiceProbe(probe({ kind: "refused" }), refused("ECONNREFUSED", 1500)).problem ?? "", /only after 1500 ms/);
  assert.match(judgeServiceProbe(probe({ kind: "refused" }), refused("ETIMEDOUT", 2000)).problem ?? "", /not refused/);
  assert.match(judgeServiceProbe(probe({ kind: "answers" }), { label: "l", answers: ["a"], errors: [{ code: "ECONNRESET", ms: 1 }] }).problem ?? "", /1 of 2 failed/);
  assert.equal(judgeServiceProbe(probe({ kind: "answers" }), undefined).ok, false);
});
