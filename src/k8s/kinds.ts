// The names kubectl accepts for the kinds podnet stores, and the `kind.group/name` form it prints.
// Source: the API server's discovery data for these resources (plural, singular, short names).

import type { ObjectKind } from "./types.ts";

const ALIASES: Record<string, ObjectKind> = {};
const RESOURCES: Record<ObjectKind, { plural: string; singular: string; short: string[]; group: string }> = {
  Namespace: { plural: "namespaces", singular: "namespace", short: ["ns"], group: "" },
  Pod: { plural: "pods", singular: "pod", short: ["po"], group: "" },
  Service: { plural: "services", singular: "service", short: ["svc"], group: "" },
  Deployment: { plural: "deployments", singular: "deployment", short: ["deploy"], group: "apps" },
  EndpointSlice: { plural: "endpointslices", singular: "endpointslice", short: [], group: "discovery.k8s.io" },
};
for (const [kind, r] of Object.entries(RESOURCES) as [ObjectKind, (typeof RESOURCES)[ObjectKind]][]) {
  for (const name of [r.plural, r.singular, ...r.short, kind.toLowerCase()]) {
    ALIASES[name] = kind;
    if (r.group) ALIASES[`${name}.${r.group}`] = kind;
  }
}

export class UnknownKindError extends Error {
  constructor(text: string) {
    super(`the server doesn't have a resource type "${text}"`);
    this.name = "UnknownKindError";
  }
}

/** "svc", "services", "deployments.apps", "Pod" … → the kind; throws UnknownKindError. */
export function resolveKind(text: string): ObjectKind {
  const kind = ALIASES[text.toLowerCase()];
  if (!kind) throw new UnknownKindError(text);
  return kind;
}

/** "services", "deployments.apps": the resource name in API errors (`services "web" not found`). */
export function resourceName(kind: ObjectKind): string {
  const r = RESOURCES[kind];
  return r.group ? `${r.plural}.${r.group}` : r.plural;
}

/** "service", "deployment.apps": the prefix kubectl prints before "/name created". */
export function singularResourceName(kind: ObjectKind): string {
  const r = RESOURCES[kind];
  return r.group ? `${r.singular}.${r.group}` : r.singular;
}
