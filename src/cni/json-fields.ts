// Typed reads from decoded JSON. Config and result parsing share these so that every
// shape error names the exact field ("ipam.ranges[0][1].subnet") and carries the CNI
// error code of its context: InvalidConfig for a config, Decode for a result.
import { CniError } from "./types.ts";

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export class JsonFields {
  constructor(
    readonly object: Record<string, unknown>,
    /** Where the object sits, for messages: "" for the top level, else e.g. "ipam". */
    readonly path: string,
    /** CNI error code thrown for a field of the wrong shape. */
    readonly code: number,
  ) {}

  /** Wraps `value` as an object at `path`, or throws if it is not a JSON object. */
  static of(value: unknown, path: string, code: number): JsonFields {
    if (!isRecord(value)) throw new CniError(code, `${path || "value"} must be a JSON object`);
    return new JsonFields(value, path, code);
  }

  where(key: string): string {
    return this.path === "" ? key : `${this.path}.${key}`;
  }

  fail(key: string, expected: string): never {
    throw new CniError(this.code, `${this.where(key)} must be ${expected}, got ${describe(this.object[key])}`);
  }

  /** JSON null counts as absent, as Go's encoding/json treats it. */
  has(key: string): boolean {
    return this.object[key] !== undefined && this.object[key] !== null;
  }

  string(key: string): string | undefined {
    if (!this.has(key)) return undefined;
    const value = this.object[key];
    return typeof value === "string" ? value : this.fail(key, "a string");
  }

  requiredString(key: string): string {
    const value = this.string(key);
    if (value === undefined || value === "") throw new CniError(this.code, `${this.where(key)} is required`);
    return value;
  }

  boolean(key: string): boolean | undefined {
    if (!this.has(key)) return undefined;
    const value = this.object[key];
    return typeof value === "boolean" ? value : this.fail(key, "a boolean");
  }

  /** Unsigned integers of the spec (mtu, interface index, route table …). */
  unsigned(key: string): number | undefined {
    if (!this.has(key)) return undefined;
    const value = this.object[key];
    return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : this.fail(key, "a non-negative integer");
  }

  stringArray(key: string): string[] | undefined {
    if (!this.has(key)) return undefined;
    const value = this.object[key];
    if (!Array.isArray(value) || !value.every((item): item is string => typeof item === "string")) {
      return this.fail(key, "a list of strings");
    }
    return [...value];
  }

  nested(key: string): JsonFields | undefined {
    if (!this.has(key)) return undefined;
    return JsonFields.of(this.object[key], this.where(key), this.code);
  }

  /** Each element of a list of objects, wrapped; undefined when the key is absent. */
  objectArray(key: string): JsonFields[] | undefined {
    if (!this.has(key)) return undefined;
    const value = this.object[key];
    if (!Array.isArray(value)) return this.fail(key, "a list");
    return value.map((item, index) => JsonFields.of(item, `${this.where(key)}[${index}]`, this.code));
  }
}

/** Drops keys whose value is undefined, so optional fields never appear as `undefined` in output. */
export function withoutUndefined<T extends object>(value: T): T {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) if (field !== undefined) out[key] = field;
  return out as T;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === "object") return "an object";
  return String(value);
}
