// The layering rules bite: a small tree with one violation of each kind fails `lint:layers`,
// naming each rule, and the same tree without the violations passes.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";

const root = new URL("..", import.meta.url).pathname;
const depcruise = join(root, "node_modules", ".bin", "depcruise");
const scratch = mkdtempSync(join(tmpdir(), "podnet-layers-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function tree(name: string, files: Record<string, string>): string {
  const dir = join(scratch, name);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  copyFileSync(join(root, ".dependency-cruiser.cjs"), join(dir, ".dependency-cruiser.cjs"));
  copyFileSync(join(root, "tsconfig.json"), join(dir, "tsconfig.json"));
  return dir;
}

function cruise(dir: string): { status: number | null; output: string } {
  const run = spawnSync(depcruise, ["src", "--config", ".dependency-cruiser.cjs"], { cwd: dir, encoding: "utf8" });
  return { status: run.status, output: run.stdout + run.stderr };
}

const clean: Record<string, string> = {
  "src/net/address.ts": "export const a = 1;\n",
  "src/cni/types.ts": 'import { a } from "../net/address.ts";\nexport const b = a;\n',
  "src/kernel/nft.ts": 'import { spawnSync } from "node:child_process";\nexport const run = spawnSync;\n',
  "src/plugin/main.ts": 'import { b } from "../cni/types.ts";\nimport { run } from "../kernel/nft.ts";\nexport const c = [b, run];\n',
  "src/agent/agent.ts": 'import { run } from "../kernel/nft.ts";\nexport const d = run;\n',
  "src/runtime/driver.ts": 'import { execFile } from "node:child_process";\nexport const e = execFile;\n',
};

describe("lint:layers", () => {
  it("passes a tree that keeps the layers", () => {
    const result = cruise(tree("clean", clean));
    assert.equal(result.status, 0, result.output);
  });

  it("fails each kind of violation, naming its rule", () => {
    const result = cruise(
      tree("dirty", {
        ...clean,
        "src/net/cidr.ts": 'import { b } from "../cni/types.ts";\nimport "node:fs";\nexport const x = b;\n',
        "src/agent/agent.ts": 'import { c } from "../plugin/main.ts";\nexport const d = c;\n',
        "src/lab/lab.ts": 'import { spawn } from "node:child_process";\nexport const f = spawn;\n',
        "src/plugin/names.ts": 'import { createHash } from "node:crypto";\nexport const g = createHash;\n',
        "src/plugin/main.ts": 'import { g } from "./names.ts";\nexport const c = g;\n',
        "src/k8s/types.ts": 'import { e } from "../runtime/driver.ts";\nexport const h = e;\n',
      }),
    );
    assert.notEqual(result.status, 0);
    for (const rule of ["layer-net", "net-imports-no-node-module", "plugin-and-agent-apart", "layer-agent", "only-kernel-spawns-or-ffi", "plugin-binary-starts-fast", "layer-k8s"]) {
      assert.match(result.output, new RegExp(`error ${rule}:`), rule);
    }
  });

  it("refuses a folder the rules do not place", () => {
    const result = cruise(tree("unplaced", { ...clean, "src/cni/x.ts": 'import { z } from "../newfolder/z.ts";\nexport const y = z;\n', "src/newfolder/z.ts": 'import { a } from "../net/address.ts";\nexport const z = a;\n' }));
    assert.match(result.output, /error layer-cni: src\/cni\/x\.ts → src\/newfolder\/z\.ts/);
    assert.match(result.output, /error layer-unplaced: src\/newfolder\/z\.ts → src\/net\/address\.ts/);
  });
});

describe("the README's layer table", () => {
  // The allowed imports of each folder, read back from the rules .dependency-cruiser.cjs builds from its LAYERS.
  const config = createRequire(import.meta.url)("../.dependency-cruiser.cjs") as { forbidden: { name: string; to: { pathNot?: string[] } }[] };
  const allowed = new Map<string, string[]>();
  for (const rule of config.forbidden) {
    const layer = /^layer-(\w+)$/.exec(rule.name)?.[1];
    if (!layer || layer === "unplaced") continue;
    // "^src/net/" → "net/", "^src/kernel/libc\\.ts$" → "kernel/libc"
    const names = (rule.to.pathNot ?? []).slice(1).map((p) => p.replace(/^\^src\//, "").replace(/\\\.ts\$$/, ""));
    allowed.set(layer, names);
  }
  /** Folder → the backticked names in its row's "may import" cell, braces expanded (`kernel/nft/{model,diff}`). */
  const rows = new Map<string, { cell: string; names: string[] }>();
  const readme = readFileSync(join(root, "README.md"), "utf8");
  for (const line of readme.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 5 || !cells[1]!.startsWith("`src/")) continue;
    const cell = cells[3]!;
    const names = [...cell.matchAll(/`([^`]+)`/g)].flatMap(([, name]) => {
      const brace = /^(.*)\{([^}]+)\}$/.exec(name!);
      return brace ? brace[2]!.split(",").map((part) => `${brace[1]}${part}`) : [name!];
    });
    const row = { cell, names };
    for (const [, folder] of cells[1]!.matchAll(/`src\/(\w+)\/`/g)) rows.set(folder!, row);
  }

  it("has a row for every layer, naming everything the rules let it import", () => {
    assert.ok(allowed.size >= 10, "layer rules found");
    for (const [layer, names] of allowed) {
      const row = rows.get(layer);
      assert.ok(row, `README's design table has no row for src/${layer}/`);
      for (const name of names) assert.ok(row.names.includes(name), `README says src/${layer}/ may import ${row.cell}, but the rules also allow ${name}`);
    }
  });

  it("names nothing in a row that the rules of its folders forbid", () => {
    for (const [layer, row] of rows) {
      if (layer === "cli") continue; // "everything"
      const union = new Set([...rows].filter(([, r]) => r === row).flatMap(([l]) => allowed.get(l) ?? []));
      for (const name of row.names) assert.ok(union.has(name), `README lets src/${layer}/ import ${name}, which .dependency-cruiser.cjs does not`);
    }
  });
});
