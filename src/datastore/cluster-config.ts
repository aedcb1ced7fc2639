// Reading and checking the cluster config. Every problem is an Error that names the field; fields
// added after a config was first stored get their defaults, so old configs keep loading.

import type { ClusterConfig } from "./datastore.ts";
import { cidrsOverlap, type Cidr } from "../net/cidr.ts";
import { parseClusterCidr, subnetCount } from "./subnets.ts";

export const DEFAULT_SERVICE_CIDR = "10.96.0.0/12";
/** Kubernetes' default NodePort range (kube-apiserver --service-node-port-range). */
export const DEFAULT_NODE_PORT_RANGE = { first: 30000, last: 32767 } as const;

/** A cluster config with every optional field filled in. */
export type ResolvedClusterConfig = Required<ClusterConfig>;

/** Parse the stored JSON text of a cluster config. */
export function parseClusterConfig(text: string): ResolvedClusterConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`cluster config: not JSON (${(err as Error).message})`);
  }
  return resolveClusterConfig(raw);
}

/** Check a config (from a user, a file or the store) and fill in the defaults of missing optional fields. */
export function resolveClusterConfig(raw: unknown): ResolvedClusterConfig {
  if (!isPlainObject(raw)) throw new Error("cluster config: must be a JSON object");
  const clusterCidr = raw.clusterCidr;
  if (typeof clusterCidr !== "string") throw new Error("cluster config: clusterCidr must be a string such as 10.244.0.0/16");
  const cluster = cidrField("clusterCidr", clusterCidr);
  const subnetLength = raw.subnetLength;
  if (typeof subnetLength !== "number") throw new Error("cluster config: subnetLength must be a number");
  try {
    subnetCount(cluster, subnetLength);
  } catch (err) {
    throw new Error(`cluster config: subnetLength: ${(err as Error).message}`);
  }
  const backend = raw.backend;
  if (typeof backend !== "string" || backend === "") throw new Error("cluster config: backend must be a non-empty string");
  const nodeLeaseTtlSeconds = raw.nodeLeaseTtlSeconds ?? 20;
  if (typeof nodeLeaseTtlSeconds !== "number" || !Number.isInteger(nodeLeaseTtlSeconds) || nodeLeaseTtlSeconds < 2) {
    throw new Error("cluster config: nodeLeaseTtlSeconds must be an integer of at least 2");
  }

  const backendOptions = raw.backendOptions ?? {};
  if (!isPlainObject(backendOptions)) throw new Error("cluster config: backendOptions must be an object keyed by backend name");
  for (const [name, options] of Object.entries(backendOptions)) {
    if (!isPlainObject(options)) throw new Error(`cluster config: backendOptions.${name} must be a JSON object`);
  }

  const serviceCidr = raw.serviceCidr ?? DEFAULT_SERVICE_CIDR;
  if (typeof serviceCidr !== "string") throw new Error("cluster config: serviceCidr must be a string such as 10.96.0.0/12");
  // Not checked against clusterCidr: configs stored before this field existed (clusterCidr 10.99.0.0/16,
  // say) would get an overlapping default and stop loading.
  const services = cidrField("serviceCidr", serviceCidr);

  const nodePortRange = raw.nodePortRange ?? DEFAULT_NODE_PORT_RANGE;
  if (!isPlainObject(nodePortRange)) throw new Error("cluster config: nodePortRange must be an object { first, last }");
  const { first, last } = nodePortRange;
  for (const [field, port] of [["first", first], ["last", last]] as const) {
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`cluster config: nodePortRange.${field} must be an integer port from 1 to 65535, not ${JSON.stringify(port)}`);
    }
  }
  if ((first as number) > (last as number)) throw new Error(`cluster config: nodePortRange.first (${first}) is above nodePortRange.last (${last})`);

  const loadBalancerCidrs = raw.loadBalancerCidrs ?? [];
  if (!Array.isArray(loadBalancerCidrs)) throw new Error("cluster config: loadBalancerCidrs must be a list of CIDRs");
  loadBalancerCidrs.forEach((cidr: unknown, i) => {
    if (typeof cidr !== "string") throw new Error(`cluster config: loadBalancerCidrs[${i}] must be a string such as 192.168.100.0/24`);
    const parsed = cidrField(`loadBalancerCidrs[${i}]`, cidr);
    if (overlaps(parsed, cluster)) throw new Error(`cluster config: loadBalancerCidrs[${i}] ${cidr} overlaps clusterCidr ${clusterCidr}`);
    if (overlaps(parsed, services)) throw new Error(`cluster config: loadBalancerCidrs[${i}] ${cidr} overlaps serviceCidr ${serviceCidr}`);
  });

  return {
    clusterCidr,
    subnetLength,
    backend,
    nodeLeaseTtlSeconds,
    backendOptions: backendOptions as Record<string, Record<string, unknown>>,
    serviceCidr,
    nodePortRange: { first: first as number, last: last as number },
    loadBalancerCidrs: loadBalancerCidrs as string[],
  };
}

function cidrField(field: string, text: string): Cidr {
  try {
    return parseClusterCidr(text);
  } catch (err) {
    throw new Error(`cluster config: ${field}: ${(err as Error).message}`);
  }
}

function overlaps(a: Cidr, b: Cidr): boolean {
  return cidrsOverlap(a, b);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
