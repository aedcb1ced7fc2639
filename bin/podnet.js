#!/usr/bin/env -S node --max-semi-space-size=1
// The podnet command. After `npm run build` it runs the bundle dist/cli/podnet.mjs, on plain Node.
// Without a bundle, or when a source file is newer than it, it runs the TypeScript sources through
// tsx instead, so an edit is never hidden behind a stale build. The V8 flag on the first line is one
// of AGENT_NODE_FLAGS (src/agent/node-flags.ts); the other, --lite-mode, makes V8 print a warning on
// every start, so only agent launches (lab, tests, bench, src/agent/README.md) add it.
import { existsSync, lstatSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bundle = join(root, "dist/cli/podnet.mjs");

function newestSourceMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    // lstat: an editor's lock file is a dangling symlink, and must not stop the command.
    newest = Math.max(newest, entry.isDirectory() ? newestSourceMtime(path) : lstatSync(path).mtimeMs);
  }
  return newest;
}

let main;
if (existsSync(bundle) && statSync(bundle).mtimeMs >= newestSourceMtime(join(root, "src"))) {
  ({ main } = await import(pathToFileURL(bundle).href));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../src/cli/podnet.ts"));
}
process.exitCode = await main(process.argv.slice(2));
