// Masquerading of pod traffic that leaves the cluster, in nftables table `ip podnet` of the node's namespace.
// Only packets from the cluster CIDR to outside it are NATed; pod-to-pod traffic, on this node or another,
// keeps its source address, which is what the cluster network model requires.

import { nftListTableAsync, runNftAsync } from "../kernel/nft.ts";

export const MASQUERADE_TABLE = "podnet";

/** The whole table as one nft transaction: create-if-missing, delete, recreate, so a re-apply never duplicates rules. */
export function masqueradeScript(clusterCidr: string): string {
  return [
    `table ip ${MASQUERADE_TABLE} {}`,
    `delete table ip ${MASQUERADE_TABLE}`,
    `table ip ${MASQUERADE_TABLE} {`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    ip saddr ${clusterCidr} ip daddr != ${clusterCidr} masquerade`,
    `  }`,
    `}`,
    ``,
  ].join("\n");
}

/** True when `listing` (output of `nft list table ip podnet`) holds our masquerade rule for this CIDR. */
export function masqueradeListingIsCurrent(listing: string | undefined, clusterCidr: string): boolean {
  if (listing === undefined) return false;
  const rules = listing.split("\n").map((l) => l.trim()).filter((l) => l.includes("masquerade"));
  return rules.length === 1 && rules[0] === `ip saddr ${clusterCidr} ip daddr != ${clusterCidr} masquerade`;
}

export interface Masquerade {
  /** Install the table if it is missing or differs; resolves to true when it had to (re)apply it. */
  ensure(clusterCidr: string): Promise<boolean>;
}

export class NftMasquerade implements Masquerade {
  // Asynchronous because `nft` is a separate process: checked synchronously on every sync, it
  // blocked the agent's loop for 10-20 ms each time and made up most of a 1,000-node sync.
  async ensure(clusterCidr: string): Promise<boolean> {
    if (masqueradeListingIsCurrent(await nftListTableAsync("ip", MASQUERADE_TABLE), clusterCidr)) return false;
    await runNftAsync(masqueradeScript(clusterCidr));
    return true;
  }
}
