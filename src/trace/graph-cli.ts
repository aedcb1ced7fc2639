// `podnet lab graph [-o FILE.svg|FILE.html]` and the `--explain` part of `podnet lab up --explain`.
// Both read a lab that is up: its state file and its live kernel state.

import { writeFileSync } from "node:fs";
import { DEFAULT_STATE_ROOT, LabState, labDir } from "../lab/lab-state.ts";
import { renderLabGraph, wrapHtml } from "./graph.ts";
import { explainLab } from "./lab-explain.ts";

interface Target {
  id: string;
  stateRoot: string;
  output?: string;
}

function parse(argv: readonly string[], allowOutput: boolean): Target {
  const target: Target = { id: "lab", stateRoot: DEFAULT_STATE_ROOT };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--id") target.id = value();
    else if (arg === "--state-root") target.stateRoot = value();
    else if (allowOutput && (arg === "-o" || arg === "--output")) {
      const v = value();
      if (!/\.(svg|html)$/.test(v)) throw new Error(`-o must name a .svg or .html file, got "${v}"`);
      target.output = v;
    } else if (!allowOutput) continue; // lab up's own options, already checked by lab up
    else throw new Error(`unexpected argument ${arg}`);
  }
  return target;
}

function load(target: Target): LabState {
  const state = LabState.load(labDir(target.stateRoot, target.id));
  if (!state) throw new Error(`no lab "${target.id}" in ${target.stateRoot}; start one with: podnet lab up`);
  return state;
}

export async function runLabGraphCommand(argv: string[]): Promise<number> {
  let target: Target;
  try {
    target = parse(argv, true);
  } catch (error) {
    process.stderr.write(`podnet lab graph: ${(error as Error).message}\nusage: podnet lab graph [-o FILE.svg|FILE.html] [--id ID] [--state-root DIR]\n`);
    return 2;
  }
  try {
    const state = load(target);
    const svg = await renderLabGraph(state);
    if (!target.output) process.stdout.write(svg);
    else writeFileSync(target.output, target.output.endsWith(".html") ? wrapHtml(svg, `podnet lab ${state.data.id}`) : svg);
    return 0;
  } catch (error) {
    process.stderr.write(`podnet lab graph: ${(error as Error).message}\n`);
    return 1;
  }
}

export async function runLabExplainCommand(upArgv: string[]): Promise<number> {
  try {
    const state = load(parse(upArgv.slice(1), false));
    process.stdout.write("\n" + explainLab(state));
    return 0;
  } catch (error) {
    process.stderr.write(`podnet lab up --explain: ${(error as Error).message}\n`);
    return 1;
  }
}
