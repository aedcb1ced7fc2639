// The README's main command is `npm run lab`. Its script once ran a module that only exported
// `main` and so did nothing, silently; this runs the script itself (with --help, so no lab is built).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..");

test("`npm run lab` reaches the podnet lab command", () => {
  const run = spawnSync("npm", ["run", "--silent", "lab", "--", "--help"], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /usage: podnet lab/);
});

test("the README names the two commands, and package.json defines them", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const scripts = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
  for (const command of ["lab", "test"]) {
    assert.match(readme, new RegExp("```sh\\nnpm (run )?" + command + "\\n```"));
    assert.ok(scripts[command], `package.json has no ${command} script`);
  }
});
