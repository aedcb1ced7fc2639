// The error result of the spec: {"cniVersion","code","msg","details"} on stdout.
import { CniError, ErrorCode } from "./types.ts";

export interface ErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details: string;
}

/**
 * Encodes any thrown value as the spec's error JSON. A CniError keeps its code; anything
 * else is a podnet bug or an unexpected failure and becomes Internal (999) with its
 * message only: stack traces go to stderr, never to the runtime. Never throws.
 */
export function errorJson(err: unknown, cniVersion: string): string {
  return JSON.stringify(errorResult(err, cniVersion));
}

export function errorResult(err: unknown, cniVersion: string): ErrorResult {
  try {
    if (err instanceof CniError && Number.isSafeInteger(err.code) && err.code > 0) {
      return { cniVersion, code: err.code, msg: String(err.message), details: String(err.details ?? "") };
    }
    return { cniVersion, code: ErrorCode.Internal, msg: messageOf(err), details: "" };
  } catch {
    // A hostile value (a throwing getter, an object without a prototype) must still yield JSON.
    return { cniVersion, code: ErrorCode.Internal, msg: "internal error", details: "" };
  }
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
