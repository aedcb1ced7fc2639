// The service proxy's ruleset: Services and EndpointSlices in, one nftables table out, in
// kube-proxy's nftables layout (k8s.io/kubernetes pkg/proxy/nftables/proxier.go, KEP-3866):
//
//   nat-prerouting / nat-output ─► services: daddr . l4proto . dport vmap @service-ips
//                                            fib daddr type local → l4proto . dport vmap @service-nodeports
//   @service-ips      → goto service-… (ClusterIP) or external-… (externalIPs, LoadBalancer IPs)
//   service-… / local-… → dnat ip to numgen random mod N offset O map @endpoints-XX   (the default)
//                        [affinity lookups] numgen random mod N vmap → endpoint-… (DNAT)
//                        (kube-proxy's layout: session affinity, more than ENDPOINT_MAP_STRIDE
//                        endpoints, a pod CIDR wider than /HAIRPIN_MIN_PREFIX, or `endpointChains`)
//   nat-postrouting ─► masquerading: packets marked 0x4000 are masqueraded, and DNATed
//                      connections whose source is their chosen endpoint (hairpin)
//
// Endpoints as map elements (the default). Each endpoint group (a service port's cluster-wide
// endpoints, or its node-local ones) owns a block of ENDPOINT_MAP_STRIDE keys in one of
// ENDPOINT_MAP_SHARDS[protocol] shared data maps, numgen key → address . port; its chain has one
// rule, `dnat ip to numgen random mod N offset BLOCK map @endpoints-tcp-XX`, exactly 1/N per endpoint as
// kube-proxy's `numgen random mod N vmap`. Replacing endpoints with as many others is
// then element changes only, which the kernel commits without validating the table (any added rule
// or jump/goto element makes nf_tables walk every chain from every base chain: ~60 ms at 10,000
// services); a change in the number of endpoints rewrites the one rule. Measured (kernel 6.18,
// 10,000 services × 5, bench/RESULTS.md): same-count change 0.6-2 ms in the kernel instead of ~60,
// full sync 0.33-0.5 s instead of ~1.0. Why shared and sharded: one named map per service made
// the full sync 4.4 s (the kernel finds a set by name by walking the table's list of sets); one
// map for all made it 7 s (every element added walks every rule bound to the map). Elements are
// added after the rules (proxy-plan.ts), so binding a rule never walks a filled map.
// Hairpin: kube-proxy masquerades when the source is the chosen endpoint; with no per-endpoint
// rule, nat-postrouting masquerades a DNATed connection whose saddr . daddr is in @hairpin-pairs,
// (x, x) for every x of this node's pod CIDR (a hairpin source is always a local pod): fixed
// elements, so endpoint churn never touches them.
//   filter hooks ─► no-endpoint-services / no-endpoint-nodeports (reject or drop, ct state new),
//                   cluster-ips-check (a ClusterIP on a port it does not serve is rejected),
//                   firewall (loadBalancerSourceRanges)
//
// Pure: the caller reads the objects and hands the table to src/kernel. Chain names are stable
// (derived from namespace/name/protocol/port name and hashed), so a change to one service yields
// a change to that service's chains and map elements only (see proxy-plan.ts).

import type { NftChain, NftMapElement, NftRule, NftSet, NftStatement, NftTable, NftValue, NftVerdict } from "../kernel/nft/model.ts";
import { LABEL_SERVICE_NAME, type EndpointSlice, type Service, type ServicePort } from "../k8s/types.ts";
import { isIpv4 as isIpv4Text } from "../net/address.ts";
import { categorizeEndpoints, endpointsOfPort, slicesByService, type ProxyEndpoint } from "./endpoints.ts";

export const PROXY_TABLE = "podnet-svc";
/** The mark that asks nat-postrouting to masquerade (kube-proxy's --masquerade-bit 14). */
export const MASQUERADE_MARK = 0x4000;
/**
 * Up to this many endpoints a service chain picks one with a cascade of `numgen random mod K == 0`
 * rules; beyond it, with one `numgen random mod N vmap`. The vmap is one lookup per new
 * connection, but each is an anonymous map, and the kernel names every anonymous map by scanning
 * the table's sets: 10,000 of them took over 70 s to load (nft 1.0.6, kernel 6.18), the cascade 5.7 s.
 * The cascade costs up to N rule evaluations on a connection's first packet only.
 */
export const CASCADE_MAX_ENDPOINTS = 16;
/**
 * Shared endpoint maps per protocol: few enough that finding one by name is cheap, many enough that
 * few rules bind each. Per protocol because nft 1.0.6 declares the value `ip daddr . tcp dport`
 * (`th dport` is refused next to `meta l4proto tcp` once the map comes from the kernel), and refuses
 * a UDP rule on a map whose port is a TCP port.
 */
export const ENDPOINT_MAP_SHARDS: Readonly<Record<"tcp" | "udp" | "sctp", number>> = { tcp: 128, udp: 32, sctp: 8 };
const MAP_PROTOCOLS = ["tcp", "udp", "sctp"] as const;
/** Keys per endpoint group: the most endpoints a group can have in the map layout. */
export const ENDPOINT_MAP_STRIDE = 1024;
/** The widest pod CIDR whose (x, x) pairs the hairpin set lists (4,096 elements). */
export const HAIRPIN_MIN_PREFIX = 20;
export const HAIRPIN_PAIRS = "hairpin-pairs";
export const endpointMapName = (protocol: string, shard: number): string => `endpoints-${protocol}-${shard.toString(16).padStart(2, "0")}`;

export interface ProxyNodeFacts {
  nodeName: string;
  /** This node's own addresses (NodePorts are reached on these, through `fib daddr type local`). */
  nodeIps: readonly string[];
  /** This node's pod subnet. */
  podCidr: string;
  /** All pods of the cluster: sources outside it reaching a ClusterIP are masqueraded, as kube-proxy's local-traffic detector does. */
  clusterCidr: string;
  /** When given, traffic to an unallocated address of the service CIDR is rejected too. */
  serviceCidr?: string;
  /**
   * kube-proxy's layout, one chain per endpoint, for every service. By default (false) services
   * without session affinity pick their endpoint from a shared map (see the header): no endpoint
   * chains, and endpoint changes are map elements.
   */
  endpointChains?: boolean;
}

/** A UDP frontend and the endpoint IPs behind it, for conntrack clean-up by the caller. */
export interface UdpFrontend {
  /** The ClusterIP, external IP or LoadBalancer IP; undefined for a NodePort (any local address). */
  ip?: string;
  port: number;
  endpointIps: readonly string[];
}

export interface CompiledProxy {
  /** The whole table (assembled on first use: the incremental path never needs it). */
  readonly table: NftTable;
  /** Every UDP frontend with its endpoints (assembled on first use). */
  readonly udpFrontends: readonly UdpFrontend[];
  /** Per service ("namespace/name"), what it contributes; unchanged services keep the identical object. */
  readonly fragments: ReadonlyMap<string, ServiceFragment>;
  /** The fixed chains; the identical array while the node facts stay the same. */
  readonly skeleton: readonly NftChain[];
  /** The fixed sets (the hairpin pairs), from the same node facts: planned with the skeleton. */
  readonly skeletonSets: readonly NftSet[];
  /**
   * Map keys two services may both ask for (an external IP is not allocated, so two services can
   * name the same one): "map|key" → the service that gets it, the first by namespace/name.
   */
  readonly contestedOwners: ReadonlyMap<string, string>;
}

// Fixed object names of the table.
const SERVICES = "services";
const MASQUERADING = "masquerading";
const MARK_FOR_MASQUERADE = "mark-for-masquerade";
const SERVICE_IPS = "service-ips";
const SERVICE_NODEPORTS = "service-nodeports";
const NO_ENDPOINT_SERVICES = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports";
const SERVICE_ENDPOINTS_CHECK = "service-endpoints-check";
const NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check";
const CLUSTER_IPS = "cluster-ips";
const CLUSTER_IPS_CHECK = "cluster-ips-check";
const FIREWALL_IPS = "firewall-ips";
const FIREWALL_CHECK = "firewall-check";
const REJECT_CHAIN = "reject-chain";

const ADDR_PROTO_PORT = ["ipv4_addr", "inet_proto", "inet_service"] as const;
const PROTO_PORT = ["inet_proto", "inet_service"] as const;
const DADDR_PROTO_PORT = ["ip daddr", "meta l4proto", "th dport"] as const;

const goto = (chain: string): NftVerdict => ({ verdict: "goto", chain });
const jump = (chain: string): NftVerdict => ({ verdict: "jump", chain });
const rule = (statements: readonly NftStatement[], comment?: string): NftRule => (comment ? { statements, comment: shortComment(comment) } : { statements });
const CT_NEW: NftStatement = { match: "ct state", value: "new" };
// Statements every service's rules have alike are one object each, shared: the model is never
// changed once built, and at 10,000 services each saved object is ~0.3 MB less for the collector to copy.
const JUMP_MARK = jump(MARK_FOR_MASQUERADE);
const L4PROTO_MATCHES = new Map(["tcp", "udp", "sctp"].map((p): [string, NftStatement] => [p, { match: "meta l4proto", value: p }]));
const l4protoMatch = (protocol: string): NftStatement => L4PROTO_MATCHES.get(protocol) ?? { match: "meta l4proto", value: protocol };
let fromOutsideMemo: { clusterCidr: string; statements: readonly NftStatement[] } | undefined;
/** `ip saddr != CLUSTER_CIDR jump mark-for-masquerade`, one array per cluster CIDR. */
function fromOutsideStatements(clusterCidr: string): readonly NftStatement[] {
  if (fromOutsideMemo?.clusterCidr !== clusterCidr) fromOutsideMemo = { clusterCidr, statements: [{ match: "ip saddr", op: "!=", value: clusterCidr }, JUMP_MARK] };
  return fromOutsideMemo.statements;
}

function shortComment(text: string): string {
  const clean = text.includes('"') || text.includes("\\") ? text.replace(/["\\]/g, "") : text;
  // A UTF-16 unit is at most 3 bytes of UTF-8: short text needs no count.
  return clean.length <= 40 || Buffer.byteLength(clean) <= 120 ? clean : `${clean.slice(0, 117)}...`;
}

/**
 * FNV-1a, 32 bits, as 8 hex digits: cheap enough for 60,000 chain names per full compile. The hash
 * only has to keep names apart once they are truncated; untruncated names carry their whole id.
 */
function hash8(text: string): string {
  const h = hash32(text);
  // One string, not the four of toString(16).toUpperCase().padStart(8, "0").
  return String.fromCharCode(HEX[(h >>> 28) & 15]!, HEX[(h >>> 24) & 15]!, HEX[(h >>> 20) & 15]!, HEX[(h >>> 16) & 15]!, HEX[(h >>> 12) & 15]!, HEX[(h >>> 8) & 15]!, HEX[(h >>> 4) & 15]!, HEX[h & 15]!);
}
const HEX = Array.from("0123456789ABCDEF", (c) => c.charCodeAt(0));

function hash32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash;
}

/** `prefix-HASH-id`, at most 200 characters (nft allows 255): the hash keeps truncated names unique. */
export function chainName(prefix: string, id: string, hashInput = id): string {
  const name = `${prefix}-${hash8(hashInput)}-${id}`;
  return name.length <= 200 ? name : name.slice(0, 200);
}

/** "namespace/name/tcp/portname" (the port number when unnamed): kube-proxy's ServicePortName. */
export function servicePortId(service: Service, port: ServicePort): string {
  const protocol = (port.protocol ?? "TCP").toLowerCase();
  return `${service.metadata.namespace ?? "default"}/${service.metadata.name}/${protocol}/${port.name || String(port.port)}`;
}

function isIpv4(text: string | undefined): text is string {
  return typeof text === "string" && isIpv4Text(text);
}

/** The chains, sets and map elements one service contributes; cached so unchanged services keep identical objects. */
export interface ServiceFragment {
  key: string;
  chains: NftChain[];
  sets: NftSet[];
  serviceIps: NftMapElement[];
  nodePorts: NftMapElement[];
  noEndpointServices: NftMapElement[];
  noEndpointNodePorts: NftMapElement[];
  firewallIps: NftMapElement[];
  /** One-element tuples, kept as objects so an unchanged service's set elements stay identical. */
  clusterIps: string[][];
  udpFrontends: UdpFrontend[];
  /** "map|key" of the elements keyed by an external or LoadBalancer IP, which another service may also claim. */
  contested: Set<string>;
  /** Elements of the shared endpoint maps (the map layout). */
  endpointElements: { map: string; elements: NftMapElement[] }[];
  /** The endpoint blocks this compile used, by group: a recompile of the same inputs must use the same (an array: cheaper than a Map per service). */
  blocks: readonly (readonly [group: string, block: EndpointBlock])[];
}

/** A group's keys: ENDPOINT_MAP_STRIDE of them from `index * ENDPOINT_MAP_STRIDE`, in `map`. */
export interface EndpointBlock {
  map: string;
  index: number;
}

/** The shared maps' names, made once: a full sync asks for one per endpoint group. */
const shardNames = (protocol: keyof typeof ENDPOINT_MAP_SHARDS) => Array.from({ length: ENDPOINT_MAP_SHARDS[protocol] }, (_, shard) => endpointMapName(protocol, shard));
const ENDPOINT_MAP_NAMES: Readonly<Record<keyof typeof ENDPOINT_MAP_SHARDS, readonly string[]>> = { tcp: shardNames("tcp"), udp: shardNames("udp"), sctp: shardNames("sctp") };

/** Where compileService gets an endpoint group's block. */
interface BlockSource {
  /** The group and its block, as the fragment lists them. */
  givenBlock(serviceKey: string, group: string, protocol: keyof typeof ENDPOINT_MAP_SHARDS): readonly [group: string, block: EndpointBlock];
}

/** Gives each endpoint group a block, keeps it while the group's service exists, and reuses freed ones. */
export class EndpointBlocks implements BlockSource {
  /**
   * Per service, its groups' blocks: looked up by the service's key, which the compiler's maps have
   * hashed already, not by the group's name, a fresh string (hashing 10,000 of them showed in a
   * full compile). A service has a group or two per port, found by a scan.
   */
  private readonly byService = new Map<string, (readonly [group: string, block: EndpointBlock])[]>();
  /**
   * Per map, the indices in use, and one at or below the lowest free index: the search for a free
   * block starts there, not at 0 (a full sync gives out 10,000 blocks, ~80 per map).
   */
  private readonly usage = new Map<string, { used: Set<number>; freeFrom: number }>();

  blockOf(serviceKey: string, group: string, protocol: keyof typeof ENDPOINT_MAP_SHARDS): EndpointBlock {
    return this.givenBlock(serviceKey, group, protocol)[1];
  }

  /** The tuple is the one the fragments list too (one array fewer per group). */
  givenBlock(serviceKey: string, group: string, protocol: keyof typeof ENDPOINT_MAP_SHARDS): readonly [group: string, block: EndpointBlock] {
    const groups = this.byService.get(serviceKey);
    if (groups) for (const given of groups) if (given[0] === group) return given;
    const map = ENDPOINT_MAP_NAMES[protocol][(hash32(group) >>> 0) % ENDPOINT_MAP_SHARDS[protocol]]!;
    let usage = this.usage.get(map);
    if (!usage) this.usage.set(map, (usage = { used: new Set(), freeFrom: 0 }));
    let index = usage.freeFrom;
    while (usage.used.has(index)) index++;
    if (index >= Math.floor(2 ** 32 / ENDPOINT_MAP_STRIDE)) throw new Error(`endpoint map ${map} is full`);
    usage.used.add(index);
    usage.freeFrom = index + 1;
    const given = [group, { map, index }] as const;
    if (groups) groups.push(given);
    else this.byService.set(serviceKey, [given]);
    return given;
  }

  /** The service is gone: its blocks may go to others (a plan diffs both, as both fragments changed). */
  release(serviceKey: string): void {
    for (const [, block] of this.byService.get(serviceKey) ?? []) {
      const usage = this.usage.get(block.map)!;
      usage.used.delete(block.index);
      if (block.index < usage.freeFrom) usage.freeFrom = block.index;
    }
    this.byService.delete(serviceKey);
  }
}

/** Whether the hairpin set can list this node's pod CIDR, which the map layout needs. */
function hairpinCapable(podCidr: string): boolean {
  const [base, prefixText] = podCidr.split("/");
  const prefix = Number(prefixText);
  return isIpv4(base) && Number.isInteger(prefix) && prefix >= HAIRPIN_MIN_PREFIX && prefix <= 32;
}

/** (x, x) for every address x of the pod CIDR, or undefined when it is too wide (see HAIRPIN_MIN_PREFIX). */
function hairpinPairs(podCidr: string): string[][] | undefined {
  if (!hairpinCapable(podCidr)) return undefined;
  const [base, prefixText] = podCidr.split("/") as [string, string];
  const prefix = Number(prefixText);
  const start = base.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
  const size = 2 ** (32 - prefix);
  const first = start - (start % size);
  const pairs: string[][] = [];
  for (let n = first; n < first + size; n++) {
    const ip = `${Math.floor(n / 16777216) % 256}.${Math.floor(n / 65536) % 256}.${Math.floor(n / 256) % 256}.${n % 256}`;
    pairs.push([ip, ip]);
  }
  return pairs;
}

export const contestedKey = (map: string, key: readonly NftValue[]) => `${map}|${key.join(" ")}`;

/** Whether a service without affinity takes the map layout: one answer per pod CIDR, not one parse per service. */
let layoutMemo: { podCidr: string; capable: boolean } | undefined;
function mapLayoutFor(node: ProxyNodeFacts): boolean {
  if (node.endpointChains) return false;
  if (layoutMemo?.podCidr !== node.podCidr) layoutMemo = { podCidr: node.podCidr, capable: hairpinCapable(node.podCidr) };
  return layoutMemo.capable;
}

/** Records a contested map key; the set is made on the first one (most services contest nothing). */
function contest(fragment: ServiceFragment, key: string): void {
  if (fragment.contested === NOTHING_CONTESTED) fragment.contested = new Set();
  fragment.contested.add(key);
}

/** What the balancing of one service port needs: module functions with this, not closures per port (a full compile has 10,000 ports). */
interface PortBuild {
  fragment: ServiceFragment;
  blocksFrom: BlockSource;
  node: ProxyNodeFacts;
  mapLayout: boolean;
  affinityTimeout: number | undefined;
  protocol: string;
  id: string;
  /** Endpoint chains made so far, shared by the cluster-wide and the local chain ("ip/port" → chain). */
  endpointChains: Map<string, { chain: string; affinitySet?: string }> | undefined;
}

function endpointChainFor(build: PortBuild, endpoint: ProxyEndpoint): { chain: string; affinitySet?: string } {
  const key = `${endpoint.ip}/${endpoint.port}`;
  build.endpointChains ??= new Map();
  let entry = build.endpointChains.get(key);
  if (entry) return entry;
  const epId = `${build.id}__${key}`;
  const chain = chainName("endpoint", epId);
  // No comments in endpoint chains: their name says what they are, and at 50,000 of them the
  // text nft has to parse on a full sync is a cost.
  const statements: NftRule[] = [rule([{ match: "ip saddr", value: endpoint.ip }, JUMP_MARK])];
  entry = { chain };
  const affinityTimeout = build.affinityTimeout;
  if (affinityTimeout !== undefined) {
    // The timeout is part of the set's name: a new timeout is a new set, never an in-place change.
    const setName = chainName("affinity", epId, `${epId}#${affinityTimeout}`);
    entry.affinitySet = setName;
    build.fragment.sets = added(build.fragment.sets, { name: setName, keyType: ["ipv4_addr"], flags: ["dynamic", "timeout"], timeoutSeconds: affinityTimeout, elements: [] });
    statements.push(rule([{ updateSet: setName, key: ["ip saddr"] }]));
  }
  statements.push(rule([l4protoMatch(build.protocol), { dnat: { family: "ip", address: endpoint.ip, port: endpoint.port } }]));
  build.fragment.chains = added(build.fragment.chains, { name: chain, rules: statements });
  build.endpointChains.set(key, entry);
  return entry;
}

/** The rules that pick one of `endpoints` (see the header for the three layouts). */
function balance(build: PortBuild, endpoints: readonly ProxyEndpoint[], group: "cluster" | "local", first?: NftRule): NftRule[] {
  const { protocol, affinityTimeout } = build;
  if (build.mapLayout && isMapProtocol(protocol) && affinityTimeout === undefined && endpoints.length <= ENDPOINT_MAP_STRIDE) {
    const groupId = `${build.id}#${group}`;
    const given = build.blocksFrom.givenBlock(build.fragment.key, groupId, protocol);
    const block = given[1];
    build.fragment.blocks = added(build.fragment.blocks as (readonly [string, EndpointBlock])[], given);
    const { dnat, elements } = mapBalance(endpoints, protocol, block);
    build.fragment.endpointElements = added(build.fragment.endpointElements, elements);
    return first ? [first, dnat] : [dnat];
  }
  if (!build.node.endpointChains && affinityTimeout === undefined && endpoints.length <= CASCADE_MAX_ENDPOINTS) return inlineBalance(endpoints, protocol, first);
  const entries = endpoints.map((endpoint) => endpointChainFor(build, endpoint));
  const rules: NftRule[] = first ? [first] : [];
  for (const entry of entries) {
    if (entry.affinitySet) rules.push(rule([{ lookup: ["ip saddr"], set: entry.affinitySet }, goto(entry.chain)]));
  }
  if (entries.length > CASCADE_MAX_ENDPOINTS) {
    rules.push(rule([{ numgenVmap: entries.map((e) => goto(e.chain)) }]));
    return rules;
  }
  // A cascade: the i-th of N rules takes 1/(N-i) of what reaches it, so each endpoint gets 1/N,
  // as kube-proxy's iptables mode does with `statistic --probability`.
  entries.forEach((entry, i) => {
    const left = entries.length - i;
    rules.push(rule(left > 1 ? [{ numgenMatch: { mod: left, value: 0 } }, goto(entry.chain)] : [goto(entry.chain)]));
  });
  return rules;
}

/** `label` is serviceKey(service), passed in: the caller's copy is the one its maps have already hashed. */
function compileService(label: string, service: Service, slices: readonly EndpointSlice[], node: ProxyNodeFacts, blocksFrom: BlockSource): ServiceFragment {
  // Every list starts as the shared empty one and is made on its first element (see added).
  const fragment: ServiceFragment = {
    key: label,
    chains: NONE, sets: NONE, serviceIps: NONE, nodePorts: NONE, noEndpointServices: NONE, noEndpointNodePorts: NONE, firewallIps: NONE, clusterIps: NONE, udpFrontends: NONE, contested: NOTHING_CONTESTED as Set<string>,
    endpointElements: NONE, blocks: NONE,
  };
  const spec = service.spec;
  const type = spec.type ?? "ClusterIP";
  if (type === "ExternalName") return fitted(fragment);
  const clusterIp = isIpv4(spec.clusterIP) ? spec.clusterIP : undefined;
  if (!clusterIp) return fitted(fragment); // headless or not yet allocated: DNS only, no proxying
  fragment.clusterIps = [[clusterIp]];

  const externalIps = spec.externalIPs === undefined ? NO_ADDRESSES : spec.externalIPs.filter(isIpv4);
  const loadBalancerIps = type === "LoadBalancer" ? (service.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter(isIpv4) : NO_ADDRESSES;
  const sourceRanges = type === "LoadBalancer" ? (spec.loadBalancerSourceRanges ?? []).map((r) => r.trim()).filter((r) => r !== "") : NO_ADDRESSES;
  const affinityTimeout = spec.sessionAffinity === "ClientIP" ? (spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800) : undefined;
  const mapLayout = mapLayoutFor(node);

  for (const port of spec.ports ?? []) {
    const protocol = (port.protocol ?? "TCP").toLowerCase();
    const portName = port.name || String(port.port);
    const id = `${label}/${protocol}/${portName}`; // servicePortId
    const endpoints = categorizeEndpoints(service, endpointsOfPort(slices, port), node.nodeName);
    const portLabel = `${label}:${portName}`;
    const nodePort = (type === "NodePort" || type === "LoadBalancer") && port.nodePort ? port.nodePort : undefined;
    const hasExternal = nodePort !== undefined || externalIps.length > 0 || loadBalancerIps.length > 0;
    const build: PortBuild = { fragment, blocksFrom, node, mapLayout, affinityTimeout, protocol, id, endpointChains: undefined };

    // Each chain is named only when it is made (or referred to, which is only when it is made).
    const clusterChain = endpoints.cluster.length > 0 ? chainName("service", id) : "";
    if (endpoints.cluster.length > 0) {
      // kube-proxy's local-traffic detector: a source outside the pod network (the node itself,
      // a host routed to the ClusterIP) is masqueraded so replies come back through this node.
      const fromOutside = rule(fromOutsideStatements(node.clusterCidr), `${portLabel} from outside the pod network`);
      // The rules first: balancing may add endpoint chains before this one.
      const rules = balance(build, endpoints.cluster, "cluster", fromOutside);
      fragment.chains = added(fragment.chains, { name: clusterChain, rules });
    }
    const needLocal = (spec.internalTrafficPolicy === "Local" || (hasExternal && spec.externalTrafficPolicy === "Local")) && endpoints.local.length > 0;
    const localChain = needLocal ? chainName("local", id) : "";
    if (needLocal) {
      const rules = balance(build, endpoints.local, "local");
      fragment.chains = added(fragment.chains, { name: localChain, rules });
    }

    // ClusterIP: dispatch to the internal chain, or reject (no endpoints) / drop (none on this node under internalTrafficPolicy Local).
    const clusterKey = [clusterIp, protocol, port.port];
    if (endpoints.internal.length > 0) {
      fragment.serviceIps = added(fragment.serviceIps, { key: clusterKey, verdict: goto(spec.internalTrafficPolicy === "Local" ? localChain : clusterChain) });
    } else {
      fragment.noEndpointServices = added(fragment.noEndpointServices, { key: clusterKey, verdict: endpoints.cluster.length === 0 ? goto(REJECT_CHAIN) : { verdict: "drop" } });
    }
    if (protocol === "udp") fragment.udpFrontends = added(fragment.udpFrontends, { ip: clusterIp, port: port.port, endpointIps: endpoints.internal.map((e) => e.ip) });

    if (!hasExternal) continue;
    const externalChain = chainName("external", id);
    const externalReachable = endpoints.external.length > 0;
    if (externalReachable || endpoints.cluster.length > 0) {
      const rules: NftRule[] = [];
      if (spec.externalTrafficPolicy === "Local") {
        // Pods reaching the external address take the cluster-wide path (kube-proxy short-circuits them);
        // traffic from outside keeps its source and goes only to this node's endpoints.
        if (endpoints.cluster.length > 0) rules.push(rule([{ match: "ip saddr", value: node.clusterCidr }, goto(clusterChain)], `${portLabel} pods take the cluster path`));
        rules.push(rule([externalReachable ? goto(localChain) : { verdict: "drop" }], externalReachable ? undefined : `${portLabel} no local endpoints`));
      } else {
        rules.push(rule([JUMP_MARK], `${portLabel} external traffic is masqueraded`));
        rules.push(rule([goto(clusterChain)]));
      }
      fragment.chains = added(fragment.chains, { name: externalChain, rules });
    }
    const externalVerdict: NftVerdict | undefined = endpoints.cluster.length === 0 ? goto(REJECT_CHAIN) : undefined;
    for (const ip of [...externalIps, ...loadBalancerIps]) {
      const key = [ip, protocol, port.port];
      if (externalVerdict) fragment.noEndpointServices = added(fragment.noEndpointServices, { key, verdict: externalVerdict });
      else fragment.serviceIps = added(fragment.serviceIps, { key, verdict: goto(externalChain) });
      contest(fragment, contestedKey(externalVerdict ? NO_ENDPOINT_SERVICES : SERVICE_IPS, key));
      if (protocol === "udp") fragment.udpFrontends = added(fragment.udpFrontends, { ip, port: port.port, endpointIps: endpoints.external.map((e) => e.ip) });
    }
    if (nodePort !== undefined) {
      const key = [protocol, nodePort];
      if (externalVerdict) fragment.noEndpointNodePorts = added(fragment.noEndpointNodePorts, { key, verdict: externalVerdict });
      else fragment.nodePorts = added(fragment.nodePorts, { key, verdict: goto(externalChain) });
      if (protocol === "udp") fragment.udpFrontends = added(fragment.udpFrontends, { port: nodePort, endpointIps: endpoints.external.map((e) => e.ip) });
    }
    if (sourceRanges.length > 0 && loadBalancerIps.length > 0) {
      const firewallChain = chainName("firewall", id);
      fragment.chains = added(fragment.chains, { name: firewallChain, rules: [rule([{ match: "ip saddr", op: "!=", value: sourceRanges }, { verdict: "drop" }], `${portLabel} loadBalancerSourceRanges`)] });
      for (const ip of loadBalancerIps) {
        fragment.firewallIps = added(fragment.firewallIps, { key: [ip, protocol, port.port], verdict: goto(firewallChain) });
        contest(fragment, contestedKey(FIREWALL_IPS, [ip, protocol, port.port]));
      }
    }
  }
  return fitted(fragment);
}

/**
 * `list` with `item` added. A fragment's lists start as one shared frozen empty array, the first
 * element makes a one-element array, and only a second grows it by push: most lists of a fragment
 * hold one element or none, and an array grown by push keeps room for 17 (at 10,000 services,
 * megabytes for the garbage collector to copy during a full compile, and for the agent to keep in
 * contested fragments). Nothing changes a fragment once compiled.
 */
function added<T>(list: T[], item: T): T[] {
  if (list === NONE) return [item];
  list.push(item);
  return list;
}
const NONE: never[] = Object.freeze([]) as never[];

/** The fragment with the lists that grew by push copied to their exact length (see added). */
function fitted(fragment: ServiceFragment): ServiceFragment {
  fragment.chains = fit(fragment.chains);
  fragment.sets = fit(fragment.sets);
  fragment.serviceIps = fit(fragment.serviceIps);
  fragment.nodePorts = fit(fragment.nodePorts);
  fragment.noEndpointServices = fit(fragment.noEndpointServices);
  fragment.noEndpointNodePorts = fit(fragment.noEndpointNodePorts);
  fragment.firewallIps = fit(fragment.firewallIps);
  fragment.udpFrontends = fit(fragment.udpFrontends);
  fragment.endpointElements = fit(fragment.endpointElements);
  fragment.blocks = fit(fragment.blocks as (readonly [string, EndpointBlock])[]);
  return fragment;
}
const fit = <T>(list: T[]): T[] => (list.length > 1 ? list.slice() : list);

/** The fixed part of the table: base chains on the hooks and the dispatch chains. */
function skeletonChains(node: ProxyNodeFacts): NftChain[] {
  const clusterIpsCheck: NftRule[] = [
    rule([{ match: "meta l4proto", value: "tcp" }, { lookup: ["ip daddr"], set: CLUSTER_IPS }, { reject: "tcp reset" }], "port not served on this ClusterIP"),
    rule([{ lookup: ["ip daddr"], set: CLUSTER_IPS }, { reject: "icmp port-unreachable" }], "port not served on this ClusterIP"),
  ];
  if (node.serviceCidr) {
    clusterIpsCheck.push(rule([{ match: "ip daddr", value: node.serviceCidr }, { reject: "icmp port-unreachable" }], "unallocated ClusterIP"));
  }
  return [
    { name: "nat-prerouting", base: { type: "nat", hook: "prerouting", priority: "dstnat" }, rules: [rule([jump(SERVICES)])] },
    // The output hook takes no priority names in nft 1.0.6 ("dstnat" is prerouting-only): numbers there.
    { name: "nat-output", base: { type: "nat", hook: "output", priority: -100 }, rules: [rule([jump(SERVICES)])] },
    { name: "nat-postrouting", base: { type: "nat", hook: "postrouting", priority: "srcnat" }, rules: [rule([jump(MASQUERADING)])] },
    { name: "filter-prerouting", base: { type: "filter", hook: "prerouting", priority: "dstnat - 10" }, rules: [rule([CT_NEW, jump(FIREWALL_CHECK)])] },
    {
      name: "filter-input",
      base: { type: "filter", hook: "input", priority: "filter - 10" },
      rules: [rule([CT_NEW, jump(NODEPORT_ENDPOINTS_CHECK)]), rule([CT_NEW, jump(SERVICE_ENDPOINTS_CHECK)])],
    },
    {
      name: "filter-forward",
      base: { type: "filter", hook: "forward", priority: "filter - 10" },
      rules: [rule([CT_NEW, jump(SERVICE_ENDPOINTS_CHECK)]), rule([CT_NEW, jump(CLUSTER_IPS_CHECK)])],
    },
    {
      name: "filter-output",
      base: { type: "filter", hook: "output", priority: -110 },
      rules: [rule([CT_NEW, jump(SERVICE_ENDPOINTS_CHECK)]), rule([CT_NEW, jump(FIREWALL_CHECK)])],
    },
    { name: "filter-output-post-dnat", base: { type: "filter", hook: "output", priority: -90 }, rules: [rule([CT_NEW, jump(CLUSTER_IPS_CHECK)])] },
    {
      name: SERVICES,
      rules: [
        rule([{ vmapLookup: DADDR_PROTO_PORT, map: SERVICE_IPS }]),
        rule([{ match: "fib daddr type", value: "local" }, { match: "ip daddr", op: "!=", value: "127.0.0.0/8" }, { vmapLookup: ["meta l4proto", "th dport"], map: SERVICE_NODEPORTS }], "NodePorts on this node's addresses"),
      ],
    },
    { name: MARK_FOR_MASQUERADE, rules: [rule([{ setMarkOr: MASQUERADE_MARK }])] },
    // The model matches a mark exactly (no bit mask); podnet sets no other mark bits on these packets.
    {
      name: MASQUERADING,
      rules: [
        rule([{ match: "meta mark", value: MASQUERADE_MARK }, { masquerade: { fullyRandom: true } }]),
        ...(hairpinCapable(node.podCidr) && !node.endpointChains
          ? [rule([{ match: "ct status", value: "dnat" }, { lookup: ["ip saddr", "ip daddr"], set: HAIRPIN_PAIRS }, { masquerade: { fullyRandom: true } }], "hairpin: a pod reached itself through a service")]
          : []),
      ],
    },
    { name: SERVICE_ENDPOINTS_CHECK, rules: [rule([{ vmapLookup: DADDR_PROTO_PORT, map: NO_ENDPOINT_SERVICES }])] },
    { name: NODEPORT_ENDPOINTS_CHECK, rules: [rule([{ match: "fib daddr type", value: "local" }, { vmapLookup: ["meta l4proto", "th dport"], map: NO_ENDPOINT_NODEPORTS }])] },
    { name: CLUSTER_IPS_CHECK, rules: clusterIpsCheck },
    { name: FIREWALL_CHECK, rules: [rule([{ vmapLookup: DADDR_PROTO_PORT, map: FIREWALL_IPS }])] },
    {
      name: REJECT_CHAIN,
      rules: [rule([{ match: "meta l4proto", value: "tcp" }, { reject: "tcp reset" }], "service has no endpoints"), rule([{ reject: "icmp port-unreachable" }], "service has no endpoints")],
    },
  ];
}

const isMapProtocol = (protocol: string): protocol is keyof typeof ENDPOINT_MAP_SHARDS => (MAP_PROTOCOLS as readonly string[]).includes(protocol);

/** One DNAT rule and the group's elements in its block of a shared endpoint map (see the header). */
function mapBalance(endpoints: readonly ProxyEndpoint[], protocol: string, block: EndpointBlock): { dnat: NftRule; elements: { map: string; elements: NftMapElement[] } } {
  const map = block.map;
  const offset = block.index * ENDPOINT_MAP_STRIDE;
  return {
    dnat: rule([l4protoMatch(protocol), { dnatMap: { family: "ip", mod: endpoints.length, offset, map } }]),
    elements: { map, elements: endpoints.map((e, i) => ({ key: numgenKey(offset + i), value: [e.ip, e.port] })) },
  };
}

/**
 * `[n]`, one frozen array per n for the keys groups use most: a full sync of 10,000 services × 5
 * endpoints has 50,000 elements but only a few hundred distinct keys (block offsets + 0..4).
 * Bounded, as the agent keeps the module for its lifetime.
 */
function numgenKey(n: number): readonly number[] {
  let key = NUMGEN_KEYS.get(n);
  if (key === undefined) {
    key = Object.freeze([n]);
    if (NUMGEN_KEYS.size < NUMGEN_KEYS_KEPT) NUMGEN_KEYS.set(n, key);
  }
  return key;
}
const NUMGEN_KEYS_KEPT = 4096;
const NUMGEN_KEYS = new Map<number, readonly number[]>();

/** The fixed sets: the hairpin pairs of this node's pod CIDR, when the map layout is in use. */
function skeletonSetsOf(node: ProxyNodeFacts): NftSet[] {
  const pairs = node.endpointChains ? undefined : hairpinPairs(node.podCidr);
  return pairs ? [{ name: HAIRPIN_PAIRS, keyType: ["ipv4_addr", "ipv4_addr"], elements: pairs, comment: "(pod, pod) of this node: hairpin" }] : [];
}

/**
 * Compiles the proxy table. Keep one instance per node: it remembers each service's output, so
 * an unchanged service yields the very same fragment, which lets proxy-plan.ts skip it without
 * looking inside.
 */
/**
 * The previous default, kept for a pod CIDR too wide for the hairpin set (no session affinity, up to
 * CASCADE_MAX_ENDPOINTS endpoints, no endpoint chains): each cascade rule DNATs itself. Chains, not rules, are what nft 1.0.6 pays for on every
 * command: before any rule or element change it reads every chain of the table into its cache,
 * and with 60,000 chains (10,000 services × 5 endpoints, kube-proxy's one chain per endpoint)
 * that took 0.3-2.4 s per change; with the 10,000 service chains alone, 30-40 ms (bench/RESULTS.md).
 *
 * Hairpin: kube-proxy marks in the endpoint chain when the source is that endpoint. Here the
 * service chain marks a connection whose source is any endpoint of the service, before the
 * choice: hairpin traffic is always masqueraded; the one difference is that an endpoint pod
 * reaching its own service and landing on another endpoint is masqueraded too (its peer sees the
 * node's address, not the pod's).
 */
function inlineBalance(endpoints: readonly ProxyEndpoint[], protocol: string, first?: NftRule): NftRule[] {
  const rules: NftRule[] = first ? [first] : [];
  for (const ip of new Set(endpoints.map((e) => e.ip))) rules.push(rule([{ match: "ip saddr", value: ip }, JUMP_MARK]));
  endpoints.forEach((endpoint, i) => {
    const left = endpoints.length - i;
    const dnat: NftStatement[] = [l4protoMatch(protocol), { dnat: { family: "ip", address: endpoint.ip, port: endpoint.port } }];
    rules.push(rule(left > 1 ? [{ numgenMatch: { mod: left, value: 0 } }, ...dnat] : dnat));
  });
  return rules;
}

export class ProxyCompiler {
  private cache = new Map<string, { fingerprint: string; fragment: ServiceFragment }>();
  private nodeFingerprint = "";
  private skeleton: readonly NftChain[] = [];
  private skeletonSets: readonly NftSet[] = [];
  private blocks = new EndpointBlocks();

  compile(services: readonly Service[], slices: readonly EndpointSlice[], node: ProxyNodeFacts): CompiledProxy {
    const nodeFingerprint = JSON.stringify(node);
    if (nodeFingerprint !== this.nodeFingerprint) {
      this.cache.clear();
      this.nodeFingerprint = nodeFingerprint;
      this.skeleton = skeletonChains(node);
      this.skeletonSets = skeletonSetsOf(node);
    }
    const byService = slicesByService(slices);
    const nextCache = new Map<string, { fingerprint: string; fragment: ServiceFragment }>();
    const keyed = services.map((service) => ({ key: serviceKey(service), service }));
    keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const fragments = new Map<string, ServiceFragment>();
    for (const { key, service } of keyed) {
      const serviceSlices = byService.get(key) ?? [];
      const fingerprint = fingerprintOf(service, serviceSlices);
      const cached = this.cache.get(key);
      const fragment = cached && cached.fingerprint === fingerprint ? cached.fragment : compileService(key, service, serviceSlices, node, this.blocks);
      nextCache.set(key, { fingerprint, fragment });
      fragments.set(key, fragment);
    }
    for (const key of this.cache.keys()) if (!nextCache.has(key)) this.blocks.release(key);
    this.cache = nextCache;
    return new Compiled(fragments, this.skeleton, this.skeletonSets, contestedOwnersOf(fragments));
  }
}

/** For each contested map key, the service that gets it: the first by namespace/name. */
function contestedOwnersOf(fragments: ReadonlyMap<string, ServiceFragment>): Map<string, string> {
  const owners = new Map<string, string>();
  for (const [key, fragment] of fragments) {
    if (fragment.contested.size === 0) continue;
    for (const contested of fragment.contested) {
      const owner = owners.get(contested);
      if (owner === undefined || key < owner) owners.set(contested, key);
    }
  }
  return owners;
}

/**
 * The proxy's inputs kept up to date event by event (a watch's added/modified/deleted), so a
 * compile after one change recompiles that one service and touches nothing else: the agent's path
 * for "one change with 10,000 services present". `replaceAll` is for a watch's (re)sync.
 */
export class IncrementalProxyCompiler {
  private readonly services = new Map<string, Service>();
  /**
   * service key → its slices, in the order they were last upserted. Each array is replaced, never
   * changed, so a fragment can keep the one it was compiled from (no Map per service: 10,000 of
   * them were 2-3 MB of the agent's heap).
   */
  private readonly slices = new Map<string, readonly EndpointSlice[]>();
  /** slice key → the service key it was filed under (its label may change) */
  private readonly sliceOwner = new Map<string, string>();
  private readonly fragments = new Map<string, ServiceFragment>();
  private readonly dirty = new Set<string>();
  private nodeFingerprint = "";
  private skeleton: readonly NftChain[] = [];
  private skeletonSets: readonly NftSet[] = [];
  private blocks = new EndpointBlocks();

  replaceAll(services: readonly Service[], slices: readonly EndpointSlice[]): void {
    this.services.clear();
    this.slices.clear();
    this.sliceOwner.clear();
    this.dirty.clear();
    // Blocks start afresh, given in the order of `services`: a full sync replaces the whole table, and
    // the child that may compile it (agent/services-child.ts) starts from a fresh compiler. Kept
    // blocks would give the agent another layout than the kernel's: its later element changes would
    // land in blocks other services' rules read, and miss the ones the kernel's rules read.
    this.blocks = new EndpointBlocks();
    this.fragments.clear();
    for (const service of services) this.upsertService(service);
    for (const slice of slices) this.upsertSlice(slice);
  }

  upsertService(service: Service): void {
    const key = serviceKey(service);
    this.services.set(key, service);
    this.dirty.add(key);
  }

  deleteService(namespace: string | undefined, name: string): void {
    const key = `${namespace ?? "default"}/${name}`;
    this.services.delete(key);
    this.dirty.add(key);
  }

  upsertSlice(slice: EndpointSlice): void {
    const sliceKey = `${slice.metadata.namespace ?? "default"}/${slice.metadata.name}`;
    this.removeSlice(sliceKey);
    const service = slice.metadata.labels?.[LABEL_SERVICE_NAME];
    if (!service || slice.addressType !== "IPv4") return;
    const key = `${slice.metadata.namespace ?? "default"}/${service}`;
    const filed = this.slices.get(key);
    this.slices.set(key, filed ? [...filed, slice] : [slice]);
    this.sliceOwner.set(sliceKey, key);
    this.dirty.add(key);
  }

  deleteSlice(namespace: string | undefined, name: string): void {
    this.removeSlice(`${namespace ?? "default"}/${name}`);
  }

  private removeSlice(sliceKey: string): void {
    const owner = this.sliceOwner.get(sliceKey);
    if (owner === undefined) return;
    this.sliceOwner.delete(sliceKey);
    const remaining = (this.slices.get(owner) ?? []).filter((s) => `${s.metadata.namespace ?? "default"}/${s.metadata.name}` !== sliceKey);
    if (remaining.length > 0) this.slices.set(owner, remaining);
    else this.slices.delete(owner);
    this.dirty.add(owner);
  }

  compile(node: ProxyNodeFacts): CompiledProxy {
    const nodeFingerprint = JSON.stringify(node);
    if (nodeFingerprint !== this.nodeFingerprint) {
      this.nodeFingerprint = nodeFingerprint;
      this.skeleton = skeletonChains(node);
      this.skeletonSets = skeletonSetsOf(node);
      for (const key of this.services.keys()) this.dirty.add(key);
    }
    // This compile's outputs, held weakly as one: one WeakRef per compile, not one per service.
    const outputs: ServiceFragment[] = [];
    const outputsRef = new WeakRef(outputs);
    for (const key of this.dirty) {
      const service = this.services.get(key);
      if (!service) {
        this.fragments.delete(key);
        this.blocks.release(key);
        continue;
      }
      const slices = this.slices.get(key) ?? [];
      const fragment = compileService(key, service, slices, node, this.blocks);
      // Contested fragments are few (services with external or LoadBalancer IPs) and are read on
      // every compile: kept whole. The rest keep only their inputs (see RecomputedFragment).
      if (fragment.contested.size > 0) {
        this.fragments.set(key, fragment);
      } else {
        this.fragments.set(key, new RecomputedFragment(fragment, service, slices, node, outputsRef, outputs.length));
        outputs.push(fragment);
      }
    }
    this.dirty.clear();
    // A snapshot: later events must not change what an earlier CompiledProxy says.
    const fragments = new Map(this.fragments);
    return new Compiled(fragments, this.skeleton, this.skeletonSets, contestedOwnersOf(fragments));
  }
}

/** One-shot compile, for callers that keep no state. */
export function compileProxyTable(services: readonly Service[], slices: readonly EndpointSlice[], node: ProxyNodeFacts): CompiledProxy {
  return new ProxyCompiler().compile(services, slices, node);
}

function serviceKey(service: Service): string {
  return `${service.metadata.namespace ?? "default"}/${service.metadata.name}`;
}

/** resourceVersions when every object has one (the datastore sets them), else the objects' JSON. */
function fingerprintOf(service: Service, slices: readonly EndpointSlice[]): string {
  let versions = `rv:${service.metadata.uid ?? ""}:${service.metadata.resourceVersion ?? ""}`;
  let complete = service.metadata.resourceVersion !== undefined;
  for (const slice of slices) {
    versions += `,${slice.metadata.name}@${slice.metadata.resourceVersion ?? ""}`;
    complete &&= slice.metadata.resourceVersion !== undefined;
  }
  return complete ? versions : JSON.stringify([service, slices]);
}

const NOTHING_CONTESTED: ReadonlySet<string> = new Set<string>();
const NO_ADDRESSES: readonly string[] = [];

/**
 * A service's fragment that keeps only what it was compiled from, and compiles again when read
 * after the garbage collector has taken the output. The agent holds a fragment per service for as
 * long as the service exists, but reads one only when it is planned: all of them on a full sync,
 * otherwise only the changed services' previous and next fragments. Held whole, 10,000 services × 5
 * endpoints were 43 MB of rule objects (half of the agent's heap); their inputs are already held by
 * the compiler, and compiling one again costs about 25 µs. compileService is a pure function of its
 * inputs, so the output read later is equal to the one planned first.
 */
class RecomputedFragment implements ServiceFragment, BlockSource {
  readonly key: string;
  readonly blocks: ServiceFragment["blocks"];

  /** `first` is `outputs[index]`: the compile's outputs are collected together (or the recompiled one alone). */
  constructor(
    first: ServiceFragment,
    private readonly service: Service,
    private readonly slices: readonly EndpointSlice[],
    private readonly node: ProxyNodeFacts,
    private outputs: WeakRef<readonly ServiceFragment[]>,
    private index: number,
  ) {
    this.key = first.key;
    this.blocks = first.blocks;
  }

  /** The whole fragment, compiled again if it was collected (assembleTable reads it once, not once per field). */
  built(): ServiceFragment {
    let fragment = this.outputs.deref()?.[this.index];
    if (fragment === undefined) {
      fragment = compileService(this.key, this.service, this.slices, this.node, this);
      this.outputs = new WeakRef([fragment]);
      this.index = 0;
    }
    return fragment;
  }

  /** The blocks of the first compile, even if the service is gone and they were handed on since. */
  givenBlock(_serviceKey: string, group: string): readonly [group: string, block: EndpointBlock] {
    const given = this.blocks.find(([g]) => g === group);
    if (!given) throw new Error(`endpoint group ${group} was not in the first compile`);
    return given;
  }

  get chains() { return this.built().chains; }
  get sets() { return this.built().sets; }
  get serviceIps() { return this.built().serviceIps; }
  get nodePorts() { return this.built().nodePorts; }
  get noEndpointServices() { return this.built().noEndpointServices; }
  get noEndpointNodePorts() { return this.built().noEndpointNodePorts; }
  get firewallIps() { return this.built().firewallIps; }
  get clusterIps() { return this.built().clusterIps; }
  get udpFrontends() { return this.built().udpFrontends; }
  get endpointElements() { return this.built().endpointElements; }
  /** Only fragments without contested keys are kept this way. */
  get contested() { return NOTHING_CONTESTED as Set<string>; }
}

class Compiled implements CompiledProxy {
  /** Weak: the whole table is wanted once per full sync or read-back, and is as large as all fragments together. */
  private assembled?: WeakRef<{ table: NftTable; udpFrontends: UdpFrontend[] }>;

  constructor(
    readonly fragments: ReadonlyMap<string, ServiceFragment>,
    readonly skeleton: readonly NftChain[],
    readonly skeletonSets: readonly NftSet[],
    readonly contestedOwners: ReadonlyMap<string, string>,
  ) {}

  private whole() {
    let whole = this.assembled?.deref();
    if (whole === undefined) {
      whole = assembleTable(this.fragments.values(), this.skeleton, this.contestedOwners, this.skeletonSets);
      this.assembled = new WeakRef(whole);
    }
    return whole;
  }
  get table(): NftTable {
    return this.whole().table;
  }
  get udpFrontends(): readonly UdpFrontend[] {
    return this.whole().udpFrontends;
  }
}

/**
 * A table from some fragments: all of them for the full table, or only the changed ones (with or
 * without the skeleton) for the narrowed tables proxy-plan.ts diffs.
 */
export function assembleTable(
  fragments: Iterable<ServiceFragment>,
  skeleton: readonly NftChain[],
  contestedOwners: ReadonlyMap<string, string>,
  skeletonSets: readonly NftSet[] = [],
  /** Only these endpoint maps (a narrowed table: the ones the changed fragments use on either side); all when absent. */
  endpointMapNames?: ReadonlySet<string>,
): { table: NftTable; udpFrontends: UdpFrontend[] } {
  const chains: NftChain[] = [...skeleton];
  const sets: NftSet[] = [];
  const serviceIps: NftMapElement[] = [];
  const nodePorts: NftMapElement[] = [];
  const noEndpointServices: NftMapElement[] = [];
  const noEndpointNodePorts: NftMapElement[] = [];
  const firewallIps: NftMapElement[] = [];
  const clusterIps: string[][] = [];
  const udpFrontends: UdpFrontend[] = [];
  const endpointMaps = new Map<string, NftMapElement[]>();
  if (endpointMapNames) for (const name of endpointMapNames) endpointMaps.set(name, []);
  else for (const protocol of MAP_PROTOCOLS) for (let shard = 0; shard < ENDPOINT_MAP_SHARDS[protocol]; shard++) endpointMaps.set(endpointMapName(protocol, shard), []);
  for (const fragment of fragments) {
    const f = fragment instanceof RecomputedFragment ? fragment.built() : fragment;
    for (const c of f.chains) chains.push(c);
    for (const x of f.sets) sets.push(x);
    if (f.contested.size === 0) {
      for (const e of f.serviceIps) serviceIps.push(e);
      for (const e of f.noEndpointServices) noEndpointServices.push(e);
      for (const e of f.firewallIps) firewallIps.push(e);
    } else {
      // An element another service won is left out (proxy-plan.ts re-plans both when the winner changes).
      for (const e of f.serviceIps) if (won(f, SERVICE_IPS, e, contestedOwners)) serviceIps.push(e);
      for (const e of f.noEndpointServices) if (won(f, NO_ENDPOINT_SERVICES, e, contestedOwners)) noEndpointServices.push(e);
      for (const e of f.firewallIps) if (won(f, FIREWALL_IPS, e, contestedOwners)) firewallIps.push(e);
    }
    for (const e of f.nodePorts) nodePorts.push(e);
    for (const e of f.noEndpointNodePorts) noEndpointNodePorts.push(e);
    for (const ip of f.clusterIps) clusterIps.push(ip);
    for (const u of f.udpFrontends) udpFrontends.push(u);
    for (const { map, elements } of f.endpointElements) {
      const shard = endpointMaps.get(map)!;
      for (const e of elements) shard.push(e);
    }
  }
  const verdictMap = (name: string, keyType: readonly ("ipv4_addr" | "inet_proto" | "inet_service")[], elements: NftMapElement[], comment: string) => ({
    name,
    keyType,
    valueType: ["verdict"] as const,
    elements,
    comment,
  });
  return {
    table: {
      family: "ip",
      name: PROXY_TABLE,
      comment: "podnet service proxy",
      chains,
      sets: [{ name: CLUSTER_IPS, keyType: ["ipv4_addr"], elements: clusterIps, comment: "every ClusterIP" }, ...skeletonSets, ...sets],
      maps: [
        verdictMap(SERVICE_IPS, ADDR_PROTO_PORT, dedupeElements(serviceIps), "ClusterIP, external IP and LoadBalancer IP dispatch"),
        verdictMap(SERVICE_NODEPORTS, PROTO_PORT, nodePorts, "NodePort dispatch"),
        verdictMap(NO_ENDPOINT_SERVICES, ADDR_PROTO_PORT, dedupeElements(noEndpointServices), "service addresses with no usable endpoints"),
        verdictMap(NO_ENDPOINT_NODEPORTS, PROTO_PORT, noEndpointNodePorts, "NodePorts with no usable endpoints"),
        verdictMap(FIREWALL_IPS, ADDR_PROTO_PORT, firewallIps, "LoadBalancer IPs with source ranges"),
        // All of them, or in a narrowed table (proxy-plan.ts) the same ones on both sides, so only their elements are compared.
        ...[...endpointMaps].map(([name, elements]) => ({
          name,
          keyType: ["numgen"] as const,
          valueType: ["ipv4_addr", "inet_service"] as const,
          numgenDport: name.split("-")[1] as "tcp" | "udp" | "sctp",
          elements,
        })),
      ],
    },
    udpFrontends,
  };
}

/** Whether the fragment's element is in the table: not when its key is contested and another service won it. */
function won(f: ServiceFragment, map: string, e: NftMapElement, contestedOwners: ReadonlyMap<string, string>): boolean {
  const key = contestedKey(map, e.key);
  return !f.contested.has(key) || contestedOwners.get(key) === f.key;
}

/**
 * Two services may claim the same external IP and port (externalIPs are not allocated, so the API
 * server does not stop it); nft refuses a duplicate key, so the first service, by namespace/name, wins.
 */
function dedupeElements(elements: NftMapElement[]): NftMapElement[] {
  const seen = new Set<string>();
  return elements.filter((e) => {
    const key = e.key.join(" ");
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
