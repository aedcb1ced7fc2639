// The vxlan backend's narrow view of the kernel: its device, the device's address, and the permanent
// neighbour (ARP) and FDB entries on it, over src/kernel's rtnetlink socket in the current namespace.
// An interface, so the backend's decisions can be unit-tested over an in-memory kernel.

import { addAddress, listAddresses } from "../kernel/address.ts";
import { createVxlan, deleteLink, getLink, listLinks, setLinkMac, setLinkMtu, setLinkUp, type LinkInfo } from "../kernel/link.ts";
import { deleteFdbEntry, deleteNeighbour, listFdb, listNeighbours, NTF_SELF, NUD_PERMANENT, setFdbEntry, setNeighbour } from "../kernel/neigh.ts";
import { NetlinkSocket } from "../kernel/netlink/socket.ts";

export type OverlayLink = Pick<LinkInfo, "index" | "name" | "kind" | "mac" | "mtu" | "up" | "vxlan">;

export interface VxlanDeviceSpec {
  name: string;
  vni: number;
  port: number;
  mac: string;
  mtu: number;
  localIp: string;
  underlayIndex: number;
}

/** A permanent neighbour entry: `ip` is at `mac` on the device. */
export interface NeighbourEntry {
  ip: string;
  mac: string;
}

/** A permanent FDB entry on the device: frames for `mac` go, encapsulated, to the underlay address `dst`. */
export interface FdbEntry {
  mac: string;
  dst: string;
}

export interface OverlayKernel {
  link(name: string): OverlayLink | undefined;
  linkByIndex(index: number): OverlayLink | undefined;
  /** Every link whose name starts with `prefix`. */
  linksNamed(prefix: string): OverlayLink[];
  /** Creates the device down, then brings it up. */
  createVxlan(spec: VxlanDeviceSpec): void;
  deleteLink(name: string): boolean;
  setUp(index: number): void;
  setMac(index: number, mac: string): void;
  setMtu(index: number, mtu: number): void;
  /** IPv4 addresses (CIDR text) on the link. */
  addresses(index: number): string[];
  addAddress(index: number, cidr: string): void;
  /** Permanent IPv4 neighbour entries on the link. */
  neighbours(index: number): NeighbourEntry[];
  setNeighbour(index: number, entry: NeighbourEntry): void;
  deleteNeighbour(index: number, ip: string): void;
  /** Permanent FDB entries with a remote address on the link (the device's own, NTF_SELF). */
  fdb(index: number): FdbEntry[];
  setFdb(index: number, entry: FdbEntry): void;
  deleteFdb(index: number, entry: FdbEntry): void;
  close(): void;
}

export class NetlinkOverlayKernel implements OverlayKernel {
  private readonly nl: NetlinkSocket;

  constructor(nsPath?: string) {
    this.nl = NetlinkSocket.open(nsPath);
  }

  link(name: string): OverlayLink | undefined {
    return getLink(this.nl, name);
  }

  linkByIndex(index: number): OverlayLink | undefined {
    return listLinks(this.nl).find((l) => l.index === index);
  }

  linksNamed(prefix: string): OverlayLink[] {
    return listLinks(this.nl).filter((l) => l.name.startsWith(prefix));
  }

  createVxlan(spec: VxlanDeviceSpec): void {
    createVxlan(this.nl, { name: spec.name, vni: spec.vni, port: spec.port, mac: spec.mac, mtu: spec.mtu, localIp: spec.localIp, underlayIndex: spec.underlayIndex });
    const link = getLink(this.nl, spec.name);
    if (!link) throw new Error(`vxlan device ${spec.name} vanished right after it was created`);
    setLinkUp(this.nl, link.index);
  }

  deleteLink(name: string): boolean {
    return deleteLink(this.nl, name);
  }

  setUp(index: number): void {
    setLinkUp(this.nl, index);
  }

  setMac(index: number, mac: string): void {
    setLinkMac(this.nl, index, mac);
  }

  setMtu(index: number, mtu: number): void {
    setLinkMtu(this.nl, index, mtu);
  }

  addresses(index: number): string[] {
    return listAddresses(this.nl, index)
      .filter((a) => a.family === 4)
      .map((a) => a.cidr);
  }

  addAddress(index: number, cidr: string): void {
    addAddress(this.nl, index, cidr);
  }

  neighbours(index: number): NeighbourEntry[] {
    return listNeighbours(this.nl, index).flatMap((n) =>
      n.state & NUD_PERMANENT && n.mac !== undefined && !n.ip.includes(":") ? [{ ip: n.ip, mac: n.mac }] : [],
    );
  }

  setNeighbour(index: number, entry: NeighbourEntry): void {
    setNeighbour(this.nl, index, entry.ip, entry.mac);
  }

  deleteNeighbour(index: number, ip: string): void {
    deleteNeighbour(this.nl, index, ip);
  }

  fdb(index: number): FdbEntry[] {
    return listFdb(this.nl, index).flatMap((f) => (f.state & NUD_PERMANENT && f.flags & NTF_SELF && f.dst !== undefined ? [{ mac: f.mac, dst: f.dst }] : []));
  }

  setFdb(index: number, entry: FdbEntry): void {
    setFdbEntry(this.nl, index, entry.mac, entry.dst);
  }

  deleteFdb(index: number, entry: FdbEntry): void {
    deleteFdbEntry(this.nl, index, entry.mac, entry.dst);
  }

  close(): void {
    this.nl.close();
  }
}
