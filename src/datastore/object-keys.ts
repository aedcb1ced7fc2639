// Where cluster objects and claims live under the datastore prefix, and the checks a write must pass
// before it reaches the store. Pure: no I/O, shared by every ObjectStore backend.
//
//   objects/<Kind>/<namespace>/<name>   namespaced kinds
//   objects/<Kind>/<name>               cluster-scoped kinds (Namespace)
//   claims/<pool>/<token>               owner of a unique token (a ClusterIP, a NodePort)

import { API_VERSIONS, OBJECT_KINDS, isNamespaced, type KubeObject, type ObjectKind } from "../k8s/types.ts";

export const OBJECTS_DIR = "objects/";
export const CLAIMS_DIR = "claims/";

/** The namespace a namespaced object without one lands in (as the API server defaults it). */
export const DEFAULT_NAMESPACE = "default";

export function isObjectKind(kind: unknown): kind is ObjectKind {
  return typeof kind === "string" && (OBJECT_KINDS as readonly string[]).includes(kind);
}

/** Key of one object, relative to the datastore prefix. */
export function objectPath(kind: ObjectKind, namespace: string | undefined, name: string): string {
  return isNamespaced(kind) ? `${OBJECTS_DIR}${kind}/${namespace ?? DEFAULT_NAMESPACE}/${name}` : `${OBJECTS_DIR}${kind}/${name}`;
}

/** Key prefix of every object of a kind, or of one namespace of it. */
export function kindPath(kind: ObjectKind, namespace?: string): string {
  if (namespace !== undefined && isNamespaced(kind)) return `${OBJECTS_DIR}${kind}/${namespace}/`;
  return `${OBJECTS_DIR}${kind}/`;
}

/** The kind a relative object key belongs to, or undefined for a key outside objects/. */
export function kindOfPath(path: string): ObjectKind | undefined {
  if (!path.startsWith(OBJECTS_DIR)) return undefined;
  const kind = path.slice(OBJECTS_DIR.length, path.indexOf("/", OBJECTS_DIR.length));
  return isObjectKind(kind) ? kind : undefined;
}

export function claimPath(pool: string, token: string): string {
  return `${CLAIMS_DIR}${pool}/${token}`;
}

/** "Service default/web" or "Namespace team-a": how errors name an object. */
export function describeObject(kind: ObjectKind, namespace: string | undefined, name: string): string {
  return isNamespaced(kind) ? `${kind} ${namespace ?? DEFAULT_NAMESPACE}/${name}` : `${kind} ${name}`;
}

// Name rules of the API server. Source: k8s.io/apimachinery/pkg/util/validation/validation.go
// (IsDNS1123Label, IsDNS1123Subdomain, IsDNS1035Label); namespaces are labels
// (apimachinery/pkg/api/validation ValidateNamespaceName), Service names are DNS-1035 labels
// (pkg/apis/core/validation ValidateServiceName), Pods, EndpointSlices and Deployments subdomains.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export function nameProblem(kind: ObjectKind, name: string): string | undefined {
  if (kind === "Namespace") return labelProblem(name, DNS1123_LABEL, "a DNS-1123 label");
  if (kind === "Service") return labelProblem(name, DNS1035_LABEL, "a DNS-1035 label (starting with a letter)");
  if (name.length === 0 || name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    return "must be a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', starting and ending alphanumeric";
  }
  return undefined;
}

export function namespaceProblem(namespace: string): string | undefined {
  return labelProblem(namespace, DNS1123_LABEL, "a DNS-1123 label");
}

function labelProblem(name: string, pattern: RegExp, what: string): string | undefined {
  if (name.length === 0 || name.length > 63 || !pattern.test(name)) {
    return `must be ${what}: at most 63 lower-case letters, digits and '-', ending alphanumeric`;
  }
  return undefined;
}

/** A pool or token is one key segment: no '/', not empty. */
export function segmentProblem(value: unknown): string | undefined {
  if (typeof value !== "string" || value.length === 0) return "must be a non-empty string";
  if (value.includes("/")) return "must not contain '/'";
  return undefined;
}

/** Characters the API server draws generated name suffixes from (apiserver/pkg/storage/names/generate.go, via utilrand.String). */
const SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

export function generatedName(generateName: string, random: () => number = Math.random): string {
  let suffix = "";
  for (let i = 0; i < 5; i++) suffix += SUFFIX_ALPHABET[Math.floor(random() * SUFFIX_ALPHABET.length)];
  return generateName.slice(0, 63 - 5) + suffix;
}

/** What a write of an object resolves to after checking: its kind, namespace and name. */
export interface ObjectIdentity {
  kind: ObjectKind;
  namespace: string | undefined;
  name: string;
}

/**
 * Check an object about to be written and name its identity; throws an Error naming the field.
 * `generate` fills an empty name from metadata.generateName (creates only).
 */
export function checkObject(object: KubeObject, index: number, generate: boolean): ObjectIdentity {
  const at = `writes[${index}].object`;
  if (typeof object !== "object" || object === null) throw new Error(`${at}: must be an object`);
  const kind: unknown = object.kind;
  if (!isObjectKind(kind)) throw new Error(`${at}.kind: ${JSON.stringify(kind)} is not one of ${OBJECT_KINDS.join(", ")}`);
  const apiVersion: unknown = object.apiVersion;
  if (apiVersion !== API_VERSIONS[kind]) throw new Error(`${at}.apiVersion: a ${kind} is ${API_VERSIONS[kind]}, not ${JSON.stringify(apiVersion)}`);
  const metadata = object.metadata as unknown;
  if (typeof metadata !== "object" || metadata === null) throw new Error(`${at}.metadata: must be an object`);
  let name = object.metadata.name as unknown;
  if ((name === undefined || name === "") && generate && typeof object.metadata.generateName === "string" && object.metadata.generateName !== "") {
    name = generatedName(object.metadata.generateName);
  }
  if (typeof name !== "string") throw new Error(`${at}.metadata.name: must be a string`);
  const problem = nameProblem(kind, name);
  if (problem) throw new Error(`${at}.metadata.name: ${JSON.stringify(name)} ${problem}`);
  let namespace: string | undefined;
  if (isNamespaced(kind)) {
    const given = object.metadata.namespace as unknown;
    if (given !== undefined && typeof given !== "string") throw new Error(`${at}.metadata.namespace: must be a string`);
    namespace = given === undefined || given === "" ? DEFAULT_NAMESPACE : given;
    const nsProblem = namespaceProblem(namespace);
    if (nsProblem) throw new Error(`${at}.metadata.namespace: ${JSON.stringify(namespace)} ${nsProblem}`);
  } else if (object.metadata.namespace !== undefined && object.metadata.namespace !== "") {
    throw new Error(`${at}.metadata.namespace: a ${kind} is cluster-scoped and has no namespace`);
  }
  return { kind, namespace, name };
}
