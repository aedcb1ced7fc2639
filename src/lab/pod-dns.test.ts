import { test } from "node:test";
import assert from "node:assert/strict";
import { parseManifests } from "../k8s/manifest.ts";
import type { Pod, Service } from "../k8s/types.ts";
import { isDnsPod, kubeDnsManifest, resolvConfText } from "./pod-dns.ts";

test("resolv.conf is kubelet's ClusterFirst file for the pod's namespace", () => {
  assert.equal(resolvConfText("team-a"), "nameserver 10.96.0.10\nsearch team-a.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
});

test("the kube-dns manifest: system namespaces, the Service at 10.96.0.10, one DNS pod on each of two nodes", () => {
  const objects = parseManifests(kubeDnsManifest(["node1", "node2", "node3"]), "kube-dns").map((d) => d.object);
  assert.deepEqual(objects.filter((o) => o.kind === "Namespace").map((o) => o.metadata.name), ["default", "kube-system", "kube-public", "kube-node-lease"]);
  const svc = objects.find((o) => o.kind === "Service") as Service;
  assert.equal(svc.metadata.namespace, "kube-system");
  assert.equal(svc.spec.clusterIP, "10.96.0.10");
  assert.deepEqual(svc.spec.ports?.map((p) => [p.name, p.port, p.protocol]), [["dns", 53, "UDP"], ["dns-tcp", 53, "TCP"]]);
  const pods = objects.filter((o) => o.kind === "Pod") as Pod[];
  assert.deepEqual(pods.map((p) => p.spec.nodeName), ["node1", "node2"]);
  assert.ok(pods.every((p) => isDnsPod(p) && p.metadata.labels?.["k8s-app"] === "kube-dns"));
});

test("a one-node lab gets one DNS pod", () => {
  const pods = parseManifests(kubeDnsManifest(["node1"]), "kube-dns").map((d) => d.object).filter((o) => o.kind === "Pod");
  assert.equal(pods.length, 1);
});
