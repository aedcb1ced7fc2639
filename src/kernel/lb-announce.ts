// LoadBalancer IPs announced on the node's underlay interface, as MetalLB's L2 mode does: the node
// chosen for an IP holds it as a /32 on the interface, so the kernel answers ARP for it, and the
// service proxy's nat hooks DNAT it like any other frontend. Ours are recognisable by their address
// label `<ifname>:plb` (iproute2 6.1 here cannot set an address protocol), so only those are ever
// removed. A /32 adds no subnet route, and `noprefixroute` keeps it that way.
//
// After taking an IP over, the new holder sends gratuitous ARP, as MetalLB's L2 speaker does on
// failover: `arping -U` (Debian's iputils-arping, installed by scripts/setup.sh) broadcasts
// unsolicited ARP with the LB IP as sender, and Linux neighbours update an existing entry for it
// at once (net/ipv4/arp.c, arp_process: a gratuitous ARP overrides the entry's lock time). Tested
// in test/agent-services-recovery.test.ts. Without arping, a neighbour's cached entry keeps
// pointing at the old node until it is probed again.

import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { isIpv4 } from "../net/address.ts";

const IFNAME = /^[A-Za-z0-9_.@-]{1,11}$/;

function checkArgs(ifname: string, ip?: string): void {
  // A label is at most 15 characters: "<ifname>:plb" needs ifname ≤ 11.
  if (!IFNAME.test(ifname)) throw new Error(`interface: ${JSON.stringify(ifname)} is not an interface name of at most 11 characters`);
  if (ip !== undefined && !isIpv4(ip)) throw new Error(`loadBalancer IP: ${JSON.stringify(ip)} is not an IPv4 address`);
}

export function announceLabel(ifname: string): string {
  return `${ifname}:plb`;
}

function ip(args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8" });
}

/** The LoadBalancer IPs this node announces on `ifname` (addresses carrying our label). */
export function announcedIps(ifname: string): string[] {
  checkArgs(ifname);
  const json = JSON.parse(ip(["-j", "-4", "addr", "show", "dev", ifname]) || "[]") as { addr_info?: { local?: string; prefixlen?: number; label?: string }[] }[];
  const label = announceLabel(ifname);
  return json.flatMap((link) => (link.addr_info ?? []).filter((a) => a.label === label && a.prefixlen === 32 && a.local).map((a) => a.local!));
}

/** The interface holding `address` (the node's underlay interface) and that address's prefix length. */
export function underlayOfAddress(address: string): { ifname: string; prefixLength: number } | undefined {
  checkArgs("lo", address);
  const json = JSON.parse(ip(["-j", "-4", "addr", "show"]) || "[]") as { ifname: string; addr_info?: { local?: string; prefixlen?: number }[] }[];
  for (const link of json) {
    const held = (link.addr_info ?? []).find((a) => a.local === address);
    if (held) return { ifname: link.ifname, prefixLength: held.prefixlen ?? 32 };
  }
  return undefined;
}

/** The name of the interface holding `address` (the node's underlay interface). */
export function interfaceOfAddress(address: string): string | undefined {
  return underlayOfAddress(address)?.ifname;
}

/**
 * Makes the announced set on `ifname` exactly `wanted`: adds the missing ones (then sends
 * gratuitous ARP for them, when arping is installed), removes ours that are no longer wanted.
 * Returns what changed.
 */
export function syncAnnouncedIps(ifname: string, wanted: readonly string[]): { added: string[]; removed: string[] } {
  checkArgs(ifname);
  for (const address of wanted) checkArgs(ifname, address);
  const have = new Set(announcedIps(ifname));
  const want = new Set(wanted);
  const added = [...want].filter((a) => !have.has(a));
  const removed = [...have].filter((a) => !want.has(a));
  for (const address of removed) ip(["addr", "del", `${address}/32`, "dev", ifname, "label", announceLabel(ifname)]);
  for (const address of added) {
    ip(["addr", "add", `${address}/32`, "dev", ifname, "label", announceLabel(ifname), "noprefixroute"]);
    sendGratuitousArp(ifname, address);
  }
  return { added, removed };
}

function sendGratuitousArp(ifname: string, address: string): void {
  const arping = ["/usr/sbin/arping", "/usr/bin/arping"].find((p) => existsSync(p));
  if (!arping) return;
  execFile(arping, ["-U", "-c", "2", "-I", ifname, address], { timeout: 5000 }, () => undefined);
}
