import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HostPortParseError, formatHostPort, parseHostPort } from "./endpoint.ts";

describe("parseHostPort", () => {
  it("reads ADDR:PORT for both families, canonicalising the address", () => {
    assert.deepEqual(parseHostPort("10.0.0.1:53"), { host: "10.0.0.1", port: 53 });
    assert.deepEqual(parseHostPort("[FD00:0::1]:5353"), { host: "fd00::1", port: 5353 });
    assert.deepEqual(parseHostPort("0.0.0.0:0"), { host: "0.0.0.0", port: 0 });
  });

  it("fills in only the defaults the caller gives", () => {
    assert.deepEqual(parseHostPort("10.0.0.1", { defaultPort: 53 }), { host: "10.0.0.1", port: 53 });
    assert.deepEqual(parseHostPort("fd00::1", { defaultPort: 53 }), { host: "fd00::1", port: 53 });
    assert.deepEqual(parseHostPort("[fd00::1]", { defaultPort: 53 }), { host: "fd00::1", port: 53 });
    assert.deepEqual(parseHostPort("9100", { defaultHost: "127.0.0.1" }), { host: "127.0.0.1", port: 9100 });
    assert.deepEqual(parseHostPort(":9100", { defaultHost: "127.0.0.1" }), { host: "127.0.0.1", port: 9100 });
    for (const text of ["10.0.0.1", "fd00::1", "[fd00::1]", "9100", ":9100"]) {
      assert.throws(() => parseHostPort(text), new HostPortParseError(`expected ADDR:PORT, got ${JSON.stringify(text)}`));
    }
  });

  it("refuses names, bad addresses and bad ports, naming the text", () => {
    assert.throws(() => parseHostPort("localhost:53"), /not an IP address: "localhost"/);
    assert.throws(() => parseHostPort("010.0.0.1:53"), /not an IP address/);
    assert.throws(() => parseHostPort("10.0.0.1:65536"), /port must be 0-65535, got "65536"/);
    assert.throws(() => parseHostPort("10.0.0.1:+53"), /port must be 0-65535/);
    assert.throws(() => parseHostPort("10.0.0.1:"), /port must be 0-65535/);
    assert.throws(() => parseHostPort("[10.0.0.1:53"), /not an IP address/);
    assert.throws(() => parseHostPort("10.0.0.1:0", { minPort: 1 }), /port must be 1-65535, got "0"/);
  });

  it("formats what it parses back to the same text", () => {
    for (const text of ["10.0.0.1:53", "[fd00::1]:53"]) assert.equal(formatHostPort(parseHostPort(text)), text);
  });
});
