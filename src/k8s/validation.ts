// Validation as the API server does it, on defaulted objects (see defaults.ts). Each check cites
// the function of k8s.io/kubernetes pkg/apis/core/validation/validation.go (or
// pkg/apis/apps/validation/validation.go) it follows. Checks that need the cluster's state (an
// address or port already taken) belong to the allocator in src/controlplane; the range checks
// that need only the cluster config are here, worded as the allocators word them.

import { tryParseIp } from "../net/address.ts";
import { cidrContains, parseCidr, type Cidr } from "../net/cidr.ts";
import { duplicate, forbidden, invalid, notSupported, required, type FieldError } from "./field-errors.ts";
import { dns1035LabelErrors, dns1123LabelErrors, dns1123SubdomainErrors, labelKeyErrors, labelValueErrors, portNameErrors } from "./names.ts";
import { labelSelectorMatches } from "./selector.ts";
import type { Container, Deployment, Probe, KubeObject, LabelSelector, Namespace, Pod, PodSpec, Service } from "./types.ts";

export const DEFAULT_SERVICE_CIDR = "10.96.0.0/12";
export const DEFAULT_NODE_PORT_RANGE = { first: 30000, last: 32767 } as const;

/**
 * The service fields of the datastore's ClusterConfig (src/k8s may not import src/datastore, so
 * the shape is restated; a ClusterConfig is one).
 */
export interface ServiceNetworkInput {
  serviceCidr?: string;
  nodePortRange?: { first: number; last: number };
  loadBalancerCidrs?: string[];
}

/** The service settings of a cluster config, with Kubernetes' defaults filled in. */
export interface ServiceNetworkConfig {
  serviceCidr: string;
  nodePortRange: { first: number; last: number };
  loadBalancerCidrs: string[];
}

export function serviceNetworkConfig(config: ServiceNetworkInput | undefined): ServiceNetworkConfig {
  return {
    serviceCidr: config?.serviceCidr ?? DEFAULT_SERVICE_CIDR,
    nodePortRange: config?.nodePortRange ?? { ...DEFAULT_NODE_PORT_RANGE },
    loadBalancerCidrs: config?.loadBalancerCidrs ?? [],
  };
}

const PROTOCOLS = ["SCTP", "TCP", "UDP"] as const;
const SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"] as const;
const PORT_RANGE = "must be between 1 and 65535, inclusive";

const isInt = (value: unknown): value is number => typeof value === "number" && Number.isInteger(value);

function nameErrors(check: (name: string) => string[], field: string, name: unknown): FieldError[] {
  if (typeof name !== "string" || name === "") return [required(field, "name or generateName is required")];
  return check(name).map((detail) => invalid(field, name, detail));
}

/** ValidateObjectMeta: name syntax per kind, namespace a DNS-1123 label, labels well formed. */
function validateMeta(object: KubeObject, nameCheck: (name: string) => string[], namespaced: boolean): FieldError[] {
  const meta = object.metadata;
  const errors = nameErrors(nameCheck, "metadata.name", meta?.name);
  if (namespaced && meta?.namespace !== undefined) {
    errors.push(...dns1123LabelErrors(meta.namespace).map((d) => invalid("metadata.namespace", meta.namespace, d)));
  }
  if (!namespaced && meta?.namespace) errors.push(forbidden("metadata.namespace", "not allowed on this type"));
  errors.push(...validateLabels(meta?.labels, "metadata.labels"));
  return errors;
}

/** ValidateLabels (apimachinery metav1validation). */
function validateLabels(labels: unknown, field: string): FieldError[] {
  if (labels === undefined || labels === null) return [];
  if (typeof labels !== "object" || Array.isArray(labels)) return [invalid(field, labels, "must be a map of strings")];
  const errors: FieldError[] = [];
  for (const [key, value] of Object.entries(labels)) {
    errors.push(...labelKeyErrors(key).map((d) => invalid(field, key, d)));
    if (typeof value !== "string") errors.push(invalid(`${field}`, value, `value of label ${JSON.stringify(key)} must be a string`));
    else errors.push(...labelValueErrors(value).map((d) => invalid(field, value, d)));
  }
  return errors;
}

/** Validation of a whole object of any stored kind. Returns every problem, in field order. */
export function validateObject(object: KubeObject, config?: ServiceNetworkInput): FieldError[] {
  switch (object.kind) {
    case "Namespace":
      return validateNamespace(object);
    case "Pod":
      return validatePod(object);
    case "Service":
      return validateService(object, serviceNetworkConfig(config));
    case "Deployment":
      return validateDeployment(object);
    case "EndpointSlice":
      return validateMeta(object, dns1123SubdomainErrors, true);
  }
}

/** ValidateNamespace: the name is a DNS-1123 label. */
export function validateNamespace(namespace: Namespace): FieldError[] {
  return validateMeta(namespace, dns1123LabelErrors, false);
}

/** ValidatePodCreate: name a DNS-1123 subdomain, then ValidatePodSpec. */
export function validatePod(pod: Pod): FieldError[] {
  return [...validateMeta(pod, dns1123SubdomainErrors, true), ...validatePodSpec(pod.spec, "spec")];
}

/** ValidatePodSpec → validateContainers → validateContainerPorts. */
function validatePodSpec(spec: PodSpec | undefined, path: string): FieldError[] {
  if (!spec || typeof spec !== "object") return [required(path)];
  const containers = spec.containers;
  if (!Array.isArray(containers) || containers.length === 0) return [required(`${path}.containers`)];
  const errors: FieldError[] = [];
  const names = new Set<string>();
  containers.forEach((container: Container, i) => {
    const cPath = `${path}.containers[${i}]`;
    if (typeof container?.name !== "string" || container.name === "") errors.push(required(`${cPath}.name`));
    else {
      errors.push(...dns1123LabelErrors(container.name).map((d) => invalid(`${cPath}.name`, container.name, d)));
      if (names.has(container.name)) errors.push(duplicate(`${cPath}.name`, container.name));
      names.add(container.name);
    }
    errors.push(...validateContainerPorts(container?.ports, `${cPath}.ports`));
    if (container?.readinessProbe !== undefined) errors.push(...validateProbe(container.readinessProbe, `${cPath}.readinessProbe`));
  });
  return errors;
}

const PROBE_HANDLERS = ["exec", "httpGet", "tcpSocket", "grpc"] as const;
const HTTP_SCHEMES = ["HTTP", "HTTPS"] as const;

/** validateProbe → validateHandler → validateHTTPGetAction / validateTCPSocketAction (core validation.go). */
function validateProbe(probe: Probe, path: string): FieldError[] {
  if (probe === null || typeof probe !== "object" || Array.isArray(probe)) return [invalid(path, probe, "must be an object")];
  const errors: FieldError[] = [];
  for (const field of ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] as const) {
    const value = probe[field];
    if (value !== undefined && (!isInt(value) || value < 0)) errors.push(invalid(`${path}.${field}`, value, "must be greater than or equal to 0"));
  }
  const handlers = PROBE_HANDLERS.filter((h) => probe[h] !== undefined);
  if (handlers.length === 0) return [...errors, required(path, "must specify a handler type")];
  if (handlers.length > 1) return [...errors, forbidden(`${path}.${handlers[1]}`, "may not specify more than 1 handler type")];
  const portErrors = (port: unknown, field: string): FieldError[] => {
    if (port === undefined || port === "" || port === 0) return [required(field)];
    if (typeof port === "number") return isInt(port) && port >= 1 && port <= 65535 ? [] : [invalid(field, port, PORT_RANGE)];
    if (typeof port === "string") return portNameErrors(port).map((d) => invalid(field, port, d));
    return [invalid(field, port, "must be a port number or name")];
  };
  if (probe.httpGet !== undefined) {
    const get = probe.httpGet;
    if (get === null || typeof get !== "object") return [...errors, invalid(`${path}.httpGet`, get, "must be an object")];
    errors.push(...portErrors(get.port, `${path}.httpGet.port`));
    if (get.path !== undefined && typeof get.path !== "string") errors.push(invalid(`${path}.httpGet.path`, get.path, "must be a string"));
    if (get.scheme !== undefined && !(HTTP_SCHEMES as readonly string[]).includes(get.scheme)) errors.push(notSupported(`${path}.httpGet.scheme`, get.scheme, HTTP_SCHEMES));
  }
  if (probe.tcpSocket !== undefined) errors.push(...portErrors(probe.tcpSocket?.port, `${path}.tcpSocket.port`));
  return errors;
}

/** validateContainerPorts: named ports IANA service names and unique, numbers in range. */
function validateContainerPorts(ports: Container["ports"], path: string): FieldError[] {
  if (ports === undefined) return [];
  if (!Array.isArray(ports)) return [invalid(path, ports, "must be a list")];
  const errors: FieldError[] = [];
  const names = new Set<string>();
  ports.forEach((port, i) => {
    const pPath = `${path}[${i}]`;
    if (port.name !== undefined) {
      errors.push(...portNameErrors(port.name).map((d) => invalid(`${pPath}.name`, port.name, d)));
      if (names.has(port.name)) errors.push(duplicate(`${pPath}.name`, port.name));
      names.add(port.name);
    }
    if (port.containerPort === undefined || port.containerPort === 0) errors.push(required(`${pPath}.containerPort`));
    else if (!isInt(port.containerPort) || port.containerPort < 1 || port.containerPort > 65535) {
      errors.push(invalid(`${pPath}.containerPort`, port.containerPort, PORT_RANGE));
    }
    if (port.hostPort !== undefined && port.hostPort !== 0 && (!isInt(port.hostPort) || port.hostPort < 1 || port.hostPort > 65535)) {
      errors.push(invalid(`${pPath}.hostPort`, port.hostPort, PORT_RANGE));
    }
    if (port.protocol === undefined) errors.push(required(`${pPath}.protocol`));
    else if (!(PROTOCOLS as readonly string[]).includes(port.protocol)) errors.push(notSupported(`${pPath}.protocol`, port.protocol, PROTOCOLS));
  });
  return errors;
}

/** ValidateLabelSelector (apps): well-formed matchLabels and matchExpressions. */
function validateLabelSelector(selector: LabelSelector, path: string): FieldError[] {
  const errors = validateLabels(selector.matchLabels, `${path}.matchLabels`);
  (selector.matchExpressions ?? []).forEach((expression, i) => {
    const ePath = `${path}.matchExpressions[${i}]`;
    errors.push(...labelKeyErrors(expression.key ?? "").map((d) => invalid(`${ePath}.key`, expression.key, d)));
    const values = expression.values ?? [];
    switch (expression.operator) {
      case "In":
      case "NotIn":
        if (values.length === 0) errors.push(required(`${ePath}.values`, "must be specified when `operator` is 'In' or 'NotIn'"));
        break;
      case "Exists":
      case "DoesNotExist":
        if (values.length > 0) errors.push(forbidden(`${ePath}.values`, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"));
        break;
      default:
        errors.push(notSupported(`${ePath}.operator`, expression.operator, ["DoesNotExist", "Exists", "In", "NotIn"]));
    }
  });
  return errors;
}

/**
 * apps ValidateDeployment → ValidateDeploymentSpec: replicas ≥ 0, a non-empty selector that
 * matches the template's labels, and a valid pod template.
 */
export function validateDeployment(deployment: Deployment): FieldError[] {
  const errors = validateMeta(deployment, dns1123SubdomainErrors, true);
  const spec = deployment.spec;
  if (!spec || typeof spec !== "object") return [...errors, required("spec")];
  if (spec.replicas !== undefined && (!isInt(spec.replicas) || spec.replicas < 0)) {
    errors.push(invalid("spec.replicas", spec.replicas, "must be greater than or equal to 0"));
  }
  const selector = spec.selector;
  if (!selector || typeof selector !== "object") {
    errors.push(required("spec.selector"));
  } else {
    errors.push(...validateLabelSelector(selector, "spec.selector"));
    const empty = Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0;
    if (empty) errors.push(invalid("spec.selector", selector, "empty selector is invalid for deployment"));
    else if (!labelSelectorMatches(selector, spec.template?.metadata?.labels)) {
      errors.push(invalid("spec.template.metadata.labels", spec.template?.metadata?.labels ?? {}, "`selector` does not match template `labels`"));
    }
  }
  if (!spec.template) errors.push(required("spec.template"));
  else {
    errors.push(...validateLabels(spec.template.metadata?.labels, "spec.template.metadata.labels"));
    errors.push(...validatePodSpec(spec.template.spec, "spec.template.spec"));
    const restart = spec.template.spec?.restartPolicy;
    if (restart !== undefined && restart !== "Always") errors.push(notSupported("spec.template.spec.restartPolicy", restart, ["Always"]));
  }
  return errors;
}

function parseIpv4OrUndefined(text: unknown) {
  return typeof text === "string" ? tryParseIp(text) : undefined;
}

/**
 * ValidateService plus the range checks of the ClusterIP and NodePort allocators
 * (pkg/registry/core/service/ipallocator, portallocator) that need only the cluster config.
 */
export function validateService(service: Service, network: ServiceNetworkConfig): FieldError[] {
  const errors = validateMeta(service, dns1035LabelErrors, true);
  const spec = service.spec;
  if (!spec || typeof spec !== "object") return [...errors, required("spec")];
  const type = spec.type ?? "ClusterIP";
  if (!(SERVICE_TYPES as readonly string[]).includes(type)) {
    errors.push(notSupported("spec.type", type, SERVICE_TYPES));
    return errors;
  }
  const headless = spec.clusterIP === "None";
  const ports = spec.ports ?? [];

  if (type === "ExternalName") {
    // validateServiceExternalName / ValidateService: ExternalName needs a DNS name and no ClusterIP.
    if (!spec.externalName) errors.push(required("spec.externalName"));
    else errors.push(...dns1123SubdomainErrors(spec.externalName).map((d) => invalid("spec.externalName", spec.externalName, d)));
    if (spec.clusterIP !== undefined && spec.clusterIP !== "") {
      errors.push(forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
    }
  } else {
    if (spec.externalName !== undefined && spec.externalName !== "") {
      errors.push(forbidden("spec.externalName", "may not be set when `type` is not 'ExternalName'"));
    }
    if (ports.length === 0 && !headless) errors.push(required("spec.ports"));
  }

  if (!Array.isArray(ports)) {
    errors.push(invalid("spec.ports", ports, "must be a list"));
    return errors;
  }
  const names = new Set<string>();
  const portProtocols = new Set<string>();
  const nodePorts = new Set<string>();
  ports.forEach((port, i) => {
    const path = `spec.ports[${i}]`;
    // validateServicePort: names are DNS-1123 labels, required when there is more than one port.
    if (ports.length > 1 && !port.name) errors.push(required(`${path}.name`));
    if (port.name) {
      errors.push(...dns1123LabelErrors(port.name).map((d) => invalid(`${path}.name`, port.name, d)));
      if (names.has(port.name)) errors.push(duplicate(`${path}.name`, port.name));
      names.add(port.name);
    }
    if (!isInt(port.port) || port.port < 1 || port.port > 65535) errors.push(invalid(`${path}.port`, port.port ?? 0, PORT_RANGE));
    const protocol = port.protocol ?? "TCP";
    if (!(PROTOCOLS as readonly string[]).includes(protocol)) errors.push(notSupported(`${path}.protocol`, protocol, PROTOCOLS));
    // validatePortNumOrName
    const target = port.targetPort;
    if (typeof target === "number") {
      if (!isInt(target) || target < 1 || target > 65535) errors.push(invalid(`${path}.targetPort`, target, PORT_RANGE));
    } else if (typeof target === "string") {
      errors.push(...portNameErrors(target).map((d) => invalid(`${path}.targetPort`, target, d)));
    } else if (target !== undefined) {
      errors.push(invalid(`${path}.targetPort`, target, "must be a port number or a port name"));
    }
    const key = `${protocol}/${port.port}`;
    if (portProtocols.has(key)) errors.push(duplicate(path, { port: port.port, protocol }));
    portProtocols.add(key);

    if (port.nodePort !== undefined && port.nodePort !== 0) {
      const nodePortPath = `${path}.nodePort`;
      if (type === "ClusterIP" || type === "ExternalName") {
        errors.push(forbidden(nodePortPath, `may not be used when \`type\` is '${type}'`));
      } else if (!isInt(port.nodePort) || port.nodePort < 1 || port.nodePort > 65535) {
        errors.push(invalid(nodePortPath, port.nodePort, PORT_RANGE));
      } else {
        const { first, last } = network.nodePortRange;
        if (port.nodePort < first || port.nodePort > last) {
          errors.push(invalid(nodePortPath, port.nodePort, `provided port is not in the valid range. The range of valid ports is ${first}-${last}`));
        }
        const nodeKey = `${protocol}/${port.nodePort}`;
        if (nodePorts.has(nodeKey)) errors.push(duplicate(nodePortPath, port.nodePort));
        nodePorts.add(nodeKey);
      }
    }
  });

  if (headless && (type === "NodePort" || type === "LoadBalancer")) {
    errors.push(invalid("spec.clusterIPs[0]", "None", "may not be set to 'None' for LoadBalancer or NodePort services"));
  }
  if (!headless && spec.clusterIP !== undefined && spec.clusterIP !== "" && type !== "ExternalName") {
    const ip = parseIpv4OrUndefined(spec.clusterIP);
    if (!ip) errors.push(invalid("spec.clusterIPs[0]", spec.clusterIP, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
    else {
      const cidr = parseCidr(network.serviceCidr);
      if (!cidrContains(cidr, ip)) {
        errors.push(invalid("spec.clusterIPs", [spec.clusterIP], `failed to allocate IP ${spec.clusterIP}: the provided IP (${spec.clusterIP}) is not in the valid range. The range of valid IPs is ${network.serviceCidr}`));
      }
    }
  }

  // validateServiceSelector: selector keys and values are label syntax.
  errors.push(...validateLabels(spec.selector, "spec.selector"));

  (spec.externalIPs ?? []).forEach((address, i) => {
    if (!parseIpv4OrUndefined(address)) errors.push(invalid(`spec.externalIPs[${i}]`, address, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
  });

  const affinity = spec.sessionAffinity ?? "None";
  if (affinity !== "None" && affinity !== "ClientIP") errors.push(notSupported("spec.sessionAffinity", affinity, ["ClientIP", "None"]));
  const timeout = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds;
  if (affinity === "ClientIP" && timeout !== undefined && (!isInt(timeout) || timeout < 1 || timeout > 86400)) {
    errors.push(invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout, "must be greater than 0 and less than 86400"));
  }
  if (affinity === "None" && spec.sessionAffinityConfig !== undefined) {
    errors.push(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"));
  }

  // validateServiceExternalTrafficPolicy / validateServiceInternalTrafficPolicy
  const externalish = type === "NodePort" || type === "LoadBalancer" || (spec.externalIPs ?? []).length > 0;
  if (spec.externalTrafficPolicy !== undefined) {
    if (spec.externalTrafficPolicy !== "Cluster" && spec.externalTrafficPolicy !== "Local") {
      errors.push(notSupported("spec.externalTrafficPolicy", spec.externalTrafficPolicy, ["Cluster", "Local"]));
    } else if (!externalish) {
      errors.push(invalid("spec.externalTrafficPolicy", spec.externalTrafficPolicy, "may only be set for externally-accessible services"));
    }
  }
  if (spec.internalTrafficPolicy !== undefined && spec.internalTrafficPolicy !== "Cluster" && spec.internalTrafficPolicy !== "Local") {
    errors.push(notSupported("spec.internalTrafficPolicy", spec.internalTrafficPolicy, ["Cluster", "Local"]));
  }

  // LoadBalancer-only fields.
  if (spec.loadBalancerSourceRanges !== undefined && spec.loadBalancerSourceRanges.length > 0) {
    if (type !== "LoadBalancer") errors.push(forbidden("spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"));
    spec.loadBalancerSourceRanges.forEach((range, i) => {
      try {
        parseCidr(range);
      } catch {
        errors.push(invalid(`spec.loadBalancerSourceRanges[${i}]`, range, "must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 "));
      }
    });
  }
  if (spec.loadBalancerIP !== undefined && spec.loadBalancerIP !== "") {
    if (type !== "LoadBalancer") errors.push(forbidden("spec.loadBalancerIP", "may only be used when `type` is 'LoadBalancer'"));
    else {
      const ip = parseIpv4OrUndefined(spec.loadBalancerIP);
      if (!ip) errors.push(invalid("spec.loadBalancerIP", spec.loadBalancerIP, "must be a valid IP address"));
      else {
        const pools: Cidr[] = network.loadBalancerCidrs.map((c) => parseCidr(c));
        if (!pools.some((pool) => cidrContains(pool, ip))) {
          errors.push(invalid("spec.loadBalancerIP", spec.loadBalancerIP, `not in the cluster's load-balancer pool (${network.loadBalancerCidrs.join(", ") || "none configured"})`));
        }
      }
    }
  }
  return errors;
}
