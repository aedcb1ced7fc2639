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

test("web-svc over TCP, AAAA NODATA, PTR, dns-version TXT and busybox nslookup: judged on what the clients print", () => {
  const probes = planDnsProbes([service("default", "web-svc", "10.96.0.5")], [{ name: "default/client", netns: "a" }], targets);
  const by = (label: string) => probes.find((p) => p.label === label)!;
  assert.deepEqual(by("dig +tcp web-svc A").argv, ["dig", "+time=2", "+tries=2", "+tcp", "+short", "web-svc.default.svc.cluster.local", "A"]);
  assert.equal(by("dig +tcp web-svc A").judge({ code: 0, stdout: "10.96.0.5\n", stderr: "" }), undefined);
  assert.match(by("dig +tcp web-svc A").judge({ code: 9, stdout: ";; connection timed out\n", stderr: "" })!, /exit 9/);
  const nodata = by("dig web-svc AAAA NODATA");
  assert.equal(nodata.judge({ code: 0, stdout: ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr aa rd; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1\n", stderr: "" }), undefined);
  assert.match(nodata.judge({ code: 0, stdout: "status: NXDOMAIN, id: 1\n;; flags: qr; QUERY: 1, ANSWER: 0, AUTHORITY: 1\n", stderr: "" })!, /status NXDOMAIN/);
  assert.match(nodata.judge({ code: 0, stdout: "status: NOERROR, id: 1\n;; flags: qr; QUERY: 1, ANSWER: 1, AUTHORITY: 0\n", stderr: "" })!, /with 1 answers/);
  assert.equal(by("dig PTR of web-svc's ClusterIP").judge({ code: 0, stdout: "web-svc.default.svc.cluster.local.\n", stderr: "" }), undefined);
  assert.deepEqual(by("dig PTR of web-svc's ClusterIP").argv.slice(-2), ["-x", "10.96.0.5"]);
  assert.equal(by("dig dns-version TXT").judge({ code: 0, stdout: '"1.1.0"\n', stderr: "" }), undefined);
  const bb = by("busybox nslookup web-svc");
  assert.equal(bb.judge({ code: 0, stdout: "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\nName:\tweb-svc.default.svc.cluster.local\nAddress: 10.96.0.5\n", stderr: "" }), undefined);
  assert.ok(bb.judge({ code: 0, stdout: "Address: 10.96.0.50\n", stderr: "" }), "a longer address that starts the same does not pass");
});
