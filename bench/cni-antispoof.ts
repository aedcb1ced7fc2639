// What anti-spoofing (and a hostPort) costs the plugin's ADD and DEL (issue 13 §2): podnet with
// `antiSpoofing` on (the default), off, and on with one hostPort, side by side, one pod at a time.
// Rounds alternate the order so that machine noise falls on every variant; the report gives the
// median over rounds of each round's p50, and the ratios to "off".
//
// Part of `npm run bench:cni` (bench/cni.ts calls antispoofComparison); also runs alone:
//   node --import tsx bench/cni-antispoof.ts [--rounds 3] [--pods 100] [--no-write]
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { NetworkConfigList } from "../src/runtime/cni-driver.ts";
import { cleanupAll } from "../test/helpers/netns.ts";
import { PodPool, runScenario } from "./cni-scenario.ts";
import { podnetSide, type BenchSide } from "./cni-sides.ts";
import { median, summarize } from "./cni-stats.ts";

type Variant = "off" | "on" | "on + hostPort";
const VARIANTS: readonly Variant[] = ["off", "on", "on + hostPort"];

const BEGIN = "<!-- cni-antispoof:begin -->";
const END = "<!-- cni-antispoof:end -->";
const HEADING = "## CNI plugin: anti-spoofing and hostPort";

/** podnet's side with the variant's settings. hostPort: the runtime passes one mapping per pod, so each pod gets a port. */
function variantSide(binDir: string, variant: Variant): BenchSide {
  const base = podnetSide(binDir);
  return {
    ...base,
    confList: (dataDir, socket): NetworkConfigList => {
      const list = base.confList(dataDir, socket);
      const plugin = { ...list.plugins[0]!, antiSpoofing: variant !== "off", ...(variant === "on + hostPort" ? { capabilities: { portMappings: true } } : {}) };
      return { ...list, plugins: [plugin] };
    },
  };
}

export interface AntispoofFigures {
  rounds: number;
  pods: number;
  /** Per variant: the median over rounds of each round's ADD p50 and DEL p50, in ms. */
  addP50: Map<Variant, number>;
  delP50: Map<Variant, number>;
}

export async function antispoofComparison(binDir: string, pods: PodPool, rounds: number, log: (line: string) => void): Promise<AntispoofFigures> {
  const adds = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
  const dels = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
  for (let round = 0; round < rounds; round++) {
    const ordered = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
    for (const variant of ordered) {
      const side = variantSide(binDir, variant);
      const runtimeConfig = variant === "on + hostPort" ? (i: number) => ({ portMappings: [{ hostPort: 20000 + i, containerPort: 80, protocol: "tcp" }] }) : undefined;
      const result = await runScenario(side, pods, `as${round}-${variant.replace(/\W+/g, "")}`, { mode: "sequential", concurrency: 1, ...(runtimeConfig ? { runtimeConfig } : {}) });
      const add = summarize(result.addMs).p50;
      const del = summarize(result.delMs).p50;
      adds.get(variant)!.push(add);
      dels.get(variant)!.push(del);
      log(`anti-spoofing round ${round + 1}/${rounds} ${variant.padEnd(13)} ADD p50 ${add.toFixed(2)} ms, DEL p50 ${del.toFixed(2)} ms`);
    }
  }
  return {
    rounds,
    pods: pods.pods.length,
    addP50: new Map(VARIANTS.map((v) => [v, median(adds.get(v)!)])),
    delP50: new Map(VARIANTS.map((v) => [v, median(dels.get(v)!)])),
  };
}

export function renderAntispoof(f: AntispoofFigures, when: string): string {
  const off = { add: f.addP50.get("off")!, del: f.delP50.get("off")! };
  const rows = VARIANTS.map((v) => {
    const add = f.addP50.get(v)!;
    const del = f.delP50.get(v)!;
    return `| ${v} | ${add.toFixed(2)} | ${(add / off.add).toFixed(2)}x | ${(add - off.add).toFixed(2)} | ${del.toFixed(2)} | ${(del / off.del).toFixed(2)}x |`;
  });
  return [
    `Run ${when}: ${f.pods} pods one at a time, ${f.rounds} rounds (order alternating), NODE_EXTRA_CA_CERTS unset for the plugins.`,
    "Figures are the median over rounds of each round's p50, in ms.",
    "",
    "| anti-spoofing | ADD p50 | vs off | ADD +ms | DEL p50 | vs off |",
    "|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

export function writeAntispoofSection(path: string, markdown: string): void {
  const block = `${BEGIN}\n${markdown}\n${END}`;
  const text = existsSync(path) ? readFileSync(path, "utf8") : "# podnet benchmark results\n";
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  const updated = begin >= 0 && end > begin ? text.slice(0, begin) + block + text.slice(end + END.length) : `${text.trimEnd()}\n\n${HEADING}\n\n${block}\n`;
  writeFileSync(path, updated);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const ROOT = new URL("..", import.meta.url).pathname;
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "3" },
      pods: { type: "string", default: "100" },
      "podnet-dir": { type: "string", default: join(ROOT, "dist/cni") },
      "no-write": { type: "boolean", default: false },
      results: { type: "string", default: join(ROOT, "bench/RESULTS.md") },
    },
  });
  delete process.env.NODE_EXTRA_CA_CERTS;
  const pods = PodPool.create(Number(values.pods));
  try {
    const figures = await antispoofComparison(values["podnet-dir"]!, pods, Number(values.rounds), (l) => console.log(`bench: ${l}`));
    const markdown = renderAntispoof(figures, new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC");
    console.log(`\n${markdown}\n`);
    if (!values["no-write"]) writeAntispoofSection(values.results!, markdown);
  } finally {
    pods.delete();
    cleanupAll();
  }
}
