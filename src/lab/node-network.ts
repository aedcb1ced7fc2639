// What makes a lab node Ready: normally podnet's own agent, which leases a subnet from etcd, programs
// host-gw routes and masquerading, and writes the conflist. The "reference" network instead has the lab
// configure each node statically around the reference bridge + host-local plugins, as a baseline to
// compare podnet with (and to exercise the lab without the agent).

import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AGENT_NODE_FLAGS } from "../agent/node-flags.ts";
import { namedNetnsPath } from "../kernel/named-netns-path.ts";
import { argvInNamedNetns } from "../kernel/netns-exec.ts";
import { syncTable } from "../kernel/nft.ts";
import type { NftTable } from "../kernel/nft/model.ts";
import { addRoute } from "../kernel/route.ts";
import { spawnDetached } from "../supervise/process.ts";
import type { LabState, NodeRecord, ProcessRecord } from "./lab-state.ts";
import { CNI_PATH, REPO_ROOT } from "./repo-root.ts";
import { labEtcdFlags } from "./etcd-security.ts";
import { CLUSTER_CIDR, type LabPlan } from "./topology.ts";
import { inNamespace } from "./underlay.ts";

/** The cluster config the lab's agents offer as their default (the first to start writes it to etcd). */
export interface LabClusterSettings {
  backend: string;
  backendOptions?: Record<string, unknown>;
}

export function agentArgv(node: NodeRecord, labDir: string, cluster?: LabClusterSettings): string[] {
  const extra: string[] = [];
  if (node.statusSocket) extra.push("--listen", node.statusSocket);
  if (node.cniServiceSocket) extra.push("--cni-service-socket", node.cniServiceSocket);
  if (cluster) {
    extra.push("--backend", cluster.backend);
    if (cluster.backendOptions && Object.keys(cluster.backendOptions).length > 0) extra.push("--backend-options", JSON.stringify(cluster.backendOptions));
  }
  return argvInNamedNetns(node.netns, [
    process.execPath,
    ...AGENT_NODE_FLAGS,
    join(REPO_ROOT, "bin/podnet.js"),
    "agent",
    "--name", node.name,
    "--node-ip", node.ip,
    ...labEtcdFlags(labDir, { node: node.name }),
    "--cni-conf-dir", node.cniConfDir,
    "--ipam-data-dir", node.ipamDataDir,
    // Every lab node shares this machine's /run: each gets its own ready file.
    "--ready-file", join(node.ipamDataDir, "..", "agent.ready"),
    ...extra,
  ]);
}

/** Start the node's agent inside its namespace, recorded before it is spawned. */
export function startAgent(state: LabState, node: NodeRecord, cluster?: LabClusterSettings): ProcessRecord {
  const record = state.recordProcess({ role: `agent ${node.name}`, netns: node.netns, argv: agentArgv(node, state.dir, cluster), log: join(state.dir, "logs", `agent-${node.name}.log`) });
  spawnDetached(record);
  state.save();
  return record;
}

/**
 * The node's resident CNI service, `podnet serve` (src/plugin/service.ts), inside the node's namespace
 * where the runtime runs the plugin: the installed `podnet` (the native forwarder) hands `serve` to the
 * full plugin. Two worker threads: a lab node takes a few pods at a time, and the machine's CPUs are shared.
 */
/** Where a node's CNI service writes one line per call it answered. */
export function cniServiceRequestLog(labDir: string, nodeName: string): string {
  return join(labDir, "logs", `cni-service-${nodeName}.requests`);
}

export function startCniService(state: LabState, node: NodeRecord): ProcessRecord {
  if (!node.cniServiceSocket) throw new Error(`node ${node.name} has no CNI service socket`);
  const argv = argvInNamedNetns(node.netns, [join(CNI_PATH[0]!, "podnet"), "serve", "--socket", node.cniServiceSocket, "--workers", "2", "--request-log", cniServiceRequestLog(state.dir, node.name)]);
  const record = state.recordProcess({ role: `cni-service ${node.name}`, netns: node.netns, argv, log: join(state.dir, "logs", `cni-service-${node.name}.log`) });
  spawnDetached(record);
  state.save();
  return record;
}

/** The reference network's static subnet for node i (1-based): 10.244.i.0/24. */
export function referenceSubnet(nodeIndex: number): string {
  return `10.244.${nodeIndex}.0/24`;
}

export function referenceConfList(subnet: string, ipamDataDir: string): object {
  return {
    cniVersion: "1.0.0",
    name: "lab-reference",
    plugins: [
      {
        type: "bridge",
        bridge: "cni0",
        isGateway: true,
        // The bridge plugin's ipMasq would also NAT pod traffic to other nodes; masquerading is set up below instead.
        ipMasq: false,
        ipam: { type: "host-local", ranges: [[{ subnet }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: ipamDataDir },
      },
    ],
  };
}

/** The reference node's own table: masquerade what leaves the cluster CIDR, as the agent does for podnet. */
export function referenceMasqueradeTable(): NftTable {
  return {
    family: "ip",
    name: "podnet-lab",
    sets: [],
    maps: [],
    chains: [{
      name: "postrouting",
      base: { type: "nat", hook: "postrouting", priority: "srcnat", policy: "accept" },
      rules: [{ statements: [{ match: "ip saddr", value: CLUSTER_CIDR }, { match: "ip daddr", op: "!=", value: CLUSTER_CIDR }, { masquerade: {} }] }],
    }],
  };
}

/** Routes to every other node's subnet, masquerading out of the cluster CIDR, then the conflist (last: it means Ready). */
export async function configureReferenceNode(plan: LabPlan, node: NodeRecord): Promise<void> {
  const routes = plan.nodes
    .map((other, i) => ({ other, subnet: referenceSubnet(i + 1) }))
    .filter(({ other }) => other.name !== node.name);
  inNamespace(node.netns, (nl) => {
    for (const { other, subnet } of routes) addRoute(nl, { dst: subnet, gw: other.ip }, { replace: true });
  });
  await syncTable(referenceMasqueradeTable(), namedNetnsPath(node.netns));
  const index = plan.nodes.findIndex((n) => n.name === node.name);
  writeConfListAtomically(node.cniConfDir, "10-lab-reference.conflist", referenceConfList(referenceSubnet(index + 1), node.ipamDataDir));
}

function writeConfListAtomically(dir: string, name: string, list: object): void {
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${name}.tmp`);
  writeFileSync(tmp, JSON.stringify(list, null, 2) + "\n");
  renameSync(tmp, join(dir, name));
}
