import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const CHILD_MODULE = fileURLToPath(new URL("./netlink-child.ts", import.meta.url));

// ChildApplier starts `node <the podnet script> <command>`, so the parent must itself run as a script
// named podnet: a stand-in that, as the child, fails at once (a child that died before its payload).
const STAND_IN = `
import { ChildApplier, NftChildFailed } from ${JSON.stringify(CHILD_MODULE)};
if (process.argv[2] === "stand-in-child") process.exit(1);
const applier = new ChildApplier("stand-in-child");
await new Promise((resolve) => applier["child"].once("close", resolve));
let outcome = "applied";
try {
  await applier.apply({ some: "payload" });
} catch (error) {
  // A child that died without asking the kernel: the caller may apply in-process.
  outcome = error instanceof NftChildFailed ? "rejected as a failed child" : "rejected: " + String(error);
}
process.stdout.write(outcome);
`;

describe("netlink child: the payload file", () => {
  it("is removed when the child had already exited before apply, which rejects as a failed child (not a kernel refusal)", () => {
    const dir = mkdtempSync(join(tmpdir(), "pnt-review-nlchild-"));
    try {
      const bin = join(dir, "bin");
      const temp = join(dir, "tmp");
      mkdirSync(bin);
      mkdirSync(temp);
      const script = join(bin, "podnet.mjs");
      writeFileSync(script, STAND_IN);
      const run = spawnSync(process.execPath, ["--import", "tsx", script], { env: { ...process.env, TMPDIR: temp }, encoding: "utf8", timeout: 60_000 });
      assert.equal(run.stdout, "rejected as a failed child", run.stderr);
      // (tsx keeps a cache of its own there.)
      assert.deepEqual(readdirSync(temp).filter((name) => name.startsWith("podnet-")), [], "nothing of podnet left in the temporary directory");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
