import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { addressFromDashed, addressFromReverse, dashedAddress, labelsOf, normalizeIPv6, parseClusterName, reverseName } from "./names.ts";

const zone = labelsOf("cluster.local");

describe("parseClusterName (spec schema 1.1.0 names, CoreDNS parseRequest for the rest)", () => {
  it("reads the spec's example names", () => {
    assert.deepEqual(parseClusterName("kubernetes.default.svc.cluster.local.", zone), { kind: "service", namespace: "default", service: "kubernetes" });
    assert.deepEqual(parseClusterName("my-pet.headless.default.svc.cluster.local.", zone), { kind: "endpoint", namespace: "default", service: "headless", endpoint: "my-pet" });
    assert.deepEqual(parseClusterName("_https._tcp.kubernetes.default.svc.cluster.local.", zone), { kind: "port", namespace: "default", service: "kubernetes", port: "https", protocol: "tcp" });
    assert.deepEqual(parseClusterName("dns-version.cluster.local.", zone), { kind: "dns-version" });
    assert.deepEqual(parseClusterName("1-2-3-4.default.pod.cluster.local", zone), { kind: "pod", namespace: "default", pod: "1-2-3-4" });
  });

  it("is case-insensitive and accepts names with or without the root dot", () => {
    assert.deepEqual(parseClusterName("KuberNetes.DEFAULT.Svc.Cluster.Local", zone), { kind: "service", namespace: "default", service: "kubernetes" });
  });

  it("tells the apex, svc.<zone>, pod.<zone> and namespaces apart", () => {
    assert.deepEqual(parseClusterName("cluster.local.", zone), { kind: "apex" });
    assert.deepEqual(parseClusterName("svc.cluster.local.", zone), { kind: "svc-root" });
    assert.deepEqual(parseClusterName("pod.cluster.local.", zone), { kind: "pod-root" });
    assert.deepEqual(parseClusterName("default.svc.cluster.local.", zone), { kind: "namespace", namespace: "default", under: "svc" });
  });

  it("marks names that can never exist inside the zone as invalid, and other zones as outside", () => {
    assert.deepEqual(parseClusterName("foo.cluster.local.", zone), { kind: "invalid" });
    assert.deepEqual(parseClusterName("a.b.c._p._tcp.s.ns.svc.cluster.local.", zone), { kind: "invalid" });
    assert.deepEqual(parseClusterName("a.b.ns.pod.cluster.local.", zone), { kind: "invalid" });
    assert.deepEqual(parseClusterName("example.com.", zone), { kind: "outside" });
    assert.deepEqual(parseClusterName("local.", zone), { kind: "outside" });
    assert.deepEqual(parseClusterName("notcluster.local.", zone), { kind: "outside" });
  });

  it("works for another cluster domain", () => {
    assert.deepEqual(parseClusterName("web.prod.svc.corp.example.", labelsOf("corp.example")), { kind: "service", namespace: "prod", service: "web" });
  });
});

describe("addresses in names", () => {
  it("dashes addresses as CoreDNS's endpointHostname and reads them back", () => {
    assert.equal(dashedAddress("10.3.0.100"), "10-3-0-100");
    assert.equal(dashedAddress("fd00::1"), "fd00--1");
    assert.equal(addressFromDashed("10-3-0-100"), "10.3.0.100");
    assert.equal(addressFromDashed("fd00--1"), "fd00::1");
    assert.equal(addressFromDashed("10-3-0-300"), undefined);
    assert.equal(addressFromDashed("web"), undefined);
  });

  it("maps reverse names both ways (spec 2.3.3 example)", () => {
    assert.equal(addressFromReverse("1.0.3.10.in-addr.arpa."), "10.3.0.1");
    assert.equal(reverseName("10.3.0.1"), "1.0.3.10.in-addr.arpa");
    const v6 = reverseName("fd00::a1");
    assert.ok(v6.startsWith("1.a.0.0.0.0.0.0"), v6);
    assert.equal(addressFromReverse(v6), "fd00::a1");
    assert.equal(addressFromReverse("3.10.in-addr.arpa."), undefined);
    assert.equal(addressFromReverse("1.0.3.999.in-addr.arpa."), undefined);
  });

  it("normalizes IPv6 to RFC 5952 form", () => {
    assert.equal(normalizeIPv6("FD00:0:0:0:0:0:0:1"), "fd00::1");
    assert.equal(normalizeIPv6("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
    assert.equal(normalizeIPv6("1::2::3"), undefined);
  });
});
