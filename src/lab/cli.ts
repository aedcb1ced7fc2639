// `podnet lab …`: argument parsing and output for the lab's subcommands. The work happens in lab.ts.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { callApi, type ApiRequest, type OutputFormat } from "./api.ts";
import { apiSocketPath, runControllersProcess } from "./controllers.ts";
import { DEFAULT_STATE_ROOT, labDir, type NetworkMode } from "./lab-state.ts";
import { DEFAULT_TARGET, labCheck, labDown, labExec, labRun, labStatus, labUp, loadLab, type LabTarget } from "./lab.ts";
import { REPO_ROOT } from "./repo-root.ts";
import { MAX_NODES, MAX_PODS_PER_NODE, TOPOLOGIES, validateLabId, type LabTopology } from "./topology.ts";

export const LAB_USAGE = `usage: podnet lab [up|status|run|exec|check|apply|delete|get|down] [options]

  (no subcommand)          bring up the default lab if it is not up, then run the check
  up                       build the cluster: switch, etcd, controllers, nodes with agents, pods, the example app
  status                   nodes, subnets, pods and every node's routes
  check                    connectivity matrix and services; exits 1 on any failure
  run POD -- CMD [ARG…]    start a long-lived process in POD's network namespace
  exec NAME [-n NS] -- CMD [ARG…]
                           run a command in a pod's or host's namespace (node1, external, control-plane, switch)
  apply -f FILE            create or update the objects in FILE (YAML or JSON, several documents; - for stdin)
  delete -f FILE | KIND NAME… [-n NS]
                           delete objects (and what depends on them)
  get pods|deployments|services|endpointslices|nodes [NAME…] [-n NS | -A] [-o wide|json|yaml]
  down                     remove everything the lab created

options:
  --nodes N                nodes (1-${MAX_NODES}, default 3)
  --pods-per-node M        pods on each node (0-${MAX_PODS_PER_NODE}, default 2)
  --network podnet|reference
                           podnet: podnet's agent and plugin (default);
                           reference: static routes and the reference bridge/host-local plugins
  --topology flat|routed   flat: one underlay subnet (default); routed: 192.168.1.0/24 and 192.168.2.0/24
                           joined by a router that knows no pod subnet (odd nodes on .1, even on .2)
  --backend host-gw|vxlan  the cluster config's backend, set before the agents start (default host-gw)
  --direct-routing         vxlan: plain routes to peers on the same subnet, VXLAN to the others
  --no-cni-service         podnet network: run the plugin on its own, without a resident CNI service
                           (\`podnet serve\`) on each node (by default each node runs one and its
                           conflist names it)
  --id ID                  lab id, a-z0-9, up to 6 characters (default "${DEFAULT_TARGET.id}"); names start pnl-ID-
  --state-root DIR         where lab state lives (default ${DEFAULT_STATE_ROOT})
  --ready-timeout SECONDS  how long a node may stay NotReady during up (default 30)
  --app FILE|none          what up applies once the nodes are Ready (default examples/web.yaml)
  -f, --filename FILE      apply/delete: the manifest file, - for stdin
  -n, --namespace NS       apply/delete/get/exec: the Kubernetes namespace (default "default")
  -A, --all-namespaces     get: every namespace
  -o, --output FORMAT      get: wide, json or yaml
`;

export type LabSubcommand = "default" | "up" | "status" | "run" | "exec" | "check" | "down" | "help" | "apply" | "delete" | "get" | "controllers";

export interface LabArgs {
  command: LabSubcommand;
  target: LabTarget;
  nodes: number;
  podsPerNode: number;
  network: NetworkMode;
  readyTimeoutMs: number;
  topology: LabTopology;
  backend: "host-gw" | "vxlan";
  directRouting: boolean;
  cniService: boolean;
  /** run/exec: the pod or host name. */
  name?: string;
  /** run/exec: the command after "--". */
  commandLine: string[];
  /** up: the manifest applied once nodes are Ready; undefined for none. */
  app?: string;
  filename?: string;
  namespace?: string;
  allNamespaces: boolean;
  output: OutputFormat;
  /** get/delete: KIND NAME… */
  resource?: { kind: string; names: string[] };
}

const SUBCOMMANDS: readonly LabSubcommand[] = ["up", "status", "run", "exec", "check", "down", "help", "apply", "delete", "get", "controllers"];

export function parseLabArgs(argv: readonly string[]): LabArgs {
  const dashDash = argv.indexOf("--");
  const head = dashDash === -1 ? [...argv] : argv.slice(0, dashDash);
  const tail = dashDash === -1 ? [] : argv.slice(dashDash + 1);
  const args: LabArgs = {
    command: "default",
    target: { ...DEFAULT_TARGET },
    nodes: 3,
    podsPerNode: 2,
    network: "podnet",
    readyTimeoutMs: 30_000,
    topology: "flat",
    backend: "host-gw",
    directRouting: false,
    cniService: true,
    commandLine: tail,
    app: DEFAULT_APP,
    allNamespaces: false,
    output: "table",
  };
  const positional: string[] = [];
  for (let i = 0; i < head.length; i++) {
    const arg = head[i]!;
    const value = (): string => {
      const v = head[i + 1];
      if (v === undefined || v.startsWith("--")) throw new UsageError(`${arg} needs a value`);
      i++;
      return v;
    };
    switch (arg) {
      case "--nodes":
        args.nodes = integer(arg, value());
        break;
      case "--pods-per-node":
        args.podsPerNode = integer(arg, value());
        break;
      case "--network": {
        const v = value();
        if (v !== "podnet" && v !== "reference") throw new UsageError(`--network must be podnet or reference, got "${v}"`);
        args.network = v;
        break;
      }
      case "--id": {
        const v = value();
        const problem = validateLabId(v);
        if (problem) throw new UsageError(problem);
        args.target.id = v;
        break;
      }
      case "--topology": {
        const v = value();
        if (!(TOPOLOGIES as readonly string[]).includes(v)) throw new UsageError(`--topology must be ${TOPOLOGIES.join(" or ")}, got "${v}"`);
        args.topology = v as LabTopology;
        break;
      }
      case "--backend": {
        const v = value();
        if (v !== "host-gw" && v !== "vxlan") throw new UsageError(`--backend must be host-gw or vxlan, got "${v}"`);
        args.backend = v;
        break;
      }
      case "--direct-routing":
        args.directRouting = true;
        break;
      case "--no-cni-service":
        args.cniService = false;
        break;
      case "--state-root":
        args.target.stateRoot = value();
        break;
      case "--ready-timeout": {
        const v = Number(value());
        if (!Number.isFinite(v) || v <= 0) throw new UsageError(`--ready-timeout must be a positive number of seconds`);
        args.readyTimeoutMs = v * 1000;
        break;
      }
      case "--app": {
        const v = value();
        args.app = v === "none" ? undefined : v;
        break;
      }
      case "-f":
      case "--filename":
        args.filename = value();
        break;
      case "-n":
      case "--namespace":
        args.namespace = value();
        break;
      case "-A":
      case "--all-namespaces":
        args.allNamespaces = true;
        break;
      case "-o":
      case "--output": {
        const v = value();
        if (v !== "wide" && v !== "json" && v !== "yaml") throw new UsageError(`-o must be wide, json or yaml, got "${v}"`);
        args.output = v;
        break;
      }
      case "-h":
      case "--help":
        args.command = "help";
        break;
      default:
        if (arg.startsWith("-")) throw new UsageError(`unknown option ${arg}`);
        positional.push(arg);
    }
  }
  if (args.command === "help") return args;
  if (args.directRouting && args.backend !== "vxlan") throw new UsageError("--direct-routing is an option of the vxlan backend; add --backend vxlan");
  if (args.network === "reference" && (args.backend !== "host-gw" || args.topology !== "flat")) {
    throw new UsageError("--network reference sets static routes on a flat underlay; --backend and --topology routed need --network podnet");
  }
  const [sub, ...restPositional] = positional;
  if (sub !== undefined) {
    if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError(`unknown lab command "${sub}"`);
    args.command = sub as LabSubcommand;
  }
  if (args.command === "run" || args.command === "exec") {
    const [name, ...inline] = restPositional;
    if (name === undefined) throw new UsageError(`lab ${args.command} needs a ${args.command === "run" ? "pod" : "pod or host"} name`);
    args.name = name;
    if (dashDash === -1) args.commandLine = inline;
    else if (inline.length > 0) throw new UsageError(`unexpected ${inline.join(" ")} before --`);
    if (args.commandLine.length === 0) throw new UsageError(`lab ${args.command} needs a command: podnet lab ${args.command} ${name} -- CMD [ARG…]`);
  } else if (args.command === "apply") {
    if (args.filename === undefined) throw new UsageError("lab apply needs -f FILE (- for stdin)");
    if (restPositional.length > 0 || tail.length > 0) throw new UsageError(`unexpected arguments: ${[...restPositional, ...tail].join(" ")}`);
  } else if (args.command === "delete" || args.command === "get") {
    const [kind, ...names] = restPositional;
    if (args.filename !== undefined && args.command === "delete") {
      if (kind !== undefined) throw new UsageError("lab delete takes -f FILE or KIND NAME, not both");
    } else {
      if (kind === undefined) throw new UsageError(args.command === "get" ? "lab get needs a kind: pods, deployments, services, endpointslices, nodes" : "lab delete needs -f FILE or KIND NAME");
      if (args.command === "delete" && names.length === 0) throw new UsageError(`lab delete ${kind} needs a name`);
      args.resource = { kind, names };
    }
    if (tail.length > 0) throw new UsageError(`unexpected arguments: ${tail.join(" ")}`);
  } else if (restPositional.length > 0 || tail.length > 0) {
    throw new UsageError(`unexpected arguments: ${[...restPositional, ...tail].join(" ")}`);
  }
  return args;
}

/** The example app `lab up` applies: Deployment web, its Services, a client pod. */
export const DEFAULT_APP = join(REPO_ROOT, "examples/web.yaml");

export class UsageError extends Error {
  override name = "UsageError";
}

function integer(option: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n)) throw new UsageError(`${option} must be an integer, got "${text}"`);
  return n;
}

const print = (line: string): void => {
  process.stdout.write(line + "\n");
};

export async function runLabCommand(argv: string[]): Promise<number> {
  let args: LabArgs;
  try {
    args = parseLabArgs(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`podnet lab: ${error.message}\n${LAB_USAGE}`);
      return 2;
    }
    throw error;
  }
  try {
    return await dispatch(args);
  } catch (error) {
    process.stderr.write(`podnet lab ${args.command === "default" ? "" : args.command}: ${(error as Error).message}\n`);
    if (args.command === "up" || args.command === "default") {
      process.stderr.write(`the half-built lab is kept for inspection; remove it with: podnet lab down${idFlag(args.target)}\n`);
    }
    return 1;
  }
}

function idFlag(target: LabTarget): string {
  return (target.id === DEFAULT_TARGET.id ? "" : ` --id ${target.id}`) + (target.stateRoot === DEFAULT_STATE_ROOT ? "" : ` --state-root ${target.stateRoot}`);
}

async function dispatch(args: LabArgs): Promise<number> {
  const upOptions = { ...args.target, nodes: args.nodes, podsPerNode: args.podsPerNode, network: args.network, readyTimeoutMs: args.readyTimeoutMs, topology: args.topology, backend: args.backend, directRouting: args.directRouting, cniService: args.cniService, log: print, ...(args.app ? { app: args.app } : {}) };
  switch (args.command) {
    case "help":
      process.stdout.write(LAB_USAGE);
      return 0;
    case "up":
      await labUp(upOptions);
      return 0;
    case "default": {
      const existing = loadLab(args.target);
      if (existing?.data.phase === "up") print(`lab ${args.target.id} is already up`);
      else await labUp(upOptions);
      const { ok, text } = await labCheck(args.target);
      process.stdout.write("\n" + text);
      print(`the lab stays up: podnet lab status | get pods | exec POD -- CMD | down${idFlag(args.target)}`);
      return ok ? 0 : 1;
    }
    case "check": {
      const { ok, text } = await labCheck(args.target);
      process.stdout.write(text);
      return ok ? 0 : 1;
    }
    case "status":
      process.stdout.write(await labStatus(args.target));
      return 0;
    case "down": {
      const { problems } = await labDown(args.target, print);
      for (const p of problems) process.stderr.write(`warning: ${p}\n`);
      return problems.some((p) => p.startsWith("namespaces still present") || p.startsWith("netns ")) ? 1 : 0;
    }
    case "run": {
      const record = labRun(args.target, args.name!, args.commandLine);
      print(`started pid ${record.pid} in ${args.name} (log ${record.log})`);
      return 0;
    }
    case "exec":
      return labExec(args.target, args.name!, args.commandLine, args.namespace);
    case "controllers":
      return runControllersProcess(labDir(args.target.stateRoot, args.target.id));
    case "apply":
    case "delete":
    case "get":
      return relayApi(args);
  }
}

function readManifest(filename: string): { text: string; source: string } {
  return filename === "-" ? { text: readFileSync(0, "utf8"), source: "<stdin>" } : { text: readFileSync(filename, "utf8"), source: filename };
}

/** apply/delete/get: one request to the lab's API (the controllers process), its output relayed. */
async function relayApi(args: LabArgs): Promise<number> {
  const state = loadLab(args.target);
  if (!state) throw new Error(`no lab "${args.target.id}" (in ${args.target.stateRoot}); start one with: podnet lab up`);
  const ns = args.namespace !== undefined ? { namespace: args.namespace } : {};
  let request: ApiRequest;
  if (args.command === "apply") request = { verb: "apply", ...readManifest(args.filename!) };
  else if (args.command === "delete") request = args.filename !== undefined ? { verb: "delete", ...readManifest(args.filename), ...ns } : { verb: "delete", kind: args.resource!.kind, names: args.resource!.names, ...ns };
  else request = { verb: "get", kind: args.resource!.kind, names: args.resource!.names, ...ns, allNamespaces: args.allNamespaces, output: args.output };
  const response = await callApi(apiSocketPath(state.dir), request);
  process.stdout.write(response.stdout);
  process.stderr.write(response.stderr);
  return response.exitCode;
}
