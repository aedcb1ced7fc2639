// Kubernetes object shapes that podnet stores, serves and prints: the subset of the v1 API fields
// podnet reads, with the API's own field names and JSON layout, so a manifest written for a real
// cluster parses unchanged and `-o json` prints what kubectl would. Fields podnet does not use are
// kept as they came (every object type allows extra keys), never dropped.
// Source: k8s.io/api core/v1 (types.go), apps/v1, discovery/v1.

export interface ObjectMeta {
  name: string;
  /** Absent for cluster-scoped kinds (Namespace); defaulted to "default" for namespaced ones. */
  namespace?: string;
  uid?: string;
  /** The datastore revision of the stored object, as a decimal string (opaque to clients, as in Kubernetes). */
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  generateName?: string;
  [extra: string]: unknown;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface TypeMeta<ApiVersion extends string, Kind extends string> {
  apiVersion: ApiVersion;
  kind: Kind;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

// ---- Namespace (v1)

export interface Namespace extends TypeMeta<"v1", "Namespace"> {
  metadata: ObjectMeta;
  spec?: { finalizers?: string[] };
  status?: { phase?: "Active" | "Terminating" };
}

// ---- Pod (v1)

export type Protocol = "TCP" | "UDP" | "SCTP";

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: Protocol;
  hostPort?: number;
  hostIP?: string;
}

/** core/v1 HTTPGetAction: GET scheme://host:port/path; host defaults to the pod's IP. */
export interface HTTPGetAction {
  path?: string;
  /** A number, or the name of one of the container's ports. */
  port: number | string;
  host?: string;
  scheme?: "HTTP" | "HTTPS";
  httpHeaders?: { name: string; value: string }[];
}

/** core/v1 Probe (the handler and its timing); the lab's kubelet runs httpGet readiness probes. */
export interface Probe {
  httpGet?: HTTPGetAction;
  tcpSocket?: { port: number | string; host?: string };
  exec?: { command?: string[] };
  grpc?: { port: number; service?: string };
  initialDelaySeconds?: number;
  timeoutSeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  ports?: ContainerPort[];
  readinessProbe?: Probe;
  [extra: string]: unknown;
}

export interface PodSpec {
  containers: Container[];
  nodeName?: string;
  hostname?: string;
  subdomain?: string;
  hostNetwork?: boolean;
  dnsPolicy?: "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None";
  restartPolicy?: "Always" | "OnFailure" | "Never";
  [extra: string]: unknown;
}

export interface PodCondition {
  type: "Ready" | "ContainersReady" | "Initialized" | "PodScheduled" | string;
  status: "True" | "False" | "Unknown";
  lastTransitionTime?: string;
  reason?: string;
  message?: string;
}

export interface PodStatus {
  phase?: "Pending" | "Running" | "Succeeded" | "Failed" | "Unknown";
  conditions?: PodCondition[];
  hostIP?: string;
  podIP?: string;
  podIPs?: { ip: string }[];
  startTime?: string;
  [extra: string]: unknown;
}

export interface Pod extends TypeMeta<"v1", "Pod"> {
  metadata: ObjectMeta;
  spec: PodSpec;
  status?: PodStatus;
}

// ---- Service (v1)

export type ServiceType = "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName";

export interface ServicePort {
  name?: string;
  protocol?: Protocol;
  port: number;
  /** A number, or the name of a container port. Defaults to `port`. */
  targetPort?: number | string;
  nodePort?: number;
  appProtocol?: string;
}

export interface ServiceSpec {
  type?: ServiceType;
  selector?: Record<string, string>;
  ports?: ServicePort[];
  /** "None" makes the service headless. */
  clusterIP?: string;
  clusterIPs?: string[];
  ipFamilies?: ("IPv4" | "IPv6")[];
  ipFamilyPolicy?: "SingleStack" | "PreferDualStack" | "RequireDualStack";
  externalIPs?: string[];
  externalName?: string;
  externalTrafficPolicy?: "Cluster" | "Local";
  internalTrafficPolicy?: "Cluster" | "Local";
  sessionAffinity?: "None" | "ClientIP";
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
  loadBalancerIP?: string;
  loadBalancerSourceRanges?: string[];
  loadBalancerClass?: string;
  allocateLoadBalancerNodePorts?: boolean;
  healthCheckNodePort?: number;
  publishNotReadyAddresses?: boolean;
  [extra: string]: unknown;
}

export interface ServiceStatus {
  loadBalancer?: { ingress?: { ip?: string; hostname?: string; ipMode?: "VIP" | "Proxy" }[] };
}

export interface Service extends TypeMeta<"v1", "Service"> {
  metadata: ObjectMeta;
  spec: ServiceSpec;
  status?: ServiceStatus;
}

// ---- EndpointSlice (discovery.k8s.io/v1)

export interface EndpointConditions {
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export interface Endpoint {
  addresses: string[];
  conditions?: EndpointConditions;
  hostname?: string;
  targetRef?: { kind: string; name: string; namespace?: string; uid?: string };
  nodeName?: string;
  zone?: string;
}

export interface EndpointPort {
  name?: string;
  protocol?: Protocol;
  port?: number;
  appProtocol?: string;
}

/** Label that ties a slice to its Service (discovery/v1 LabelServiceName). */
export const LABEL_SERVICE_NAME = "kubernetes.io/service-name";
/** Label naming the controller that manages a slice (discovery/v1 LabelManagedBy). */
export const LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by";

export interface EndpointSlice extends TypeMeta<"discovery.k8s.io/v1", "EndpointSlice"> {
  metadata: ObjectMeta;
  addressType: "IPv4" | "IPv6" | "FQDN";
  endpoints: Endpoint[];
  ports?: EndpointPort[];
}

// ---- Deployment (apps/v1)

export interface PodTemplateSpec {
  metadata?: Partial<ObjectMeta>;
  spec: PodSpec;
}

export interface Deployment extends TypeMeta<"apps/v1", "Deployment"> {
  metadata: ObjectMeta;
  spec: {
    replicas?: number;
    selector: LabelSelector;
    template: PodTemplateSpec;
    [extra: string]: unknown;
  };
  status?: {
    replicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
    updatedReplicas?: number;
    observedGeneration?: number;
  };
}

// ---- The kinds podnet stores

export interface KindMap {
  Namespace: Namespace;
  Pod: Pod;
  Service: Service;
  EndpointSlice: EndpointSlice;
  Deployment: Deployment;
}

export type ObjectKind = keyof KindMap;
export type KubeObject = KindMap[ObjectKind];

export const OBJECT_KINDS: readonly ObjectKind[] = ["Namespace", "Pod", "Service", "EndpointSlice", "Deployment"];

export const API_VERSIONS: { readonly [K in ObjectKind]: KindMap[K]["apiVersion"] } = {
  Namespace: "v1",
  Pod: "v1",
  Service: "v1",
  EndpointSlice: "discovery.k8s.io/v1",
  Deployment: "apps/v1",
};

export function isNamespaced(kind: ObjectKind): boolean {
  return kind !== "Namespace";
}

/** "namespace/name", or "name" for cluster-scoped objects: the identity used in maps and keys. */
export function objectKey(object: { metadata: { name: string; namespace?: string } }): string {
  return object.metadata.namespace ? `${object.metadata.namespace}/${object.metadata.name}` : object.metadata.name;
}
