// `get` output as kubectl prints it: the same columns (the API server's table convertors in
// k8s.io/kubernetes pkg/printers/internalversion/printers.go), the same age format
// (apimachinery util/duration HumanDuration), columns padded like kubectl's tabwriter (3 spaces),
// and -o json / -o yaml of the objects themselves, several of them as a v1 List.

import { stringify } from "yaml";
import type { Deployment, EndpointSlice, KubeObject, ObjectKind, Pod, Service } from "../k8s/types.ts";
import { formatSelector } from "../k8s/selector.ts";
import { isPodReady } from "./deployment-controller.ts";

export interface PrintOptions {
  wide?: boolean;
  /** -A: a NAMESPACE column first. */
  allNamespaces?: boolean;
  now?: Date;
}

/** A node as `get nodes` shows it (podnet's nodes are datastore records, not Kubernetes objects). */
export interface NodeRow {
  name: string;
  ready: boolean;
  internalIp: string;
  podCidr?: string;
  roles?: string[];
  creationTimestamp?: string;
  version?: string;
}

/** HumanDuration: "45s", "3m20s", "15m", "5h3m", "30h", "6d2h", "40d", "2y10d", "9y". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 0) return "0s";
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const years = Math.floor(hours / 24 / 365);
  if (years < 8) {
    const days = Math.floor(hours / 24) % 365;
    return days === 0 ? `${years}y` : `${years}y${days}d`;
  }
  return `${years}y`;
}

function age(timestamp: string | undefined, now: Date): string {
  if (!timestamp) return "<unknown>";
  const t = Date.parse(timestamp);
  return Number.isNaN(t) ? "<unknown>" : humanDuration(now.getTime() - t);
}

/** Columns padded to the widest cell plus 3 spaces, the last column unpadded (kubectl's tabwriter). */
export function formatColumns(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return "";
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 3))).join("").trimEnd()).join("\n") + "\n";
}

const none = (values: readonly string[]) => (values.length === 0 ? "<none>" : values.join(","));

function servicePorts(service: Service): string {
  const ports = service.spec.ports ?? [];
  if (ports.length === 0) return "<none>";
  return ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ""}/${p.protocol ?? "TCP"}`).join(",");
}

function externalIp(service: Service): string {
  const type = service.spec.type ?? "ClusterIP";
  const external = service.spec.externalIPs ?? [];
  if (type === "ExternalName") return service.spec.externalName ?? "<none>";
  if (type === "LoadBalancer") {
    const ingress = (service.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? i.hostname ?? "").filter((x) => x);
    const all = [...ingress, ...external];
    return all.length > 0 ? all.join(",") : "<pending>";
  }
  return none(external);
}

function serviceRow(s: Service, o: Required<Pick<PrintOptions, "wide">> & { now: Date }): string[] {
  const type = s.spec.type ?? "ClusterIP";
  const clusterIp = type === "ExternalName" ? "<none>" : (s.spec.clusterIP ?? "<none>");
  const row = [s.metadata.name, type, clusterIp, externalIp(s), servicePorts(s), age(s.metadata.creationTimestamp, o.now)];
  if (o.wide) row.push(s.spec.selector && Object.keys(s.spec.selector).length > 0 ? formatSelector({ matchLabels: s.spec.selector }) : "<none>");
  return row;
}

function podStatus(pod: Pod): string {
  if (pod.metadata.deletionTimestamp) return "Terminating";
  const reason = pod.status?.reason;
  if (typeof reason === "string" && reason) return reason;
  return pod.status?.phase ?? "Pending";
}

function podRestarts(pod: Pod): number {
  const statuses = pod.status?.containerStatuses;
  if (!Array.isArray(statuses)) return 0;
  return statuses.reduce((sum: number, s: unknown) => sum + (typeof (s as { restartCount?: unknown }).restartCount === "number" ? (s as { restartCount: number }).restartCount : 0), 0);
}

function podRow(p: Pod, o: { wide: boolean; now: Date }): string[] {
  const total = p.spec.containers?.length ?? 0;
  const ready = isPodReady(p) ? total : 0;
  const row = [p.metadata.name, `${ready}/${total}`, podStatus(p), String(podRestarts(p)), age(p.metadata.creationTimestamp, o.now)];
  if (o.wide) row.push(p.status?.podIP ?? "<none>", p.spec.nodeName ?? "<none>", "<none>", "<none>");
  return row;
}

function deploymentRow(d: Deployment, o: { wide: boolean; now: Date }): string[] {
  const status = d.status ?? {};
  const row = [d.metadata.name, `${status.readyReplicas ?? 0}/${d.spec.replicas ?? 1}`, String(status.updatedReplicas ?? 0), String(status.availableReplicas ?? 0), age(d.metadata.creationTimestamp, o.now)];
  if (o.wide) {
    const containers = d.spec.template?.spec?.containers ?? [];
    row.push(none(containers.map((c) => c.name)), none(containers.map((c) => c.image ?? "")), formatSelector(d.spec.selector) || "<none>");
  }
  return row;
}

function sliceRow(s: EndpointSlice, o: { now: Date }): string[] {
  const ports = (s.ports ?? []).map((p) => (p.port === undefined ? "<unset>" : String(p.port)));
  const addresses = s.endpoints.flatMap((e) => e.addresses);
  const shown = addresses.length > 3 ? `${addresses.slice(0, 3).join(",")} + ${addresses.length - 3} more...` : none(addresses);
  return [s.metadata.name, s.addressType, ports.length > 0 ? ports.join(",") : "<unset>", shown, age(s.metadata.creationTimestamp, o.now)];
}

const HEADERS: Record<Exclude<ObjectKind, "Namespace">, { normal: string[]; wide: string[] }> = {
  Service: { normal: ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], wide: ["SELECTOR"] },
  Pod: { normal: ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], wide: ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] },
  Deployment: { normal: ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], wide: ["CONTAINERS", "IMAGES", "SELECTOR"] },
  EndpointSlice: { normal: ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], wide: [] },
};

/** The table `get KIND` prints; "" when there is nothing (kubectl then says "No resources found", see noResourcesMessage). */
export function printTable(kind: ObjectKind, objects: readonly KubeObject[], options: PrintOptions = {}): string {
  const now = options.now ?? new Date();
  const wide = options.wide ?? false;
  if (objects.length === 0) return "";
  const sorted = [...objects].sort((a, b) => (a.metadata.namespace ?? "").localeCompare(b.metadata.namespace ?? "") || a.metadata.name.localeCompare(b.metadata.name));
  let header: string[];
  let rows: string[][];
  if (kind === "Namespace") {
    header = ["NAME", "STATUS", "AGE"];
    rows = sorted.map((n) => [n.metadata.name, (n.kind === "Namespace" ? n.status?.phase : undefined) ?? "Active", age(n.metadata.creationTimestamp, now)]);
  } else {
    header = [...HEADERS[kind].normal, ...(wide ? HEADERS[kind].wide : [])];
    rows = sorted.map((o) => {
      switch (o.kind) {
        case "Service":
          return serviceRow(o, { wide, now });
        case "Pod":
          return podRow(o, { wide, now });
        case "Deployment":
          return deploymentRow(o, { wide, now });
        case "EndpointSlice":
          return sliceRow(o, { now });
        default:
          return [o.metadata.name];
      }
    });
  }
  if (options.allNamespaces && kind !== "Namespace") {
    header = ["NAMESPACE", ...header];
    rows = rows.map((r, i) => [sorted[i]!.metadata.namespace ?? "", ...r]);
  }
  return formatColumns([header, ...rows]);
}

export function printNodes(nodes: readonly NodeRow[], options: PrintOptions = {}): string {
  if (nodes.length === 0) return "";
  const now = options.now ?? new Date();
  const header = ["NAME", "STATUS", "ROLES", "AGE", "VERSION", ...(options.wide ? ["INTERNAL-IP", "POD-CIDR"] : [])];
  const rows = [...nodes].sort((a, b) => a.name.localeCompare(b.name)).map((n) => {
    const row = [n.name, n.ready ? "Ready" : "NotReady", none(n.roles ?? []), age(n.creationTimestamp, now), n.version ?? "podnet"];
    if (options.wide) row.push(n.internalIp, n.podCidr ?? "<none>");
    return row;
  });
  return formatColumns([header, ...rows]);
}

/** kubectl's message when a get finds nothing. */
export function noResourcesMessage(namespace: string | undefined): string {
  return namespace ? `No resources found in ${namespace} namespace.` : "No resources found";
}

/** -o json / -o yaml: one object as itself; several (or a list request) as a v1 List. */
export function printObjects(objects: readonly KubeObject[], format: "json" | "yaml", options: { asList?: boolean } = {}): string {
  const value = objects.length === 1 && !options.asList ? objects[0] : { apiVersion: "v1", kind: "List", items: objects, metadata: { resourceVersion: "" } };
  return format === "json" ? `${JSON.stringify(value, null, 4)}\n` : stringify(value);
}
