// A typed model of one nftables table: chains, sets, maps (verdict maps included), their elements,
// and rules built from a closed vocabulary of statements. Callers (the agent's reconcilers, the
// plugin's ipMasq, the service proxy) describe what they want in these types; only src/kernel turns
// them into nft syntax, applies them as one atomic transaction and reads them back. Nothing outside
// src/kernel writes or parses nft text.
//
// The vocabulary is what podnet needs, in kube-proxy's nftables layout (KEP-3866): concatenated
// lookups into verdict maps, `numgen random mod N` to pick an endpoint, DNAT, masquerade by mark,
// rejects, affinity sets with timeouts, and anti-spoofing matches.

export type NftFamily = "ip" | "ip6" | "inet" | "arp" | "bridge" | "netdev";

/** Packet fields a rule can match on or use as a lookup key. */
export type NftSelector =
  | "ip saddr" | "ip daddr" | "ip6 saddr" | "ip6 daddr"
  | "meta l4proto" | "meta nfproto" | "meta mark" | "meta iifname" | "meta oifname" | "meta pkttype"
  | "iifname" | "oifname"
  | "th dport" | "th sport" | "tcp dport" | "udp dport"
  | "ct state" | "ct status" | "ct mark"
  | "fib daddr type"
  | "ether saddr" | "ether type"
  | "arp operation" | "arp saddr ip" | "arp saddr ether";

/** Element and key types for sets and maps. */
export type NftDataType =
  | "ipv4_addr" | "ipv6_addr" | "ether_addr" | "inet_proto" | "inet_service" | "ifname" | "mark" | "verdict"
  /**
   * The 32-bit number `numgen` yields. nft has no named type for it, so a map keyed by it is
   * declared `typeof numgen random mod 4096 : ip daddr . tcp dport` (the only such map podnet makes:
   * valueType ["ipv4_addr", "inet_service"]; the mod written there is only a type, not a bound).
   */
  | "numgen";

/** A literal: an address, a CIDR, a number, a port, a protocol name, an interface name, a keyword value. */
export type NftValue = string | number;

export type NftVerdict =
  | { verdict: "accept" }
  | { verdict: "drop" }
  | { verdict: "return" }
  | { verdict: "continue" }
  | { verdict: "jump"; chain: string }
  | { verdict: "goto"; chain: string };

export type NftRejectKind = "tcp reset" | "icmp port-unreachable" | "icmpx port-unreachable" | "icmpx admin-prohibited" | "icmp host-unreachable";

export type NftStatement =
  /** `SELECTOR [!=] VALUE`, a `{ a, b }` anonymous set when given several values. */
  | { match: NftSelector; op?: "==" | "!="; value: NftValue | readonly NftValue[] }
  /** `SEL . SEL [!=] @set`. */
  | { lookup: readonly NftSelector[]; set: string; negate?: boolean }
  /** `SEL . SEL vmap @map`: the map's element decides the verdict. */
  | { vmapLookup: readonly NftSelector[]; map: string }
  /** `numgen random mod N vmap { 0 : goto a, 1 : goto b }`. */
  | { numgenVmap: readonly NftVerdict[] }
  /**
   * `numgen random mod MOD == VALUE`: a fresh random draw per rule. A cascade of these (mod N, then
   * N-1, … each == 0) picks one of N targets evenly with no anonymous map: the kernel names every
   * anonymous map by scanning the table's sets, so thousands of `numgenVmap`s load superlinearly.
   */
  | { numgenMatch: { mod: number; value: number } }
  /** `SEL . SEL vmap { k : verdict, ... }` with an anonymous map. */
  | { inlineVmap: readonly NftSelector[]; entries: readonly { key: readonly NftValue[]; verdict: NftVerdict }[] }
  | { dnat: { family: "ip" | "ip6"; address: string; port?: number } }
  /**
   * `dnat ip to numgen random mod MOD offset OFFSET map @MAP`: a fresh number in
   * OFFSET..OFFSET+MOD-1 is looked up in a data map (keyType ["numgen"], valueType
   * ["ipv4_addr", "inet_service"]) whose element gives the address and port. Endpoints are then
   * elements, not rules: changing them never makes the kernel revalidate the table.
   */
  | { dnatMap: { family: "ip"; mod: number; offset: number; map: string } }
  | { snat: { family: "ip" | "ip6"; address: string } }
  | { masquerade: { fullyRandom?: boolean } }
  /** `meta mark set meta mark or VALUE`. */
  | { setMarkOr: number }
  /** `update @set { SEL . SEL }`: refreshes a dynamic set's element (affinity). */
  | { updateSet: string; key: readonly NftSelector[] }
  | { counter: true }
  /** A named counter: `counter name NAME`. */
  | { namedCounter: string }
  | { reject: NftRejectKind }
  | { nftrace: true }
  | { log: { prefix: string } }
  | NftVerdict;

export interface NftRule {
  statements: readonly NftStatement[];
  /** Stored as the rule's comment, so a reader of `nft list` sees why it is there. */
  comment?: string;
}

export type NftHook = "prerouting" | "input" | "forward" | "output" | "postrouting" | "ingress" | "egress";

export interface NftBaseChain {
  type: "filter" | "nat" | "route";
  hook: NftHook;
  /** A number or a standard name ("dstnat", "srcnat", "filter", "raw", "mangle"), optionally with an offset ("dstnat + 5"). */
  priority: number | string;
  policy?: "accept" | "drop";
  /** For netdev ingress/egress chains. */
  device?: string;
}

export interface NftChain {
  name: string;
  /** Absent for regular (jump target) chains. */
  base?: NftBaseChain;
  rules: readonly NftRule[];
}

export interface NftSet {
  name: string;
  /** One type, or several for a concatenated key (`ipv4_addr . inet_proto . inet_service`). */
  keyType: readonly NftDataType[];
  flags?: readonly ("interval" | "timeout" | "dynamic" | "constant")[];
  /** Default element timeout in seconds. */
  timeoutSeconds?: number;
  /** Interval sets only: merge overlapping and adjacent elements instead of refusing them (nft's `auto-merge`). */
  autoMerge?: boolean;
  /** Elements, each a tuple matching keyType; a CIDR where the set has the interval flag. */
  elements: readonly (readonly NftValue[])[];
  comment?: string;
}

export interface NftMapElement {
  key: readonly NftValue[];
  /** For verdict maps. */
  verdict?: NftVerdict;
  /** For data maps. */
  value?: readonly NftValue[];
}

export interface NftMap {
  name: string;
  keyType: readonly NftDataType[];
  /** "verdict" for a verdict map; else the data type(s). */
  valueType: readonly NftDataType[];
  flags?: readonly ("interval" | "constant")[];
  /**
   * A numgen map only: the protocol its value's port is declared for (`ip daddr . tcp dport`);
   * nft 1.0.6 refuses a rule whose `meta l4proto` is another. Not shown by `nft -j`: a read-back
   * map has none, and the diff does not compare it (the map's name should say it).
   */
  numgenDport?: "tcp" | "udp" | "sctp";
  elements: readonly NftMapElement[];
  comment?: string;
}

/** A named counter object, counted into by `{ namedCounter: NAME }` and read with readCounters. */
export interface NftCounter {
  name: string;
  comment?: string;
}

export interface NftTable {
  family: NftFamily;
  name: string;
  chains: readonly NftChain[];
  sets: readonly NftSet[];
  maps: readonly NftMap[];
  /** Named counters that rules of this table count into (absent: none). */
  counters?: readonly NftCounter[];
  comment?: string;
}

/**
 * One atomic change to a table, as kube-proxy's knftables transaction: ensure the table exists,
 * then add, replace (flush + re-add), or delete individual objects and elements. The kernel layer
 * renders it into one `nft -f` transaction (or libnftables call).
 */
export type NftChange =
  | { op: "ensureTable" }
  | { op: "deleteTable" }
  | { op: "flushTable" }
  | { op: "addChain"; chain: NftChain }
  /** Flush the chain and add its rules anew (creating the chain if missing). */
  | { op: "replaceChain"; chain: NftChain }
  | { op: "deleteChain"; name: string }
  | { op: "addSet"; set: NftSet }
  | { op: "deleteSet"; name: string }
  | { op: "addMap"; map: NftMap }
  | { op: "deleteMap"; name: string }
  | { op: "addCounter"; counter: NftCounter }
  | { op: "deleteCounter"; name: string }
  | { op: "addElements"; setOrMap: string; elements: readonly (readonly NftValue[])[] | readonly NftMapElement[] }
  /**
   * Deleting an absent element fails the whole transaction, unless `ifPresent` (sets only): then
   * each element is added first, so the delete always finds it.
   */
  | { op: "deleteElements"; setOrMap: string; keys: readonly (readonly NftValue[])[]; ifPresent?: boolean };

export interface NftTransaction {
  family: NftFamily;
  table: string;
  changes: readonly NftChange[];
}
