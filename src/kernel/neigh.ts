// Neighbour (ARP/NDP) entries and bridge/VXLAN forwarding-database entries over rtnetlink.
// A VXLAN overlay needs both per remote node: a permanent neighbour for the remote's tunnel
// address (so no ARP crosses the tunnel) and an FDB entry mapping that MAC to the remote's
// underlay IP (so the kernel knows where to send the encapsulated frame).
import { AF_BRIDGE, AF_INET, AF_INET6, AF_UNSPEC } from "./libc.ts";
import {
  NLM_F_CREATE,
  NLM_F_REPLACE,
  attr,
  attrMap,
  bytesToIp,
  bytesToMac,
  ipToBytes,
  macToBytes,
  type AttrSpec,
} from "./netlink/codec.ts";
import type { NetlinkSocket } from "./netlink/socket.ts";

const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDMSG_LEN = 12;

export const NUD_REACHABLE = 0x02;
export const NUD_STALE = 0x04;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
/** The entry belongs to the device itself (a VXLAN FDB), not to a bridge's learned table. */
export const NTF_SELF = 0x02;

interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
  type: number;
}

function encodeNdMsg(h: Partial<NdMsg>): Uint8Array {
  const b = new Uint8Array(NDMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, h.family ?? 0);
  v.setInt32(4, h.index ?? 0, true);
  v.setUint16(8, h.state ?? 0, true);
  v.setUint8(10, h.flags ?? 0);
  v.setUint8(11, h.type ?? 0);
  return b;
}

function decodeNdMsg(b: Uint8Array): NdMsg {
  if (b.byteLength < NDMSG_LEN) throw new Error("netlink: ndmsg too short");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { family: v.getUint8(0), index: v.getInt32(4, true), state: v.getUint16(8, true), flags: v.getUint8(10), type: v.getUint8(11) };
}

export interface NeighbourEntry {
  index: number;
  ip: string;
  mac?: string;
  state: number;
}

export interface FdbEntry {
  index: number;
  mac: string;
  /** The remote underlay address for a VXLAN entry. */
  dst?: string;
  state: number;
  flags: number;
}

/** Adds or replaces a permanent neighbour entry: `ip` on link `index` is at `mac`. */
export function setNeighbour(nl: NetlinkSocket, index: number, ip: string, mac: string): void {
  const dst = ipToBytes(ip);
  nl.request(
    {
      type: RTM_NEWNEIGH,
      flags: NLM_F_CREATE | NLM_F_REPLACE,
      header: encodeNdMsg({ family: dst.byteLength === 4 ? AF_INET : AF_INET6, index, state: NUD_PERMANENT }),
      attrs: [attr(NDA_DST, dst), attr(NDA_LLADDR, macToBytes(mac))],
    },
    `set neighbour ${ip} lladdr ${mac} on link #${index}`,
  );
}

export function deleteNeighbour(nl: NetlinkSocket, index: number, ip: string): void {
  const dst = ipToBytes(ip);
  nl.request(
    { type: RTM_DELNEIGH, flags: 0, header: encodeNdMsg({ family: dst.byteLength === 4 ? AF_INET : AF_INET6, index }), attrs: [attr(NDA_DST, dst)] },
    `delete neighbour ${ip} on link #${index}`,
  );
}

/** IPv4 and IPv6 neighbour entries, or those of link `index`. */
export function listNeighbours(nl: NetlinkSocket, index?: number): NeighbourEntry[] {
  const messages = nl.dump({ type: RTM_GETNEIGH, flags: 0, header: encodeNdMsg({ family: AF_UNSPEC }) }, "list neighbours");
  const entries: NeighbourEntry[] = [];
  for (const msg of messages) {
    if (msg.type !== RTM_NEWNEIGH) continue;
    const header = decodeNdMsg(msg.payload);
    if (header.family !== AF_INET && header.family !== AF_INET6) continue;
    if (index !== undefined && header.index !== index) continue;
    const attrs = attrMap(msg.payload.subarray(NDMSG_LEN));
    const dst = attrs.get(NDA_DST);
    if (!dst) continue;
    const entry: NeighbourEntry = { index: header.index, ip: bytesToIp(dst), state: header.state };
    const lladdr = attrs.get(NDA_LLADDR);
    if (lladdr && lladdr.byteLength === 6) entry.mac = bytesToMac(lladdr);
    entries.push(entry);
  }
  return entries;
}

function fdbAttrs(mac: string, dst?: string): AttrSpec[] {
  const attrs = [attr(NDA_LLADDR, macToBytes(mac))];
  if (dst !== undefined) attrs.push(attr(NDA_DST, ipToBytes(dst)));
  return attrs;
}

/**
 * Adds or replaces a permanent FDB entry on the device itself (NTF_SELF), as
 * `bridge fdb replace MAC dev DEV dst DST self permanent` does: for a VXLAN device, frames
 * for `mac` are sent to the underlay address `dst`.
 */
export function setFdbEntry(nl: NetlinkSocket, index: number, mac: string, dst?: string): void {
  nl.request(
    {
      type: RTM_NEWNEIGH,
      flags: NLM_F_CREATE | NLM_F_REPLACE,
      header: encodeNdMsg({ family: AF_BRIDGE, index, state: NUD_PERMANENT, flags: NTF_SELF }),
      attrs: fdbAttrs(mac, dst),
    },
    `set fdb ${mac}${dst ? ` dst ${dst}` : ""} on link #${index}`,
  );
}

export function deleteFdbEntry(nl: NetlinkSocket, index: number, mac: string, dst?: string): void {
  nl.request(
    { type: RTM_DELNEIGH, flags: 0, header: encodeNdMsg({ family: AF_BRIDGE, index, flags: NTF_SELF }), attrs: fdbAttrs(mac, dst) },
    `delete fdb ${mac}${dst ? ` dst ${dst}` : ""} on link #${index}`,
  );
}

/** FDB entries (bridge and device), or those of link `index`. */
export function listFdb(nl: NetlinkSocket, index?: number): FdbEntry[] {
  const messages = nl.dump({ type: RTM_GETNEIGH, flags: 0, header: encodeNdMsg({ family: AF_BRIDGE }) }, "list fdb");
  const entries: FdbEntry[] = [];
  for (const msg of messages) {
    if (msg.type !== RTM_NEWNEIGH) continue;
    const header = decodeNdMsg(msg.payload);
    if (header.family !== AF_BRIDGE) continue;
    if (index !== undefined && header.index !== index) continue;
    const attrs = attrMap(msg.payload.subarray(NDMSG_LEN));
    const lladdr = attrs.get(NDA_LLADDR);
    if (!lladdr) continue;
    const entry: FdbEntry = { index: header.index, mac: bytesToMac(lladdr), state: header.state, flags: header.flags };
    const dst = attrs.get(NDA_DST);
    if (dst) entry.dst = bytesToIp(dst);
    entries.push(entry);
  }
  return entries;
}
