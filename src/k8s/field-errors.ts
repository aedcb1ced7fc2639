// Validation errors in the API server's own format, so a user sees what kubectl would print:
// `spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`.
// Source: k8s.io/apimachinery pkg/util/validation/field/errors.go (Error.Error, ErrorType.String).

export type FieldErrorType = "Invalid" | "Required" | "Duplicate" | "NotSupported" | "Forbidden" | "TooLong";

export interface FieldError {
  type: FieldErrorType;
  /** The path of the field, e.g. `spec.ports[0].port`. */
  field: string;
  value?: unknown;
  detail?: string;
}

/** Formats a value the way field.Error does for the common cases: strings quoted, numbers bare. */
function formatValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return String(value);
  if (value === undefined) return "null";
  return JSON.stringify(value);
}

export function formatFieldError(error: FieldError): string {
  switch (error.type) {
    case "Required":
      return `${error.field}: Required value${error.detail ? `: ${error.detail}` : ""}`;
    case "Forbidden":
      return `${error.field}: Forbidden${error.detail ? `: ${error.detail}` : ""}`;
    case "Duplicate":
      return `${error.field}: Duplicate value: ${formatValue(error.value)}`;
    case "NotSupported":
      return `${error.field}: Unsupported value: ${formatValue(error.value)}${error.detail ? `: ${error.detail}` : ""}`;
    case "TooLong":
      return `${error.field}: Too long: ${error.detail ?? ""}`;
    case "Invalid":
      return `${error.field}: Invalid value: ${formatValue(error.value)}${error.detail ? `: ${error.detail}` : ""}`;
  }
}

export const invalid = (field: string, value: unknown, detail: string): FieldError => ({ type: "Invalid", field, value, detail });
export const required = (field: string, detail?: string): FieldError => ({ type: "Required", field, ...(detail ? { detail } : {}) });
export const duplicate = (field: string, value: unknown): FieldError => ({ type: "Duplicate", field, value });
export const forbidden = (field: string, detail: string): FieldError => ({ type: "Forbidden", field, detail });
export const notSupported = (field: string, value: unknown, supported: readonly string[]): FieldError => ({
  type: "NotSupported",
  field,
  value,
  detail: `supported values: ${supported.map((s) => JSON.stringify(s)).join(", ")}`,
});

/**
 * The API server's rejection of one object, e.g.
 * `The Service "web" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`.
 * Source: k8s.io/apimachinery pkg/api/errors/errors.go NewInvalid.
 */
export class InvalidObjectError extends Error {
  constructor(
    readonly kind: string,
    readonly objectName: string,
    readonly fieldErrors: readonly FieldError[],
  ) {
    const messages = fieldErrors.map(formatFieldError);
    const joined = messages.length === 1 ? messages[0] : `[${messages.join(", ")}]`;
    super(`The ${kind} "${objectName}" is invalid: ${joined}`);
    this.name = "InvalidObjectError";
  }
}
