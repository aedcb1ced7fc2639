import { test } from "node:test";
import assert from "node:assert/strict";
import type { Service } from "../k8s/types.ts";
import { planDnsProbes } from "./dns-check.ts";

function service(namespace: string, name: string, clusterIP: string): Service {
  return { apiVersion: "v1", kind: "Service", metadata: { name, namespace }, spec: { clusterIP, ports: [{ port: 80 }] } };
}

const targets = { upstream: { name: "www.example.test", ip: "192.168.1.200" }, missingUpstream: "no-such-name.example.test" };

test("short names only from the service's own namespace; namespaced and full names from everywhere", () => {
  const services = [service("default", "web-svc", "10.96.0.5"), service("kube-system", "kube-dns", "10.96.0.10"), service("default", "headless", "None")];
  const clients = [{ name: "default/client", netns: "a" }, { name: "kube-system/dns", netns: "b" }];
  const probes = planDnsProbes(services, clients, targets);
  const labels = (client: string): string[] => probes.filter((p) => p.client.name === client).map((p) => p.label);
  assert.ok(labels("default/client").includes("getent web-svc"));
  assert.ok(!labels("default/client").includes("getent kube-dns"));
  assert.ok(labels("kube-system/dns").includes("getent kube-dns"));
  assert.ok(labels("kube-system/dns").includes("getent web-svc.default.svc.cluster.local"));
  assert.ok(!probes.some((p) => p.label.includes("headless")), "headless services have no single address to expect");
  const wget = probes.find((p) => p.client.name === "kube-system/dns" && p.label.startsWith("wget"));
  assert.deepEqual(wget?.argv.at(-1), "http://web-svc.default/hostname");
});

test("judges: the expected address, and NXDOMAIN from dig's status line", () => {
  const probes = planDnsProbes([service("default", "web-svc", "10.96.0.5")], [{ name: "default/client", netns: "a" }], targets);
  const getent = probes.find((p) => p.label === "getent web-svc")!;
  assert.equal(getent.judge({ code: 0, stdout: "10.96.0.5       web-svc.default.svc.cluster.local\n", stderr: "" }), undefined);
  assert.match(getent.judge({ code: 0, stdout: "10.96.0.6 x\n", stderr: "" })!, /got 10.96.0.6, want 10.96.0.5/);
  assert.match(getent.judge({ code: 2, stdout: "", stderr: "" })!, /exit 2/);
  const nx = probes.find((p) => p.label === "dig no-such-name.example.test NXDOMAIN")!;
  assert.equal(nx.judge({ code: 0, stdout: ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n", stderr: "" }), undefined);
  assert.match(nx.judge({ code: 0, stdout: ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n", stderr: "" })!, /status NOERROR, want NXDOMAIN/);
});
