import { test } from "node:test";
import assert from "node:assert/strict";
import { findService, type LabService } from "./lab-services.ts";

const service = (namespace: string, name: string): LabService => ({ namespace, name, type: "ClusterIP", clusterIp: "10.96.0.1", ports: [], endpoints: [] });
const services = [service("default", "web-svc"), service("kube-system", "kube-dns"), service("shop", "web-svc")];

test("a Service is named as NAME (default), NAMESPACE/NAME, or by its DNS name; case and a final dot do not matter", () => {
  const found = (spec: string) => {
    const s = findService(services, spec);
    return s ? `${s.namespace}/${s.name}` : undefined;
  };
  assert.equal(found("web-svc"), "default/web-svc");
  assert.equal(found("shop/web-svc"), "shop/web-svc");
  assert.equal(found("kube-dns.kube-system"), "kube-system/kube-dns");
  assert.equal(found("kube-dns.kube-system.svc"), "kube-system/kube-dns");
  assert.equal(found("Web-Svc.Shop.svc.cluster.local."), "shop/web-svc");
  assert.equal(found("kube-dns"), undefined, "not in default");
  assert.equal(found("a.b.c"), undefined);
  assert.equal(found("nope/web-svc"), undefined);
});
