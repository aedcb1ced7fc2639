// The Deployment controller as a pure function: a Deployment and the pods it owns in, the pods to
// create and delete out. Kubernetes goes Deployment → ReplicaSet → Pods; podnet stores no
// ReplicaSets, so pods are owned by the Deployment directly but named and labelled as a
// ReplicaSet would name them: `<deployment>-<pod-template-hash>-<5 random characters>` with the
// `pod-template-hash` label (pkg/controller/deployment/sync.go, controller.ComputeHash,
// apimachinery util/rand SafeEncodeString).
//
// Rollout is Recreate-like: pods of an old template are deleted as soon as the template changes,
// and the new ones are created in the same pass. Pods are spread over the ready nodes, fewest
// first, the job kube-scheduler's PodTopologySpread/least-allocated scoring does on a real cluster.

import { randomInt } from "node:crypto";
import type { ObjectWrite } from "../datastore/objects.ts";
import type { Deployment, Pod, PodTemplateSpec } from "../k8s/types.ts";

export const POD_TEMPLATE_HASH_LABEL = "pod-template-hash";
/** The alphabet of SafeEncodeString and of generated name suffixes: no vowels, no look-alikes. */
const SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

export interface NodeInfo {
  name: string;
  ready: boolean;
}

export interface DeploymentPlan {
  create: Pod[];
  delete: Pod[];
  /** The Deployment's status after the plan is carried out (pods not yet ready counted as not ready). */
  status: NonNullable<Deployment["status"]>;
}

export interface DeploymentOptions {
  /** Five-character name suffixes; random by default (injectable for tests). */
  randomSuffix?: () => string;
  now?: Date;
}

function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

function safeEncode(text: string): string {
  return [...text].map((c) => SAFE_ALPHABET[c.charCodeAt(0) % SAFE_ALPHABET.length]).join("");
}

function stableJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : v));
}

/** The pod-template-hash of a template: FNV-1a of its canonical JSON, encoded as kube encodes it. */
export function podTemplateHash(template: PodTemplateSpec): string {
  return safeEncode(String(fnv1a32(stableJson(template))));
}

export function randomSuffix(): string {
  return Array.from({ length: 5 }, () => SAFE_ALPHABET[randomInt(SAFE_ALPHABET.length)]).join("");
}

export function isPodReady(pod: Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

function isActive(pod: Pod): boolean {
  return !pod.metadata.deletionTimestamp && pod.status?.phase !== "Succeeded" && pod.status?.phase !== "Failed";
}

export function ownedBy(pod: Pod, deployment: Deployment): boolean {
  return (pod.metadata.namespace ?? "default") === (deployment.metadata.namespace ?? "default") &&
    (pod.metadata.ownerReferences ?? []).some((r) => r.kind === "Deployment" && r.name === deployment.metadata.name && (!r.uid || !deployment.metadata.uid || r.uid === deployment.metadata.uid));
}

/** The ready node with the fewest of `pods`, ties by name; undefined when no node is ready. */
export function leastLoadedNode(pods: readonly Pod[], nodes: readonly NodeInfo[]): string | undefined {
  const counts = new Map(nodes.filter((n) => n.ready).map((n) => [n.name, 0]));
  for (const pod of pods) if (pod.spec.nodeName && counts.has(pod.spec.nodeName)) counts.set(pod.spec.nodeName, counts.get(pod.spec.nodeName)! + 1);
  let best: string | undefined;
  for (const [name, count] of [...counts].sort(([a], [b]) => a.localeCompare(b))) if (best === undefined || count < counts.get(best)!) best = name;
  return best;
}

export function planDeployment(deployment: Deployment, pods: readonly Pod[], nodes: readonly NodeInfo[], options: DeploymentOptions = {}): DeploymentPlan {
  const suffix = options.randomSuffix ?? randomSuffix;
  const namespace = deployment.metadata.namespace ?? "default";
  const replicas = deployment.spec.replicas ?? 1;
  const hash = podTemplateHash(deployment.spec.template);
  const known = new Set(nodes.map((n) => n.name));
  const owned = pods.filter((p) => ownedBy(p, deployment) && isActive(p));

  const toDelete: Pod[] = [];
  const keep: Pod[] = [];
  for (const pod of owned) {
    // A pod of an older template, or on a node that left the cluster, is replaced.
    if (pod.metadata.labels?.[POD_TEMPLATE_HASH_LABEL] !== hash || (pod.spec.nodeName !== undefined && !known.has(pod.spec.nodeName))) toDelete.push(pod);
    else keep.push(pod);
  }

  if (keep.length > replicas) {
    // Which pods go first (pkg/controller ActivePods ordering): unscheduled, not ready, on the
    // busiest node, then the newest.
    const perNode = new Map<string, number>();
    for (const pod of keep) perNode.set(pod.spec.nodeName ?? "", (perNode.get(pod.spec.nodeName ?? "") ?? 0) + 1);
    // One at a time, so the node counts stay current and the survivors stay balanced.
    while (keep.length > replicas) {
      const victim = [...keep].sort((a, b) =>
        Number(a.spec.nodeName !== undefined) - Number(b.spec.nodeName !== undefined) ||
        Number(isPodReady(a)) - Number(isPodReady(b)) ||
        (perNode.get(b.spec.nodeName ?? "") ?? 0) - (perNode.get(a.spec.nodeName ?? "") ?? 0) ||
        (b.metadata.creationTimestamp ?? "").localeCompare(a.metadata.creationTimestamp ?? "") ||
        b.metadata.name.localeCompare(a.metadata.name),
      )[0]!;
      toDelete.push(victim);
      keep.splice(keep.indexOf(victim), 1);
      perNode.set(victim.spec.nodeName ?? "", (perNode.get(victim.spec.nodeName ?? "") ?? 1) - 1);
    }
  }

  const create: Pod[] = [];
  const taken = new Set(pods.map((p) => p.metadata.name));
  const placed = [...keep];
  for (let i = keep.length; i < replicas; i++) {
    const nodeName = leastLoadedNode(placed, nodes);
    if (nodeName === undefined) break; // no ready node: nothing can run; the next pass creates them
    let name: string;
    do name = `${deployment.metadata.name}-${hash}-${suffix()}`;
    while (taken.has(name));
    taken.add(name);
    const template = structuredClone(deployment.spec.template);
    const pod: Pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name,
        namespace,
        labels: { ...(template.metadata?.labels ?? {}), [POD_TEMPLATE_HASH_LABEL]: hash },
        ...(template.metadata?.annotations ? { annotations: template.metadata.annotations } : {}),
        ownerReferences: [{ apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name, uid: deployment.metadata.uid ?? "", controller: true, blockOwnerDeletion: true }],
      },
      spec: { ...template.spec, nodeName },
      status: { phase: "Pending" },
    };
    create.push(pod);
    placed.push(pod);
  }

  const ready = keep.filter(isPodReady).length;
  return {
    create,
    delete: toDelete,
    status: {
      replicas: keep.length + create.length,
      readyReplicas: ready,
      availableReplicas: ready,
      updatedReplicas: keep.length + create.length,
      observedGeneration: deployment.metadata.generation ?? 1,
    },
  };
}

/**
 * One pass of the Deployment controller over the whole cluster as ObjectStore writes: the pods
 * every Deployment needs created or deleted, and the status of each Deployment whose status
 * changed. Pods whose Deployment is gone are deleted too (garbage collection of dependents).
 */
export function planDeploymentWrites(deployments: readonly Deployment[], pods: readonly Pod[], nodes: readonly NodeInfo[], options: DeploymentOptions = {}): ObjectWrite[] {
  const writes: ObjectWrite[] = [];
  const podDelete = (pod: Pod): ObjectWrite => ({ op: "delete", kind: "Pod", namespace: pod.metadata.namespace ?? "default", name: pod.metadata.name, ...(pod.metadata.resourceVersion ? { resourceVersion: pod.metadata.resourceVersion } : {}) });
  const created: Pod[] = [];
  for (const deployment of deployments) {
    const plan = planDeployment(deployment, [...pods, ...created], nodes, options);
    for (const pod of plan.create) {
      created.push(pod);
      writes.push({ op: "create", object: pod });
    }
    for (const pod of plan.delete) writes.push(podDelete(pod));
    if (JSON.stringify(deployment.status ?? {}) !== JSON.stringify(plan.status)) writes.push({ op: "update", object: { ...deployment, status: plan.status } });
  }
  for (const pod of pods) {
    const owner = (pod.metadata.ownerReferences ?? []).find((r) => r.kind === "Deployment" && r.controller);
    if (!owner || pod.metadata.deletionTimestamp) continue;
    const alive = deployments.some((d) => (d.metadata.namespace ?? "default") === (pod.metadata.namespace ?? "default") && d.metadata.name === owner.name && (!owner.uid || !d.metadata.uid || d.metadata.uid === owner.uid));
    if (!alive) writes.push(podDelete(pod));
  }
  return writes;
}

/** Bare pods without a node: each goes to the ready node with the fewest pods (kube-scheduler's job). */
export function planPodScheduling(pods: readonly Pod[], nodes: readonly NodeInfo[]): ObjectWrite[] {
  const placed = pods.filter((p) => p.spec.nodeName !== undefined);
  const writes: ObjectWrite[] = [];
  for (const pod of pods) {
    if (pod.spec.nodeName !== undefined || pod.metadata.deletionTimestamp) continue;
    const nodeName = leastLoadedNode(placed, nodes);
    if (nodeName === undefined) break;
    const scheduled: Pod = { ...pod, spec: { ...pod.spec, nodeName } };
    placed.push(scheduled);
    writes.push({ op: "update", object: scheduled });
  }
  return writes;
}
