// Where the lab finds its own files and the plugins it runs.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The checkout this code runs from: the nearest directory above that holds podnet's package.json.
 * Found by walking up rather than by a fixed "../..", because the same code runs from src/lab/
 * (tests, through tsx) and from the bundle in dist/cli/ (`podnet` after `npm run build`).
 */
export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown }).name === "podnet") return dir;
    } catch {
      // No package.json here, or not ours: keep walking up.
    }
    if (dirname(dir) === dir) throw new Error(`podnet: cannot find the podnet checkout above ${start}`);
  }
}

/** Our plugins first; the reference plugins after, for the `reference` network and chained helpers. */
export const CNI_PATH = [join(REPO_ROOT, "dist/cni"), "/usr/lib/cni"];
