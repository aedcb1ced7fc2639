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

function internKey(ports: readonly PortRecord[]): string {
  let key = "";
  for (const p of ports) key += `${p.name}/${p.protocol}/${p.port};`;
  return key;
}

/** Service shape per core/v1: ExternalName by type; headless by clusterIP "None" (types.go ClusterIPNone). */
function shapeOf(service: Service): ServiceShape | undefined {
  const spec = service.spec;
  if (spec.type === "ExternalName") {
    const target = (spec.externalName ?? "").replace(/\.$/, "");
    return target === "" ? undefined : { type: "externalName", externalName: target };
  }
  if (spec.clusterIP === "None") return HEADLESS;
  const ips = (spec.clusterIPs && spec.clusterIPs.length > 0 ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [])
    .map(normalizeAddress)
    .filter((ip): ip is string => ip !== undefined);
  // A service whose ClusterIP is not allocated yet has no records (CoreDNS skips it the same way).
  return ips.length === 0 ? undefined : { type: "clusterIP", clusterIPs: ips };
}

const HEADLESS: ServiceShape = { type: "headless" };
const NO_PORTS: readonly PortRecord[] = [];
const NO_ENDPOINTS: readonly EndpointRecord[] = [];

interface SliceEndpoint extends EndpointRecord {
  ready: boolean;
}

interface SliceRecord {
  service: string;
  endpoints: SliceEndpoint[];
}

/**
 * One service, also the record answers are read from. Kept small on purpose (10,000 of them should
 * cost a few MiB): no per-service maps or key strings; port lists are shared between services.
 */
interface ServiceState extends ServiceRecord {
  shape: ServiceShape;
  /** False while only slices name this service (their Service has not arrived yet, or was deleted). */
  exists: boolean;
  publishNotReady: boolean;
  /** Names of this service's slices in its namespace. */
  sliceNames: string[];
  ports: readonly PortRecord[];
  endpoints: readonly EndpointRecord[];
}

/** What an address's PTR points at: a service (its ClusterIP) or one endpoint of it. */
type ReverseOwner = ServiceState | { service: ServiceState; hostname: string };

export class ClusterIndex implements ClusterView, ObjectWatchHandler {
  synced = false;
  generation = 0;
  serial = Math.floor(Date.now() / 1000);
  /** Called after every change (tests and the bench use it to time propagation). */
  onChange: (() => void) | undefined;

  private readonly namespaces = new Set<string>();
  /** namespace → service name → state. */
  private readonly services = new Map<string, Map<string, ServiceState>>();
  /** namespace → slice name → slice. */
  private readonly slices = new Map<string, Map<string, SliceRecord>>();
  private readonly reverseMap = new Map<string, ReverseOwner | ReverseOwner[]>();
  /** Pod address → namespaces (only in "verified" mode). */
  private readonly podIPs = new Map<string, Set<string>>();
  /** Pod identity "ns/name" → addresses, to withdraw them on change. */
  private readonly podAddresses = new Map<string, string[]>();
  /** Identical port lists are stored once. */
  private readonly portLists = new Map<string, readonly PortRecord[]>();
  /** Namespace names are stored once, not once per object. */
  private readonly names = new Map<string, string>();
  private count = 0;

  constructor(private readonly zone: string, private readonly podsMode: PodsMode = "disabled") {}

  /** The kinds this index consumes. */
  static readonly kinds: readonly ObjectKind[] = ["Namespace", "Service", "EndpointSlice", "Pod"];

  onSync(lists: { [K in ObjectKind]?: KindMap[K][] }): void {
    // A re-list replaces everything (objects.ts: "consumers must replace, not merge").
    this.namespaces.clear();
    this.services.clear();
    this.slices.clear();
    this.reverseMap.clear();
    this.podIPs.clear();
    this.podAddresses.clear();
    this.count = 0;
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
    const state = this.services.get(namespace)?.get(name);
    return state?.exists ? state : undefined;
  }

  reverse(ip: string): readonly string[] {
    const entry = this.reverseMap.get(ip);
    if (entry === undefined) return [];
    const owners = Array.isArray(entry) ? entry : [entry];
    return owners.map((o) => ("hostname" in o ? `${o.hostname}.${this.serviceName(o.service)}` : this.serviceName(o)));
  }

  podInNamespace(ip: string, namespace: string): boolean {
    return this.podIPs.get(ip)?.has(namespace) ?? false;
  }

  get serviceCount(): number {
    return this.count;
  }

  private serviceName(state: ServiceState): string {
    return `${state.name}.${state.namespace}.svc.${this.zone}`;
  }

  private changed(): void {
    this.generation++;
    this.serial = Math.floor(Date.now() / 1000);
    this.onChange?.();
  }

  private intern(text: string): string {
    const lower = text.toLowerCase();
    const known = this.names.get(lower);
    if (known !== undefined) return known;
    this.names.set(lower, lower);
    return lower;
  }

  private portsOf(ports: readonly { name?: string; protocol?: string; port?: number }[] | undefined): readonly PortRecord[] {
    if (!ports || ports.length === 0) return NO_PORTS;
    const list: PortRecord[] = [];
    for (const p of ports) {
      if (typeof p.port !== "number") continue;
      list.push({ name: (p.name ?? "").toLowerCase(), protocol: (p.protocol ?? "TCP").toLowerCase(), port: p.port });
    }
    const key = internKey(list);
    const known = this.portLists.get(key);
    if (known) return known;
    this.portLists.set(key, list);
    return list;
  }

  private applyNamespace(ns: Namespace, deleted: boolean): void {
    const name = this.intern(ns.metadata.name);
    if (deleted) this.namespaces.delete(name);
    else this.namespaces.add(name);
  }

  private stateFor(namespace: string, name: string): ServiceState {
    let byName = this.services.get(namespace);
    if (!byName) this.services.set(namespace, (byName = new Map()));
    let state = byName.get(name);
    if (!state) {
      state = { namespace, name, shape: HEADLESS, exists: false, publishNotReady: false, sliceNames: [], ports: NO_PORTS, endpoints: NO_ENDPOINTS };
      byName.set(name, state);
    }
    return state;
  }

  private applyService(service: Service, deleted: boolean): void {
    const namespace = this.intern(service.metadata.namespace ?? "default");
    const name = service.metadata.name.toLowerCase();
    const state = this.stateFor(namespace, name);
    this.withdrawReverse(state);
    const shape = deleted ? undefined : shapeOf(service);
    if (state.exists) this.count--;
    state.exists = shape !== undefined;
    if (state.exists) this.count++;
    state.shape = shape ?? HEADLESS;
    state.ports = deleted ? NO_PORTS : this.portsOf(service.spec.ports);
    state.publishNotReady = !deleted && service.spec.publishNotReadyAddresses === true;
    this.rebuild(state);
  }

  private applySlice(slice: EndpointSlice, deleted: boolean): void {
    const namespace = this.intern(slice.metadata.namespace ?? "default");
    const sliceName = slice.metadata.name;
    let byName = this.slices.get(namespace);
    if (!byName) this.slices.set(namespace, (byName = new Map()));
    const previous = byName.get(sliceName);
    if (previous) {
      byName.delete(sliceName);
      const owner = this.services.get(namespace)?.get(previous.service);
      if (owner) {
        owner.sliceNames = owner.sliceNames.filter((n) => n !== sliceName);
        this.withdrawReverse(owner);
        this.rebuild(owner);
      }
    }
    const serviceName = slice.metadata.labels?.[LABEL_SERVICE_NAME]?.toLowerCase();
    // FQDN slices carry names, not addresses; DNS records are built from IP slices only (as CoreDNS).
    if (deleted || !serviceName || slice.addressType === "FQDN") return;
    const ports = this.portsOf(slice.ports);
    const endpoints: SliceEndpoint[] = [];
    for (const ep of slice.endpoints ?? []) {
      // discovery/v1: a nil ready condition is to be read as ready.
      const ready = ep.conditions?.ready !== false;
      for (const raw of ep.addresses ?? []) {
        const ip = normalizeAddress(raw);
        if (ip === undefined) continue;
        endpoints.push({ ip, hostname: (ep.hostname ?? dashedAddress(ip)).toLowerCase(), ready, ports });
      }
    }
    byName.set(sliceName, { service: serviceName, endpoints });
    const state = this.stateFor(namespace, serviceName);
    state.sliceNames = [...state.sliceNames, sliceName];
    this.withdrawReverse(state);
    this.rebuild(state);
  }

  private applyPod(pod: Pod, deleted: boolean): void {
    if (this.podsMode !== "verified") return;
    const namespace = this.intern(pod.metadata.namespace ?? "default");
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

  private addReverse(ip: string, owner: ReverseOwner): void {
    const entry = this.reverseMap.get(ip);
    if (entry === undefined) this.reverseMap.set(ip, owner);
    else if (Array.isArray(entry)) entry.push(owner);
    else this.reverseMap.set(ip, [entry, owner]);
  }

  /** Take out every reverse entry that points at this service (its ClusterIPs and its endpoints). */
  private withdrawReverse(state: ServiceState): void {
    const ips = state.shape.type === "clusterIP" && state.exists ? [...state.shape.clusterIPs] : [];
    for (const ep of state.endpoints) ips.push(ep.ip);
    for (const ip of ips) {
      const entry = this.reverseMap.get(ip);
      if (entry === undefined) continue;
      const owners = (Array.isArray(entry) ? entry : [entry]).filter((o) => o !== state && !("hostname" in o && o.service === state));
      if (owners.length === 0) this.reverseMap.delete(ip);
      else this.reverseMap.set(ip, owners.length === 1 ? (owners[0] as ReverseOwner) : owners);
    }
  }

  /** Recompute one service's endpoints and reverse entries from its spec and slices. */
  private rebuild(state: ServiceState): void {
    const byName = this.services.get(state.namespace);
    if (!state.exists) {
      state.endpoints = NO_ENDPOINTS;
      if (state.sliceNames.length === 0) byName?.delete(state.name);
      return;
    }
    const sliceMap = this.slices.get(state.namespace);
    const slices = state.sliceNames.map((n) => sliceMap?.get(n)).filter((s): s is SliceRecord => s !== undefined);
    const only = slices.length === 1 ? (slices[0] as SliceRecord) : undefined;
    if (only && (state.publishNotReady || only.endpoints.every((ep) => ep.ready))) {
      // The common case: one slice, all ready: its list is the answer, no copy.
      state.endpoints = only.endpoints;
    } else {
      const endpoints: EndpointRecord[] = [];
      const seen = new Set<string>();
      for (const slice of slices) {
        for (const ep of slice.endpoints) {
          if (!ep.ready && !state.publishNotReady) continue;
          // The same address may sit in two slices while the controller moves it; answer it once.
          const id = `${ep.hostname}|${ep.ip}`;
          if (seen.has(id)) continue;
          seen.add(id);
          endpoints.push(ep);
        }
      }
      state.endpoints = endpoints.length === 0 ? NO_ENDPOINTS : endpoints;
    }
    if (state.shape.type === "clusterIP") for (const ip of state.shape.clusterIPs) this.addReverse(ip, state);
    // Spec 2.4.3 asks PTR for headless endpoints; CoreDNS (reverse.go) gives every endpoint one.
    if (state.shape.type !== "externalName") for (const ep of state.endpoints) this.addReverse(ep.ip, { service: state, hostname: ep.hostname });
  }
}
