// Assertions shared by the cni tests.
import assert from "node:assert/strict";
import { CniError } from "./types.ts";

/** Asserts that `fn` throws a CniError with `code`, and optionally a message matching `msg`. */
export function assertCniError(fn: () => unknown, code: number, msg?: RegExp): CniError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof CniError, `expected a CniError with code ${code}, got ${caught === undefined ? "no error" : String(caught)}`);
  assert.equal(caught.code, code, `wrong code for: ${caught.message}`);
  if (msg !== undefined) assert.match(caught.message, msg);
  return caught;
}
