// `apply -f` and `delete` as pure plans: the desired manifests, the stored objects, the cluster
// config and the current claims in; one batch of ObjectWrites for ObjectStore.commit out. A file
// is all or nothing: every document is defaulted, validated and allocated first, and if any
// fails the plan throws ApplyRejectedError listing every failure, and nothing is written.
//
// Semantics follow the API server where podnet has the same concepts:
// - create, or replace the user's part of an existing object (kubectl apply without a three-way
//   merge: fields left out of the manifest are reset to their defaults, except what the cluster
//   allocated: a ClusterIP, NodePorts, a LoadBalancer IP, which are kept as the API server keeps them);
// - a ClusterIP cannot change once set (ValidateServiceUpdate: "field is immutable");
// - a Pod's spec cannot change (ValidatePodUpdate);
// - namespaced objects need their namespace (NamespaceLifecycle admission: `namespaces "x" not found`);
// - deleting a Service releases its claims and its EndpointSlices; deleting a Deployment deletes its
//   pods (garbage collection of dependents); deleting a Namespace deletes everything in it.

import type { ClusterConfig } from "../datastore/datastore.ts";
import type { ObjectWrite } from "../datastore/objects.ts";
import { withDefaults } from "../k8s/defaults.ts";
import { invalid, InvalidObjectError, forbidden, type FieldError } from "../k8s/field-errors.ts";
import { resourceName, singularResourceName } from "../k8s/kinds.ts";
import { LABEL_SERVICE_NAME, isNamespaced, type KubeObject, type ObjectKind, type Service, type ServicePort } from "../k8s/types.ts";
import { serviceNetworkConfig, validateObject, type ServiceNetworkConfig } from "../k8s/validation.ts";
import {
  AddressAllocator, AllocationError, claimsIn, clusterDnsIp, CLUSTER_IP_POOL, LOAD_BALANCER_IP_POOL, NODE_PORT_POOL, PortAllocator, type ClaimTable,
} from "./allocation.ts";

/** Namespaces that exist without being stored, as in every cluster. */
export const BUILT_IN_NAMESPACES: ReadonlySet<string> = new Set(["default", "kube-system", "kube-public", "kube-node-lease"]);
export const ALLOCATION_POOLS = [CLUSTER_IP_POOL, NODE_PORT_POOL, LOAD_BALANCER_IP_POOL] as const;

export interface ClusterState {
  /** Every stored object of every kind (the planner indexes them). */
  objects: readonly KubeObject[];
  /** pool → token → owner, for the pools in ALLOCATION_POOLS (missing pools are empty). */
  claims: ClaimTable;
  config: Partial<ClusterConfig> | undefined;
}

export type ApplyAction = "created" | "configured" | "unchanged" | "deleted";

export interface PlannedResult {
  kind: ObjectKind;
  namespace?: string;
  name: string;
  action: ApplyAction;
}

export interface Plan {
  writes: ObjectWrite[];
  results: PlannedResult[];
}

/** kubectl's line for a result: `service/web-svc created`. */
export function describeResult(result: PlannedResult): string {
  return `${singularResourceName(result.kind)}/${result.name} ${result.action}`;
}

export class ApplyRejectedError extends Error {
  constructor(readonly failures: readonly { document: number; error: Error }[]) {
    super(
      `nothing was applied: ${failures.length === 1 ? "a document was" : `${failures.length} documents were`} rejected\n` +
        failures.map((f) => `document ${f.document}: ${f.error.message}`).join("\n"),
    );
    this.name = "ApplyRejectedError";
  }
}

/** An API error that is not a validation failure (missing namespace, not found). */
export class ApiError extends Error {
  constructor(
    readonly reason: "NotFound" | "Forbidden" | "AlreadyExists",
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

const objectId = (kind: ObjectKind, namespace: string | undefined, name: string) => `${kind}/${namespace ?? ""}/${name}`;
const idOf = (o: KubeObject) => objectId(o.kind, o.metadata.namespace, o.metadata.name);
const ownerOf = (service: Service) => `${service.metadata.namespace ?? "default"}/${service.metadata.name}`;

/** Server-set metadata, which a manifest does not carry and which must not count as a change. */
const SERVER_META = ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "managedFields"];

function userView(object: KubeObject): unknown {
  const metadata = { ...object.metadata } as Record<string, unknown>;
  for (const key of SERVER_META) delete metadata[key];
  const { status: _status, ...rest } = object as KubeObject & { status?: unknown };
  return { ...rest, metadata };
}

function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : v,
  );
}

function copyClaims(claims: ClaimTable): ClaimTable {
  return new Map([...claims].map(([pool, tokens]) => [pool, new Map(tokens)]));
}

/** Placeholder owner for a token released in this plan: it must not be handed out in the same commit. */
const RELEASED = "\u0000released";

class Planner {
  readonly objects = new Map<string, KubeObject>();
  readonly writes = new Map<string, ObjectWrite>();
  readonly claimWrites = new Map<string, ObjectWrite>();
  readonly claims: ClaimTable;
  readonly network: ServiceNetworkConfig;
  private clusterIps?: AddressAllocator;
  private loadBalancerIps?: AddressAllocator;
  private nodePorts?: PortAllocator;

  constructor(readonly state: ClusterState) {
    for (const o of state.objects) this.objects.set(idOf(o), o);
    this.claims = copyClaims(state.claims);
    this.network = serviceNetworkConfig(state.config);
  }

  namespaceExists(namespace: string): boolean {
    return BUILT_IN_NAMESPACES.has(namespace) || this.objects.has(objectId("Namespace", undefined, namespace));
  }

  /** Claim a token for an owner (no write if the owner already holds it in the store). */
  claim(pool: string, token: string, owner: string): void {
    const stored = this.state.claims.get(pool)?.get(token);
    claimsIn(this.claims, pool).set(token, owner);
    const key = `${pool}/${token}`;
    if (stored === owner) this.claimWrites.delete(key);
    else this.claimWrites.set(key, { op: "claim", pool, token, owner });
  }

  releaseOwned(pool: string, owner: string, keep: ReadonlySet<string>): void {
    for (const [token, holder] of claimsIn(this.claims, pool)) {
      if (holder !== owner || keep.has(token)) continue;
      claimsIn(this.claims, pool).set(token, RELEASED);
      this.claimWrites.set(`${pool}/${token}`, { op: "release", pool, token });
    }
  }

  clusterIpAllocator(): AddressAllocator {
    return (this.clusterIps ??= new AddressAllocator([this.network.serviceCidr], claimsIn(this.claims, CLUSTER_IP_POOL), new Set([clusterDnsIp(this.network.serviceCidr)])));
  }
  loadBalancerAllocator(): AddressAllocator {
    return (this.loadBalancerIps ??= new AddressAllocator(this.network.loadBalancerCidrs, claimsIn(this.claims, LOAD_BALANCER_IP_POOL)));
  }
  nodePortAllocator(): PortAllocator {
    return (this.nodePorts ??= new PortAllocator(this.network.nodePortRange, claimsIn(this.claims, NODE_PORT_POOL)));
  }

  put(write: ObjectWrite & { op: "create" | "update" }): void {
    const id = idOf(write.object);
    const earlier = this.writes.get(id);
    // A second document for the same object in one file: one write, as etcd allows a key once per transaction.
    this.writes.set(id, earlier?.op === "create" ? { op: "create", object: write.object } : write);
    this.objects.set(id, write.object);
  }

  remove(object: KubeObject): void {
    const id = idOf(object);
    this.writes.set(id, {
      op: "delete",
      kind: object.kind,
      ...(object.metadata.namespace ? { namespace: object.metadata.namespace } : {}),
      name: object.metadata.name,
      ...(object.metadata.resourceVersion ? { resourceVersion: object.metadata.resourceVersion } : {}),
    });
    this.objects.delete(id);
  }

  batch(): ObjectWrite[] {
    // Claims and releases go with the objects in the same commit; order within a commit does not matter.
    return [...this.claimWrites.values(), ...this.writes.values()];
  }
}

/**
 * Plans applying every document of one manifest file. Throws ApplyRejectedError (with each
 * document's InvalidObjectError, AllocationError-derived InvalidObjectError or ApiError) if any
 * document cannot be applied; then nothing of the file may be written.
 */
export function planApply(documents: readonly KubeObject[], state: ClusterState): Plan {
  const planner = new Planner(state);
  const results: PlannedResult[] = [];
  const failures: { document: number; error: Error }[] = [];
  documents.forEach((document, index) => {
    try {
      results.push(applyOne(planner, document));
    } catch (error) {
      failures.push({ document: index + 1, error: error instanceof Error ? error : new Error(String(error)) });
    }
  });
  if (failures.length > 0) throw new ApplyRejectedError(failures);
  return { writes: planner.batch(), results };
}

function applyOne(planner: Planner, manifest: KubeObject): PlannedResult {
  const desired = withDefaults(manifest);
  // Status is the cluster's, never the user's (the status subresource).
  delete (desired as { status?: unknown }).status;
  for (const key of SERVER_META) delete (desired.metadata as Record<string, unknown>)[key];
  const kind = desired.kind;
  const name = desired.metadata.name;
  const errors = validateObject(desired, planner.state.config);
  if (errors.length > 0) throw new InvalidObjectError(kind, String(name ?? ""), errors);
  const namespace = desired.metadata.namespace;
  if (isNamespaced(kind) && namespace && !planner.namespaceExists(namespace)) {
    throw new ApiError("NotFound", `namespaces "${namespace}" not found`);
  }
  const current = planner.objects.get(idOf(desired));
  const result = { kind, ...(namespace ? { namespace } : {}), name };

  let next: KubeObject = desired;
  if (current) {
    next = mergeForUpdate(current, desired);
  }
  if (next.kind === "Service") allocateService(planner, next, current?.kind === "Service" ? current : undefined);

  if (current && stableJson(userView(current)) === stableJson(userView(next)) && stableJson((current as { status?: unknown }).status ?? null) === stableJson((next as { status?: unknown }).status ?? null)) {
    return { ...result, action: "unchanged" };
  }
  if (current) {
    planner.put({ op: "update", object: next });
    return { ...result, action: "configured" };
  }
  planner.put({ op: "create", object: next });
  return { ...result, action: "created" };
}

/** The desired object as an update of `current`: server metadata and status kept, immutable fields checked. */
function mergeForUpdate(current: KubeObject, desired: KubeObject): KubeObject {
  const meta = { ...desired.metadata };
  for (const key of SERVER_META) if (current.metadata[key] !== undefined) meta[key] = current.metadata[key];
  const next = { ...desired, metadata: meta } as KubeObject;
  const status = (current as { status?: unknown }).status;
  if (status !== undefined) (next as { status?: unknown }).status = structuredClone(status);
  const fail = (errors: FieldError[]) => {
    throw new InvalidObjectError(desired.kind, desired.metadata.name, errors);
  };
  if (next.kind === "Pod" && current.kind === "Pod") {
    const currentSpec = { ...current.spec };
    const nextSpec = { ...next.spec };
    // nodeName is set by scheduling; a manifest without it does not ask to move the pod.
    if (nextSpec.nodeName === undefined) nextSpec.nodeName = currentSpec.nodeName;
    if (stableJson(currentSpec) !== stableJson(nextSpec)) {
      fail([forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")]);
    }
    next.spec = current.spec;
  }
  if (next.kind === "Deployment" && current.kind === "Deployment") {
    const generation = current.metadata.generation ?? 1;
    next.metadata.generation = stableJson(current.spec) === stableJson(next.spec) ? generation : generation + 1;
    // apps/v1 ValidateDeploymentUpdate: the selector is immutable.
    if (stableJson(current.spec.selector) !== stableJson(next.spec.selector)) {
      fail([invalid("spec.selector", next.spec.selector, "field is immutable")]);
    }
  }
  if (next.kind === "Service" && current.kind === "Service") {
    const was = current.spec.clusterIP;
    const want = next.spec.clusterIP;
    const wasAllocated = was !== undefined && was !== "" && current.spec.type !== "ExternalName";
    if (next.spec.type !== "ExternalName" && wasAllocated) {
      if (want === undefined || want === "") {
        next.spec.clusterIP = was;
        if (current.spec.clusterIPs) next.spec.clusterIPs = [...current.spec.clusterIPs];
      } else if (want !== was) {
        fail([invalid("spec.clusterIPs[0]", want, "may not change once set")]);
      }
    }
    // A port without a nodePort keeps the one it had (matched by name, else by port and protocol).
    const requested = new Set((next.spec.ports ?? []).map((p) => p.nodePort).filter((p) => p));
    for (const port of next.spec.ports ?? []) {
      if (port.nodePort) continue;
      const before = (current.spec.ports ?? []).find((p) => (port.name && p.name === port.name) || (p.port === port.port && (p.protocol ?? "TCP") === (port.protocol ?? "TCP")));
      // Unless another port of the new spec asks for it by number: then this one gets a new port.
      if (before?.nodePort && !requested.has(before.nodePort)) {
        port.nodePort = before.nodePort;
        requested.add(before.nodePort);
      }
    }
  }
  return next;
}

function allocationFailure(service: Service, error: unknown): never {
  if (error instanceof AllocationError) {
    throw new InvalidObjectError("Service", service.metadata.name, [invalid(error.field, error.value, error.message)]);
  }
  throw error;
}

/** ClusterIP, NodePorts and LoadBalancer IP of a Service, as claims; the Service's own fields are filled in. */
function allocateService(planner: Planner, service: Service, current: Service | undefined): void {
  const owner = ownerOf(service);
  const spec = service.spec;
  const type = spec.type ?? "ClusterIP";
  try {
    // ClusterIP
    const keepIps = new Set<string>();
    if (type !== "ExternalName" && spec.clusterIP !== "None") {
      const allocator = planner.clusterIpAllocator();
      if (spec.clusterIP) {
        allocator.claim(spec.clusterIP, owner, "spec.clusterIPs", planner.network.serviceCidr);
      } else {
        const ip = allocator.next(owner);
        if (!ip) throw new AllocationError("spec.clusterIPs", [], `failed to allocate a serviceIP: range is full (${planner.network.serviceCidr})`);
        spec.clusterIP = ip;
      }
      spec.clusterIPs = [spec.clusterIP];
      spec.ipFamilies = ["IPv4"];
      spec.ipFamilyPolicy ??= "SingleStack";
      keepIps.add(spec.clusterIP);
      planner.claim(CLUSTER_IP_POOL, spec.clusterIP, owner);
    } else if (type === "ExternalName") {
      delete spec.clusterIP;
      delete spec.clusterIPs;
    } else {
      spec.clusterIPs = ["None"];
    }
    planner.releaseOwned(CLUSTER_IP_POOL, owner, keepIps);

    // NodePorts
    const keepPorts = new Set<string>();
    const wantsNodePorts = type === "NodePort" || (type === "LoadBalancer" && spec.allocateLoadBalancerNodePorts !== false);
    if (wantsNodePorts) {
      const allocator = planner.nodePortAllocator();
      (spec.ports ?? []).forEach((port: ServicePort, i) => {
        if (port.nodePort) allocator.claim(port.nodePort, owner, `spec.ports[${i}].nodePort`);
        else {
          const next = allocator.next(owner);
          if (next === undefined) throw new AllocationError(`spec.ports[${i}].nodePort`, 0, "failed to allocate a nodePort: range is full");
          port.nodePort = next;
        }
        keepPorts.add(String(port.nodePort));
        planner.claim(NODE_PORT_POOL, String(port.nodePort), owner);
      });
    } else {
      for (const port of spec.ports ?? []) delete port.nodePort;
    }
    planner.releaseOwned(NODE_PORT_POOL, owner, keepPorts);

    // LoadBalancer IP: a pool of the cluster's, written to status as a load-balancer controller would.
    const keepLb = new Set<string>();
    if (type === "LoadBalancer") {
      const allocator = planner.loadBalancerAllocator();
      const had = current?.spec.type === "LoadBalancer" ? current.status?.loadBalancer?.ingress?.[0]?.ip : undefined;
      let ip: string | undefined;
      if (spec.loadBalancerIP) {
        allocator.claim(spec.loadBalancerIP, owner, "spec.loadBalancerIP", planner.network.loadBalancerCidrs.join(", ") || "(no load-balancer pool configured)");
        ip = spec.loadBalancerIP;
      } else if (had && planner.claims.get(LOAD_BALANCER_IP_POOL)?.get(had) === owner) {
        ip = had;
      } else {
        // No free address (or no pool): the service waits with EXTERNAL-IP <pending>, as on a cluster without a load balancer.
        ip = allocator.next(owner);
      }
      if (ip) {
        keepLb.add(ip);
        planner.claim(LOAD_BALANCER_IP_POOL, ip, owner);
        service.status = { loadBalancer: { ingress: [{ ip, ipMode: "VIP" }] } };
      } else {
        service.status = { loadBalancer: {} };
      }
    } else if (service.status?.loadBalancer) {
      service.status = { loadBalancer: {} };
    }
    planner.releaseOwned(LOAD_BALANCER_IP_POOL, owner, keepLb);
  } catch (error) {
    allocationFailure(service, error);
  }
}

export interface DeleteTarget {
  kind: ObjectKind;
  namespace?: string;
  name: string;
}

export interface DeletePlan extends Plan {
  /** `services "web" not found`, one per target that does not exist. */
  notFound: string[];
}

/**
 * Deletes the targets and what depends on them, in one batch. Missing targets are reported, not
 * thrown, as kubectl reports NotFound per object and deletes the rest. Deleting a built-in
 * namespace throws ApiError("Forbidden").
 */
export function planDelete(targets: readonly DeleteTarget[], state: ClusterState): DeletePlan {
  const planner = new Planner(state);
  const results: PlannedResult[] = [];
  const notFound: string[] = [];
  const all = () => [...planner.objects.values()];
  // Dependents removed in this plan: a later target among them (a Deployment listed after its Namespace
  // in the same file) is reported deleted, as kubectl reports each object of a file.
  const removed = new Set<string>();
  const deleteObject = (object: KubeObject): void => {
    if (!planner.objects.has(idOf(object))) return;
    planner.remove(object);
    removed.add(idOf(object));
    if (object.kind === "Service") {
      const owner = ownerOf(object);
      for (const pool of ALLOCATION_POOLS) planner.releaseOwned(pool, owner, new Set());
      for (const slice of all()) {
        if (slice.kind === "EndpointSlice" && slice.metadata.namespace === object.metadata.namespace && slice.metadata.labels?.[LABEL_SERVICE_NAME] === object.metadata.name) deleteObject(slice);
      }
    }
    if (object.kind === "Deployment") {
      for (const pod of all()) {
        if (pod.kind !== "Pod" || pod.metadata.namespace !== object.metadata.namespace) continue;
        const owned = (pod.metadata.ownerReferences ?? []).some((r) => r.kind === "Deployment" && r.name === object.metadata.name && (!object.metadata.uid || !r.uid || r.uid === object.metadata.uid));
        if (owned) deleteObject(pod);
      }
    }
    if (object.kind === "Namespace") {
      for (const inside of all()) if (inside.metadata.namespace === object.metadata.name) deleteObject(inside);
    }
  };
  for (const target of targets) {
    const namespace = isNamespaced(target.kind) ? (target.namespace ?? "default") : undefined;
    if (target.kind === "Namespace" && BUILT_IN_NAMESPACES.has(target.name)) {
      throw new ApiError("Forbidden", `namespaces "${target.name}" is forbidden: this namespace may not be deleted`);
    }
    const object = planner.objects.get(objectId(target.kind, namespace, target.name));
    const alreadyRemoved = removed.has(objectId(target.kind, namespace, target.name));
    if (!object && alreadyRemoved) {
      if (!results.some((r) => r.kind === target.kind && r.namespace === namespace && r.name === target.name)) results.push({ kind: target.kind, ...(namespace ? { namespace } : {}), name: target.name, action: "deleted" });
      continue;
    }
    if (!object) {
      if (!results.some((r) => r.kind === target.kind && r.namespace === namespace && r.name === target.name)) notFound.push(`${resourceName(target.kind)} "${target.name}" not found`);
      continue;
    }
    deleteObject(object);
    results.push({ kind: target.kind, ...(namespace ? { namespace } : {}), name: target.name, action: "deleted" });
  }
  return { writes: planner.batch(), results, notFound };
}
