// What the vxlan backend wants the kernel to hold, and how to get there from what it holds. Pure: no I/O.
//
// flannel's scheme (flannel backend/vxlan, "vxlan_network.go"), without learning and without L2/L3 miss
// callouts: per peer, a permanent ARP entry tunnel address → VTEP MAC, a permanent FDB entry VTEP MAC →
// node IP, and a route `<peer subnet> via <tunnel address> dev podnet.<VNI> onlink`. The tunnel address is
// the peer subnet's network address (.0), which IPAM never hands to a pod.

import { createHash } from "node:crypto";
import type { NodeView } from "../datastore/datastore.ts";
import { formatIp } from "../net/address.ts";
import { networkOf, parseCidr } from "../net/cidr.ts";
import type { FdbEntry, NeighbourEntry } from "./overlay-kernel.ts";
import type { OwnedRoute } from "./route-plan.ts";

/** The key of a node's VTEP MAC in its record's backendData. */
export const VTEP_MAC_KEY = "vtepMac";

export const VXLAN_DEVICE_PREFIX = "podnet.";

export function vxlanDeviceName(vni: number): string {
  return `${VXLAN_DEVICE_PREFIX}${vni}`;
}

/**
 * The node's VTEP MAC: a hash of node name and VNI, as a locally administered unicast MAC (first octet
 * x2, x6, xA or xE). The same after an agent restart or a reboot with no state on disk, so peers' FDB
 * and ARP entries stay valid (flannel's stale entries after reboots, flannel#1330, #1795, came from a
 * random MAC per boot).
 */
export function vtepMacFor(nodeName: string, vni: number): string {
  const digest = createHash("sha256").update(`podnet vtep\0${nodeName}\0${vni}`).digest();
  const bytes = [...digest.subarray(0, 6)];
  bytes[0] = (bytes[0]! & 0xfc) | 0x02;
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

const UNICAST_MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** A MAC a peer may use as its VTEP: six colon-separated lower-case octets, unicast, not all zero. */
export function isVtepMac(text: string): boolean {
  if (!UNICAST_MAC.test(text) || text === "00:00:00:00:00:00") return false;
  return (parseInt(text.slice(0, 2), 16) & 1) === 0;
}

/** The tunnel address of a pod subnet: its network address, e.g. 10.244.2.0 for 10.244.2.0/24. */
export function tunnelAddress(podSubnet: string): string {
  return formatIp(networkOf(parseCidr(podSubnet)));
}

export interface VxlanDesired {
  routes: OwnedRoute[];
  neighbours: NeighbourEntry[];
  fdb: FdbEntry[];
  /** Peers given a plain host-gw route (directRouting, node IP on-link). */
  direct: string[];
  /** Peers given the overlay. */
  overlay: string[];
  /** Active peers given nothing, with the reason (a malformed or duplicate VTEP MAC). */
  skipped: { name: string; reason: string }[];
}

/**
 * Desired state for `nodes` (every record, ourselves included). Only active peers get entries. With
 * `directRouting`, a peer whose node IP `onLink` says is on a connected subnet gets a plain route instead.
 */
export function planVxlan(opts: {
  nodes: readonly NodeView[];
  self: string;
  vni: number;
  deviceIndex: number;
  directRouting: boolean;
  onLink: (ip: string) => boolean;
}): VxlanDesired {
  const out: VxlanDesired = { routes: [], neighbours: [], fdb: [], direct: [], overlay: [], skipped: [] };
  const peers = opts.nodes.filter((n) => n.name !== opts.self && n.phase === "active").sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const seenMacs = new Map<string, string>();
  for (const peer of peers) {
    if (opts.directRouting && opts.onLink(peer.nodeIp)) {
      out.routes.push({ dst: peer.podSubnet, gw: peer.nodeIp });
      out.direct.push(peer.name);
      continue;
    }
    // A restarted agent registers before its backend runs, so its record briefly lacks the MAC. Every agent
    // derives it the same way, so peers use the derived one meanwhile rather than drop the peer's entries.
    const mac = peer.backendData[VTEP_MAC_KEY] ?? vtepMacFor(peer.name, opts.vni);
    if (!isVtepMac(mac)) {
      out.skipped.push({ name: peer.name, reason: `backendData.${VTEP_MAC_KEY} ${JSON.stringify(mac)} is not a unicast MAC` });
      continue;
    }
    const other = seenMacs.get(mac);
    if (other !== undefined) {
      out.skipped.push({ name: peer.name, reason: `VTEP MAC ${mac} is also ${other}'s` });
      continue;
    }
    seenMacs.set(mac, peer.name);
    const gw = tunnelAddress(peer.podSubnet);
    out.routes.push({ dst: peer.podSubnet, gw, oifIndex: opts.deviceIndex, onlink: true });
    out.neighbours.push({ ip: gw, mac });
    out.fdb.push({ mac, dst: peer.nodeIp });
    out.overlay.push(peer.name);
  }
  return out;
}

export interface EntryChanges<T> {
  /** Create or replace (the kernel's replace is idempotent). */
  set: T[];
  delete: T[];
}

/** Neighbour changes on the device: one entry per IP, deleted when no peer wants it. */
export function planNeighbourChanges(desired: readonly NeighbourEntry[], actual: readonly NeighbourEntry[]): EntryChanges<NeighbourEntry> {
  const want = new Map(desired.map((e) => [e.ip, e]));
  const have = new Map(actual.map((e) => [e.ip, e]));
  return {
    set: desired.filter((e) => have.get(e.ip)?.mac !== e.mac),
    delete: actual.filter((e) => !want.has(e.ip)),
  };
}

/**
 * FDB changes on the device: exactly one remote per wanted MAC. The kernel keeps several remotes per MAC
 * (`bridge fdb append`), so any other remote of a wanted MAC is deleted too (a peer whose node IP changed).
 */
export function planFdbChanges(desired: readonly FdbEntry[], actual: readonly FdbEntry[]): EntryChanges<FdbEntry> {
  const want = new Map(desired.map((e) => [e.mac, e]));
  const key = (e: FdbEntry): string => `${e.mac} ${e.dst}`;
  const haveKeys = new Set(actual.map(key));
  return {
    set: desired.filter((e) => !haveKeys.has(key(e))),
    delete: actual.filter((e) => want.get(e.mac)?.dst !== e.dst),
  };
}

/** Pod MTU over VXLAN: the underlay's minus the encapsulation (outer IP + UDP 8 + VXLAN 8 + inner Ethernet 14). */
export function vxlanMtu(underlayMtu: number, underlayFamily: 4 | 6): number {
  return underlayMtu - (underlayFamily === 6 ? 70 : 50);
}
