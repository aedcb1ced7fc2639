import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { withDefaults } from "../k8s/defaults.ts";
import type { Service } from "../k8s/types.ts";
import { announcerOf, ipsToAnnounce } from "./lb-announcer.ts";

const lb = (name: string, ip: string, local = false): Service =>
  withDefaults({
    apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default" },
    spec: { type: "LoadBalancer", selector: { app: name }, ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], ...(local ? { externalTrafficPolicy: "Local" as const } : {}) },
    status: { loadBalancer: { ingress: [{ ip }] } },
  });

describe("LoadBalancer IP announcer (rendezvous hashing)", () => {
  const nodes = ["node1", "node2", "node3", "node4"];
  it("picks one node per IP, the same whatever the order of the list", () => {
    for (let i = 0; i < 50; i++) {
      const ip = `192.168.1.${200 + i}`;
      const a = announcerOf(ip, nodes);
      assert.ok(a && nodes.includes(a));
      assert.equal(announcerOf(ip, [...nodes].reverse()), a);
    }
  });
  it("spreads IPs over the nodes", () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const a = announcerOf(`10.0.${i >> 8}.${i & 255}`, nodes)!;
      counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    assert.equal(counts.size, 4);
    for (const c of counts.values()) assert.ok(c > 20, `each node gets a share: ${[...counts]}`);
  });
  it("moves only the leaving node's IPs when it leaves", () => {
    for (let i = 0; i < 100; i++) {
      const ip = `10.1.0.${i}`;
      const before = announcerOf(ip, nodes)!;
      const after = announcerOf(ip, nodes.filter((n) => n !== "node2"))!;
      if (before !== "node2") assert.equal(after, before);
      else assert.notEqual(after, "node2");
    }
  });
  it("has no announcer without candidates", () => assert.equal(announcerOf("10.0.0.1", []), undefined));
  it("announces a Local-policy IP only from nodes with a ready local endpoint", () => {
    const service = lb("web", "192.168.1.240", true);
    const slice = {
      apiVersion: "discovery.k8s.io/v1" as const, kind: "EndpointSlice" as const,
      metadata: { name: "web-x", namespace: "default", labels: { "kubernetes.io/service-name": "web" } },
      addressType: "IPv4" as const, ports: [{ name: "", protocol: "TCP" as const, port: 8080 }],
      endpoints: [{ addresses: ["10.244.3.5"], nodeName: "node3", conditions: { ready: true } }],
    };
    assert.deepEqual(ipsToAnnounce("node3", [service], [slice], nodes), ["192.168.1.240"]);
    for (const other of ["node1", "node2", "node4"]) assert.deepEqual(ipsToAnnounce(other, [service], [slice], nodes), []);
  });
  it("ignores services that are not LoadBalancers and exactly one node announces each IP", () => {
    const services = [lb("a", "192.168.1.241"), lb("b", "192.168.1.242"), withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name: "c", namespace: "default" }, spec: { ports: [{ port: 80 }] } })];
    const all = nodes.flatMap((n) => ipsToAnnounce(n, services, [], nodes));
    assert.deepEqual(all.sort(), ["192.168.1.241", "192.168.1.242"]);
  });
});
