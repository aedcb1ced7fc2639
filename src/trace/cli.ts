// `podnet trace SRC DST[:PORT] [--proto tcp|udp|icmp] [--sport N] [-o text|json] [--explain] [--graph FILE.svg]`.

import { writeFileSync } from "node:fs";
import { DEFAULT_STATE_ROOT, LabState, labDir } from "../lab/lab-state.ts";
import { formatTrace } from "./format.ts";
import type { TraceProto } from "../kernel/nft-trace.ts";
import { runTrace, TraceInputError } from "./trace.ts";

export const TRACE_USAGE = `usage: podnet trace SRC DST[:PORT] [options]

  SRC, DST     a pod name ("NAMESPACE/NAME" for a Pod object's) or IP, a node name or IP
               (DST: NODE:PORT), or "external"; DST also a Service ("NAME", "NAMESPACE/NAME" or
               NAME.NAMESPACE[.svc.cluster.local], with :PORT, default its first port) or any IP
  --proto P    tcp, udp or icmp (default: the Service port's protocol, else udp)
  --size N     the probe's IP packet size in bytes, sent with DF (default 84)
  --sport N    tcp/udp: send from this source port (default: a random one). The port of a
               client's existing flow follows that flow: its conntrack entry, not the rules,
               decides the NAT, and the trace shows the entry (the flow keeps its endpoint)
  -o FORMAT    text (default) or json
  --explain    print, per hop, the ip/nft/bridge command that shows that object
  --graph F    draw the lab with this path onto F (.svg)
  --id ID, --state-root DIR   which lab (default "lab" in ${DEFAULT_STATE_ROOT})
`;

export interface TraceArgs {
  src: string;
  dst: string;
  proto?: TraceProto;
  size?: number;
  sport?: number;
  output: "text" | "json";
  explain: boolean;
  graph?: string;
  id: string;
  stateRoot: string;
}

export function parseTraceArgs(argv: readonly string[]): TraceArgs | "help" {
  const positional: string[] = [];
  const args: Omit<TraceArgs, "src" | "dst"> = { output: "text", explain: false, id: "lab", stateRoot: DEFAULT_STATE_ROOT };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new TraceInputError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case "--proto": {
        const v = value();
        if (v !== "tcp" && v !== "udp" && v !== "icmp") throw new TraceInputError(`--proto must be tcp, udp or icmp, got "${v}"`);
        args.proto = v;
        break;
      }
      case "--size": {
        const text = value();
        const n = Number(text);
        if (!/^\d+$/.test(text) || n < 28 || n > 65535) throw new TraceInputError(`--size must be 28-65535 bytes, got "${text}"`);
        args.size = n;
        break;
      }
      case "--sport": {
        const text = value();
        const n = Number(text);
        if (!/^\d+$/.test(text) || n < 1 || n > 65535) throw new TraceInputError(`--sport must be a port 1-65535, got "${text}"`);
        args.sport = n;
        break;
      }
      case "-o":
      case "--output": {
        const v = value();
        if (v !== "text" && v !== "json") throw new TraceInputError(`-o must be text or json, got "${v}"`);
        args.output = v;
        break;
      }
      case "--explain":
        args.explain = true;
        break;
      case "--graph": {
        const v = value();
        if (!v.endsWith(".svg")) throw new TraceInputError(`--graph must name a .svg file, got "${v}"`);
        args.graph = v;
        break;
      }
      case "--id":
        args.id = value();
        break;
      case "--state-root":
        args.stateRoot = value();
        break;
      case "-h":
      case "--help":
        return "help";
      default:
        if (arg.startsWith("-")) throw new TraceInputError(`unknown option ${arg}`);
        positional.push(arg);
    }
  }
  if (positional.length !== 2) throw new TraceInputError(`need SRC and DST, got ${positional.length} argument(s)`);
  return { ...args, src: positional[0]!, dst: positional[1]! };
}

export async function runTraceCommand(argv: string[]): Promise<number> {
  let args: TraceArgs | "help";
  try {
    args = parseTraceArgs(argv);
  } catch (error) {
    if (!(error instanceof TraceInputError)) throw error;
    process.stderr.write(`podnet trace: ${error.message}\n${TRACE_USAGE}`);
    return 2;
  }
  if (args === "help") {
    process.stdout.write(TRACE_USAGE);
    return 0;
  }
  // A trace takes about a second and puts a table into every namespace it crosses: Ctrl-C waits for it to
  // finish and remove them, rather than leaving them behind.
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
    process.stderr.write("podnet trace: finishing the trace to remove its nft tables\n");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const state = LabState.load(labDir(args.stateRoot, args.id));
    if (!state) throw new TraceInputError(`no lab "${args.id}" in ${args.stateRoot}; start one with: podnet lab up`);
    const result = await runTrace(state, { src: args.src, dst: args.dst, ...(args.proto ? { proto: args.proto } : {}), ...(args.size !== undefined ? { size: args.size } : {}), ...(args.sport !== undefined ? { sport: args.sport } : {}) });
    if (args.graph) {
      const { renderLabGraph } = await import("./graph.ts");
      writeFileSync(args.graph, await renderLabGraph(state, { path: result }));
    }
    process.stdout.write(args.output === "json" ? JSON.stringify(result, null, 2) + "\n" : formatTrace(result, { explain: args.explain }));
    if (interrupted) return 130;
    return result.delivered ? 0 : 1;
  } catch (error) {
    process.stderr.write(`podnet trace: ${(error as Error).message}\n`);
    return error instanceof TraceInputError ? 2 : 3;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
