// Optional ipMasq: pods reach destinations outside the cluster through the node's address, while
// traffic to any cluster CIDR (and the pod's own subnet) keeps the pod's source IP.
// One nftables table per network holds sets of masqueraded pod IPs, so ADD and DEL change
// set elements in one atomic `nft -f` transaction and never rewrite rules per pod. The table is
// the plugin's alone; nothing here touches the agent's or any other owner's.
import { applyTransaction } from "../kernel/nft.ts";
import type { NftChain, NftChange, NftSet, NftTable } from "../kernel/nft/model.ts";
import { tableChanges } from "../kernel/nft/render.ts";
import { formatIp, parseIp } from "../net/address.ts";
import { canonicalCidrText, cidrFamily, parseCidr } from "../net/cidr.ts";

export interface MasqueradeEntry {
  /** Pod address in CIDR form, e.g. 10.244.1.5/24. */
  address: string;
}

function tableName(network: string): string {
  // nft identifiers: letters, digits, underscore; keep it short and stable per network.
  return `podnet_${network.replace(/[^A-Za-z0-9_]/g, "_").slice(0, 40)}`;
}

/** A pod's address ("10.244.1.7/24" from a result, or a bare "10.244.1.7"), through src/net. */
function podAddress(text: string): { ip: string; family: 4 | 6 } {
  const address = text.includes("/") ? parseCidr(text).address : parseIp(text);
  return { ip: formatIp(address), family: address.family };
}

const POSTROUTING: NftChain = {
  name: "postrouting",
  base: { type: "nat", hook: "postrouting", priority: "srcnat", policy: "accept" },
  rules: [
    { statements: [{ lookup: ["ip saddr"], set: "masq4" }, { lookup: ["ip daddr"], set: "exempt4", negate: true }, { match: "ip daddr", op: "!=", value: "224.0.0.0/4" }, { masquerade: {} }] },
    { statements: [{ lookup: ["ip6 saddr"], set: "masq6" }, { lookup: ["ip6 daddr"], set: "exempt6", negate: true }, { match: "ip6 daddr", op: "!=", value: "ff00::/8" }, { masquerade: {} }] },
  ],
};

const MASQ_SETS: readonly NftSet[] = [
  { name: "masq4", keyType: ["ipv4_addr"], elements: [] },
  { name: "masq6", keyType: ["ipv6_addr"], elements: [] },
];

/**
 * The network's table with these pods and cluster CIDRs in its sets. Exempt sets auto-merge, since
 * a pod's subnet usually lies inside a cluster CIDR.
 */
export function masqueradeTable(network: string, entries: MasqueradeEntry[], clusterCidrs: string[]): NftTable {
  const masq4: string[][] = [];
  const masq6: string[][] = [];
  const exempt4: string[][] = [];
  const exempt6: string[][] = [];
  for (const { address } of entries) {
    const { ip, family } = podAddress(address);
    if (family === 6) masq6.push([ip]);
    else {
      masq4.push([ip]);
      if (address.includes("/")) exempt4.push([canonicalCidrText(address)]);
    }
  }
  for (const cidr of clusterCidrs) (cidrFamily(cidr) === 6 ? exempt6 : exempt4).push([cidr]);
  return {
    family: "inet",
    name: tableName(network),
    chains: [POSTROUTING],
    sets: [
      { name: "masq4", keyType: ["ipv4_addr"], elements: masq4 },
      { name: "masq6", keyType: ["ipv6_addr"], elements: masq6 },
      { name: "exempt4", keyType: ["ipv4_addr"], flags: ["interval"], autoMerge: true, elements: exempt4 },
      { name: "exempt6", keyType: ["ipv6_addr"], flags: ["interval"], autoMerge: true, elements: exempt6 },
    ],
    maps: [],
  };
}

/**
 * Creates what is missing of the table and adds the pods' elements, in one `nft -f`: the rules are
 * rewritten (flush and add) but other pods' elements stay, and nothing is listed first.
 */
export function addMasquerade(network: string, entries: MasqueradeEntry[], clusterCidrs: string[]): void {
  const table = masqueradeTable(network, entries, clusterCidrs);
  applyTransaction({ family: table.family, table: table.name, changes: tableChanges(table) });
}

/** Idempotent: each element is added and then deleted in one transaction, so a missing one is no error. */
export function removeMasquerade(network: string, entries: MasqueradeEntry[]): void {
  if (entries.length === 0) return;
  const masq4: string[][] = [];
  const masq6: string[][] = [];
  for (const { address } of entries) {
    const { ip, family } = podAddress(address);
    (family === 6 ? masq6 : masq4).push([ip]);
  }
  const changes: NftChange[] = [{ op: "ensureTable" }, ...MASQ_SETS.map((set): NftChange => ({ op: "addSet", set }))];
  if (masq4.length > 0) changes.push({ op: "deleteElements", setOrMap: "masq4", keys: masq4, ifPresent: true });
  if (masq6.length > 0) changes.push({ op: "deleteElements", setOrMap: "masq6", keys: masq6, ifPresent: true });
  applyTransaction({ family: "inet", table: tableName(network), changes });
}
