// Which endpoints of a service port the proxy may send to, as kube-proxy decides it.
// Source: k8s.io/kubernetes pkg/proxy/endpointslicecache.go (merging slices of one service,
// ready/serving/terminating read from discovery/v1 conditions, where an unset ready or serving
// means true) and pkg/proxy/topology.go CategorizeEndpoints (ready endpoints first; only when none
// is ready, the ones that are serving while terminating).

import { compareIp, tryParseIp } from "../net/address.ts";
import { LABEL_SERVICE_NAME, type EndpointSlice, type Protocol, type Service, type ServicePort } from "../k8s/types.ts";

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
  const seen = new Map<string, ProxyEndpoint>();
  for (const slice of slices) {
    const slicePort = (slice.ports ?? []).find((p) => (p.name ?? "") === name && (p.protocol ?? "TCP") === protocol);
    if (!slicePort || slicePort.port === undefined) continue;
    for (const endpoint of slice.endpoints ?? []) {
      const ip = endpoint.addresses?.[0];
      if (!ip) continue;
      const ready = endpoint.conditions?.ready ?? true;
      const entry: ProxyEndpoint = {
        ip,
        port: slicePort.port,
        ...(endpoint.nodeName ? { nodeName: endpoint.nodeName } : {}),
        ready,
        serving: endpoint.conditions?.serving ?? ready,
        terminating: endpoint.conditions?.terminating ?? false,
      };
      const key = `${ip}:${slicePort.port}`;
      // A ready copy wins over a stale not-ready one from another slice.
      if (!seen.has(key) || (entry.ready && !seen.get(key)!.ready)) seen.set(key, entry);
    }
  }
  return [...seen.values()].sort((a, b) => (a.ip === b.ip ? a.port - b.port : compareIpText(a.ip, b.ip)));
}

function compareIpText(a: string, b: string): number {
  const pa = tryParseIp(a);
  const pb = tryParseIp(b);
  if (!pa || !pb) return a < b ? -1 : a > b ? 1 : 0;
  return compareIp(pa, pb);
}

/** CategorizeEndpoints' fallback: ready ones, else serving-and-terminating ones. */
export function usableEndpoints(endpoints: readonly ProxyEndpoint[]): ProxyEndpoint[] {
  const ready = endpoints.filter((e) => e.ready);
  if (ready.length > 0) return ready;
  return endpoints.filter((e) => e.serving && e.terminating);
}

export interface CategorizedEndpoints {
  /** Endpoints cluster-wide. */
  cluster: ProxyEndpoint[];
  /** Endpoints on this node. */
  local: ProxyEndpoint[];
  /** What ClusterIP traffic uses: `local` with internalTrafficPolicy Local, else `cluster`. */
  internal: ProxyEndpoint[];
  /** What NodePort, external IP and LoadBalancer traffic from outside uses (externalTrafficPolicy). */
  external: ProxyEndpoint[];
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
