// The in-memory view of the cluster that every answer is read from: no datastore read per query.
// Fed by the datastore's object watch (src/datastore/objects.ts): one full list, then events.
// It keeps only what DNS needs from each object, so 10,000 services and their endpoints stay small.

import type { ObjectEvent, ObjectWatchHandler } from "../datastore/objects.ts";
import { LABEL_SERVICE_NAME, type EndpointSlice, type KindMap, type Namespace, type ObjectKind, type Pod, type Service } from "../k8s/types.ts";
import { dashedAddress, normalizeAddress } from "./names.ts";

export interface PortRecord {
  /** Lower-cased port name; "" for an unnamed port. */
  name: string;
  /** Lower-cased protocol: "tcp", "udp", "sctp". */
  protocol: string;
  port: number;
}

export interface EndpointRecord {
  ip: string;
  /** Lower-cased endpoint hostname, or the dashed address when the endpoint has none. */
  hostname: string;
  /** Ports of the slice the endpoint came from. */
  ports: readonly PortRecord[];
}

export type ServiceShape =
  | { type: "clusterIP"; clusterIPs: readonly string[] }
  | { type: "headless" }
  | { type: "externalName"; externalName: string };

export interface ServiceRecord {
  namespace: string;
  name: string;
  shape: ServiceShape;
  ports: readonly PortRecord[];
  /** Endpoints that are ready (or served anyway because of publishNotReadyAddresses). */
  endpoints: readonly EndpointRecord[];
}

interface SliceRecord {
  service: string;
  endpoints: { ip: string; hostname: string; ready: boolean }[];
  ports: PortRecord[];
}

export type PodsMode = "disabled" | "insecure" | "verified";

/** What the answer builder needs from the index; also implemented by tests' hand-made views. */
export interface ClusterView {
  readonly synced: boolean;
  /** Increases on every change; answer caches key on it. */
  readonly generation: number;
  /** Unix seconds of the last change, used as the SOA serial. */
  readonly serial: number;
  hasNamespace(namespace: string): boolean;
  service(namespace: string, name: string): ServiceRecord | undefined;
  /** Owner names (lower case, no trailing dot, zone included) of the records whose address is `ip`. */
  reverse(ip: string): readonly string[];
  /** Whether a pod with address `ip` runs in `namespace` (pods "verified" mode). */
  podInNamespace(ip: string, namespace: string): boolean;
}

function serviceKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function portsOf(ports: readonly { name?: string; protocol?: string; port?: number }[] | undefined): PortRecord[] {
  const out: PortRecord[] = [];
  for (const p of ports ?? []) {
    if (typeof p.port !== "number") continue;
    out.push({ name: (p.name ?? "").toLowerCase(), protocol: (p.protocol ?? "TCP").toLowerCase(), port: p.port });
  }
  return out;
}

/** Service shape per core/v1: ExternalName by type; headless by clusterIP "None" (types.go ClusterIPNone). */
function shapeOf(service: Service): ServiceShape | undefined {
  const spec = service.spec;
  if (spec.type === "ExternalName") {
    const target = (spec.externalName ?? "").replace(/\.$/, "");
    return target === "" ? undefined : { type: "externalName", externalName: target };
  }
  if (spec.clusterIP === "None") return { type: "headless" };
  const ips = (spec.clusterIPs && spec.clusterIPs.length > 0 ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [])
    .map(normalizeAddress)
    .filter((ip): ip is string => ip !== undefined);
  // A service whose ClusterIP is not allocated yet has no records (CoreDNS skips it the same way).
  return ips.length === 0 ? undefined : { type: "clusterIP", clusterIPs: ips };
}

interface ServiceState {
  namespace: string;
  name: string;
  shape: ServiceShape | undefined;
  ports: PortRecord[];
  publishNotReady: boolean;
  slices: Map<string, SliceRecord>;
  record: ServiceRecord | undefined;
  /** Reverse entries this service put in the reverse map, to take them out again. */
  reverseEntries: [string, string][];
}

export class ClusterIndex implements ClusterView, ObjectWatchHandler {
  synced = false;
  generation = 0;
  serial = Math.floor(Date.now() / 1000);
  /** Called after every change (tests and the bench use it to time propagation). */
  onChange: (() => void) | undefined;

  private readonly namespaces = new Set<string>();
  private readonly services = new Map<string, ServiceState>();
  /** Slice identity "ns/slice" → service key it was filed under. */
  private readonly sliceOwner = new Map<string, string>();
  private readonly reverseMap = new Map<string, string[]>();
  /** Pod address → namespaces (only in "verified" mode). */
  private readonly podIPs = new Map<string, Set<string>>();
  /** Pod identity "ns/name" → addresses, to withdraw them on change. */
  private readonly podAddresses = new Map<string, string[]>();

  constructor(private readonly zone: string, private readonly podsMode: PodsMode = "disabled") {}

  /** The kinds this index consumes. */
  static readonly kinds: readonly ObjectKind[] = ["Namespace", "Service", "EndpointSlice", "Pod"];

  onSync(lists: { [K in ObjectKind]?: KindMap[K][] }): void {
    // A re-list replaces everything (objects.ts: "consumers must replace, not merge").
    this.namespaces.clear();
    this.services.clear();
    this.sliceOwner.clear();
    this.reverseMap.clear();
    this.podIPs.clear();
    this.podAddresses.clear();
    for (const ns of lists.Namespace ?? []) this.applyNamespace(ns, false);
    for (const svc of lists.Service ?? []) this.applyService(svc, false);
    for (const slice of lists.EndpointSlice ?? []) this.applySlice(slice, false);
    for (const pod of lists.Pod ?? []) this.applyPod(pod, false);
    this.synced = true;
    this.changed();
  }

  onEvent(event: ObjectEvent): void {
    const deleted = event.type === "deleted";
    switch (event.kind) {
      case "Namespace":
        this.applyNamespace(event.object as Namespace, deleted);
        break;
      case "Service":
        this.applyService(event.object as Service, deleted);
        break;
      case "EndpointSlice":
        this.applySlice(event.object as EndpointSlice, deleted);
        break;
      case "Pod":
        this.applyPod(event.object as Pod, deleted);
        break;
      default:
        return;
    }
    this.changed();
  }

  hasNamespace(namespace: string): boolean {
    return this.namespaces.has(namespace);
  }

  service(namespace: string, name: string): ServiceRecord | undefined {
    return this.services.get(serviceKey(namespace, name))?.record;
  }

  reverse(ip: string): readonly string[] {
    return this.reverseMap.get(ip) ?? [];
  }

  podInNamespace(ip: string, namespace: string): boolean {
    return this.podIPs.get(ip)?.has(namespace) ?? false;
  }

  get serviceCount(): number {
    return this.services.size;
  }

  private changed(): void {
    this.generation++;
    this.serial = Math.floor(Date.now() / 1000);
    this.onChange?.();
  }

  private applyNamespace(ns: Namespace, deleted: boolean): void {
    const name = ns.metadata.name.toLowerCase();
    if (deleted) this.namespaces.delete(name);
    else this.namespaces.add(name);
  }

  private stateFor(namespace: string, name: string): ServiceState {
    const key = serviceKey(namespace, name);
    let state = this.services.get(key);
    if (!state) {
      state = { namespace, name, shape: undefined, ports: [], publishNotReady: false, slices: new Map(), record: undefined, reverseEntries: [] };
      this.services.set(key, state);
    }
    return state;
  }

  private applyService(service: Service, deleted: boolean): void {
    const namespace = (service.metadata.namespace ?? "default").toLowerCase();
    const name = service.metadata.name.toLowerCase();
    const state = this.stateFor(namespace, name);
    if (deleted) {
      state.shape = undefined;
      state.ports = [];
    } else {
      state.shape = shapeOf(service);
      state.ports = portsOf(service.spec.ports);
      state.publishNotReady = service.spec.publishNotReadyAddresses === true;
    }
    this.rebuild(state);
  }

  private applySlice(slice: EndpointSlice, deleted: boolean): void {
    const namespace = (slice.metadata.namespace ?? "default").toLowerCase();
    const sliceId = `${namespace}/${slice.metadata.name}`;
    const previousOwner = this.sliceOwner.get(sliceId);
    if (previousOwner !== undefined) {
      const previous = this.services.get(previousOwner);
      if (previous) {
        previous.slices.delete(sliceId);
        this.rebuild(previous);
      }
      this.sliceOwner.delete(sliceId);
    }
    const serviceName = slice.metadata.labels?.[LABEL_SERVICE_NAME]?.toLowerCase();
    // FQDN slices carry names, not addresses; DNS records are built from IP slices only (as CoreDNS).
    if (deleted || !serviceName || slice.addressType === "FQDN") return;
    const endpoints: SliceRecord["endpoints"] = [];
    for (const ep of slice.endpoints ?? []) {
      // discovery/v1: a nil ready condition is to be read as ready.
      const ready = ep.conditions?.ready !== false;
      for (const raw of ep.addresses ?? []) {
        const ip = normalizeAddress(raw);
        if (ip === undefined) continue;
        endpoints.push({ ip, hostname: (ep.hostname ?? dashedAddress(ip)).toLowerCase(), ready });
      }
    }
    const state = this.stateFor(namespace, serviceName);
    state.slices.set(sliceId, { service: serviceName, endpoints, ports: portsOf(slice.ports) });
    this.sliceOwner.set(sliceId, serviceKey(namespace, serviceName));
    this.rebuild(state);
  }

  private applyPod(pod: Pod, deleted: boolean): void {
    if (this.podsMode !== "verified") return;
    const namespace = (pod.metadata.namespace ?? "default").toLowerCase();
    const id = `${namespace}/${pod.metadata.name}`;
    for (const ip of this.podAddresses.get(id) ?? []) {
      const set = this.podIPs.get(ip);
      set?.delete(namespace);
      if (set && set.size === 0) this.podIPs.delete(ip);
    }
    this.podAddresses.delete(id);
    // A pod being deleted no longer answers (CoreDNS skips pods with a deletion timestamp).
    if (deleted || pod.metadata.deletionTimestamp || pod.spec.hostNetwork) return;
    const raw = [...(pod.status?.podIPs ?? []).map((p) => p.ip), ...(pod.status?.podIP ? [pod.status.podIP] : [])];
    const ips = [...new Set(raw.map(normalizeAddress).filter((ip): ip is string => ip !== undefined))];
    for (const ip of ips) {
      let set = this.podIPs.get(ip);
      if (!set) this.podIPs.set(ip, (set = new Set()));
      set.add(namespace);
    }
    if (ips.length > 0) this.podAddresses.set(id, ips);
  }

  /** Recompute one service's record and its reverse entries from its spec and slices. */
  private rebuild(state: ServiceState): void {
    for (const [ip, owner] of state.reverseEntries) {
      const owners = this.reverseMap.get(ip);
      if (!owners) continue;
      const at = owners.indexOf(owner);
      if (at >= 0) owners.splice(at, 1);
      if (owners.length === 0) this.reverseMap.delete(ip);
    }
    state.reverseEntries = [];
    const key = serviceKey(state.namespace, state.name);
    if (!state.shape) {
      state.record = undefined;
      if (state.slices.size === 0) this.services.delete(key);
      return;
    }
    const endpoints: EndpointRecord[] = [];
    const seen = new Set<string>();
    for (const slice of state.slices.values()) {
      for (const ep of slice.endpoints) {
        if (!ep.ready && !state.publishNotReady) continue;
        // The same address may sit in two slices while the controller moves it; answer it once.
        const id = `${ep.hostname}|${ep.ip}`;
        if (seen.has(id)) continue;
        seen.add(id);
        endpoints.push({ ip: ep.ip, hostname: ep.hostname, ports: slice.ports });
      }
    }
    state.record = { namespace: state.namespace, name: state.name, shape: state.shape, ports: state.ports, endpoints };
    const serviceName = `${state.name}.${state.namespace}.svc.${this.zone}`;
    const addReverse = (ip: string, owner: string): void => {
      let owners = this.reverseMap.get(ip);
      if (!owners) this.reverseMap.set(ip, (owners = []));
      owners.push(owner);
      state.reverseEntries.push([ip, owner]);
    };
    if (state.shape.type === "clusterIP") for (const ip of state.shape.clusterIPs) addReverse(ip, serviceName);
    // Spec 2.4.3 asks PTR for headless endpoints; CoreDNS (reverse.go) gives every endpoint one.
    if (state.shape.type !== "externalName") for (const ep of endpoints) addReverse(ep.ip, `${ep.hostname}.${serviceName}`);
  }
}
