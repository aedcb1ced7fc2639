// A small container runtime for lab pods, doing what containerd's CRI plugin does for a sandbox:
// create the pod's netns, run the CNI chain from the node's conflist with ADD, cache the result,
// and on removal run DEL (with the cached result as prevResult) and delete the netns.
// The plugins run as separate processes inside the node's namespace, exactly as on a real node.

import { accessSync, constants, existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CniResult, NetConf } from "../cni/types.ts";
import { inNetns, runCommand } from "./command.ts";
import { parseConfList, pluginConfig, resultIPv4, type NetConfList } from "./conflist.ts";
import type { LabState, NodeRecord, PodRecord } from "./lab-state.ts";
import { sleep } from "./processes.ts";
import { createNetns, deleteNetns } from "./underlay.ts";

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
const IFNAME = "eth0";
const K8S_NAMESPACE = "default";

export class PluginError extends Error {
  readonly code: number | undefined;
  constructor(message: string, code?: number) {
    super(message);
    this.name = "PluginError";
    this.code = code;
  }
}

/** The conflist libcni would load from confDir: the first *.conflist by name. */
export function findConfList(confDir: string): { path: string; list: NetConfList } | undefined {
  if (!existsSync(confDir)) return undefined;
  const name = readdirSync(confDir)
    .filter((f) => f.endsWith(".conflist"))
    .sort()[0];
  if (!name) return undefined;
  const path = join(confDir, name);
  return { path, list: parseConfList(readFileSync(path, "utf8"), path) };
}

/**
 * Wait until the node's network is ready, as containerd 2 decides it: a conflist is in the CNI config
 * dir, and (for CNI 1.1 conflists) every plugin's STATUS succeeds. podnet's STATUS answers NotReady
 * until the node's agent has its routes in place.
 */
export async function waitForNodeReady(node: NodeRecord, timeoutMs: number, onTimeout: () => string, cniPath: readonly string[] = CNI_PATH): Promise<NetConfList> {
  const deadline = Date.now() + timeoutMs;
  let notReady = `no conflist in ${node.cniConfDir}`;
  for (;;) {
    const found = findConfList(node.cniConfDir);
    if (found) {
      const problem = await networkStatus(node, found.list, cniPath);
      if (problem === undefined) return found.list;
      notReady = problem;
    }
    if (Date.now() > deadline) {
      throw new Error(`${node.name} stayed NotReady after ${timeoutMs / 1000} s: ${notReady}\n${onTimeout()}`);
    }
    await sleep(50);
  }
}

export function findPlugin(type: string, cniPath: readonly string[] = CNI_PATH): string {
  for (const dir of cniPath) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new PluginError(`CNI plugin "${type}" not found in ${cniPath.join(":")}${type === "podnet" ? " (run npm run build)" : ""}`);
}

/** CNI STATUS of every plugin of the list, inside the node; undefined when all are ready, else why not. */
async function networkStatus(node: NodeRecord, list: NetConfList, cniPath: readonly string[]): Promise<string | undefined> {
  const [major = 0, minor = 0] = list.cniVersion.split(".").map(Number);
  if (major < 1 || (major === 1 && minor < 1)) return undefined;
  for (let i = 0; i < list.plugins.length; i++) {
    const conf = pluginConfig(list, i);
    const result = await runPluginInNode(node, conf, { CNI_COMMAND: "STATUS", CNI_PATH: cniPath.join(":") }, cniPath);
    if (result.code !== 0) {
      const error = parsePluginError(result.stdout);
      return `${conf.type} STATUS: ${error ? `code ${error.code}: ${error.msg}` : `exit ${result.code}`}`;
    }
  }
  return undefined;
}

/** Run a plugin inside the node, as a runtime does: `conf` on stdin, and like conmon's cleanup, no environment but PATH and CNI_*. */
function runPluginInNode(node: NodeRecord, conf: NetConf, cniEnv: Record<string, string>, cniPath: readonly string[]) {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...cniEnv };
  return runCommand(inNetns(node.netns, [findPlugin(conf.type, cniPath)]), { input: JSON.stringify(conf), env, timeoutMs: 30_000 });
}

interface PluginCall {
  command: "ADD" | "DEL";
  node: NodeRecord;
  pod: PodRecord;
  netnsPath: string;
  cniPath: readonly string[];
}

async function execPlugin(call: PluginCall, list: NetConfList, index: number, prevResult?: CniResult): Promise<CniResult | undefined> {
  const conf = pluginConfig(list, index, prevResult);
  const env: Record<string, string> = {
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.pod.containerId,
    CNI_NETNS: call.netnsPath,
    CNI_IFNAME: IFNAME,
    CNI_PATH: call.cniPath.join(":"),
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${K8S_NAMESPACE};K8S_POD_NAME=${call.pod.name};K8S_POD_INFRA_CONTAINER_ID=${call.pod.containerId}`,
  };
  const result = await runPluginInNode(call.node, conf, env, call.cniPath);
  const what = `${conf.type} ${call.command} for pod ${call.pod.name} on ${call.node.name}`;
  if (result.code !== 0) {
    const error = parsePluginError(result.stdout);
    if (error) throw new PluginError(`${what} failed: code ${error.code}: ${error.msg}${error.details ? ` (${error.details})` : ""}`, error.code);
    throw new PluginError(`${what} exited ${result.code}: ${(result.stderr || result.stdout).trim()}`);
  }
  if (call.command === "DEL") return undefined;
  try {
    return JSON.parse(result.stdout) as CniResult;
  } catch {
    throw new PluginError(`${what} printed no JSON result: ${result.stdout.slice(0, 200)}`);
  }
}

function parsePluginError(stdout: string): { code: number; msg: string; details?: string } | undefined {
  try {
    const parsed = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof parsed.code !== "number") return undefined;
    return { code: parsed.code, msg: String(parsed.msg ?? ""), details: typeof parsed.details === "string" ? parsed.details : undefined };
  } catch {
    return undefined;
  }
}

/** Create a pod on a node: netns, then CNI ADD through the whole chain. Returns the pod with its IP. */
export async function addPod(
  state: LabState,
  pod: Pick<PodRecord, "name" | "node" | "netns" | "containerId">,
  list: NetConfList,
  cniPath: readonly string[] = CNI_PATH,
): Promise<PodRecord> {
  const node = state.node(pod.node);
  if (!node) throw new Error(`no node ${pod.node} in lab ${state.data.id}`);
  if (state.pod(pod.name)) throw new Error(`pod ${pod.name} already exists`);
  const record = state.recordPod({ ...pod });
  await createNetns(state, pod.netns);
  const call: PluginCall = { command: "ADD", node, pod: record, netnsPath: `/run/netns/${pod.netns}`, cniPath };
  let result: CniResult | undefined;
  for (let i = 0; i < list.plugins.length; i++) result = await execPlugin(call, list, i, result);
  if (!result) throw new PluginError(`conflist ${list.name} produced no result`);
  const ip = resultIPv4(result);
  if (!ip) throw new PluginError(`ADD for pod ${pod.name} returned no IPv4 address: ${JSON.stringify(result)}`);
  record.result = result;
  record.ip = ip;
  state.save();
  return record;
}

/**
 * Remove a pod: CNI DEL in reverse chain order, then its netns. A failing DEL is reported but does not
 * stop the netns from going, as with a runtime; returns the DEL problems, empty when clean.
 */
export async function removePod(state: LabState, podName: string, cniPath: readonly string[] = CNI_PATH): Promise<string[]> {
  const pod = state.pod(podName);
  if (!pod) throw new Error(`no pod ${podName} in lab ${state.data.id}`);
  const problems: string[] = [];
  const node = state.node(pod.node);
  const conf = node ? safeFindConfList(node) : undefined;
  if (node && conf) {
    const netnsPath = existsSync(`/run/netns/${pod.netns}`) ? `/run/netns/${pod.netns}` : "";
    const call: PluginCall = { command: "DEL", node, pod, netnsPath, cniPath };
    for (let i = conf.plugins.length - 1; i >= 0; i--) {
      try {
        await execPlugin(call, conf, i, pod.result);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
  } else {
    problems.push(`pod ${podName}: skipped CNI DEL, node ${pod.node} has no conflist`);
  }
  if (existsSync(`/run/netns/${pod.netns}`)) await deleteNetns(pod.netns);
  state.forgetNamespace(pod.netns);
  state.removePod(podName);
  return problems;
}

function safeFindConfList(node: NodeRecord): NetConfList | undefined {
  try {
    return findConfList(node.cniConfDir)?.list;
  } catch {
    return undefined;
  }
}
