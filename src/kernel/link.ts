// Network interfaces over rtnetlink: look-up, bridges, veth pairs, up/down, MAC, delete,
// and the bridge-port hairpin flag.
import { AF_BRIDGE, AF_UNSPEC } from "./libc.ts";
import {
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_SETLINK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  attr,
  attrMap,
  bytesToIp,
  bytesToMac,
  cstring,
  decodeIfInfoMsg,
  encodeAttrs,
  encodeIfInfoMsg,
  IFINFOMSG_LEN,
  ipToBytes,
  macToBytes,
  nested,
  readCString,
  readS32,
  readU32,
  s32,
  u32,
  u8,
  type AttrSpec,
  type NlMessage,
} from "./netlink/codec.ts";
import { KernelError, type NetlinkSocket } from "./netlink/socket.ts";

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINK = 5;
const IFLA_MASTER = 10;
const IFLA_PROTINFO = 12;
const IFLA_LINKINFO = 18;
const IFLA_NET_NS_FD = 28;
const IFLA_EXT_MASK = 29;
const IFLA_LINK_NETNSID = 37;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFLA_BRPORT_MODE = 4;
/** Leave per-link statistics out of replies: they are most of each message and unused here. */
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
const IFF_UP = 0x1;
const ENODEV = 19;
const EEXIST = 17;

export interface LinkInfo {
  index: number;
  name: string;
  /** IFLA_INFO_KIND, e.g. "bridge" or "veth"; absent for physical and loopback devices. */
  kind?: string;
  mac: string;
  mtu: number;
  /** Administratively up (IFF_UP), not whether it has carrier. */
  up: boolean;
  masterIndex?: number;
  /** IFLA_LINK: a veth's peer index (in the namespace of linkNetnsId when that is set). */
  peerIndex?: number;
  /** IFLA_LINK_NETNSID: the peer's namespace, as this namespace's id for it (`ip netns list-id`). */
  linkNetnsId?: number;
  /** For a VXLAN device: its IFLA_VXLAN_* settings, so a caller can tell a device it wants from one that merely has the name. */
  vxlan?: VxlanInfo;
}

export interface VxlanInfo {
  vni: number;
  port: number;
  learning: boolean;
  localIp?: string;
  underlayIndex?: number;
}

function decodeLink(msg: NlMessage): LinkInfo {
  const header = decodeIfInfoMsg(msg.payload);
  const attrs = attrMap(msg.payload.subarray(IFINFOMSG_LEN));
  const name = attrs.get(IFLA_IFNAME);
  const address = attrs.get(IFLA_ADDRESS);
  const mtu = attrs.get(IFLA_MTU);
  const master = attrs.get(IFLA_MASTER);
  const linkInfo = attrs.get(IFLA_LINKINFO);
  const kind = linkInfo ? attrMap(linkInfo).get(IFLA_INFO_KIND) : undefined;
  const info: LinkInfo = {
    index: header.index,
    name: name ? readCString(name) : "",
    mac: address ? bytesToMac(address) : "",
    mtu: mtu ? readU32(mtu) : 0,
    up: (header.flags & IFF_UP) !== 0,
  };
  if (kind) info.kind = readCString(kind);
  if (info.kind === "vxlan" && linkInfo) {
    const data = attrMap(linkInfo).get(IFLA_INFO_DATA);
    if (data) info.vxlan = decodeVxlanData(data);
  }
  if (master) info.masterIndex = readU32(master);
  const link = attrs.get(IFLA_LINK);
  if (link) info.peerIndex = readU32(link);
  const linkNetns = attrs.get(IFLA_LINK_NETNSID);
  if (linkNetns) info.linkNetnsId = readS32(linkNetns);
  return info;
}

function getLinkBy(nl: NetlinkSocket, index: number, name: string | undefined, op: string): LinkInfo | undefined {
  const attrs: AttrSpec[] = [attr(IFLA_EXT_MASK, u32(RTEXT_FILTER_SKIP_STATS))];
  if (name !== undefined) attrs.push(attr(IFLA_IFNAME, cstring(name)));
  try {
    const replies = nl.request({ type: RTM_GETLINK, flags: 0, header: encodeIfInfoMsg({ family: AF_UNSPEC, index }), attrs }, op);
    const reply = replies.find((m) => m.type === RTM_NEWLINK);
    return reply ? decodeLink(reply) : undefined;
  } catch (error) {
    if (error instanceof KernelError && error.errno === ENODEV) return undefined;
    throw error;
  }
}

export function getLink(nl: NetlinkSocket, name: string): LinkInfo | undefined {
  return getLinkBy(nl, 0, name, `get link ${name}`);
}

export function getLinkByIndex(nl: NetlinkSocket, index: number): LinkInfo | undefined {
  return getLinkBy(nl, index, undefined, `get link #${index}`);
}

export function listLinks(nl: NetlinkSocket): LinkInfo[] {
  const messages = nl.dump(
    { type: RTM_GETLINK, flags: 0, header: encodeIfInfoMsg({ family: AF_UNSPEC }), attrs: [attr(IFLA_EXT_MASK, u32(RTEXT_FILTER_SKIP_STATS))] },
    "list links",
  );
  return messages.filter((m) => m.type === RTM_NEWLINK).map(decodeLink);
}

/**
 * Returns the bridge `name`, creating it if missing, and brings it up. Two plugins may race
 * to create it: EEXIST from the create is taken as "the other one won". A link of that name
 * that is not a bridge is an error, never silently reused.
 */
export function ensureBridge(nl: NetlinkSocket, opts: { name: string; mtu?: number; mac?: string }): LinkInfo {
  let link = getLink(nl, opts.name);
  if (!link) {
    const attrs: AttrSpec[] = [attr(IFLA_IFNAME, cstring(opts.name)), nested(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, cstring("bridge"))])];
    if (opts.mtu !== undefined) attrs.push(attr(IFLA_MTU, u32(opts.mtu)));
    if (opts.mac !== undefined) attrs.push(attr(IFLA_ADDRESS, macToBytes(opts.mac)));
    try {
      nl.request(
        { type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, header: encodeIfInfoMsg({ family: AF_UNSPEC, flags: IFF_UP, change: IFF_UP }), attrs },
        `create bridge ${opts.name}`,
      );
    } catch (error) {
      if (!(error instanceof KernelError && error.errno === EEXIST)) throw error;
    }
    link = getLink(nl, opts.name);
    if (!link) throw new Error(`bridge ${opts.name} vanished right after it was created`);
  }
  if (link.kind !== "bridge") {
    throw new Error(`link ${opts.name} exists but is ${link.kind ? `a ${link.kind}` : "not a bridge"}`);
  }
  if (!link.up) {
    setLinkUp(nl, link.index);
    link = { ...link, up: true };
  }
  return link;
}

/**
 * Creates a veth pair in one RTM_NEWLINK: the host end `name` in this socket's namespace,
 * enslaved to `masterIndex` and up; the peer created directly inside the namespace
 * `peer.netnsFd` (creating it here and moving it costs ~15 ms more). The peer is left down:
 * the kernel refuses to create it up (ENOTCONN), so the caller brings it up from inside.
 */
export function createVethPair(
  nl: NetlinkSocket,
  opts: { name: string; mtu?: number; masterIndex?: number; peer: { name: string; netnsFd: number; mtu?: number; mac?: string } },
): void {
  const peerAttrs: AttrSpec[] = [attr(IFLA_IFNAME, cstring(opts.peer.name)), attr(IFLA_NET_NS_FD, s32(opts.peer.netnsFd))];
  const peerMtu = opts.peer.mtu ?? opts.mtu;
  if (peerMtu !== undefined) peerAttrs.push(attr(IFLA_MTU, u32(peerMtu)));
  if (opts.peer.mac !== undefined) peerAttrs.push(attr(IFLA_ADDRESS, macToBytes(opts.peer.mac)));
  // VETH_INFO_PEER carries a whole ifinfomsg followed by the peer's attributes.
  const peerPayload = concat(encodeIfInfoMsg({ family: AF_UNSPEC }), encodeAttrs(peerAttrs));
  const attrs: AttrSpec[] = [
    attr(IFLA_IFNAME, cstring(opts.name)),
    nested(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, cstring("veth")), nested(IFLA_INFO_DATA, [attr(VETH_INFO_PEER, peerPayload)])]),
  ];
  if (opts.mtu !== undefined) attrs.push(attr(IFLA_MTU, u32(opts.mtu)));
  if (opts.masterIndex !== undefined) attrs.push(attr(IFLA_MASTER, u32(opts.masterIndex)));
  nl.request(
    { type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, header: encodeIfInfoMsg({ family: AF_UNSPEC, flags: IFF_UP, change: IFF_UP }), attrs },
    `create veth ${opts.name} with peer ${opts.peer.name}`,
  );
}

export function setLinkUp(nl: NetlinkSocket, index: number): void {
  nl.request({ type: RTM_NEWLINK, flags: 0, header: encodeIfInfoMsg({ family: AF_UNSPEC, index, flags: IFF_UP, change: IFF_UP }) }, `set link #${index} up`);
}

export function setLinkDown(nl: NetlinkSocket, index: number): void {
  nl.request({ type: RTM_NEWLINK, flags: 0, header: encodeIfInfoMsg({ family: AF_UNSPEC, index, flags: 0, change: IFF_UP }) }, `set link #${index} down`);
}

export function setLinkMac(nl: NetlinkSocket, index: number, mac: string): void {
  nl.request(
    { type: RTM_NEWLINK, flags: 0, header: encodeIfInfoMsg({ family: AF_UNSPEC, index }), attrs: [attr(IFLA_ADDRESS, macToBytes(mac))] },
    `set link #${index} address ${mac}`,
  );
}

export function setLinkMtu(nl: NetlinkSocket, index: number, mtu: number): void {
  nl.request(
    { type: RTM_NEWLINK, flags: 0, header: encodeIfInfoMsg({ family: AF_UNSPEC, index }), attrs: [attr(IFLA_MTU, u32(mtu))] },
    `set link #${index} mtu ${mtu}`,
  );
}

const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_LOCAL6 = 17;
/** The IANA VXLAN port. Linux's own default (8472) predates the assignment. */
export const VXLAN_PORT = 4789;

export interface VxlanOptions {
  name: string;
  vni: number;
  /** The underlay source address; its family decides IPv4 or IPv6 encapsulation. */
  localIp?: string;
  /** The underlay link to send on. */
  underlayIndex?: number;
  port?: number;
  mtu?: number;
  mac?: string;
}

function decodeVxlanData(data: Uint8Array): VxlanInfo {
  const attrs = attrMap(data);
  const id = attrs.get(IFLA_VXLAN_ID);
  const port = attrs.get(IFLA_VXLAN_PORT);
  const learning = attrs.get(IFLA_VXLAN_LEARNING);
  const info: VxlanInfo = {
    vni: id ? readU32(id) : 0,
    port: port && port.byteLength >= 2 ? new DataView(port.buffer, port.byteOffset, 2).getUint16(0, false) : 0,
    learning: learning ? learning[0] === 1 : true,
  };
  const local = attrs.get(IFLA_VXLAN_LOCAL) ?? attrs.get(IFLA_VXLAN_LOCAL6);
  if (local) info.localIp = bytesToIp(local);
  const link = attrs.get(IFLA_VXLAN_LINK);
  if (link) info.underlayIndex = readU32(link);
  return info;
}

/**
 * Creates a VXLAN device with learning off: remote MACs come from FDB entries the agent
 * writes, never from flooding. Left down; the caller brings it up once configured.
 */
export function createVxlan(nl: NetlinkSocket, opts: VxlanOptions): void {
  const data: AttrSpec[] = [attr(IFLA_VXLAN_ID, u32(opts.vni)), attr(IFLA_VXLAN_LEARNING, u8(0))];
  // IFLA_VXLAN_PORT is the one attribute here in network byte order.
  const port = new Uint8Array(2);
  new DataView(port.buffer).setUint16(0, opts.port ?? VXLAN_PORT, false);
  data.push(attr(IFLA_VXLAN_PORT, port));
  if (opts.localIp !== undefined) {
    const local = ipToBytes(opts.localIp);
    data.push(attr(local.byteLength === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, local));
  }
  if (opts.underlayIndex !== undefined) data.push(attr(IFLA_VXLAN_LINK, u32(opts.underlayIndex)));
  const attrs: AttrSpec[] = [
    attr(IFLA_IFNAME, cstring(opts.name)),
    nested(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, cstring("vxlan")), nested(IFLA_INFO_DATA, data)]),
  ];
  if (opts.mtu !== undefined) attrs.push(attr(IFLA_MTU, u32(opts.mtu)));
  if (opts.mac !== undefined) attrs.push(attr(IFLA_ADDRESS, macToBytes(opts.mac)));
  nl.request(
    { type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, header: encodeIfInfoMsg({ family: AF_UNSPEC }), attrs },
    `create vxlan ${opts.name} id ${opts.vni}`,
  );
}

/** Deletes a link by name (a veth takes its peer with it). Returns false if there was none. */
export function deleteLink(nl: NetlinkSocket, name: string): boolean {
  try {
    nl.request(
      { type: RTM_DELLINK, flags: 0, header: encodeIfInfoMsg({ family: AF_UNSPEC }), attrs: [attr(IFLA_IFNAME, cstring(name))] },
      `delete link ${name}`,
    );
    return true;
  } catch (error) {
    if (error instanceof KernelError && error.errno === ENODEV) return false;
    throw error;
  }
}

/**
 * Sets a bridge port's hairpin mode (frames may leave by the port they came in on) through
 * rtnetlink's AF_BRIDGE protocol info. sysfs is avoided on purpose: under nsenter, /sys still
 * shows the namespace it was mounted in.
 */
export function setBridgePortHairpin(nl: NetlinkSocket, index: number, on: boolean): void {
  nl.request(
    {
      type: RTM_SETLINK,
      flags: 0,
      header: encodeIfInfoMsg({ family: AF_BRIDGE, index }),
      attrs: [nested(IFLA_PROTINFO, [attr(IFLA_BRPORT_MODE, u8(on ? 1 : 0))])],
    },
    `set hairpin ${on ? "on" : "off"} on bridge port #${index}`,
  );
}

/** Reads a bridge port's hairpin mode; undefined if the link is not a bridge port. */
export function getBridgePortHairpin(nl: NetlinkSocket, index: number): boolean | undefined {
  const messages = nl.dump({ type: RTM_GETLINK, flags: 0, header: encodeIfInfoMsg({ family: AF_BRIDGE }) }, "list bridge ports");
  for (const msg of messages) {
    if (msg.type !== RTM_NEWLINK || decodeIfInfoMsg(msg.payload).index !== index) continue;
    const protinfo = attrMap(msg.payload.subarray(IFINFOMSG_LEN)).get(IFLA_PROTINFO);
    const mode = protinfo ? attrMap(protinfo).get(IFLA_BRPORT_MODE) : undefined;
    return mode ? mode[0] === 1 : undefined;
  }
  return undefined;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}
