import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { errorJson } from "./error.ts";
import { CniError, ErrorCode } from "./types.ts";

describe("errorJson", () => {
  it("encodes a CniError with its code, message and details", () => {
    const json = errorJson(new CniError(ErrorCode.InvalidConfig, "Invalid Configuration", "Network 192.168.0.0/31 too small"), "1.0.0");
    assert.deepEqual(JSON.parse(json), { cniVersion: "1.0.0", code: 7, msg: "Invalid Configuration", details: "Network 192.168.0.0/31 too small" });
  });

  it("turns a plain Error into code 999 with its message and no stack", () => {
    const err = new Error("kernel exploded");
    const parsed = JSON.parse(errorJson(err, "1.1.0"));
    assert.deepEqual(parsed, { cniVersion: "1.1.0", code: 999, msg: "kernel exploded", details: "" });
    assert.ok(!errorJson(err, "1.1.0").includes("error.test.ts"), "no stack frames");
  });

  it("turns Node's failed file operations into I/O (5) with the errno and the call", () => {
    let thrown: unknown;
    try {
      readFileSync("/nonexistent/podnet-error-test");
    } catch (err) {
      thrown = err;
    }
    const result = JSON.parse(errorJson(thrown, "1.0.0"));
    assert.equal(result.code, ErrorCode.Io);
    assert.equal(result.details, "errno ENOENT from open");
    assert.match(result.msg, /nonexistent/);
    // An Error that merely has a code property is not a system error.
    assert.equal(JSON.parse(errorJson(Object.assign(new Error("x"), { code: "ERR_SOMETHING" }), "1.0.0")).code, ErrorCode.Internal);
  });

  it("never throws, whatever was thrown", () => {
    const hostile = [
      undefined,
      null,
      "a string",
      42,
      Symbol("s"),
      Object.create(null),
      { toString() { throw new Error("no"); } },
      new Proxy({}, { get() { throw new Error("trap"); }, getPrototypeOf() { throw new Error("trap"); } }),
    ];
    for (const value of hostile) {
      const parsed = JSON.parse(errorJson(value, "1.1.0"));
      assert.equal(parsed.code, 999);
      assert.equal(typeof parsed.msg, "string");
    }
  });

  it("always yields the four spec keys with the right types (property)", () => {
    const thrown = fc.oneof(
      fc.anything(),
      fc.tuple(fc.integer({ min: 1, max: 999 }), fc.string(), fc.string()).map(([code, msg, details]) => new CniError(code, msg, details)),
      fc.string().map((m) => new Error(m)),
    );
    fc.assert(
      fc.property(thrown, (value) => {
        const parsed = JSON.parse(errorJson(value, "0.4.0"));
        assert.deepEqual(Object.keys(parsed), ["cniVersion", "code", "msg", "details"]);
        assert.equal(parsed.cniVersion, "0.4.0");
        assert.ok(Number.isInteger(parsed.code) && parsed.code > 0);
        assert.equal(typeof parsed.msg, "string");
        assert.equal(typeof parsed.details, "string");
        if (value instanceof CniError) assert.equal(parsed.code, value.code);
      }),
    );
  });
});
