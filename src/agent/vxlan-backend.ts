// vxlan: pod traffic to peers crosses the underlay inside UDP (VXLAN, RFC 7348), so nodes need only IP
// reachability between them, not a shared L2 segment. One device per node, `podnet.<VNI>`, learning off;
// per peer a permanent ARP entry, a permanent FDB entry and an onlink route (vxlan-plan.ts), all reconciled
// on every sync like host-gw routes: repaired when deleted by hand, replaced when a peer's IP or MAC
// changes, removed when the peer leaves. The device is recreated if it disappears or is changed.
//
// Options (`backendOptions.vxlan`): `vni` (default 1), `port` (default 8472, the kernel's and flannel's),
// `directRouting` (default false: plain host-gw routes to peers whose node IP is on-link, VXLAN to the rest).
//
// Ownership: the device is ours by its name; on it, permanent IPv4 neighbour entries and permanent FDB
// entries with a remote are ours. Routes are ours by route protocol 80. Nothing else is looked at.
//
// Checksum offload: the VXLAN checksum bug behind kubernetes#88986 (a UDP checksum of 0 rewritten by
// SNAT of the encapsulated packet, fixed in Linux 5.7) does not affect this kernel (6.x), so tx
// checksum offload stays on. bench/RESULTS.md has the measurement.

import type { NodeView } from "../datastore/datastore.ts";
import { BackendConfigError, rejectUnknownOptions, type Backend, type BackendEnv, type BackendFactory, type BackendSyncResult } from "./backend.ts";
import type { OverlayKernel, OverlayLink } from "./overlay-kernel.ts";
import { isOnLink, planRouteChanges, PODNET_ROUTE_PROTOCOL, type OwnedRoute, type RouteChange } from "./route-plan.ts";
import type { KernelRoute, RouteTable } from "./route-table.ts";
import {
  planFdbChanges,
  planNeighbourChanges,
  planVxlan,
  tunnelAddress,
  vtepMacFor,
  vxlanDeviceName,
  vxlanMtu,
  VTEP_MAC_KEY,
  VXLAN_DEVICE_PREFIX,
  type VxlanDesired,
} from "./vxlan-plan.ts";

export interface VxlanOptions {
  vni: number;
  port: number;
  directRouting: boolean;
}

export const VXLAN_DEFAULTS: VxlanOptions = { vni: 1, port: 8472, directRouting: false };

/** Validates `backendOptions.vxlan`; every error names the field. */
export function parseVxlanOptions(options: Readonly<Record<string, unknown>>): VxlanOptions {
  rejectUnknownOptions("vxlan", options, ["vni", "port", "directRouting"]);
  const parsed = { ...VXLAN_DEFAULTS };
  const integer = (field: "vni" | "port", min: number, max: number): void => {
    const value = options[field];
    if (value === undefined) return;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw new BackendConfigError(`backendOptions.vxlan.${field}: must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    }
    parsed[field] = value;
  };
  // VNIs are 24 bits (RFC 7348 §5).
  integer("vni", 1, 0xffffff);
  integer("port", 1, 65535);
  if (options.directRouting !== undefined) {
    if (typeof options.directRouting !== "boolean") {
      throw new BackendConfigError(`backendOptions.vxlan.directRouting: must be true or false, got ${JSON.stringify(options.directRouting)}`);
    }
    parsed.directRouting = options.directRouting;
  }
  return parsed;
}

function overlayOf(env: BackendEnv): OverlayKernel {
  if (!env.overlay) throw new Error("vxlan: the agent gave the backend no overlay kernel view");
  return env.overlay;
}

export const vxlanFactory: BackendFactory = {
  name: "vxlan",
  build(options, env) {
    const parsed = parseVxlanOptions(options);
    return new VxlanBackend(parsed, env, overlayOf(env));
  },
  withdraw(nodes, env) {
    const overlay = env.overlay;
    let removed = 0;
    const errors: string[] = [];
    const leavingSubnets = new Set(nodes.map((n) => n.podSubnet));
    const routes: RouteChange[] = ownRoutes(env.routeTable.listMainIpv4()).filter((r) => leavingSubnets.has(r.dst)).map((route) => ({ op: "delete", route }));
    if (routes.length > 0) {
      env.routeTable.apply(routes).forEach((r, i) => (r.error ? errors.push(`delete route ${routes[i]!.route.dst}: ${r.error}`) : removed++));
    }
    if (overlay) {
      const tunnelIps = new Set(nodes.map((n) => tunnelAddress(n.podSubnet)));
      const nodeIps = new Set(nodes.map((n) => n.nodeIp));
      for (const device of overlay.linksNamed(VXLAN_DEVICE_PREFIX).filter((l) => l.kind === "vxlan")) {
        // The MACs a leaving node may have had on this device: published, or derived for the device's VNI.
        const vni = device.vxlan?.vni;
        const macs = new Set(nodes.flatMap((n) => [n.backendData[VTEP_MAC_KEY] ?? "", vni === undefined ? "" : vtepMacFor(n.name, vni)].filter(Boolean)));
        for (const n of overlay.neighbours(device.index).filter((e) => tunnelIps.has(e.ip))) {
          try {
            overlay.deleteNeighbour(device.index, n.ip);
            removed++;
          } catch (err) {
            errors.push(`delete neighbour ${n.ip} on ${device.name}: ${String(err)}`);
          }
        }
        for (const f of overlay.fdb(device.index).filter((e) => macs.has(e.mac) || nodeIps.has(e.dst))) {
          try {
            overlay.deleteFdb(device.index, f);
            removed++;
          } catch (err) {
            errors.push(`delete fdb ${f.mac} on ${device.name}: ${String(err)}`);
          }
        }
      }
    }
    if (errors.length > 0) throw new Error(`withdrawing vxlan state: ${errors.slice(0, 3).join("; ")}`);
    return removed;
  },
};

export interface VxlanStatus {
  device: string;
  vni: number;
  port: number;
  directRouting: boolean;
  vtepMac: string;
  deviceMtu: number | null;
  /** Times the device had to be (re)created, this run. */
  deviceCreations: number;
  peers: { name: string; nodeIp: string; via: "vxlan" | "direct"; vtepMac?: string }[];
  skipped: { name: string; reason: string }[];
}

export class VxlanBackend implements Backend {
  readonly name = "vxlan";
  readonly device: string;
  readonly vtepMac: string;
  private readonly table: RouteTable;
  private deviceCreations = 0;
  private lastPlan: VxlanDesired | undefined;
  private lastNodes: readonly NodeView[] = [];
  private deviceMtu: number | null = null;

  constructor(
    readonly options: VxlanOptions,
    private readonly env: BackendEnv,
    private readonly overlay: OverlayKernel,
  ) {
    this.table = env.routeTable;
    this.device = vxlanDeviceName(options.vni);
    this.vtepMac = vtepMacFor(env.nodeName, options.vni);
    // Building checks what can be checked without a node list: the underlay exists and the device can be made.
    this.ensureDevice();
  }

  nodeData(): Record<string, string> {
    return { [VTEP_MAC_KEY]: this.vtepMac };
  }

  mtu(): number {
    const underlay = this.underlay();
    return vxlanMtu(underlay.mtu, underlay.family);
  }

  describe(): VxlanStatus {
    const byName = new Map(this.lastNodes.map((n) => [n.name, n]));
    const plan = this.lastPlan;
    const peers: VxlanStatus["peers"] = [];
    for (const name of plan?.overlay ?? []) {
      const n = byName.get(name);
      if (n) peers.push({ name, nodeIp: n.nodeIp, via: "vxlan", vtepMac: n.backendData[VTEP_MAC_KEY] ?? vtepMacFor(name, this.options.vni) });
    }
    for (const name of plan?.direct ?? []) {
      const n = byName.get(name);
      if (n) peers.push({ name, nodeIp: n.nodeIp, via: "direct" });
    }
    return {
      device: this.device,
      vni: this.options.vni,
      port: this.options.port,
      directRouting: this.options.directRouting,
      vtepMac: this.vtepMac,
      deviceMtu: this.deviceMtu,
      deviceCreations: this.deviceCreations,
      peers: peers.sort((a, b) => (a.name < b.name ? -1 : 1)),
      skipped: plan?.skipped ?? [],
    };
  }

  reconcile(nodes: readonly NodeView[], self: string): BackendSyncResult {
    const counts = { add: 0, replace: 0, delete: 0 };
    const errors: string[] = [];
    const device = this.ensureDevice(counts);
    const selfNode = nodes.find((n) => n.name === self);
    if (selfNode) this.ensureAddress(device, `${tunnelAddress(selfNode.podSubnet)}/32`, counts);

    const kernelRoutes = this.table.listMainIpv4();
    const plan = planVxlan({
      nodes,
      self,
      vni: this.options.vni,
      deviceIndex: device.index,
      directRouting: this.options.directRouting,
      onLink: (ip) => isOnLink(ip, kernelRoutes, device.index),
    });
    this.lastPlan = plan;
    this.lastNodes = nodes;

    // What failed, by node, so leaving nodes with leftovers are not reported withdrawn.
    const failedFor = new Set<string>();
    const owner = ownerIndex(nodes, this.options.vni);
    const attempt = (what: string, keys: string[], op: () => void, count: "add" | "replace" | "delete"): void => {
      try {
        op();
        counts[count]++;
      } catch (err) {
        errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
        for (const k of keys) {
          const name = owner.get(k);
          if (name) failedFor.add(name);
        }
      }
    };

    const fdbChanges = planFdbChanges(plan.fdb, this.overlay.fdb(device.index));
    const neighbourChanges = planNeighbourChanges(plan.neighbours, this.overlay.neighbours(device.index));
    // A peer whose node IP changed: its old remote goes first, then the new one is set.
    for (const e of fdbChanges.delete.filter((d) => plan.fdb.some((f) => f.mac === d.mac))) {
      attempt(`delete fdb ${e.mac} dst ${e.dst}`, [e.mac], () => this.overlay.deleteFdb(device.index, e), "delete");
    }
    for (const e of fdbChanges.set) attempt(`set fdb ${e.mac} dst ${e.dst}`, [e.mac], () => this.overlay.setFdb(device.index, e), "add");
    for (const e of neighbourChanges.set) attempt(`set neighbour ${e.ip} lladdr ${e.mac}`, [e.ip], () => this.overlay.setNeighbour(device.index, e), "add");

    const ours = ownRoutes(kernelRoutes);
    const foreignDsts = new Set(kernelRoutes.filter((r) => r.protocol !== PODNET_ROUTE_PROTOCOL).map((r) => r.dst));
    const conflicts: string[] = [];
    const routeChanges = planRouteChanges(plan.routes, ours).filter((change) => {
      if (change.op === "add" && foreignDsts.has(change.route.dst)) {
        conflicts.push(change.route.dst);
        return false;
      }
      return true;
    });
    if (routeChanges.length > 0) {
      this.table.apply(routeChanges).forEach((result, i) => {
        const change = routeChanges[i]!;
        if (result.error) {
          errors.push(`${change.op} route ${change.route.dst} via ${change.route.gw}: ${result.error}`);
          const name = owner.get(change.route.dst);
          if (name) failedFor.add(name);
        } else counts[change.op]++;
      });
    }

    // Entries of peers that left (or whose MAC changed) go after their routes.
    for (const e of neighbourChanges.delete) attempt(`delete neighbour ${e.ip}`, [e.ip, e.mac], () => this.overlay.deleteNeighbour(device.index, e.ip), "delete");
    for (const e of fdbChanges.delete.filter((d) => !plan.fdb.some((f) => f.mac === d.mac))) {
      attempt(`delete fdb ${e.mac} dst ${e.dst}`, [e.mac, e.dst], () => this.overlay.deleteFdb(device.index, e), "delete");
    }

    const notWithdrawn = nodes.filter((n) => n.phase !== "active" && failedFor.has(n.name)).map((n) => n.name);
    const programmed = ownRoutes(this.table.listMainIpv4()).length;
    return { routesProgrammed: programmed, changes: counts, errors, conflicts, notWithdrawn };
  }

  teardown(): void {
    const changes: RouteChange[] = ownRoutes(this.table.listMainIpv4()).map((route) => ({ op: "delete", route }));
    const errors = changes.length > 0 ? this.table.apply(changes).flatMap((r) => (r.error ? [r.error] : [])) : [];
    // The device takes its neighbour and FDB entries, its address and any route through it along.
    this.overlay.deleteLink(this.device);
    if (errors.length > 0) throw new Error(`removing vxlan routes: ${errors.slice(0, 3).join("; ")}`);
  }

  private underlay(): { index: number; name: string; mtu: number; family: 4 | 6 } {
    const holder = this.table.interfaceWithAddress(this.env.nodeIp);
    if (!holder) throw new Error(`vxlan: no interface holds the node IP ${this.env.nodeIp}, so there is no underlay`);
    const link = this.overlay.link(holder.name);
    if (!link) throw new Error(`vxlan: underlay interface ${holder.name} vanished`);
    return { index: link.index, name: holder.name, mtu: holder.mtu, family: this.env.nodeIp.includes(":") ? 6 : 4 };
  }

  /** The device as wanted: created if missing, recreated if its VXLAN settings differ, MAC/MTU/up fixed in place. */
  private ensureDevice(counts?: { add: number; replace: number; delete: number }): OverlayLink {
    const underlay = this.underlay();
    const mtu = vxlanMtu(underlay.mtu, underlay.family);
    const spec = { name: this.device, vni: this.options.vni, port: this.options.port, mac: this.vtepMac, mtu, localIp: this.env.nodeIp, underlayIndex: underlay.index };
    let link = this.overlay.link(this.device);
    if (link && link.kind !== "vxlan") {
      throw new Error(`vxlan: a ${link.kind ?? "non-vxlan"} link named ${this.device} exists; podnet leaves it alone and cannot run vxlan with VNI ${this.options.vni}`);
    }
    const settings = link?.vxlan;
    if (
      link &&
      (!settings || settings.vni !== spec.vni || settings.port !== spec.port || settings.learning || settings.localIp !== spec.localIp || settings.underlayIndex !== spec.underlayIndex)
    ) {
      this.overlay.deleteLink(this.device);
      link = undefined;
    }
    if (!link) {
      this.overlay.createVxlan(spec);
      this.deviceCreations++;
      if (counts) counts.add++;
      link = this.overlay.link(this.device);
      if (!link) throw new Error(`vxlan: device ${this.device} vanished right after it was created`);
    }
    if (link.mac !== spec.mac) {
      this.overlay.setMac(link.index, spec.mac);
      if (counts) counts.replace++;
    }
    if (link.mtu !== spec.mtu) {
      this.overlay.setMtu(link.index, spec.mtu);
      if (counts) counts.replace++;
    }
    if (!link.up) {
      this.overlay.setUp(link.index);
      if (counts) counts.replace++;
    }
    this.deviceMtu = spec.mtu;
    return link;
  }

  private ensureAddress(device: OverlayLink, cidr: string, counts: { add: number }): void {
    if (this.overlay.addresses(device.index).includes(cidr)) return;
    this.overlay.addAddress(device.index, cidr);
    counts.add++;
  }
}

function ownRoutes(routes: readonly KernelRoute[]): OwnedRoute[] {
  return routes.flatMap((r) => {
    if (r.protocol !== PODNET_ROUTE_PROTOCOL || r.gw === undefined) return [];
    const own: OwnedRoute = { dst: r.dst, gw: r.gw };
    if (r.oifIndex !== undefined) own.oifIndex = r.oifIndex;
    if (r.onlink) own.onlink = true;
    return [own];
  });
}

/** Which node a kernel entry belongs to, by pod subnet, tunnel address, VTEP MAC or node IP. */
function ownerIndex(nodes: readonly NodeView[], vni: number): Map<string, string> {
  const owner = new Map<string, string>();
  for (const n of nodes) {
    owner.set(n.podSubnet, n.name);
    owner.set(tunnelAddress(n.podSubnet), n.name);
    owner.set(n.backendData[VTEP_MAC_KEY] ?? vtepMacFor(n.name, vni), n.name);
  }
  return owner;
}
