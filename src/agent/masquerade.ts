// Masquerading of pod traffic that leaves the cluster, in nftables table `ip podnet` of the node's namespace.
// Only packets from the cluster CIDR to outside it are NATed; pod-to-pod traffic, on this node or another,
// keeps its source address, which is what the cluster network model requires.
// The table is the agent's alone: it is reconciled (read back, diffed, and only what differs changed),
// never deleted and recreated, and no other owner's table is touched.

import { syncTable } from "../kernel/nft.ts";
import type { NftTable } from "../kernel/nft/model.ts";

export const MASQUERADE_TABLE = "podnet";

/** The agent's whole masquerade table for this cluster CIDR. */
export function masqueradeTable(clusterCidr: string): NftTable {
  return {
    family: "ip",
    name: MASQUERADE_TABLE,
    sets: [],
    maps: [],
    chains: [
      {
        name: "postrouting",
        base: { type: "nat", hook: "postrouting", priority: "srcnat", policy: "accept" },
        rules: [
          {
            statements: [
              { match: "ip saddr", value: clusterCidr },
              { match: "ip daddr", op: "!=", value: clusterCidr },
              { masquerade: {} },
            ],
            comment: "pod traffic leaving the cluster",
          },
        ],
      },
    ],
  };
}

export interface Masquerade {
  /** Install the table if it is missing or differs; resolves to true when it had to change it. */
  ensure(clusterCidr: string): Promise<boolean>;
}

export class NftMasquerade implements Masquerade {
  /** `netnsPath`: the node's namespace when the agent runs outside it (tests); else the agent's own. */
  constructor(private readonly netnsPath?: string) {}

  // Asynchronous because `nft` is a separate process: checked synchronously on every sync, it
  // blocked the agent's loop for 10-20 ms each time and made up most of a 1,000-node sync.
  // Concurrent calls are safe: each applies at most one transaction that replaces the chain whole.
  async ensure(clusterCidr: string): Promise<boolean> {
    const applied = await syncTable(masqueradeTable(clusterCidr), this.netnsPath);
    return applied.changes.length > 0;
  }
}
