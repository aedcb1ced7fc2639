// The part of the layering check dependency-cruiser cannot do: podnet loads node:child_process lazily
// with process.getBuiltinModule (so the plugin binary pays for it only when it execs), and koffi and
// bun:ffi with createRequire/require. Those loads are invisible to an import graph, so this scans the
// source text for them and applies the allow-list of .dependency-cruiser.cjs ("only src/kernel spawns
// kernel tools or opens netlink").
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const config = createRequire(import.meta.url)("../.dependency-cruiser.cjs");
const rule = config.forbidden.find((r) => r.name === "only-kernel-spawns-or-ffi");
const allowed = rule.from.pathNot.map((pattern) => new RegExp(pattern));
const DYNAMIC_LOAD = /(?:getBuiltinModule|require)\(\s*["'`](?:node:)?(child_process|koffi|bun:ffi)["'`]/g;

function sources(dir) {
  const found = [];
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist" || name.startsWith(".")) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...sources(path));
    else if (/\.(ts|mjs|js|cjs)$/.test(name)) found.push(relative(root, path));
  }
  return found;
}

const violations = [];
for (const file of ["src", "bench", "test", "scripts", "bin"].flatMap((dir) => sources(join(root, dir)))) {
  if (allowed.some((pattern) => pattern.test(file))) continue;
  for (const match of readFileSync(join(root, file), "utf8").matchAll(DYNAMIC_LOAD)) {
    violations.push(`  error only-kernel-spawns-or-ffi: ${file} loads ${match[1]} dynamically (${match[0]})`);
  }
}
if (violations.length > 0) {
  process.stderr.write(`${violations.join("\n")}\n\nx ${violations.length} dynamic load(s) outside src/kernel and the allow-list in .dependency-cruiser.cjs\n`);
  process.exit(1);
}
process.stdout.write("✔ no dynamic loads of child_process, koffi or bun:ffi outside the allow-list\n");
