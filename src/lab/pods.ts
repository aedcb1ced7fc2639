// The lab's kubelet-and-CRI part for pods: create the pod's netns, run the node's CNI network with
// ADD through src/runtime (which validates the conflist and runs each plugin as a separate process
// inside the node's namespace, as containerd does), cache the result, and on removal run DEL with
// the cached result as prevResult and delete the netns. Also decides whether a node's network is
// Ready, as containerd 2 does: a conflist is present and every plugin's CNI STATUS succeeds.

import { existsSync } from "node:fs";
import { deleteNamedNetns, namedNetnsPath } from "../kernel/named-netns.ts";
import { formatIp } from "../net/address.ts";
import { tryParseCidr } from "../net/cidr.ts";
import { CniNetwork, PluginError, findConfigList, type Attachment, type NetworkConfigList } from "../runtime/cni-driver.ts";
import { sleep } from "../supervise/process.ts";
import type { LabState, NodeRecord, PodRecord } from "./lab-state.ts";
import { CNI_PATH } from "./repo-root.ts";
import { createNetns } from "./underlay.ts";

const IFNAME = "eth0";
const K8S_NAMESPACE = "default";

/** What a runtime passes as CNI runtimeConfig (capability args), e.g. hostPort requests as portMappings. */
export type RuntimeConfig = Record<string, unknown>;

/** The node's network as its runtime holds it: the conflist, CNI_PATH, and the node namespace plugins run in. */
export function nodeNetwork(node: NodeRecord, list: NetworkConfigList, cniPath: readonly string[] = CNI_PATH): CniNetwork {
  return new CniNetwork(list, { cniPath: [...cniPath], nodeNetns: namedNetnsPath(node.netns) });
}

export type NodeNetworkState = { ready: true; list: NetworkConfigList } | { ready: false; reason: string; list?: NetworkConfigList };

/**
 * Whether the node's network is Ready, as containerd 2 judges it: a valid conflist in the node's CNI
 * config dir, and CNI STATUS succeeding for every plugin (lists older than 1.1.0 have no STATUS and are
 * Ready once present). podnet's STATUS answers NotReady (50) until the node's agent has its routes in place.
 */
export async function nodeNetworkState(node: NodeRecord, cniPath: readonly string[] = CNI_PATH): Promise<NodeNetworkState> {
  let list: NetworkConfigList;
  try {
    const found = findConfigList(node.cniConfDir);
    if (!found) return { ready: false, reason: `no conflist in ${node.cniConfDir}` };
    list = found.list;
  } catch (error) {
    return { ready: false, reason: `bad conflist: ${(error as Error).message}` };
  }
  try {
    await nodeNetwork(node, list, cniPath).status();
    return { ready: true, list };
  } catch (error) {
    if (error instanceof PluginError) {
      return { ready: false, reason: `${error.plugin} STATUS ${error.code === undefined ? "failed" : `code ${error.code}`}: ${error.msg}${error.details ? ` (${error.details})` : ""}`, list };
    }
    return { ready: false, reason: `STATUS: ${(error as Error).message}`, list };
  }
}

/** Wait until nodeNetworkState says Ready; on timeout, throw with the last reason and `onTimeout()`'s words. */
export async function waitForNodeReady(node: NodeRecord, timeoutMs: number, onTimeout: () => string, cniPath: readonly string[] = CNI_PATH): Promise<NetworkConfigList> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await nodeNetworkState(node, cniPath);
    if (state.ready) return state.list;
    if (Date.now() > deadline) {
      throw new Error(`${node.name} stayed NotReady after ${timeoutMs / 1000} s: ${state.reason}\n${onTimeout()}`);
    }
    await sleep(50);
  }
}

function attachment(pod: Pick<PodRecord, "name" | "containerId" | "namespace" | "uid">, netns: string, runtimeConfig?: RuntimeConfig): Attachment {
  return {
    containerId: pod.containerId,
    netns,
    ifname: IFNAME,
    args: {
      K8S_POD_NAMESPACE: pod.namespace ?? K8S_NAMESPACE,
      K8S_POD_NAME: pod.name,
      K8S_POD_INFRA_CONTAINER_ID: pod.containerId,
      ...(pod.uid ? { K8S_POD_UID: pod.uid } : {}),
    },
    ...(runtimeConfig && Object.keys(runtimeConfig).length > 0 ? { runtimeConfig } : {}),
  };
}

/** Create a pod on a node: netns, then CNI ADD through the whole chain. Returns the pod with its IP. */
export async function addPod(
  state: LabState,
  pod: Pick<PodRecord, "name" | "node" | "netns" | "containerId" | "namespace" | "uid">,
  list: NetworkConfigList,
  cniPath: readonly string[] = CNI_PATH,
  runtimeConfig?: RuntimeConfig,
): Promise<PodRecord> {
  const node = state.node(pod.node);
  if (!node) throw new Error(`no node ${pod.node} in lab ${state.data.id}`);
  if (state.pod(pod.name, pod.namespace)) throw new Error(`pod ${pod.name} already exists`);
  const network = nodeNetwork(node, list, cniPath);
  const record = state.recordPod({ ...pod });
  const netnsPath = await createNetns(state, pod.netns);
  let result: Record<string, unknown>;
  try {
    result = await network.add(attachment(record, netnsPath, runtimeConfig));
  } catch (error) {
    throw new Error(`ADD for pod ${pod.name} on ${node.name}: ${(error as Error).message}`);
  }
  const ip = resultIPv4(result);
  if (!ip) throw new Error(`ADD for pod ${pod.name} returned no IPv4 address: ${JSON.stringify(result)}`);
  record.result = result;
  record.ip = ip;
  state.save();
  return record;
}

/**
 * Remove a pod: CNI DEL in reverse chain order, then its netns. A failing DEL is reported but does not
 * stop the netns from going, as with a runtime; returns the DEL problems, empty when clean.
 */
export async function removePod(state: LabState, podName: string, cniPath: readonly string[] = CNI_PATH, namespace?: string): Promise<string[]> {
  const pod = state.pod(podName, namespace);
  if (!pod) throw new Error(`no pod ${podName} in lab ${state.data.id}`);
  const problems: string[] = [];
  const node = state.node(pod.node);
  const netnsPath = namedNetnsPath(pod.netns);
  let list: NetworkConfigList | undefined;
  try {
    list = node ? findConfigList(node.cniConfDir)?.list : undefined;
  } catch (error) {
    problems.push(`pod ${podName}: skipped CNI DEL: ${(error as Error).message}`);
  }
  if (node && list) {
    try {
      // A netns already gone is passed as "", as containerd does on its second DEL.
      await nodeNetwork(node, list, cniPath).del(attachment(pod, existsSync(netnsPath) ? netnsPath : ""), pod.result);
    } catch (error) {
      problems.push(`DEL for pod ${podName} on ${node.name}: ${(error as Error).message}`);
    }
  } else if (problems.length === 0) {
    problems.push(`pod ${podName}: skipped CNI DEL, node ${pod.node} has no conflist`);
  }
  if (existsSync(netnsPath)) await deleteNamedNetns(pod.netns);
  state.forgetNamespace(pod.netns);
  state.removePod(podName, namespace);
  return problems;
}

/** The pod subnet a conflist hands out (the first range of the first plugin's IPAM), for `lab status`. */
export function conflistSubnet(list: NetworkConfigList): string | undefined {
  for (const plugin of list.plugins) {
    const ipam = plugin.ipam;
    if (typeof ipam !== "object" || ipam === null) continue;
    const { subnet, ranges } = ipam as { subnet?: unknown; ranges?: unknown };
    if (typeof subnet === "string") return subnet;
    if (Array.isArray(ranges)) {
      const first: unknown = Array.isArray(ranges[0]) ? ranges[0][0] : undefined;
      if (typeof first === "object" && first !== null && typeof (first as { subnet?: unknown }).subnet === "string") {
        return (first as { subnet: string }).subnet;
      }
    }
  }
  return undefined;
}

/** The first IPv4 address of a CNI result, without its prefix length. */
export function resultIPv4(result: Record<string, unknown>): string | undefined {
  const ips = Array.isArray(result.ips) ? (result.ips as unknown[]) : [];
  for (const ip of ips) {
    const address = typeof ip === "object" && ip !== null ? (ip as { address?: unknown }).address : undefined;
    if (typeof address !== "string") continue;
    const parsed = tryParseCidr(address);
    if (parsed?.address.family === 4) return formatIp(parsed.address);
  }
  return undefined;
}
