// Reading a query name against the cluster zone: which Kubernetes record it asks for.
// The layout is the Kubernetes DNS-Based Service Discovery specification (kubernetes/dns,
// docs/specification.md, schema 1.1.0); where the spec is silent, CoreDNS's kubernetes plugin
// (plugin/kubernetes/parse.go, parseRequest) decides, so that clients see what they see there.

import { formatIp, ipToBytes, isIpv4, parseIp, tryParseIp } from "../net/address.ts";

/** Lower-cased labels of a domain name, without the root. "." and "" give []. */
export function labelsOf(name: string): string[] {
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  return trimmed === "" ? [] : trimmed.toLowerCase().split(".");
}

/** Canonical form used as a map key: lower case, no trailing dot. */
export function canonicalName(name: string): string {
  return labelsOf(name).join(".");
}

export type ParsedName =
  /** Not inside the cluster zone. */
  | { kind: "outside" }
  /** The zone apex, `svc.<zone>` or `pod.<zone>`: they exist and hold nothing but SOA/NS at the apex. */
  | { kind: "apex" | "svc-root" | "pod-root" }
  /** `dns-version.<zone>` (spec 2.2). */
  | { kind: "dns-version" }
  /** `<ns>.svc.<zone>` or `<ns>.pod.<zone>`: exists when the namespace does. */
  | { kind: "namespace"; namespace: string; under: "svc" | "pod" }
  /** `<service>.<ns>.svc.<zone>` (spec 2.3.1, 2.4.1, 2.5). */
  | { kind: "service"; namespace: string; service: string }
  /** `<hostname>.<service>.<ns>.svc.<zone>` (spec 2.4.1). */
  | { kind: "endpoint"; namespace: string; service: string; endpoint: string }
  /** `_<port>._<proto>.<service>.<ns>.svc.<zone>` (spec 2.3.2, 2.4.2); underscores stripped. */
  | { kind: "port"; namespace: string; service: string; port: string; protocol: string }
  /** `<a-b-c-d>.<ns>.pod.<zone>` (spec 2.6). */
  | { kind: "pod"; namespace: string; pod: string }
  /**
   * Inside the zone but no record can ever live there (too many labels, an unknown second-level
   * label): NXDOMAIN, as parseRequest's errInvalidRequest.
   */
  | { kind: "invalid" };

/**
 * Classify `name` (any case, with or without the trailing dot) against `zoneLabels` (from labelsOf).
 * The result carries lower-cased labels: comparisons with cluster data are case-insensitive (spec 2.1).
 */
export function parseClusterName(name: string, zoneLabels: readonly string[]): ParsedName {
  const labels = labelsOf(name);
  const depth = labels.length - zoneLabels.length;
  if (depth < 0) return { kind: "outside" };
  for (let i = 0; i < zoneLabels.length; i++) {
    if (labels[depth + i] !== zoneLabels[i]) return { kind: "outside" };
  }
  if (depth === 0) return { kind: "apex" };
  // Labels read from the zone outwards: rel[0] is next to the zone.
  const rel = labels.slice(0, depth).reverse();
  const top = rel[0] as string;
  if (depth === 1 && top === "dns-version") return { kind: "dns-version" };
  if (top !== "svc" && top !== "pod") return { kind: "invalid" };
  if (depth === 1) return { kind: top === "svc" ? "svc-root" : "pod-root" };
  const namespace = rel[1] as string;
  if (depth === 2) return { kind: "namespace", namespace, under: top };
  if (top === "pod") {
    return depth === 3 ? { kind: "pod", namespace, pod: rel[2] as string } : { kind: "invalid" };
  }
  const service = rel[2] as string;
  if (depth === 3) return { kind: "service", namespace, service };
  if (depth === 4) return { kind: "endpoint", namespace, service, endpoint: rel[3] as string };
  if (depth === 5) {
    // parseRequest strips one leading underscore from each; names without one still parse, as there.
    return { kind: "port", namespace, service, protocol: stripUnderscore(rel[3] as string), port: stripUnderscore(rel[4] as string) };
  }
  return { kind: "invalid" };
}

function stripUnderscore(label: string): string {
  return label.startsWith("_") ? label.slice(1) : label;
}

/**
 * The dashed form of an address used as an endpoint's hostname when it has none, and as a pod's name
 * under `pod.<zone>`: 10.0.0.1 → 10-0-0-1, fd00::1 → fd00--1 (CoreDNS endpointHostname).
 */
export function dashedAddress(ip: string): string {
  return ip.includes(":") ? ip.replaceAll(":", "-") : ip.replaceAll(".", "-");
}

/**
 * The address a `pod.<zone>` label names, or undefined: three dashes and no "--" is IPv4, anything
 * else is tried as IPv6 (CoreDNS findPods).
 */
export function addressFromDashed(label: string): string | undefined {
  const v4 = label.split("-");
  if (v4.length === 4 && !label.includes("--")) {
    const ip = v4.join(".");
    return isIpv4(ip) ? ip : undefined;
  }
  return normalizeIPv6(label.replaceAll("-", ":"));
}

/** The RFC 5952 text of an IPv6 address (src/net), so equal addresses compare equal as strings; undefined when it is not one. */
export function normalizeIPv6(text: string): string | undefined {
  const ip = tryParseIp(text);
  return ip?.family === 6 ? formatIp(ip) : undefined;
}

/** The address a reverse name stands for (`4.3.2.1.in-addr.arpa`, nibbles under `ip6.arpa`), or undefined. */
export function addressFromReverse(name: string): string | undefined {
  const labels = labelsOf(name);
  const n = labels.length;
  if (n === 6 && labels[4] === "in-addr" && labels[5] === "arpa") {
    const ip = labels.slice(0, 4).reverse().join(".");
    return isIpv4(ip) ? ip : undefined;
  }
  if (n === 34 && labels[32] === "ip6" && labels[33] === "arpa") {
    const nibbles = labels.slice(0, 32).reverse();
    if (!nibbles.every((d) => /^[0-9a-f]$/.test(d))) return undefined;
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(nibbles.slice(i, i + 4).join(""));
    return normalizeIPv6(groups.join(":"));
  }
  return undefined;
}

/** Whether a name lies under in-addr.arpa or ip6.arpa (answered from the cluster when it can be). */
export function isReverseName(name: string): boolean {
  const labels = labelsOf(name);
  const n = labels.length;
  return n >= 2 && labels[n - 1] === "arpa" && (labels[n - 2] === "in-addr" || labels[n - 2] === "ip6");
}

/** The reverse name of an address, without trailing dot. */
export function reverseName(ip: string): string {
  const address = parseIp(ip);
  const bytes = [...ipToBytes(address)];
  if (address.family === 4) return `${bytes.reverse().join(".")}.in-addr.arpa`;
  const nibbles = bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${[...nibbles].reverse().join(".")}.ip6.arpa`;
}

/** Normalizes an address from cluster data (IPv6 in RFC 5952 form); undefined when it is not one. */
export function normalizeAddress(ip: string): string | undefined {
  const address = tryParseIp(ip);
  return address && formatIp(address);
}
