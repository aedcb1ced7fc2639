// The lab's Services and their endpoints, as its controllers hold them (asked over the lab's API socket):
// for `podnet trace` to take a service name as DST, and for `lab graph` to draw services with their
// endpoints. Read-only; a lab whose controllers are not running simply has no services to show.

import { existsSync } from "node:fs";
import type { EndpointSlice, Service } from "../k8s/types.ts";
import { LABEL_SERVICE_NAME } from "../k8s/types.ts";
import { apiSocketPath, callApi } from "../lab/api-client.ts";
import type { LabState } from "../lab/lab-state.ts";

export interface LabServicePort {
  name?: string;
  protocol: "tcp" | "udp" | "sctp";
  port: number;
  nodePort?: number;
}

export interface LabService {
  namespace: string;
  name: string;
  type: string;
  /** Absent for a headless or ExternalName service. */
  clusterIp?: string;
  ports: LabServicePort[];
  /** Addresses of its endpoints with whether they are ready, from its EndpointSlices. */
  endpoints: { ip: string; ready: boolean }[];
}

interface ListOf<T> {
  items?: T[];
}

async function getAll<T>(socket: string, kind: string): Promise<T[]> {
  const answer = await callApi(socket, { verb: "get", kind, allNamespaces: true, output: "json" }, 10_000);
  if (answer.exitCode !== 0) throw new Error(`the lab API refused get ${kind}: ${answer.stderr.trim()}`);
  if (answer.stdout.trim() === "") return [];
  const parsed = JSON.parse(answer.stdout) as ListOf<T> | T;
  return (parsed as ListOf<T>).items ?? [parsed as T];
}

/** Every Service of the lab with its endpoints; [] when the lab runs no controllers. */
export async function readLabServices(state: LabState): Promise<LabService[]> {
  const socket = apiSocketPath(state.dir);
  if (!existsSync(socket)) return [];
  const [services, slices] = await Promise.all([getAll<Service>(socket, "services"), getAll<EndpointSlice>(socket, "endpointslices")]);
  return services.map((service) => {
    const namespace = service.metadata.namespace ?? "default";
    const endpoints = new Map<string, boolean>();
    for (const slice of slices) {
      if ((slice.metadata.namespace ?? "default") !== namespace || slice.metadata.labels?.[LABEL_SERVICE_NAME] !== service.metadata.name) continue;
      // EndpointConditions: a nil ready means ready (discovery/v1 types.go).
      for (const endpoint of slice.endpoints) for (const ip of endpoint.addresses) endpoints.set(ip, (endpoints.get(ip) ?? false) || endpoint.conditions?.ready !== false);
    }
    const clusterIp = service.spec.clusterIP;
    return {
      namespace,
      name: service.metadata.name,
      type: service.spec.type ?? "ClusterIP",
      ...(clusterIp && clusterIp !== "None" ? { clusterIp } : {}),
      ports: (service.spec.ports ?? []).map((p) => ({
        ...(p.name ? { name: p.name } : {}),
        protocol: (p.protocol ?? "TCP").toLowerCase() as LabServicePort["protocol"],
        port: p.port,
        ...(p.nodePort ? { nodePort: p.nodePort } : {}),
      })),
      endpoints: [...endpoints].map(([ip, ready]) => ({ ip, ready })).sort((a, b) => a.ip.localeCompare(b.ip, "en", { numeric: true })),
    };
  });
}

/**
 * The service a DST names: "NAME" (namespace default), "NAMESPACE/NAME", or the DNS forms "NAME.NAMESPACE",
 * "NAME.NAMESPACE.svc" and "NAME.NAMESPACE.svc.cluster.local".
 */
export function findService(services: readonly LabService[], spec: string): LabService | undefined {
  let namespace = "default";
  let name = spec.toLowerCase().replace(/\.$/, "");
  if (name.includes("/")) [namespace, name] = name.split("/", 2) as [string, string];
  else if (name.includes(".")) {
    const labels = name.replace(/\.svc(\.cluster\.local)?$/, "").split(".");
    if (labels.length !== 2) return undefined;
    [name, namespace] = labels as [string, string];
  }
  return services.find((s) => s.namespace === namespace && s.name === name);
}
