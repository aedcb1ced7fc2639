// Optional ipMasq: pods reach destinations outside the cluster through the node's address, while
// traffic to any cluster CIDR (and the pod's own subnet) keeps the pod's source IP.
// One nftables table per network holds sets of masqueraded pod IPs, so ADD and DEL change
// set elements in one atomic `nft -f` transaction and never rewrite rules per pod.
import { runNft } from "../kernel/nft.ts";
import { canonicalCidrText } from "../net/cidr.ts";

export interface MasqueradeEntry {
  /** Pod address in CIDR form, e.g. 10.244.1.5/24. */
  address: string;
}

function tableName(network: string): string {
  // nft identifiers: letters, digits, underscore; keep it short and stable per network.
  return `podnet_${network.replace(/[^A-Za-z0-9_]/g, "_").slice(0, 40)}`;
}

function isV6(cidr: string): boolean {
  return cidr.includes(":");
}

function skeleton(table: string): string[] {
  return [
    `add table inet ${table}`,
    `add set inet ${table} masq4 { type ipv4_addr; }`,
    `add set inet ${table} masq6 { type ipv6_addr; }`,
    `add set inet ${table} exempt4 { type ipv4_addr; flags interval; auto-merge; }`,
    `add set inet ${table} exempt6 { type ipv6_addr; flags interval; auto-merge; }`,
    `add chain inet ${table} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `flush chain inet ${table} postrouting`,
    `add rule inet ${table} postrouting ip saddr @masq4 ip daddr != @exempt4 ip daddr != 224.0.0.0/4 masquerade`,
    `add rule inet ${table} postrouting ip6 saddr @masq6 ip6 daddr != @exempt6 ip6 daddr != ff00::/8 masquerade`,
  ];
}

export function addMasquerade(network: string, entries: MasqueradeEntry[], clusterCidrs: string[]): void {
  const table = tableName(network);
  const lines = skeleton(table);
  for (const { address } of entries) {
    const [ip] = address.split("/");
    const v6 = isV6(address);
    lines.push(`add element inet ${table} ${v6 ? "masq6" : "masq4"} { ${ip} }`);
    if (!v6) lines.push(`add element inet ${table} exempt4 { ${canonicalCidrText(address)} }`);
  }
  for (const cidr of clusterCidrs) {
    lines.push(`add element inet ${table} ${isV6(cidr) ? "exempt6" : "exempt4"} { ${cidr} }`);
  }
  runNft(lines.join("\n") + "\n");
}

/** Idempotent: each element is added and then deleted in one transaction, so a missing one is no error. */
export function removeMasquerade(network: string, entries: MasqueradeEntry[]): void {
  if (entries.length === 0) return;
  const table = tableName(network);
  const lines = [
    `add table inet ${table}`,
    `add set inet ${table} masq4 { type ipv4_addr; }`,
    `add set inet ${table} masq6 { type ipv6_addr; }`,
  ];
  for (const { address } of entries) {
    const [ip] = address.split("/");
    const set = isV6(address) ? "masq6" : "masq4";
    lines.push(`add element inet ${table} ${set} { ${ip} }`, `delete element inet ${table} ${set} { ${ip} }`);
  }
  runNft(lines.join("\n") + "\n");
}
