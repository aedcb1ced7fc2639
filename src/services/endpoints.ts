// Which endpoints of a service port the proxy may send to, as kube-proxy decides it.
// Source: k8s.io/kubernetes pkg/proxy/endpointslicecache.go (merging slices of one service,
// ready/serving/terminating read from discovery/v1 conditions, where an unset ready or serving
// means true) and pkg/proxy/topology.go CategorizeEndpoints (ready endpoints first; only when none
// is ready, the ones that are serving while terminating).

import { compareIp, ipv4Number, tryParseIp, type IpAddress } from "../net/address.ts";
import { LABEL_SERVICE_NAME, type EndpointPort, type EndpointSlice, type Protocol, type Service, type ServicePort } from "../k8s/types.ts";

export interface ProxyEndpoint {
  ip: string;
  port: number;
  nodeName?: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

/** The slices of each service, keyed "namespace/name" through the kubernetes.io/service-name label. */
export function slicesByService(slices: readonly EndpointSlice[]): Map<string, EndpointSlice[]> {
  const byService = new Map<string, EndpointSlice[]>();
  for (const slice of slices) {
    const service = slice.metadata.labels?.[LABEL_SERVICE_NAME];
    if (!service || slice.addressType !== "IPv4") continue;
    const key = `${slice.metadata.namespace ?? "default"}/${service}`;
    const list = byService.get(key);
    if (list) list.push(slice);
    else byService.set(key, [slice]);
  }
  return byService;
}

/** Every endpoint of one service port, deduplicated by ip:port across slices, sorted for stable output. */
export function endpointsOfPort(slices: readonly EndpointSlice[], port: ServicePort): ProxyEndpoint[] {
  const protocol: Protocol = port.protocol ?? "TCP";
  const name = port.name ?? "";
  // Deduplicated by ip and port, a ready copy winning over a stale not-ready one from another slice.
  // Up to SMALL_GROUP endpoints a scan finds a duplicate, beyond it a Map: a full compile does this
  // for every service port, and most have a handful of endpoints.
  const found: ProxyEndpoint[] = [];
  // Each address as a number (-1: not a dotted quad), compared instead of the text and ordered by.
  const numbers: number[] = [];
  let index: Map<string, number> | undefined;
  for (const slice of slices) {
    const slicePort = portNamed(slice, name, protocol);
    if (!slicePort || slicePort.port === undefined) continue;
    const port = slicePort.port;
    for (const endpoint of slice.endpoints ?? []) {
      const ip = endpoint.addresses?.[0];
      if (!ip) continue;
      const ready = endpoint.conditions?.ready ?? true;
      const serving = endpoint.conditions?.serving ?? ready;
      const terminating = endpoint.conditions?.terminating ?? false;
      const entry: ProxyEndpoint = endpoint.nodeName ? { ip, port, nodeName: endpoint.nodeName, ready, serving, terminating } : { ip, port, ready, serving, terminating };
      const number = ipv4Number(ip);
      if (index === undefined && found.length >= SMALL_GROUP) {
        index = new Map();
        for (let i = 0; i < found.length; i++) index.set(`${found[i]!.ip}:${found[i]!.port}`, i);
      }
      let at = -1;
      if (index !== undefined) {
        at = index.get(`${ip}:${port}`) ?? -1;
      } else {
        // A dotted quad has one spelling: equal numbers are equal addresses.
        for (let i = 0; i < found.length; i++) if (numbers[i] === number && found[i]!.port === port && (number >= 0 || found[i]!.ip === ip)) at = i;
      }
      if (at < 0) {
        index?.set(`${ip}:${port}`, found.length);
        found.push(entry);
        numbers.push(number);
      } else if (entry.ready && !found[at]!.ready) {
        found[at] = entry;
      }
    }
  }
  return sortEndpoints(found, numbers);
}

const SMALL_GROUP = 16;

function portNamed(slice: EndpointSlice, name: string, protocol: Protocol): EndpointPort | undefined {
  for (const p of slice.ports ?? []) if ((p.name ?? "") === name && (p.protocol ?? "TCP") === protocol) return p;
  return undefined;
}

/**
 * By address, then port. When every address is IPv4 the order is total (one text per address), so
 * numbers decide it and an ordered list (the usual case) is only checked; otherwise each address
 * is parsed once, not once per comparison.
 */
function sortEndpoints(endpoints: ProxyEndpoint[], numbers: readonly number[]): ProxyEndpoint[] {
  if (endpoints.length < 2) return endpoints;
  if (numbers.some((n) => n < 0)) return sortByParsedIp(endpoints);
  let ordered = true;
  for (let i = 1; i < endpoints.length && ordered; i++) ordered = numbers[i - 1]! < numbers[i]! || (numbers[i - 1] === numbers[i] && endpoints[i - 1]!.port < endpoints[i]!.port);
  if (ordered) return endpoints;
  const order = endpoints.map((_, i) => i);
  order.sort((a, b) => (numbers[a] === numbers[b] ? endpoints[a]!.port - endpoints[b]!.port : numbers[a]! - numbers[b]!));
  return order.map((i) => endpoints[i]!);
}

function sortByParsedIp(endpoints: readonly ProxyEndpoint[]): ProxyEndpoint[] {
  const keyed = endpoints.map((endpoint) => ({ endpoint, parsed: tryParseIp(endpoint.ip) }));
  keyed.sort((a, b) => (a.endpoint.ip === b.endpoint.ip ? a.endpoint.port - b.endpoint.port : compareIpText(a.endpoint.ip, a.parsed, b.endpoint.ip, b.parsed)));
  return keyed.map((k) => k.endpoint);
}

function compareIpText(a: string, pa: IpAddress | undefined, b: string, pb: IpAddress | undefined): number {
  if (!pa || !pb) return a < b ? -1 : a > b ? 1 : 0;
  return compareIp(pa, pb);
}

/** CategorizeEndpoints' fallback: ready ones, else serving-and-terminating ones. */
export function usableEndpoints(endpoints: readonly ProxyEndpoint[]): readonly ProxyEndpoint[] {
  // The usual case, every endpoint ready, copies nothing.
  if (endpoints.every((e) => e.ready)) return endpoints;
  const ready = endpoints.filter((e) => e.ready);
  if (ready.length > 0) return ready;
  return endpoints.filter((e) => e.serving && e.terminating);
}

export interface CategorizedEndpoints {
  /** Endpoints cluster-wide. */
  cluster: readonly ProxyEndpoint[];
  /** Endpoints on this node. */
  local: readonly ProxyEndpoint[];
  /** What ClusterIP traffic uses: `local` with internalTrafficPolicy Local, else `cluster`. */
  internal: readonly ProxyEndpoint[];
  /** What NodePort, external IP and LoadBalancer traffic from outside uses (externalTrafficPolicy). */
  external: readonly ProxyEndpoint[];
}

export function categorizeEndpoints(service: Service, endpoints: readonly ProxyEndpoint[], nodeName: string): CategorizedEndpoints {
  const cluster = usableEndpoints(endpoints);
  // Local endpoints fall back on their own: a node whose only local endpoint is terminating still serves.
  const local = usableEndpoints(endpoints.filter((e) => e.nodeName === nodeName));
  return {
    cluster,
    local,
    internal: service.spec.internalTrafficPolicy === "Local" ? local : cluster,
    external: service.spec.externalTrafficPolicy === "Local" ? local : cluster,
  };
}
