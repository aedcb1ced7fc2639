import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { ObjectWrite } from "../datastore/objects.ts";
import { InvalidObjectError } from "../k8s/field-errors.ts";
import { parseManifests } from "../k8s/manifest.ts";
import type { KubeObject, Service } from "../k8s/types.ts";
import { CLUSTER_IP_POOL, LOAD_BALANCER_IP_POOL, NODE_PORT_POOL, type ClaimTable } from "./allocation.ts";
import { ApiError, ApplyRejectedError, describeResult, planApply, planDelete, type ClusterState } from "./apply.ts";

const config = { serviceCidr: "10.96.0.0/12", nodePortRange: { first: 30000, last: 30009 }, loadBalancerCidrs: ["192.168.1.240/29"] };

/** A tiny in-memory store that applies plans the way ObjectStore.commit does (all or nothing, claims unique). */
class MemoryCluster {
  objects = new Map<string, KubeObject>();
  claims: ClaimTable = new Map();
  revision = 1;
  state(): ClusterState {
    return { objects: [...this.objects.values()], claims: new Map([...this.claims].map(([p, t]) => [p, new Map(t)])), config };
  }
  commit(writes: readonly ObjectWrite[]): void {
    const keys = new Set<string>();
    for (const w of writes) {
      const key = w.op === "claim" || w.op === "release" ? `claim/${w.pool}/${w.token}` : w.op === "delete" ? `${w.kind}/${w.namespace ?? ""}/${w.name}` : `${w.object.kind}/${w.object.metadata.namespace ?? ""}/${w.object.metadata.name}`;
      assert.ok(!keys.has(key), `one write per key in a commit: ${key}`);
      keys.add(key);
      if (w.op === "claim") {
        const holder = this.claims.get(w.pool)?.get(w.token);
        assert.ok(holder === undefined, `claim ${w.pool}/${w.token} is free (held by ${holder})`);
      }
      if (w.op === "create") assert.ok(!this.objects.has(key), `create ${key}: does not exist`);
    }
    this.revision++;
    for (const w of writes) {
      if (w.op === "claim") {
        if (!this.claims.has(w.pool)) this.claims.set(w.pool, new Map());
        this.claims.get(w.pool)!.set(w.token, w.owner);
      } else if (w.op === "release") this.claims.get(w.pool)?.delete(w.token);
      else if (w.op === "delete") this.objects.delete(`${w.kind}/${w.namespace ?? ""}/${w.name}`);
      else {
        const o = structuredClone(w.object);
        o.metadata.resourceVersion = String(this.revision);
        o.metadata.uid ??= `uid-${o.metadata.name}`;
        this.objects.set(`${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`, o);
      }
    }
  }
  apply(text: string) {
    const plan = planApply(parseManifests(text).map((d) => d.object), this.state());
    this.commit(plan.writes);
    return plan.results.map(describeResult);
  }
  service(name: string, namespace = "default"): Service {
    return this.objects.get(`Service/${namespace}/${name}`) as Service;
  }
}

const web = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: agnhost, ports: [{containerPort: 8080, name: http}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-svc}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`;

describe("apply", () => {
  it("creates every document of a file in one batch, allocating a ClusterIP that skips the DNS address", () => {
    const cluster = new MemoryCluster();
    assert.deepEqual(cluster.apply(web), ["deployment.apps/web created", "service/web-svc created"]);
    const svc = cluster.service("web-svc");
    assert.equal(svc.spec.clusterIP, "10.96.0.1");
    assert.deepEqual(svc.spec.clusterIPs, ["10.96.0.1"]);
    assert.equal(cluster.claims.get(CLUSTER_IP_POOL)!.get("10.96.0.1"), "default/web-svc");
    for (let i = 0; i < 12; i++) cluster.apply(`apiVersion: v1\nkind: Service\nmetadata: {name: s${i}}\nspec: {ports: [{port: 80}]}\n`);
    assert.ok(![...cluster.objects.values()].some((o) => o.kind === "Service" && o.spec.clusterIP === "10.96.0.10"), "10.96.0.10 is kept for cluster DNS");
    cluster.apply(`apiVersion: v1\nkind: Service\nmetadata: {name: kube-dns, namespace: kube-system}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 53, protocol: UDP}]}\n`);
    assert.equal(cluster.service("kube-dns", "kube-system").spec.clusterIP, "10.96.0.10");
  });
  it("re-applying is unchanged; a change is configured and keeps the allocated ClusterIP and NodePort", () => {
    const cluster = new MemoryCluster();
    cluster.apply(web.replace("ports: [{port: 80, targetPort: 8080}]", "type: NodePort\n  ports: [{port: 80, targetPort: 8080}]"));
    const before = cluster.service("web-svc");
    assert.deepEqual(cluster.apply(web.replace("ports: [{port: 80, targetPort: 8080}]", "type: NodePort\n  ports: [{port: 80, targetPort: 8080}]")), ["deployment.apps/web unchanged", "service/web-svc unchanged"]);
    assert.deepEqual(cluster.apply(web.replace("replicas: 3", "replicas: 2").replace("ports: [{port: 80, targetPort: 8080}]", "type: NodePort\n  ports: [{port: 80, targetPort: 9090}]")), ["deployment.apps/web configured", "service/web-svc configured"]);
    const after = cluster.service("web-svc");
    assert.equal(after.spec.clusterIP, before.spec.clusterIP);
    assert.equal(after.spec.ports![0]!.nodePort, before.spec.ports![0]!.nodePort);
    assert.equal(after.spec.ports![0]!.targetPort, 9090);
    // Back to ClusterIP: the NodePort is released.
    cluster.apply(web);
    assert.equal(cluster.service("web-svc").spec.ports![0]!.nodePort, undefined);
    assert.equal(cluster.claims.get(NODE_PORT_POOL)?.size ?? 0, 0);
  });
  it("a file with one bad document applies none, and names each failure", () => {
    const cluster = new MemoryCluster();
    const bad = `${web}---\napiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: {ports: [{port: 0, targetPort: 80}]}\n`;
    assert.throws(
      () => cluster.apply(bad),
      (e: unknown) => e instanceof ApplyRejectedError && e.failures.length === 1 && e.failures[0]!.document === 3 && e.failures[0]!.error instanceof InvalidObjectError &&
        e.message.includes('The Service "broken" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive'),
    );
    assert.equal(cluster.objects.size, 0);
    assert.equal(cluster.claims.size, 0);
  });
  it("refuses a taken ClusterIP, a taken NodePort and one out of range", () => {
    const cluster = new MemoryCluster();
    cluster.apply(`apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: NodePort, clusterIP: 10.96.0.50, ports: [{port: 80, nodePort: 30005}]}\n`);
    const attempt = (spec: string) => {
      try {
        cluster.apply(`apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: ${spec}\n`);
      } catch (e) {
        return (e as ApplyRejectedError).failures[0]!.error.message;
      }
      return "applied";
    };
    assert.equal(attempt("{clusterIP: 10.96.0.50, ports: [{port: 80}]}"), 'The Service "b" is invalid: spec.clusterIPs: Invalid value: "10.96.0.50": failed to allocate IP 10.96.0.50: provided IP is already allocated');
    assert.equal(attempt("{type: NodePort, ports: [{port: 80, nodePort: 30005}]}"), 'The Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30005: provided port is already allocated');
    assert.equal(attempt("{type: NodePort, ports: [{port: 80, nodePort: 31000}]}"), 'The Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 31000: provided port is not in the valid range. The range of valid ports is 30000-30009');
    assert.equal(attempt("{clusterIP: 10.96.0.51, ports: [{port: 80}]}"), "applied");
    assert.throws(() => cluster.apply(`apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.0.52, ports: [{port: 80}]}\n`), /spec.clusterIPs\[0\]: Invalid value: "10.96.0.52": may not change once set/);
    assert.equal(cluster.service("b").spec.clusterIP, "10.96.0.51");
  });
  it("two documents of one file cannot take the same NodePort", () => {
    const cluster = new MemoryCluster();
    const two = `apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30001}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30001}]}\n`;
    assert.throws(() => cluster.apply(two), (e: unknown) => e instanceof ApplyRejectedError && e.failures[0]!.document === 2);
    assert.equal(cluster.objects.size, 0);
  });
  it("gives a LoadBalancer an IP from the pool, in status, and <pending> when the pool is empty", () => {
    const cluster = new MemoryCluster();
    const lb = (name: string) => `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n`;
    cluster.apply(lb("lb0"));
    assert.deepEqual(cluster.service("lb0").status, { loadBalancer: { ingress: [{ ip: "192.168.1.241", ipMode: "VIP" }] } });
    assert.ok(cluster.service("lb0").spec.ports![0]!.nodePort! >= 30000);
    for (let i = 1; i < 7; i++) cluster.apply(lb(`lb${i}`));
    assert.deepEqual(cluster.service("lb6").status, { loadBalancer: {} }, "a /29 has 6 usable addresses");
    cluster.commit(planDelete([{ kind: "Service", name: "lb0" }], cluster.state()).writes);
    assert.equal(cluster.claims.get(LOAD_BALANCER_IP_POOL)!.has("192.168.1.241"), false);
  });
  it("needs the namespace; a Namespace earlier in the same file counts", () => {
    const cluster = new MemoryCluster();
    const svc = `apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: team}\nspec: {ports: [{port: 80}]}\n`;
    assert.throws(() => cluster.apply(svc), (e: unknown) => e instanceof ApplyRejectedError && e.failures[0]!.error instanceof ApiError && e.failures[0]!.error.message === 'namespaces "team" not found');
    assert.deepEqual(cluster.apply(`apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\n${svc}`), ["namespace/team created", "service/a created"]);
  });
  it("refuses a change to a Pod's spec", () => {
    const cluster = new MemoryCluster();
    cluster.apply(`apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: a}]}\n`);
    assert.throws(() => cluster.apply(`apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: b}]}\n`), /spec: Forbidden: pod updates may not change fields/);
    assert.deepEqual(cluster.apply(`apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {x: y}}\nspec: {containers: [{name: c, image: a}]}\n`), ["pod/p configured"]);
  });
});

describe("delete", () => {
  it("deletes a Service with its claims and slices, a Deployment with its pods, a Namespace with its contents", () => {
    const cluster = new MemoryCluster();
    cluster.apply(`apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\n${web.replace(/metadata: \{name: (web|web-svc)\}/g, "metadata: {name: $1, namespace: team}")}`);
    cluster.commit([
      { op: "create", object: { apiVersion: "v1", kind: "Pod", metadata: { name: "web-abc-x", namespace: "team", ownerReferences: [{ apiVersion: "apps/v1", kind: "Deployment", name: "web", uid: "uid-web" }] }, spec: { containers: [{ name: "c" }] } } },
      { op: "create", object: { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: "web-svc-1", namespace: "team", labels: { "kubernetes.io/service-name": "web-svc" } }, addressType: "IPv4", endpoints: [] } },
    ]);
    const svcPlan = planDelete([{ kind: "Service", namespace: "team", name: "web-svc" }, { kind: "Service", namespace: "team", name: "nope" }], cluster.state());
    assert.deepEqual(svcPlan.notFound, ['services "nope" not found']);
    assert.deepEqual(svcPlan.writes.map((w) => (w.op === "delete" ? `delete ${w.kind}/${w.name}` : w.op === "release" ? `release ${w.token}` : w.op)).sort(), ["delete EndpointSlice/web-svc-1", "delete Service/web-svc", "release 10.96.0.1"]);
    cluster.commit(svcPlan.writes);
    const nsPlan = planDelete([{ kind: "Namespace", name: "team" }], cluster.state());
    cluster.commit(nsPlan.writes);
    assert.equal(cluster.objects.size, 0);
    assert.throws(() => planDelete([{ kind: "Namespace", name: "default" }], cluster.state()), /namespaces "default" is forbidden/);
  });
});

describe("allocation (property)", () => {
  it("never hands out a ClusterIP, NodePort or LoadBalancer IP twice, whatever the sequence of applies and deletes", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("apply" as const), name: fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h"), type: fc.constantFrom("ClusterIP", "NodePort", "LoadBalancer"), nodePort: fc.option(fc.integer({ min: 30000, max: 30009 }), { nil: undefined }), ports: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ kind: fc.constant("delete" as const), name: fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h") }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const cluster = new MemoryCluster();
        for (const o of ops) {
          if (o.kind === "delete") {
            cluster.commit(planDelete([{ kind: "Service", name: o.name }], cluster.state()).writes);
            continue;
          }
          const ports = Array.from({ length: o.ports }, (_, i) => `{name: p${i}, port: ${80 + i}${i === 0 && o.nodePort && o.type !== "ClusterIP" ? `, nodePort: ${o.nodePort}` : ""}}`).join(", ");
          try {
            cluster.apply(`apiVersion: v1\nkind: Service\nmetadata: {name: ${o.name}}\nspec: {type: ${o.type}, ports: [${ports}]}\n`);
          } catch (e) {
            if (!(e instanceof ApplyRejectedError)) throw e;
          }
        }
        const services = [...cluster.objects.values()].filter((x): x is Service => x.kind === "Service");
        const clusterIps = services.map((s) => s.spec.clusterIP);
        const nodePorts = services.flatMap((s) => (s.spec.ports ?? []).map((p) => p.nodePort).filter((p) => p !== undefined));
        const lbIps = services.flatMap((s) => (s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip));
        assert.equal(new Set(clusterIps).size, clusterIps.length, `ClusterIPs unique: ${clusterIps}`);
        assert.equal(new Set(nodePorts).size, nodePorts.length, `NodePorts unique: ${nodePorts}`);
        assert.equal(new Set(lbIps).size, lbIps.length, `LB IPs unique: ${lbIps}`);
        // The claims are exactly what the services hold: nothing leaks after deletes and type changes.
        assert.deepEqual([...(cluster.claims.get(CLUSTER_IP_POOL) ?? new Map()).keys()].sort(), clusterIps.slice().sort());
        assert.deepEqual([...(cluster.claims.get(NODE_PORT_POOL) ?? new Map()).keys()].sort(), nodePorts.map(String).sort());
        assert.deepEqual([...(cluster.claims.get(LOAD_BALANCER_IP_POOL) ?? new Map()).keys()].sort(), lbIps.slice().sort());
      }),
      { numRuns: 150 },
    );
  });
});
