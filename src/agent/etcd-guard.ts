// Reconciler: keep the node's pods away from etcd. Pod traffic (from the cluster CIDR) to the etcd
// endpoints the agent itself uses is dropped, both when routed through the node (forward) and when etcd
// runs on the node itself (input), so a pod cannot even open a connection to the control plane's etcd.
// The agent's own connections are neither forwarded nor from the cluster CIDR, so they pass.
// Off with `podnet agent --allow-pods-to-etcd`. Only IPv4 literal endpoints can be matched; a host name
// is skipped with a warning (resolving it here would pin an address DNS may change).

import { isIpv4 } from "../net/address.ts";
import type { NftRule, NftTable } from "../kernel/nft/model.ts";
import { syncTable } from "../kernel/nft.ts";
import type { AgentInputs } from "./inputs.ts";
import type { Reconciler } from "./reconciler.ts";

export const ETCD_GUARD_TABLE = "podnet-etcd-guard";

export interface GuardedEndpoint {
  ip: string;
  port: number;
}

/** The IPv4 address and port of each etcd URL, and the URLs that are not an IPv4 literal. */
export function guardedEndpoints(urls: readonly string[]): { endpoints: GuardedEndpoint[]; skipped: string[] } {
  const endpoints: GuardedEndpoint[] = [];
  const skipped: string[] = [];
  for (const text of urls) {
    const url = new URL(text);
    const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
    if (isIpv4(url.hostname)) endpoints.push({ ip: url.hostname, port });
    else skipped.push(text);
  }
  return { endpoints, skipped };
}

export function etcdGuardTable(clusterCidr: string, endpoints: readonly GuardedEndpoint[]): NftTable {
  const rules: NftRule[] = endpoints.map((e) => ({
    statements: [
      { match: "ip saddr", value: clusterCidr },
      { match: "ip daddr", value: e.ip },
      { match: "tcp dport", value: e.port },
      { counter: true },
      { verdict: "drop" },
    ],
  }));
  return {
    family: "ip",
    name: ETCD_GUARD_TABLE,
    sets: [],
    maps: [],
    chains: [
      { name: "forward", base: { type: "filter", hook: "forward", priority: "filter", policy: "accept" }, rules },
      { name: "input", base: { type: "filter", hook: "input", priority: "filter", policy: "accept" }, rules },
    ],
  };
}

export class EtcdGuardReconciler implements Reconciler<AgentInputs, "config"> {
  readonly name = "etcd-guard";
  readonly inputs = ["config"] as const;
  // Routing and masquerading do not depend on it; a node whose guard fails still serves pods.
  readonly gatesReadiness = false;
  readonly backoff = { initialMs: 500, maxMs: 10_000 };
  private readonly endpoints: GuardedEndpoint[];
  private installedFor = "";

  constructor(
    etcdUrls: readonly string[],
    readonly resyncIntervalMs: number,
    private readonly log: (message: string) => void,
  ) {
    const { endpoints, skipped } = guardedEndpoints(etcdUrls);
    this.endpoints = endpoints;
    if (skipped.length > 0) log(`etcd guard: ${skipped.join(", ")} not an IPv4 address; pods are not kept from it`);
  }

  async sync({ config }: { readonly config: AgentInputs["config"] }): Promise<void> {
    if (this.endpoints.length === 0) return;
    await syncTable(etcdGuardTable(config.clusterCidr, this.endpoints));
    const key = `${config.clusterCidr} ${this.endpoints.map((e) => `${e.ip}:${e.port}`).join(",")}`;
    if (key !== this.installedFor) this.log(`etcd guard: pods (${config.clusterCidr}) cannot reach etcd at ${this.endpoints.map((e) => `${e.ip}:${e.port}`).join(", ")} (nftables table ip ${ETCD_GUARD_TABLE})`);
    this.installedFor = key;
  }
}
