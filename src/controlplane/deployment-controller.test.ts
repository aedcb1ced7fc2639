import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { withDefaults } from "../k8s/defaults.ts";
import type { Deployment, Pod } from "../k8s/types.ts";
import { leastLoadedNode, planDeployment, planDeploymentWrites, planPodScheduling, podTemplateHash, POD_TEMPLATE_HASH_LABEL } from "./deployment-controller.ts";

const nodes = [{ name: "n1", ready: true }, { name: "n2", ready: true }, { name: "n3", ready: false }];
function deployment(replicas: number, image = "agnhost"): Deployment {
  return withDefaults({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web", namespace: "default", uid: "u1", generation: 2 }, spec: { replicas, selector: { matchLabels: { app: "web" } }, template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "web", image }] } } } });
}
let counter = 0;
const suffix = () => `x${String(counter++).padStart(4, "0")}`.slice(-5);
const ready = (pod: Pod): Pod => ({ ...pod, status: { phase: "Running", conditions: [{ type: "Ready", status: "True" }] } });

describe("deployment controller", () => {
  it("creates replicas pods named <name>-<hash>-<suffix>, labelled and owned, spread over ready nodes", () => {
    const d = deployment(3);
    const plan = planDeployment(d, [], nodes, { randomSuffix: suffix });
    const hash = podTemplateHash(d.spec.template);
    assert.match(hash, /^[bcdfghjklmnpqrstvwxz2456789]{1,10}$/);
    assert.equal(plan.create.length, 3);
    for (const pod of plan.create) {
      assert.match(pod.metadata.name, new RegExp(`^web-${hash}-[a-z0-9]{5}$`));
      assert.deepEqual(pod.metadata.labels, { app: "web", [POD_TEMPLATE_HASH_LABEL]: hash });
      assert.equal(pod.metadata.ownerReferences![0]!.uid, "u1");
    }
    assert.deepEqual(plan.create.map((p) => p.spec.nodeName), ["n1", "n2", "n1"], "n3 is not ready");
    assert.deepEqual(plan.delete, []);
  });
  it("replaces a deleted pod and does nothing when at the desired count", () => {
    const d = deployment(3);
    const pods = planDeployment(d, [], nodes, { randomSuffix: suffix }).create.map(ready);
    assert.deepEqual(planDeployment(d, pods, nodes).create, []);
    const after = planDeployment(d, pods.slice(1), nodes, { randomSuffix: suffix });
    assert.equal(after.create.length, 1);
    assert.equal(after.create[0]!.spec.nodeName, pods[0]!.spec.nodeName, "the gap is filled on the emptier node");
    // A pod being deleted does not count.
    const terminating = [{ ...pods[0]!, metadata: { ...pods[0]!.metadata, deletionTimestamp: "2026-01-01T00:00:00Z" } }, ...pods.slice(1)];
    assert.equal(planDeployment(d, terminating, nodes, { randomSuffix: suffix }).create.length, 1);
  });
  it("scales down not-ready pods first, from the busiest node", () => {
    const d3 = deployment(3);
    const pods = planDeployment(d3, [], nodes, { randomSuffix: suffix }).create;
    const withReadiness = [ready(pods[0]!), pods[1]!, ready(pods[2]!)];
    const plan = planDeployment(deployment(2), withReadiness, nodes);
    assert.deepEqual(plan.delete.map((p) => p.metadata.name), [pods[1]!.metadata.name]);
    const readyPods = pods.map(ready);
    const plan1 = planDeployment(deployment(1), readyPods, nodes);
    assert.equal(plan1.delete.length, 2);
    // n1 held two of the three: one of its pods goes first, then the newest by name.
    assert.ok(plan1.delete.some((p) => p.spec.nodeName === "n1"));
    assert.equal(planDeployment(deployment(0), pods, nodes).delete.length, 3);
  });
  it("replaces pods of an old template and pods on a node that left", () => {
    const old = planDeployment(deployment(2, "old"), [], nodes, { randomSuffix: suffix }).create.map(ready);
    const plan = planDeployment(deployment(2, "new"), old, nodes, { randomSuffix: suffix });
    assert.equal(plan.delete.length, 2);
    assert.equal(plan.create.length, 2);
    assert.notEqual(plan.create[0]!.metadata.labels![POD_TEMPLATE_HASH_LABEL], old[0]!.metadata.labels![POD_TEMPLATE_HASH_LABEL]);
    const lost = planDeployment(deployment(2), planDeployment(deployment(2), [], nodes, { randomSuffix: suffix }).create, [{ name: "n1", ready: true }], { randomSuffix: suffix });
    assert.equal(lost.delete.length, 1);
    assert.deepEqual(lost.create.map((p) => p.spec.nodeName), ["n1"]);
  });
  it("ignores pods of other deployments and namespaces; creates nothing without a ready node", () => {
    const other: Pod = { apiVersion: "v1", kind: "Pod", metadata: { name: "x", namespace: "default", ownerReferences: [{ apiVersion: "apps/v1", kind: "Deployment", name: "api", uid: "u2" }] }, spec: { containers: [{ name: "c" }], nodeName: "n1" } };
    assert.equal(planDeployment(deployment(1), [other], nodes, { randomSuffix: suffix }).delete.length, 0);
    assert.equal(planDeployment(deployment(2), [], [{ name: "n3", ready: false }]).create.length, 0);
    assert.equal(leastLoadedNode([], []), undefined);
  });
  it("converges to exactly replicas pods, balanced within one, from any starting set (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 }), fc.integer({ min: 1, max: 4 }), (start, replicas, nodeCount) => {
        const ns = Array.from({ length: nodeCount }, (_, i) => ({ name: `n${i}`, ready: true }));
        let pods = planDeployment(deployment(start), [], ns, { randomSuffix: suffix }).create;
        const plan = planDeployment(deployment(replicas), pods, ns, { randomSuffix: suffix });
        pods = [...pods.filter((p) => !plan.delete.includes(p)), ...plan.create];
        assert.equal(pods.length, replicas);
        assert.equal(new Set(pods.map((p) => p.metadata.name)).size, replicas);
        const counts = ns.map((n) => pods.filter((p) => p.spec.nodeName === n.name).length);
        assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `balanced: ${counts}`);
        assert.deepEqual(planDeployment(deployment(replicas), pods, ns).create.length + planDeployment(deployment(replicas), pods, ns).delete.length, 0);
      }),
    );
  });
});

describe("deployment controller writes", () => {
  it("creates pods, writes status once, deletes orphans, schedules bare pods", () => {
    const d = deployment(2);
    const first = planDeploymentWrites([d], [], nodes, { randomSuffix: suffix });
    assert.deepEqual(first.map((w) => w.op), ["create", "create", "update"]);
    const pods = first.filter((w): w is { op: "create"; object: Pod } => w.op === "create").map((w) => ({ ...w.object, metadata: { ...w.object.metadata, resourceVersion: "5" } }));
    const withStatus = { ...d, status: (first[2] as { object: Deployment }).object.status };
    assert.deepEqual(planDeploymentWrites([withStatus], pods, nodes), []);
    const orphans = planDeploymentWrites([], pods, nodes);
    assert.deepEqual(orphans.map((w) => w.op), ["delete", "delete"]);
    assert.equal((orphans[0] as { resourceVersion?: string }).resourceVersion, "5");
    const bare: Pod = { apiVersion: "v1", kind: "Pod", metadata: { name: "bare", namespace: "default" }, spec: { containers: [{ name: "c" }] } };
    const scheduled = planPodScheduling([...pods, bare], nodes);
    assert.equal(scheduled.length, 1);
    assert.equal(((scheduled[0] as { object: Pod }).object.spec.nodeName), "n1", "n1 and n2 hold one each; ties go by name");
    assert.deepEqual(planPodScheduling([bare], [{ name: "n3", ready: false }]), []);
  });
});
