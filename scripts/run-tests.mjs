// Runs every test file with Node's test runner. Node 20 has no glob support in --test,
// so the files are listed here. Unit tests (src/**, bench/**) run first: they are fast and need no root.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
function find(dir) {
  const found = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...find(path));
    else if (name.endsWith(".test.ts")) found.push(relative(root, path));
  }
  return found.sort();
}
// The layering rules (README, "Design") first: a violation fails `npm test` before any test runs.
const layers = spawnSync("npm", ["run", "--silent", "lint:layers"], { cwd: root, stdio: "inherit" });
if (layers.status !== 0) {
  process.stderr.write("layering check failed (npm run lint:layers); see .dependency-cruiser.cjs\n");
  process.exit(layers.status ?? 1);
}

const only = process.argv.slice(2);
const files = only.length > 0 ? only : [...find(join(root, "src")), ...find(join(root, "bench")), ...find(join(root, "test"))];
const run = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files], {
  cwd: root,
  stdio: "inherit",
});
process.exit(run.status ?? 1);
