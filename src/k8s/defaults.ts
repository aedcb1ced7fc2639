// Defaulting as the API server does it before validation and storage, so stored objects and
// `-o json` look like a real cluster's. Source: k8s.io/kubernetes pkg/apis/core/v1/defaults.go
// (SetDefaults_Service, SetDefaults_ServicePort via SetDefaults_Service, SetDefaults_Pod,
// SetDefaults_PodSpec, SetDefaults_ContainerPort) and pkg/apis/apps/v1/defaults.go
// (SetDefaults_Deployment). Only the fields podnet reads are defaulted.

import { isNamespaced, type KubeObject, type PodSpec, type Service, type Deployment } from "./types.ts";

/** ClientIP affinity timeout when none is given: 3 hours (core/v1 DefaultClientIPServiceAffinitySeconds). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;

/** A defaulted deep copy; the input is not changed. */
export function withDefaults<T extends KubeObject>(object: T): T {
  const copy = structuredClone(object);
  copy.metadata = copy.metadata ?? ({} as T["metadata"]);
  if (isNamespaced(copy.kind) && !copy.metadata.namespace) copy.metadata.namespace = "default";
  switch (copy.kind) {
    case "Service":
      defaultService(copy);
      break;
    case "Pod":
      defaultPodSpec(copy.spec);
      break;
    case "Deployment":
      defaultDeployment(copy);
      break;
    default:
      break;
  }
  return copy;
}

function defaultService(service: Service): void {
  const spec = (service.spec ??= {});
  spec.type ??= "ClusterIP";
  spec.sessionAffinity ??= "None";
  if (spec.sessionAffinity === "ClientIP") {
    spec.sessionAffinityConfig ??= {};
    spec.sessionAffinityConfig.clientIP ??= {};
    spec.sessionAffinityConfig.clientIP.timeoutSeconds ??= DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  }
  for (const port of spec.ports ?? []) {
    port.protocol ??= "TCP";
    // SetDefaults_Service: an unset (zero) targetPort becomes the service port.
    if (port.targetPort === undefined || port.targetPort === 0 || port.targetPort === "") port.targetPort = port.port;
  }
  if (spec.type === "NodePort" || spec.type === "LoadBalancer") spec.externalTrafficPolicy ??= "Cluster";
  if (spec.type !== "ExternalName") spec.internalTrafficPolicy ??= "Cluster";
  if (spec.type === "LoadBalancer") spec.allocateLoadBalancerNodePorts ??= true;
}

function defaultPodSpec(spec: PodSpec | undefined): void {
  if (!spec) return;
  spec.restartPolicy ??= "Always";
  spec.dnsPolicy ??= "ClusterFirst";
  for (const container of spec.containers ?? []) {
    for (const port of container.ports ?? []) port.protocol ??= "TCP";
    const probe = container.readinessProbe;
    if (probe && typeof probe === "object") {
      // SetDefaults_Probe and SetDefaults_HTTPGetAction (pkg/apis/core/v1/defaults.go): 0 means unset.
      if (!probe.timeoutSeconds) probe.timeoutSeconds = 1;
      if (!probe.periodSeconds) probe.periodSeconds = 10;
      if (!probe.successThreshold) probe.successThreshold = 1;
      if (!probe.failureThreshold) probe.failureThreshold = 3;
      if (probe.httpGet && typeof probe.httpGet === "object") {
        probe.httpGet.path ||= "/";
        probe.httpGet.scheme ??= "HTTP";
      }
    }
  }
}

function defaultDeployment(deployment: Deployment): void {
  const spec = deployment.spec;
  if (!spec) return;
  spec.replicas ??= 1;
  // apps/v1 requires an explicit selector; template labels default from nothing. The template's
  // pod spec is defaulted like a Pod's.
  defaultPodSpec(spec.template?.spec);
}

