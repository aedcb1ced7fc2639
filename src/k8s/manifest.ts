// Reading manifests as kubectl does: YAML or JSON, several `---`-separated documents per file,
// and `kind: List` (v1 List) unwrapped into its items. Only the kinds podnet stores are accepted;
// anything else is refused by name, before any document is applied.

import { parseAllDocuments } from "yaml";
import { API_VERSIONS, OBJECT_KINDS, type KubeObject, type ObjectKind } from "./types.ts";

export class ManifestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ManifestError";
  }
}

export interface ManifestDocument {
  /** 1-based position in the file, counting `List` items as their list's position. */
  document: number;
  object: KubeObject;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function asKubeObject(value: unknown, where: string): KubeObject {
  if (!isRecord(value)) throw new ManifestError(`${where}: a Kubernetes object must be a mapping, got ${Array.isArray(value) ? "a list" : typeof value}`);
  const { apiVersion, kind } = value;
  if (typeof kind !== "string" || kind === "") throw new ManifestError(`${where}: Object 'Kind' is missing`);
  if (typeof apiVersion !== "string" || apiVersion === "") throw new ManifestError(`${where}: Object 'apiVersion' is missing`);
  if (!(OBJECT_KINDS as readonly string[]).includes(kind) || API_VERSIONS[kind as ObjectKind] !== apiVersion) {
    throw new ManifestError(`${where}: no matches for kind "${kind}" in version "${apiVersion}" (podnet serves ${OBJECT_KINDS.map((k) => `${API_VERSIONS[k]}/${k}`).join(", ")})`);
  }
  if (!isRecord(value.metadata)) throw new ManifestError(`${where}: metadata: Required value`);
  return value as unknown as KubeObject;
}

/**
 * Every object of a manifest file, in order. Throws ManifestError naming the document for a
 * syntax error or an object podnet cannot take; empty documents (a trailing `---`) are skipped.
 */
export function parseManifests(text: string, source = "manifest"): ManifestDocument[] {
  const documents = parseAllDocuments(text, { prettyErrors: true });
  const objects: ManifestDocument[] = [];
  const list = Array.isArray(documents) ? documents : [documents];
  list.forEach((doc, index) => {
    const where = `${source}: document ${index + 1}`;
    if (doc.errors.length > 0) throw new ManifestError(`${where}: ${doc.errors[0]!.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    if (isRecord(value) && value.kind === "List" && value.apiVersion === "v1") {
      if (!Array.isArray(value.items)) throw new ManifestError(`${where}: List has no items`);
      value.items.forEach((item, i) => objects.push({ document: index + 1, object: asKubeObject(item, `${where}: items[${i}]`) }));
      return;
    }
    objects.push({ document: index + 1, object: asKubeObject(value, where) });
  });
  return objects;
}
