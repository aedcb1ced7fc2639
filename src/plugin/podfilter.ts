// Per-pod nftables state the plugin keeps itself: anti-spoofing and hostPort.
//
// Anti-spoofing (issue 13): a `bridge` family table holds (host veth . address) pairs. Its one base
// chain, on the bridge's prerouting hook, sees every frame a pod sends (bridged to another pod or
// routed through the node) before anything else does, and drops IPv4, IPv6 and ARP whose sender
// address is not one of that veth's pod's, counting them in the named counter `spoofed`. DNAT and
// masquerade happen later, on the node's IP hooks, so the service and hairpin paths are unaffected:
// what leaves a pod always carries the pod's own address. Allowed without a pair: ARP probes from
// 0.0.0.0 (RFC 5227), IPv6 from :: (duplicate address detection) and link-local fe80::/10 (neighbour
// discovery, router solicitation). Only veths in the `ports` set are checked, so pods of a network
// with `antiSpoofing: false` (and anything else on the bridge) pass untouched.
//
// hostPort (issue 8, the portMappings capability of CONVENTIONS.md): an `inet` table DNATs
// (hostIP or any local address):hostPort to podIP:containerPort, for traffic arriving at the node
// (prerouting) and for the node's own (output). Verdict maps keyed by (protocol . port), or
// (address . protocol . port) for a hostIP, jump to one chain per pod, named after its host veth,
// that does the DNAT: the chain is the record of what the pod owns, so DEL and GC find everything
// from the veth name alone. A key another pod already holds makes the kernel refuse the element
// (EEXIST for a different verdict), so a conflicting hostPort fails the whole ADD atomically.
// Connections from a pod of this node (its pod subnets) to a hostPort are masqueraded (hairpin): the
// reply would otherwise go back across the bridge from the target pod's address, which the client
// never asked (unless br_netfilter sends bridged frames through the node's conntrack). Matched by
// source subnet, not by interface: with br_netfilter the output interface is the bridge port.
//
// ADD writes its elements and its chain in one libnftables call. Only when that fails (the tables
// are missing, on a node's first ADD) does a second call create the tables and repeat it.

import { NftError, readTable, runNft, transactionScript } from "../kernel/nft.ts";
import type { NftChain, NftChange, NftMapElement, NftRule, NftSet, NftStatement, NftTable, NftValue } from "../kernel/nft/model.ts";
import type { NftTableState } from "../kernel/nft/readback.ts";
import { tableChanges } from "../kernel/nft/render.ts";
import { listChainNames, removeInterfaceElements } from "../kernel/nft/interface-elements.ts";
import { CniError, ErrorCode, type PortMapping } from "../cni/types.ts";
import { isIp } from "../net/address.ts";
import { mark } from "../cni/trace.ts";
import { canonicalCidrText } from "../net/cidr.ts";

export const ANTISPOOF_TABLE = "podnet_antispoof";
export const ANTISPOOF_FAMILY = "bridge";
/** The named counter of dropped spoofed packets, read by the agent (metrics.ts). */
export const SPOOFED_COUNTER = "spoofed";
export const HOSTPORT_TABLE = "podnet_hostport";
export const HOSTPORT_FAMILY = "inet";

const PORTS_SET = "ports";
const ALLOWED4 = "allowed4";
const ALLOWED6 = "allowed6";
const ANY_MAP = "any_address";
const ADDR4_MAP = "address4";
const ADDR6_MAP = "address6";
const TARGETS4 = "targets4";
const TARGETS6 = "targets6";
const SOURCES4 = "sources4";
const SOURCES6 = "sources6";
const POD_CHAIN_PREFIX = "pod_";

function isV6(address: string): boolean {
  return address.includes(":");
}

const DROP_SPOOFED: readonly NftStatement[] = [{ namedCounter: SPOOFED_COUNTER }, { verdict: "drop" }];

const ANTISPOOF_SETS: readonly NftSet[] = [
  { name: PORTS_SET, keyType: ["ifname"], elements: [] },
  { name: ALLOWED4, keyType: ["ifname", "ipv4_addr"], elements: [] },
  { name: ALLOWED6, keyType: ["ifname", "ipv6_addr"], elements: [] },
];

/** The anti-spoofing table with no pods in it. */
export const ANTISPOOF_BASE: NftTable = {
  family: ANTISPOOF_FAMILY,
  name: ANTISPOOF_TABLE,
  counters: [{ name: SPOOFED_COUNTER, comment: "packets from a pod with a source address not its own" }],
  sets: ANTISPOOF_SETS,
  maps: [],
  chains: [
    {
      name: "prerouting",
      // Before the bridge's and the node's other hooks (-300 is the bridge family's dstnat slot).
      base: { type: "filter", hook: "prerouting", priority: -300, policy: "accept" },
      rules: [
        { statements: [{ lookup: ["iifname"], set: PORTS_SET, negate: true }, { verdict: "accept" }], comment: "not a checked pod veth" },
        { statements: [{ match: "arp saddr ip", value: "0.0.0.0" }, { verdict: "accept" }], comment: "ARP probe (RFC 5227)" },
        { statements: [{ lookup: ["iifname", "arp saddr ip"], set: ALLOWED4, negate: true }, ...DROP_SPOOFED], comment: "ARP for an address not the pod's" },
        { statements: [{ lookup: ["iifname", "ip saddr"], set: ALLOWED4, negate: true }, ...DROP_SPOOFED] },
        { statements: [{ match: "ip6 saddr", value: ["::", "fe80::/10"] }, { verdict: "accept" }], comment: "DAD and link-local neighbour discovery" },
        { statements: [{ lookup: ["iifname", "ip6 saddr"], set: ALLOWED6, negate: true }, ...DROP_SPOOFED] },
      ],
    },
  ],
};

const HOSTPORT_JUMPS: readonly NftRule[] = [
  { statements: [{ vmapLookup: ["ip daddr", "meta l4proto", "th dport"], map: ADDR4_MAP }] },
  { statements: [{ vmapLookup: ["ip6 daddr", "meta l4proto", "th dport"], map: ADDR6_MAP }] },
  { statements: [{ match: "fib daddr type", value: "local" }, { vmapLookup: ["meta l4proto", "th dport"], map: ANY_MAP }] },
];

/** The hostPort table with no pods in it. */
export const HOSTPORT_BASE: NftTable = {
  family: HOSTPORT_FAMILY,
  name: HOSTPORT_TABLE,
  sets: [
    // No auto-merge: re-adding a subnet that is there costs 0.2 ms, while auto-merge rewrites the
    // interval and costs 7-24 ms per ADD. Overlapping (not equal) pod subnets of two networks are refused.
    { name: SOURCES4, keyType: ["ipv4_addr"], flags: ["interval"], elements: [] },
    { name: SOURCES6, keyType: ["ipv6_addr"], flags: ["interval"], elements: [] },
    { name: TARGETS4, keyType: ["ipv4_addr", "inet_proto", "inet_service"], elements: [] },
    { name: TARGETS6, keyType: ["ipv6_addr", "inet_proto", "inet_service"], elements: [] },
  ],
  maps: [
    { name: ANY_MAP, keyType: ["inet_proto", "inet_service"], valueType: ["verdict"], elements: [] },
    { name: ADDR4_MAP, keyType: ["ipv4_addr", "inet_proto", "inet_service"], valueType: ["verdict"], elements: [] },
    { name: ADDR6_MAP, keyType: ["ipv6_addr", "inet_proto", "inet_service"], valueType: ["verdict"], elements: [] },
  ],
  chains: [
    { name: "hostports", rules: HOSTPORT_JUMPS },
    { name: "prerouting", base: { type: "nat", hook: "prerouting", priority: "dstnat", policy: "accept" }, rules: [{ statements: [{ verdict: "jump", chain: "hostports" }] }] },
    // nft names dstnat (-100) only for prerouting; the output hook takes the number.
    { name: "output", base: { type: "nat", hook: "output", priority: -100, policy: "accept" }, rules: [{ statements: [{ verdict: "jump", chain: "hostports" }] }] },
    {
      name: "postrouting",
      base: { type: "nat", hook: "postrouting", priority: "srcnat", policy: "accept" },
      rules: [
        ...(["4", "6"] as const).map((v): NftRule => ({
          statements: [
            { match: "ct status", value: "dnat" },
            { lookup: [v === "4" ? "ip saddr" : "ip6 saddr"], set: v === "4" ? SOURCES4 : SOURCES6 },
            { lookup: [v === "4" ? "ip daddr" : "ip6 daddr", "meta l4proto", "th dport"], set: v === "4" ? TARGETS4 : TARGETS6 },
            { masquerade: {} },
          ],
          comment: "hairpin: a pod of this node to a hostPort",
        })),
      ],
    },
  ],
};

// ---- hostPort mappings ----

export interface HostPortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp" | "sctp";
  /** Empty: every local address of the node. */
  hostIP: string;
}

function port(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new CniError(ErrorCode.InvalidConfig, `runtimeConfig.portMappings: "${field}" must be a port from 1 to 65535, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** The runtime's portMappings (keys already lower-camel, cni/config.ts), checked; [] when absent. */
export function parsePortMappings(value: unknown): HostPortMapping[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new CniError(ErrorCode.InvalidConfig, `runtimeConfig.portMappings must be a list`);
  const seen = new Set<string>();
  return value.map((raw: unknown, i): HostPortMapping => {
    if (typeof raw !== "object" || raw === null) throw new CniError(ErrorCode.InvalidConfig, `runtimeConfig.portMappings[${i}] must be an object`);
    const m = raw as PortMapping;
    const protocol = (m.protocol === undefined || m.protocol === "" ? "tcp" : String(m.protocol).toLowerCase());
    if (protocol !== "tcp" && protocol !== "udp" && protocol !== "sctp") {
      throw new CniError(ErrorCode.InvalidConfig, `runtimeConfig.portMappings[${i}]: "protocol" must be tcp, udp or sctp, got ${JSON.stringify(m.protocol)}`);
    }
    const hostIP = m.hostIP === undefined || m.hostIP === null ? "" : m.hostIP;
    if (typeof hostIP !== "string" || (hostIP !== "" && !isIp(hostIP))) {
      throw new CniError(ErrorCode.InvalidConfig, `runtimeConfig.portMappings[${i}]: "hostIP" must be an IP address or empty, got ${JSON.stringify(m.hostIP)}`);
    }
    const mapping: HostPortMapping = {
      hostPort: port(m.hostPort, `[${i}].hostPort`),
      containerPort: port(m.containerPort, `[${i}].containerPort`),
      protocol,
      // 0.0.0.0 and :: mean every address, as in the reference portmap plugin.
      hostIP: hostIP === "0.0.0.0" || hostIP === "::" ? "" : hostIP,
    };
    const key = `${mapping.hostIP}/${mapping.protocol}/${mapping.hostPort}`;
    if (seen.has(key)) throw new CniError(ErrorCode.InvalidConfig, `runtimeConfig.portMappings[${i}]: ${mapping.protocol} hostPort ${mapping.hostPort} is mapped twice`);
    seen.add(key);
    return mapping;
  });
}

function podChainName(hostVeth: string): string {
  return `${POD_CHAIN_PREFIX}${hostVeth}`;
}

/** The pod's DNAT chain: one rule per (mapping, pod address family the mapping applies to). */
function podChain(hostVeth: string, mappings: readonly HostPortMapping[], podIps: readonly string[]): NftChain {
  const rules: NftRule[] = [];
  for (const m of mappings) {
    for (const ip of podIps) {
      const v6 = isV6(ip);
      if (m.hostIP !== "" && isV6(m.hostIP) !== v6) continue;
      rules.push({
        statements: [
          { match: "meta nfproto", value: v6 ? "ipv6" : "ipv4" },
          ...(m.hostIP === "" ? [] : [{ match: v6 ? "ip6 daddr" : "ip daddr", value: m.hostIP } as const]),
          { match: "meta l4proto", value: m.protocol },
          { match: "th dport", value: m.hostPort },
          { dnat: { family: v6 ? "ip6" : "ip", address: ip, port: m.containerPort } },
        ],
      });
    }
  }
  return { name: podChainName(hostVeth), rules };
}

function checkMappingsFit(mappings: readonly HostPortMapping[], podIps: readonly string[]): void {
  for (const m of mappings) {
    if (m.hostIP !== "" && !podIps.some((ip) => isV6(ip) === isV6(m.hostIP))) {
      throw new CniError(ErrorCode.InvalidConfig, `runtimeConfig.portMappings: hostIP ${m.hostIP} is IPv${isV6(m.hostIP) ? 6 : 4} but the pod has no such address`);
    }
  }
}

// ---- ADD ----

export interface PodFilterRequest {
  hostVeth: string;
  /** The pod's addresses in CIDR form (10.244.1.5/24): the prefix gives the node's pod subnet. */
  podAddresses: readonly string[];
  antiSpoofing: boolean;
  portMappings: readonly HostPortMapping[];
}

function antispoofElements(hostVeth: string, podIps: readonly string[]): NftChange[] {
  const v4 = podIps.filter((ip) => !isV6(ip)).map((ip) => [hostVeth, ip]);
  const v6 = podIps.filter(isV6).map((ip) => [hostVeth, ip]);
  return [
    { op: "addElements", setOrMap: PORTS_SET, elements: [[hostVeth]] },
    ...(v4.length > 0 ? [{ op: "addElements", setOrMap: ALLOWED4, elements: v4 } as const] : []),
    ...(v6.length > 0 ? [{ op: "addElements", setOrMap: ALLOWED6, elements: v6 } as const] : []),
  ];
}

function hostportChanges(req: PodFilterRequest, podIps: readonly string[]): NftChange[] {
  const chain = podChain(req.hostVeth, req.portMappings, podIps);
  const goto = { verdict: "goto", chain: chain.name } as const;
  const any: NftMapElement[] = [];
  const addr4: NftMapElement[] = [];
  const addr6: NftMapElement[] = [];
  const targets4: NftValue[][] = [];
  const targets6: NftValue[][] = [];
  for (const m of req.portMappings) {
    if (m.hostIP === "") any.push({ key: [m.protocol, m.hostPort], verdict: goto });
    else (isV6(m.hostIP) ? addr6 : addr4).push({ key: [m.hostIP, m.protocol, m.hostPort], verdict: goto });
    for (const ip of podIps) (isV6(ip) ? targets6 : targets4).push([ip, m.protocol, m.containerPort]);
  }
  const changes: NftChange[] = [{ op: "replaceChain", chain }];
  const subnets4 = req.podAddresses.filter((a) => !isV6(a)).map((a) => [canonicalCidrText(a)]);
  const subnets6 = req.podAddresses.filter(isV6).map((a) => [canonicalCidrText(a)]);
  if (subnets4.length > 0) changes.push({ op: "addElements", setOrMap: SOURCES4, elements: subnets4 });
  if (subnets6.length > 0) changes.push({ op: "addElements", setOrMap: SOURCES6, elements: subnets6 });
  for (const [name, elements] of [[ANY_MAP, any], [ADDR4_MAP, addr4], [ADDR6_MAP, addr6]] as const) {
    if (elements.length > 0) changes.push({ op: "addElements", setOrMap: name, elements });
  }
  if (targets4.length > 0) changes.push({ op: "addElements", setOrMap: TARGETS4, elements: targets4 });
  if (targets6.length > 0) changes.push({ op: "addElements", setOrMap: TARGETS6, elements: targets6 });
  return changes;
}

function script(antispoof: NftChange[], hostport: NftChange[]): string {
  let text = "";
  if (antispoof.length > 0) text += transactionScript({ family: ANTISPOOF_FAMILY, table: ANTISPOOF_TABLE, changes: antispoof }, ANTISPOOF_BASE);
  if (hostport.length > 0) text += transactionScript({ family: HOSTPORT_FAMILY, table: HOSTPORT_TABLE, changes: hostport }, HOSTPORT_BASE);
  return text;
}

/**
 * Adds the pod's anti-spoofing pairs and hostPort DNAT in one call (two on a node's first ADD).
 * All or nothing: a failure leaves none of this pod's elements behind.
 */
export function addPodFilters(req: PodFilterRequest): void {
  const podIps = req.podAddresses.map((a) => a.split("/")[0]!);
  checkMappingsFit(req.portMappings, podIps);
  const antispoof = req.antiSpoofing ? antispoofElements(req.hostVeth, podIps) : [];
  const hostport = req.portMappings.length > 0 ? hostportChanges(req, podIps) : [];
  if (antispoof.length === 0 && hostport.length === 0) return;
  const elements = script(antispoof, hostport);
  try {
    runNft(elements);
    return;
  } catch (err) {
    if (!(err instanceof NftError)) throw err;
  }
  // The tables (or a set of them) are missing: create them, with the pod's changes, in one batch.
  const full =
    script(antispoof.length > 0 ? tableChanges(ANTISPOOF_BASE) : [], hostport.length > 0 ? tableChanges(HOSTPORT_BASE) : []) + elements;
  try {
    runNft(full);
  } catch (err) {
    if (err instanceof NftError && /File exists/.test(err.stderr) && req.portMappings.length > 0) {
      const ports = req.portMappings.map((m) => `${m.hostIP === "" ? "" : `${m.hostIP}:`}${m.hostPort}/${m.protocol}`).join(", ");
      throw new CniError(ErrorCode.InvalidConfig, `hostPort already in use by another pod on this node (${ports})`, err.stderr.trim());
    }
    throw err;
  }
}

// ---- DEL and GC ----

function hostportRemovals(state: NftTableState | undefined, gone: (hostVeth: string) => boolean): NftChange[] {
  if (!state) return [];
  const goneChains = state.chains.filter((c) => c.name.startsWith(POD_CHAIN_PREFIX) && gone(c.name.slice(POD_CHAIN_PREFIX.length)));
  if (goneChains.length === 0) return [];
  const names = new Set(goneChains.map((c) => c.name));
  const changes: NftChange[] = [];
  for (const map of state.maps) {
    const keys = map.elements.filter((e) => e.verdict && "chain" in e.verdict && names.has(e.verdict.chain)).map((e) => [...e.key]);
    if (keys.length > 0) changes.push({ op: "deleteElements", setOrMap: map.name, keys });
  }
  // The hairpin targets are the chains' DNAT destinations; another pod cannot hold the same one.
  const targets4: NftValue[][] = [];
  const targets6: NftValue[][] = [];
  for (const chain of goneChains) {
    for (const rule of chain.rules) {
      const protocol = protocolOf(rule.statements);
      const dnat = rule.statements.find((s): s is Extract<NftStatement, { dnat: unknown }> => "dnat" in s)?.dnat;
      if (protocol === undefined || !dnat || dnat.port === undefined) continue;
      (dnat.family === "ip6" ? targets6 : targets4).push([dnat.address, protocol, dnat.port]);
    }
  }
  for (const [name, keys] of [[TARGETS4, targets4], [TARGETS6, targets6]] as const) {
    const present = state.sets.find((s) => s.name === name)?.elements ?? [];
    const wanted = keys.filter((k) => present.some((p) => p.length === k.length && p.every((v, i) => String(v) === String(k[i]))));
    if (wanted.length > 0) changes.push({ op: "deleteElements", setOrMap: name, keys: wanted });
  }
  for (const chain of goneChains) changes.push({ op: "deleteChain", name: chain.name });
  return changes;
}

/** The protocol a DNAT rule matched: nft may list `meta l4proto tcp th dport` as `tcp dport`. */
function protocolOf(statements: readonly NftStatement[]): NftValue | undefined {
  for (const s of statements) {
    if (!("match" in s)) continue;
    if (s.match === "meta l4proto" && !Array.isArray(s.value)) return s.value as NftValue;
    if (s.match === "tcp dport") return "tcp";
    if (s.match === "udp dport") return "udp";
  }
  return undefined;
}

/**
 * Removes what addPodFilters added for the veths `gone` selects. Idempotent.
 *
 * The anti-spoofing elements go straight over nf_tables netlink (kernel/nft/interface-elements.ts):
 * every key of the table starts with the veth's name, so they are found without the pod's addresses,
 * which a repeated DEL or a delegated IPAM may not know. 0.3-0.6 ms, against 14 ms for reading both
 * tables through libnftables and running a script (bench/RESULTS.md, CNI). The hostPort table is read
 * through libnftables only when one of the veths has a DNAT chain there (its pod had hostPorts): its
 * elements are found from that chain's rules. The two tables change in two transactions; a failure
 * in between leaves the hostPort part for the runtime's next DEL, which finds it the same way.
 */
export function removePodFilters(gone: (hostVeth: string) => boolean): void {
  removeInterfaceElements(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, [PORTS_SET, ALLOWED4, ALLOWED6], gone);
  mark("anti-spoofing removed");
  const hasChain = listChainNames(HOSTPORT_FAMILY, HOSTPORT_TABLE).some((name) => name.startsWith(POD_CHAIN_PREFIX) && gone(name.slice(POD_CHAIN_PREFIX.length)));
  if (!hasChain) return;
  const text = script([], hostportRemovals(readTable(HOSTPORT_FAMILY, HOSTPORT_TABLE), gone));
  if (text !== "") runNft(text);
  mark("hostPorts removed");
}

/** CHECK: the pod's anti-spoofing pairs are in place (a missing one means its traffic is dropped). */
export function checkAntispoof(hostVeth: string, podIps: readonly string[]): void {
  const table = readTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE);
  const has = (set: string, key: readonly string[]): boolean =>
    (table?.sets.find((s) => s.name === set)?.elements ?? []).some((e) => e.length === key.length && e.every((v, i) => String(v) === key[i]));
  if (!has(PORTS_SET, [hostVeth])) throw new CniError(ErrorCode.Kernel, `anti-spoofing does not check ${hostVeth}: it is missing from table ${ANTISPOOF_FAMILY} ${ANTISPOOF_TABLE}`);
  for (const ip of podIps) {
    if (!has(isV6(ip) ? ALLOWED6 : ALLOWED4, [hostVeth, ip])) throw new CniError(ErrorCode.Kernel, `anti-spoofing does not allow ${ip} from ${hostVeth}: the pod's traffic from it is dropped`);
  }
}
