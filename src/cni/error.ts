// The error result of the spec: {"cniVersion","code","msg","details"} on stdout.
import { CniError, ErrorCode } from "./types.ts";

export interface ErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details: string;
}

/**
 * Encodes any thrown value as the spec's error JSON. A CniError keeps its code; a failed file or
 * process operation of Node's (an error with a code such as "ENOSPC" and the syscall) is the spec's
 * I/O failure (5); anything else is a podnet bug and becomes Internal (999) with its message only:
 * stack traces go to stderr, never to the runtime. Plugins map their own layers' errors first
 * (src/plugin/errors.ts). Never throws.
 */
export function errorJson(err: unknown, cniVersion: string): string {
  return JSON.stringify(errorResult(err, cniVersion));
}

export function errorResult(err: unknown, cniVersion: string): ErrorResult {
  try {
    if (err instanceof CniError && Number.isSafeInteger(err.code) && err.code > 0) {
      return { cniVersion, code: err.code, msg: String(err.message), details: String(err.details ?? "") };
    }
    if (isNodeSystemError(err)) return { cniVersion, code: ErrorCode.Io, msg: err.message, details: `errno ${err.code} from ${err.syscall}` };
    return { cniVersion, code: ErrorCode.Internal, msg: messageOf(err), details: "" };
  } catch {
    // A hostile value (a throwing getter, an object without a prototype) must still yield JSON.
    return { cniVersion, code: ErrorCode.Internal, msg: "internal error", details: "" };
  }
}

interface NodeSystemError extends Error {
  code: string;
  syscall: string;
}

/** Node's errors from fs, child_process and the like: { code: "ENOENT", syscall: "open", ... }. */
function isNodeSystemError(err: unknown): err is NodeSystemError {
  if (!(err instanceof Error)) return false;
  const { code, syscall } = err as Partial<NodeSystemError>;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) && typeof syscall === "string";
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message || err.name || "internal error";
  if (typeof err === "string") return err || "internal error";
  try {
    return String(err);
  } catch {
    return "internal error";
  }
}
