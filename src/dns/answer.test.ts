// The answer builder against the examples of the Kubernetes DNS specification (kubernetes/dns
// docs/specification.md, schema 1.1.0) and CoreDNS's NXDOMAIN/NODATA rules.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Answer } from "dns-packet";
import { AnswerBuilder, type ClusterAnswer } from "./answer.ts";
import { ClusterIndex } from "./index.ts";
import { clusterIPService, endpointSlice, externalNameService, headlessService, namespace, pod } from "./fixtures.ts";

function specCluster(pods: "disabled" | "insecure" | "verified" = "disabled"): { index: ClusterIndex; builder: AnswerBuilder } {
  const index = new ClusterIndex("cluster.local", pods);
  index.onSync({
    Namespace: [namespace("default"), namespace("other")],
    Service: [
      clusterIPService("default", "kubernetes", ["10.3.0.1"], [{ name: "https", port: 443, protocol: "TCP" }]),
      headlessService("default", "headless", [{ name: "https", port: 443, protocol: "TCP" }]),
      externalNameService("default", "foo", "www.example.com"),
      externalNameService("default", "inside", "kubernetes.default.svc.cluster.local"),
      headlessService("default", "empty"),
      clusterIPService("default", "noeps", ["10.3.0.9"]),
      clusterIPService("default", "dual", ["10.3.0.7", "fd00::7"], [{ port: 80 }, { name: "dns", port: 53, protocol: "UDP" }]),
      clusterIPService("default", "v6only", ["fd00::8"]),
    ],
    EndpointSlice: [
      endpointSlice("default", "headless", [
        { ip: "10.3.0.100", hostname: "my-pet" },
        { ip: "10.3.0.101", hostname: "my-pet-2" },
        { ip: "10.3.0.102" },
        { ip: "10.3.0.103", ready: false },
      ], [{ name: "https", port: 443 }]),
      endpointSlice("default", "empty", [{ ip: "10.3.0.200", ready: false }]),
    ],
    Pod: [pod("default", "p1", "10.244.1.5")],
  });
  return { index, builder: new AnswerBuilder({ zone: "cluster.local", ttl: 5, pods }) };
}

function answer(q: string, type: string, pods: "disabled" | "insecure" | "verified" = "disabled"): ClusterAnswer {
  const { index, builder } = specCluster(pods);
  return builder.answer(index, q, type);
}

function data(r: ClusterAnswer): unknown[] {
  assert.equal(r.kind === "forward", false, "answered from the cluster");
  return (r as { answers: Answer[] }).answers.map((a) => ("data" in a ? a.data : undefined));
}

function rcode(r: ClusterAnswer): string {
  assert.equal(r.kind, "answer");
  return (r as { rcode: string }).rcode;
}

describe("records of the spec", () => {
  it("2.2: dns-version TXT", () => {
    assert.deepEqual(data(answer("dns-version.cluster.local.", "TXT")), ["1.1.0"]);
  });

  it("2.3.1: A for a ClusterIP service, with the TTL configured", () => {
    const r = answer("kubernetes.default.svc.cluster.local.", "A");
    assert.deepEqual(data(r), ["10.3.0.1"]);
    assert.equal((r as { answers: Answer[] }).answers[0]?.name, "kubernetes.default.svc.cluster.local.");
    assert.equal(((r as { answers: Answer[] }).answers[0] as { ttl: number }).ttl, 5);
  });

  it("2.3.2: SRV for a named port, target the service, A in additional", () => {
    const r = answer("_https._tcp.kubernetes.default.svc.cluster.local.", "SRV");
    assert.deepEqual(data(r), [{ priority: 0, weight: 100, port: 443, target: "kubernetes.default.svc.cluster.local" }]);
    assert.deepEqual((r as { additionals: Answer[] }).additionals.map((a) => [a.name, "data" in a ? a.data : ""]), [["kubernetes.default.svc.cluster.local", "10.3.0.1"]]);
  });

  it("2.3.2: an unnamed port has no SRV; a wrong protocol is NXDOMAIN", () => {
    assert.equal(rcode(answer("_http._tcp.dual.default.svc.cluster.local.", "SRV")), "NXDOMAIN");
    assert.equal(rcode(answer("_https._udp.kubernetes.default.svc.cluster.local.", "SRV")), "NXDOMAIN");
    assert.deepEqual(data(answer("_dns._udp.dual.default.svc.cluster.local.", "SRV")), [{ priority: 0, weight: 100, port: 53, target: "dual.default.svc.cluster.local" }]);
  });

  it("2.3.3: PTR for a ClusterIP", () => {
    assert.deepEqual(data(answer("1.0.3.10.in-addr.arpa.", "PTR")), ["kubernetes.default.svc.cluster.local"]);
  });

  it("2.4.1: a headless service answers one A per ready endpoint", () => {
    assert.deepEqual(data(answer("headless.default.svc.cluster.local.", "A")).sort(), ["10.3.0.100", "10.3.0.101", "10.3.0.102"]);
  });

  it("2.4.1: each endpoint by hostname, or by dashed IP without one", () => {
    assert.deepEqual(data(answer("my-pet.headless.default.svc.cluster.local.", "A")), ["10.3.0.100"]);
    assert.deepEqual(data(answer("10-3-0-102.headless.default.svc.cluster.local.", "A")), ["10.3.0.102"]);
    assert.equal(rcode(answer("10-3-0-103.headless.default.svc.cluster.local.", "A")), "NXDOMAIN", "not ready");
  });

  it("2.4.1: a headless service without ready endpoints is NXDOMAIN", () => {
    assert.equal(rcode(answer("empty.default.svc.cluster.local.", "A")), "NXDOMAIN");
    assert.equal(rcode(answer("empty.default.svc.cluster.local.", "TXT")), "NXDOMAIN");
  });

  it("a ClusterIP service without endpoints still answers its A (CoreDNS)", () => {
    assert.deepEqual(data(answer("noeps.default.svc.cluster.local.", "A")), ["10.3.0.9"]);
  });

  it("2.4.2: SRV per ready endpoint and named port, targets the endpoint names", () => {
    const r = answer("_https._tcp.headless.default.svc.cluster.local.", "SRV");
    const targets = data(r).map((d) => (d as { target: string; port: number }).target).sort();
    assert.deepEqual(targets, ["10-3-0-102.headless.default.svc.cluster.local", "my-pet-2.headless.default.svc.cluster.local", "my-pet.headless.default.svc.cluster.local"]);
    assert.ok(data(r).every((d) => (d as { port: number }).port === 443));
    assert.equal((r as { additionals: Answer[] }).additionals.length, 3);
  });

  it("2.4.3: PTR for a headless endpoint", () => {
    assert.deepEqual(data(answer("100.0.3.10.in-addr.arpa.", "PTR")), ["my-pet.headless.default.svc.cluster.local"]);
  });

  it("2.5: ExternalName is a CNAME; an outside target is chased upstream, an inside one here", () => {
    const r = answer("foo.default.svc.cluster.local.", "A");
    assert.equal(r.kind, "chase");
    assert.deepEqual(r.kind === "chase" && [r.target, r.answers[0]?.type, "data" in (r.answers[0] ?? {}) ? (r.answers[0] as { data: string }).data : ""], ["www.example.com", "CNAME", "www.example.com"]);
    assert.deepEqual(data(answer("foo.default.svc.cluster.local.", "CNAME")), ["www.example.com"]);
    assert.deepEqual(data(answer("inside.default.svc.cluster.local.", "A")), ["kubernetes.default.svc.cluster.local", "10.3.0.1"]);
  });

  it("AAAA for IPv6 ClusterIPs; the other family of an existing name is NODATA", () => {
    assert.deepEqual(data(answer("dual.default.svc.cluster.local.", "AAAA")), ["fd00::7"]);
    const r = answer("v6only.default.svc.cluster.local.", "A");
    assert.equal(rcode(r), "NOERROR");
    assert.deepEqual(data(r), []);
  });

  it("2.6: pod records follow the pods mode", () => {
    assert.equal(rcode(answer("10-244-1-5.default.pod.cluster.local.", "A")), "NXDOMAIN", "off by default");
    assert.deepEqual(data(answer("10-244-1-5.default.pod.cluster.local.", "A", "insecure")), ["10.244.1.5"]);
    assert.deepEqual(data(answer("1-2-3-4.default.pod.cluster.local.", "A", "insecure")), ["1.2.3.4"]);
    assert.deepEqual(data(answer("10-244-1-5.default.pod.cluster.local.", "A", "verified")), ["10.244.1.5"]);
    assert.equal(rcode(answer("1-2-3-4.default.pod.cluster.local.", "A", "verified")), "NXDOMAIN");
    assert.equal(rcode(answer("10-244-1-5.other.pod.cluster.local.", "A", "verified")), "NXDOMAIN", "wrong namespace");
    assert.equal(rcode(answer("1-2-3-4.missing.pod.cluster.local.", "A", "insecure")), "NXDOMAIN");
  });
});

describe("NXDOMAIN and NODATA (CoreDNS kubernetes plugin)", () => {
  const cases: [string, string, string, number][] = [
    // name, type, rcode, answers
    ["cluster.local.", "A", "NOERROR", 0],
    ["svc.cluster.local.", "A", "NOERROR", 0],
    ["pod.cluster.local.", "A", "NOERROR", 0],
    ["default.svc.cluster.local.", "A", "NOERROR", 0],
    ["missing.svc.cluster.local.", "A", "NXDOMAIN", 0],
    ["nosuch.default.svc.cluster.local.", "A", "NXDOMAIN", 0],
    ["kubernetes.missing.svc.cluster.local.", "A", "NXDOMAIN", 0],
    ["kubernetes.default.svc.cluster.local.", "TXT", "NOERROR", 0],
    ["kubernetes.default.svc.cluster.local.", "AAAA", "NOERROR", 0],
    ["kubernetes.default.svc.cluster.local.", "MX", "NOERROR", 0],
    ["dns-version.cluster.local.", "A", "NOERROR", 0],
    ["whatever.cluster.local.", "A", "NXDOMAIN", 0],
    ["nobody.headless.default.svc.cluster.local.", "A", "NXDOMAIN", 0],
    ["KUBERNETES.Default.SVC.cluster.LOCAL.", "A", "NOERROR", 1],
    ["cluster.local.", "SOA", "NOERROR", 1],
    ["cluster.local.", "NS", "NOERROR", 1],
  ];
  for (const [name, type, expected, count] of cases) {
    it(`${name} ${type} → ${expected}${count ? "" : " (no answer)"}`, () => {
      const r = answer(name, type);
      assert.equal(rcode(r), expected);
      const answers = (r as { answers: Answer[]; authorities: Answer[] }).answers;
      assert.equal(answers.length, count);
      if (count === 0) assert.deepEqual((r as { authorities: Answer[] }).authorities.map((a) => [a.type, a.name]), [["SOA", "cluster.local"]], "SOA in authority");
    });
  }

  it("owner names keep the asked spelling (0x20)", () => {
    const r = answer("KUBERNETES.Default.SVC.cluster.LOCAL.", "A");
    assert.equal((r as { answers: Answer[] }).answers[0]?.name, "KUBERNETES.Default.SVC.cluster.LOCAL.");
  });

  it("names outside the zone are forwarded, and unknown reverse addresses too", () => {
    assert.equal(answer("example.org.", "A").kind, "forward");
    assert.equal(answer("9.9.9.9.in-addr.arpa.", "PTR").kind, "forward");
  });

  it("before the first sync: SERVFAIL for cluster names, not a wrong NXDOMAIN", () => {
    const index = new ClusterIndex("cluster.local");
    const builder = new AnswerBuilder({ zone: "cluster.local", ttl: 5, pods: "disabled" });
    assert.equal(rcode(builder.answer(index, "kubernetes.default.svc.cluster.local.", "A")), "SERVFAIL");
  });
});

describe("the index follows events", () => {
  it("adds, changes and removes services, slices and reverse entries", () => {
    const { index, builder } = specCluster();
    index.onEvent({ type: "added", kind: "Service", object: clusterIPService("default", "new", ["10.3.0.50"]), revision: 10 });
    assert.deepEqual(data(builder.answer(index, "new.default.svc.cluster.local", "A")), ["10.3.0.50"]);
    assert.deepEqual(data(builder.answer(index, "50.0.3.10.in-addr.arpa", "PTR")), ["new.default.svc.cluster.local"]);
    index.onEvent({ type: "modified", kind: "Service", object: clusterIPService("default", "new", ["10.3.0.51"]), revision: 11 });
    assert.equal(builder.answer(index, "50.0.3.10.in-addr.arpa", "PTR").kind, "forward", "old reverse entry gone");
    index.onEvent({ type: "deleted", kind: "Service", object: clusterIPService("default", "new", ["10.3.0.51"]), revision: 12 });
    assert.equal(rcode(builder.answer(index, "new.default.svc.cluster.local", "A")), "NXDOMAIN");
    index.onEvent({ type: "deleted", kind: "EndpointSlice", object: endpointSlice("default", "headless", []), revision: 13 });
    assert.equal(rcode(builder.answer(index, "headless.default.svc.cluster.local", "A")), "NXDOMAIN");
    index.onEvent({ type: "deleted", kind: "Namespace", object: namespace("other"), revision: 14 });
    assert.equal(rcode(builder.answer(index, "other.svc.cluster.local", "A")), "NXDOMAIN");
  });

  it("a re-list replaces the state", () => {
    const { index, builder } = specCluster();
    index.onSync({ Namespace: [namespace("default")], Service: [], EndpointSlice: [], Pod: [] });
    assert.equal(rcode(builder.answer(index, "kubernetes.default.svc.cluster.local", "A")), "NXDOMAIN");
    assert.equal(builder.answer(index, "1.0.3.10.in-addr.arpa", "PTR").kind, "forward");
  });
});
