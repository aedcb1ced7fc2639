// `podnet dns` flag errors: exit 2 with a message naming the flag, before anything is started.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runDnsCommand } from "./cli.ts";

async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  const write = process.stderr.write.bind(process.stderr);
  let stderr = "";
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: await runDnsCommand(args), stderr };
  } finally {
    process.stderr.write = write;
  }
}

describe("podnet dns flags", () => {
  const cases: [string[], RegExp][] = [
    [["--objects", "/nonexistent.json", "--ttl", "five"], /--ttl: a whole number of seconds, got "five"/],
    [["--objects", "/nonexistent.json", "--listen", "localhost"], /--listen: expected ADDR:PORT, got "localhost"/],
    [["--objects", "/nonexistent.json", "--upstream", "dns.example"], /--upstream: upstream "dns.example": not an IP address/],
    [["--objects", "/nonexistent.json", "--upstream", "10.0.0.1:99999"], /--upstream: upstream "10.0.0.1:99999": port must be 1-65535/],
    [["--objects", "/nonexistent.json", "--pods", "all"], /--pods: disabled, insecure or verified, got "all"/],
    [["--objects", "/nonexistent.json", "--workers", "0"], /--workers: 1-64, got "0"/],
    [["--objects", "/nonexistent.json", "--forward-timeout", "1"], /--forward-timeout: milliseconds >= 10/],
    [["--objects", "/nonexistent.json", "--upstream", "10.0.0.1"], /--objects: cannot read \/nonexistent.json/],
    [["--upstream", "10.0.0.1"], /give exactly one of --etcd and --objects/],
    [["--bogus"], /Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    it(`${args.join(" ")} → exit 2`, async () => {
      const { code, stderr } = await run(args);
      assert.equal(code, 2);
      assert.match(stderr, message);
    });
  }
});
