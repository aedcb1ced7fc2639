// The podnet bridge plugin: ADD, DEL, CHECK, STATUS and GC for a pod attached to the node's bridge.
// It runs in the node's network namespace (the runtime's); the pod's namespace is only ever
// entered through netlink sockets opened inside it, never by moving this thread.
import { closeSync, existsSync } from "node:fs";
import { execPlugin } from "../cni/delegate.ts";
import type { PluginContext, PluginHandlers } from "../cni/skel.ts";
import { mark } from "../cni/trace.ts";
import {
  CniError,
  ErrorCode,
  type CniDns,
  type CniInterface,
  type CniIpConfig,
  type CniResult,
  type CniRoute,
  type NetConf,
} from "../cni/types.ts";
import { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamHeld, ipamStale, ipamStatus, openStoreFor, requestedIps } from "../ipam/ipam.ts";
import { addAddress, listAddresses } from "../kernel/address.ts";
import { createVethPair, deleteLink, ensureBridge, getLink, listLinks, setBridgePortHairpin, setLinkUp, type LinkInfo } from "../kernel/link.ts";
import { LinkDeletionWatch } from "../kernel/link-watch.ts";
import { NetlinkSocket } from "../kernel/netlink/socket.ts";
import { openNetns, netnsExists } from "../kernel/netns.ts";
import { addRoute, listRoutes } from "../kernel/route.ts";
import { getSysctl, setSysctl } from "../kernel/sysctl.ts";
import { parseBridgeConf, type BridgeConf } from "./config.ts";
import { addMasquerade, removeMasquerade } from "./masquerade.ts";
import { hostVethName, isHostVethName, stableMac } from "./names.ts";
import { addPodFilters, checkAntispoof, parsePortMappings, removePodFilters } from "./podfilter.ts";

const IPV4_DEFAULT = "0.0.0.0/0";
const IPV6_DEFAULT = "::/0";

function isV6(address: string): boolean {
  return address.includes(":");
}

function prefixOf(cidr: string): string {
  return cidr.split("/")[1] ?? (isV6(cidr) ? "128" : "32");
}

/** The bridge gets a fixed MAC so it never takes on a port's MAC and leaves pods' ARP caches stale. */
function bridgeMac(bridge: string): string {
  return stableMac(`podnet-bridge/${bridge}`);
}

/** IPAM, in-process for podnet's own type, otherwise exec'd from CNI_PATH as the spec describes. */
function ipam(ctx: PluginContext, conf: BridgeConf) {
  const attachment = { containerId: ctx.env.containerId, ifname: ctx.env.ifname };
  const ipamConf: NetConf = ctx.conf;
  const delegate = (command: "ADD" | "DEL" | "CHECK" | "STATUS" | "GC"): CniResult | undefined =>
    execPlugin(String(ctx.conf.ipam?.type), { command, cniPath: ctx.env.path, conf: ctx.conf, env: process.env });
  return {
    add(): CniResult {
      if (!conf.ipamInProcess) {
        const result = delegate("ADD");
        if (!result) throw new CniError(ErrorCode.Delegate, `IPAM plugin ${ctx.conf.ipam?.type} returned no result`);
        return result;
      }
      const store = openStoreFor(ipamConf);
      return ipamAdd(ipamConf, attachment, requestedIps(ctx), store);
    },
    del(): void {
      if (!conf.ipamInProcess) {
        delegate("DEL");
        return;
      }
      ipamDel(ipamConf, attachment, openStoreFor(ipamConf));
    },
    /** Addresses the attachment holds, as far as this plugin can know without prevResult. */
    held(): string[] {
      if (!conf.ipamInProcess) return [];
      return ipamHeld(attachment, openStoreFor(ipamConf)).map((r) => r.ip);
    },
    check(): void {
      if (!conf.ipamInProcess) {
        delegate("CHECK");
        return;
      }
      ipamCheck(ipamConf, attachment, openStoreFor(ipamConf));
    },
    status(): void {
      if (!conf.ipamInProcess) {
        delegate("STATUS");
        return;
      }
      ipamStatus(ipamConf, openStoreFor(ipamConf));
    },
    gc(): void {
      if (!conf.ipamInProcess) {
        delegate("GC");
        return;
      }
      ipamGc(ipamConf, ctx.conf["cni.dev/valid-attachments"] ?? [], openStoreFor(ipamConf));
    },
    /** Addresses GC will release: those of attachments not in the valid list (podnet-ipam only). */
    stale(): string[] {
      if (!conf.ipamInProcess) return [];
      return ipamStale(ctx.conf["cni.dev/valid-attachments"] ?? [], openStoreFor(ipamConf)).map((r) => r.ip);
    },
  };
}

function gatewayCidrs(ips: CniIpConfig[]): string[] {
  return ips.filter((ip) => ip.gateway !== undefined).map((ip) => `${ip.gateway}/${prefixOf(ip.address)}`);
}

function ensureForwarding(ips: CniIpConfig[]): void {
  // /proc/sys/net follows this thread's namespace at open time: the node's, where the plugin runs.
  const keys = new Set(ips.map((ip) => (isV6(ip.address) ? "net/ipv6/conf/all/forwarding" : "net/ipv4/ip_forward")));
  for (const key of keys) {
    if (getSysctl(key).trim() !== "1") setSysctl(key, "1");
  }
}

function ensureBridgeAddresses(nl: NetlinkSocket, bridge: LinkInfo, ips: CniIpConfig[]): void {
  const present = new Set(listAddresses(nl, bridge.index).map((a) => a.cidr));
  for (const cidr of gatewayCidrs(ips)) {
    if (present.has(cidr)) continue;
    try {
      addAddress(nl, bridge.index, cidr, { noDad: true });
    } catch (err) {
      // Another ADD running at the same time may have added it first.
      if (!(err instanceof Error && "errno" in err && err.errno === 17)) throw err;
    }
  }
}

function podRoutes(result: CniResult, conf: BridgeConf): CniRoute[] {
  const routes: CniRoute[] = [...(result.routes ?? [])];
  const ips = result.ips ?? [];
  if (conf.isDefaultGateway) {
    for (const ip of ips) {
      if (ip.gateway === undefined) continue;
      const dst = isV6(ip.address) ? IPV6_DEFAULT : IPV4_DEFAULT;
      if (!routes.some((r) => r.dst === dst)) routes.push({ dst, gw: ip.gateway });
    }
  }
  return routes;
}

function gatewayFor(route: CniRoute, ips: CniIpConfig[]): string | undefined {
  if (route.gw !== undefined) return route.gw;
  return ips.find((ip) => isV6(ip.address) === isV6(route.dst) && ip.gateway !== undefined)?.gateway;
}

function mergeDns(...sources: (CniDns | undefined)[]): CniDns | undefined {
  const merged: CniDns = {};
  for (const dns of sources) {
    if (!dns) continue;
    if (dns.nameservers?.length) merged.nameservers = dns.nameservers;
    if (dns.domain) merged.domain = dns.domain;
    if (dns.search?.length) merged.search = dns.search;
    if (dns.options?.length) merged.options = dns.options;
  }
  return Object.keys(merged).length > 0 ? merged : undefined;
}

function isErrno(err: unknown, errno: number): boolean {
  return err instanceof Error && "errno" in err && (err as { errno: unknown }).errno === errno;
}

function configurePod(netns: string, ifname: string, result: CniResult, routes: CniRoute[]): LinkInfo {
  const podNl = NetlinkSocket.open(netns);
  try {
    const pod = getLink(podNl, ifname);
    if (!pod) throw new CniError(ErrorCode.Kernel, `interface ${ifname} did not appear in ${netns}`);
    for (const ip of result.ips ?? []) addAddress(podNl, pod.index, ip.address, { noDad: true });
    setLinkUp(podNl, pod.index);
    const ips = result.ips ?? [];
    for (const route of routes) {
      const gw = gatewayFor(route, ips);
      addRoute(podNl, {
        dst: route.dst,
        ...(gw === undefined ? { oifIndex: pod.index } : { gw }),
        ...(route.mtu === undefined ? {} : { mtu: route.mtu }),
        ...(route.advmss === undefined ? {} : { advmss: route.advmss }),
        ...(route.priority === undefined ? {} : { metric: route.priority }),
        ...(route.table === undefined ? {} : { table: route.table }),
        ...(route.scope === undefined ? {} : { scope: route.scope }),
      });
    }
    return pod;
  } finally {
    podNl.close();
  }
}

export function add(ctx: PluginContext): CniResult {
  mark("handler start");
  const conf = parseBridgeConf(ctx.conf, ctx.env);
  const { containerId, ifname, netns } = ctx.env;
  if (!netnsExists(netns)) throw new CniError(ErrorCode.InvalidEnv, `network namespace ${netns} does not exist`);
  const hostName = hostVethName(containerId, ifname);
  // Read only here: DEL must succeed whatever the runtime passes, so it never parses them.
  const portMappings = parsePortMappings(ctx.conf.runtimeConfig?.portMappings);
  const addressing = ipam(ctx, conf);
  mark("conf parsed");
  const nl = NetlinkSocket.open();
  mark("netlink open");
  let reserved = false;
  let vethCreated = false;
  try {
    // IPAM first: a bad range or an exhausted subnet then fails before the kernel is touched.
    const ipamResult = addressing.add();
    reserved = true;
    mark("ipam done");
    const ips = ipamResult.ips ?? [];
    if (ips.length === 0) throw new CniError(ErrorCode.Delegate, "IPAM returned no address");
    const bridge = ensureBridge(nl, { name: conf.bridge, mac: bridgeMac(conf.bridge), ...(conf.mtu ? { mtu: conf.mtu } : {}) });
    if (conf.isGateway) {
      ensureBridgeAddresses(nl, bridge, ips);
      ensureForwarding(ips);
    }
    // A host end left by an ADD that was killed is stale: the runtime is starting this attachment afresh.
    if (getLink(nl, hostName)) deleteLink(nl, hostName);
    mark("bridge ready");
    const nsFd = openNetns(netns);
    try {
      createVethPair(nl, {
        name: hostName,
        ...(conf.mtu ? { mtu: conf.mtu } : {}),
        masterIndex: bridge.index,
        peer: { name: ifname, netnsFd: nsFd, ...(conf.mtu ? { mtu: conf.mtu } : {}), ...(conf.mac ? { mac: conf.mac } : {}) },
      });
    } catch (err) {
      if (isErrno(err, 17)) throw new CniError(ErrorCode.InvalidConfig, `an interface named ${ifname} already exists in ${netns}`);
      throw err;
    } finally {
      closeSync(nsFd);
    }
    vethCreated = true;
    mark("veth created");
    const host = getLink(nl, hostName);
    if (!host) throw new CniError(ErrorCode.Kernel, `host veth ${hostName} vanished after creation`);
    if (conf.hairpinMode) setBridgePortHairpin(nl, host.index, true);
    const routes = podRoutes(ipamResult, conf);
    const pod = configurePod(netns, ifname, ipamResult, routes);
    mark("pod configured");
    if (conf.ipMasq) addMasquerade(ctx.conf.name, ips.map((ip) => ({ address: ip.address })), conf.clusterCidrs);
    // Last: its elements are all or nothing, and nothing after it can fail and leave them behind.
    addPodFilters({
      hostVeth: hostName,
      podAddresses: ips.map((ip) => ip.address),
      antiSpoofing: conf.antiSpoofing,
      portMappings,
    });
    mark("filters added");

    const interfaces: CniInterface[] = [
      { name: bridge.name, mac: bridge.mac },
      { name: host.name, mac: host.mac },
      { name: pod.name, mac: pod.mac, sandbox: netns },
    ];
    const dns = mergeDns(ipamResult.dns, ctx.conf.dns, ctx.conf.runtimeConfig?.dns);
    return {
      cniVersion: ctx.conf.cniVersion,
      interfaces,
      ips: ips.map((ip) => ({ address: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}), interface: 2 })),
      routes,
      ...(dns ? { dns } : {}),
    };
  } catch (err) {
    // Undo in reverse order; a failure while undoing must not hide the error that caused it.
    if (vethCreated) {
      try {
        deleteLink(nl, hostName);
      } catch {
        /* reported through the original error */
      }
    }
    if (reserved) {
      try {
        addressing.del();
      } catch {
        /* reported through the original error */
      }
    }
    throw err;
  } finally {
    nl.close();
  }
}

/**
 * A link deletion started on another thread: the resident service installs a deleter
 * (service-worker.ts) so that DEL can answer once the kernel announces the host veth gone, 1-2 ms
 * in, instead of when the deleting RTM_DELLINK returns, 13-23 ms in (kernel/link-watch.ts says what
 * the kernel still does in between: freeing what nobody can reach). The plugin on its own, with
 * no other thread, waits for the RTM_DELLINK.
 */
export interface LinkDeletion {
  /** True once the deleting thread's RTM_DELLINK has returned. */
  settled(): boolean;
  /** Waits for the RTM_DELLINK to return: true if it deleted the link, false if there was none; throws its failure. */
  result(): boolean;
}
export type LinkDeleter = (name: string) => LinkDeletion;
let linkDeleter: LinkDeleter | undefined;

export function deleteLinksElsewhere(deleter: LinkDeleter | undefined): void {
  linkDeleter = deleter;
}

function deleteHostVeth(hostName: string): void {
  // Deleting the host end removes its peer too; when the pod's namespace is already gone, so is the pair.
  if (linkDeleter) {
    // Subscribed before the deletion starts, so the announcement cannot come first; a socket per DEL,
    // so no events pile up in it between DELs.
    const watch = LinkDeletionWatch.open();
    try {
      const deletion = linkDeleter(hostName);
      if (!watch.waitDeleted(hostName, () => deletion.settled())) deletion.result();
    } finally {
      watch.close();
    }
    mark("veth deleted");
    return;
  }
  const nl = NetlinkSocket.open();
  mark("netlink open");
  try {
    deleteLink(nl, hostName);
    mark("veth deleted");
  } finally {
    nl.close();
  }
}

export function del(ctx: PluginContext): void {
  mark("handler start");
  const conf = parseBridgeConf(ctx.conf, ctx.env);
  const { containerId, ifname } = ctx.env;
  const addressing = ipam(ctx, conf);
  mark("conf parsed");
  if (conf.ipMasq) {
    // With podnet-ipam the store knows the attachment's addresses even without prevResult (a repeated
    // DEL, a runtime cleaning up after a crash), and only the store is trusted: a stale prevResult may
    // name an address another pod holds by now. A delegated IPAM leaves prevResult as the only source.
    // Removed before the release, so a failed removal is retried by the runtime's next DEL while the
    // store still remembers the addresses.
    const ips = conf.ipamInProcess ? addressing.held() : (ctx.conf.prevResult?.ips ?? []).map((ip) => ip.address.split("/")[0]!);
    if (ips.length > 0) removeMasquerade(ctx.conf.name, ips.map((address) => ({ address })));
  }
  // Before the release, as the masquerade: a failure is retried by the runtime's next DEL. Found from
  // the veth's name alone, so it needs neither prevResult nor runtimeConfig (a repeated DEL has none).
  const hostName = hostVethName(containerId, ifname);
  removePodFilters((veth) => veth === hostName);
  mark("filters removed");
  // The address is free for another pod only once the interface that had it is gone.
  deleteHostVeth(hostName);
  addressing.del();
  mark("ipam done");
}

export function check(ctx: PluginContext): void {
  const conf = parseBridgeConf(ctx.conf, ctx.env);
  const prev = ctx.conf.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidConfig, "CHECK needs prevResult");
  const { containerId, ifname, netns } = ctx.env;
  if (!netnsExists(netns)) throw new CniError(ErrorCode.InvalidEnv, `network namespace ${netns} does not exist`);
  ipam(ctx, conf).check();

  const nl = NetlinkSocket.open();
  try {
    const bridge = getLink(nl, conf.bridge);
    if (!bridge) throw new CniError(ErrorCode.Kernel, `bridge ${conf.bridge} is missing`);
    const host = getLink(nl, hostVethName(containerId, ifname));
    if (!host) throw new CniError(ErrorCode.Kernel, `host veth ${hostVethName(containerId, ifname)} is missing`);
    if (host.masterIndex !== bridge.index) throw new CniError(ErrorCode.Kernel, `host veth ${host.name} is not attached to ${conf.bridge}`);
  } finally {
    nl.close();
  }

  const podNl = NetlinkSocket.open(netns);
  try {
    const pod = getLink(podNl, ifname);
    if (!pod) throw new CniError(ErrorCode.Kernel, `interface ${ifname} is missing in ${netns}`);
    const podIfIndex = (prev.interfaces ?? []).findIndex((i) => i.name === ifname && i.sandbox !== undefined);
    const present = new Set(listAddresses(podNl, pod.index).map((a) => a.cidr));
    for (const ip of prev.ips ?? []) {
      if (ip.interface !== undefined && podIfIndex >= 0 && ip.interface !== podIfIndex) continue;
      if (!present.has(ip.address)) throw new CniError(ErrorCode.Kernel, `address ${ip.address} is missing from ${ifname}`);
    }
    const routes = [...listRoutes(podNl, { family: 4 }), ...listRoutes(podNl, { family: 6 })];
    for (const route of prev.routes ?? []) {
      const found = routes.some((r) => r.dst === route.dst && (route.gw === undefined || r.gw === route.gw));
      if (!found) throw new CniError(ErrorCode.Kernel, `route to ${route.dst}${route.gw ? ` via ${route.gw}` : ""} is missing in ${netns}`);
    }
    if (conf.mac !== undefined && pod.mac !== conf.mac) throw new CniError(ErrorCode.Kernel, `${ifname} has MAC ${pod.mac}, expected ${conf.mac}`);
  } finally {
    podNl.close();
  }
  if (conf.antiSpoofing) checkAntispoof(hostVethName(containerId, ifname), (prev.ips ?? []).map((ip) => ip.address.split("/")[0]!));
}

export function status(ctx: PluginContext): void {
  const conf = parseBridgeConf(ctx.conf, ctx.env);
  if (conf.readyFile !== undefined && !existsSync(conf.readyFile)) {
    throw new CniError(
      ErrorCode.NotReady,
      "the podnet node agent is not ready",
      `${conf.readyFile} is missing: the agent has not put this node's routes in place since it started`,
    );
  }
  ipam(ctx, conf).status();
}

export function gc(ctx: PluginContext): void {
  const conf = parseBridgeConf(ctx.conf, ctx.env);
  const addressing = ipam(ctx, conf);
  if (conf.ipMasq) {
    // Out of the masquerade set before the addresses are free for a new pod, as in DEL.
    const stale = addressing.stale();
    if (stale.length > 0) removeMasquerade(ctx.conf.name, stale.map((address) => ({ address })));
  }
  // Filters of attachments the runtime no longer knows, before their addresses are free again.
  const validVeths = new Set((ctx.conf["cni.dev/valid-attachments"] ?? []).map((a) => hostVethName(a.containerID, a.ifname)));
  removePodFilters((veth) => isHostVethName(veth) && !validVeths.has(veth));
  addressing.gc();
  // Host veths of attachments the runtime no longer knows: left by an ADD that was killed
  // while the pod's namespace lives on. Only podnet-named ports of this bridge are candidates.
  const valid = new Set((ctx.conf["cni.dev/valid-attachments"] ?? []).map((a) => hostVethName(a.containerID, a.ifname)));
  const nl = NetlinkSocket.open();
  try {
    const bridge = getLink(nl, conf.bridge);
    if (!bridge) return;
    for (const link of listLinks(nl)) {
      if (link.masterIndex === bridge.index && isHostVethName(link.name) && !valid.has(link.name)) deleteLink(nl, link.name);
    }
  } finally {
    nl.close();
  }
}

/** The verbs; main.ts maps their failures to CNI codes (errors.ts). */
export const bridgePlugin: PluginHandlers = { add, del, check, status, gc };
