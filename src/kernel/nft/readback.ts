// A table as the kernel holds it, decoded from `nft -j list table FAMILY NAME` (nft's JSON schema,
// libnftables-json(5)) back into the typed model, so it can be diffed against what an owner wants.
// Rules are decoded into the model's statement vocabulary; a rule using anything else (added by
// hand, or by a newer podnet) is kept as `opaque`, which never equals a wanted rule, so the diff
// replaces its chain. Counters' packet and byte counts are dropped: they are state, not config.

import type {
  NftBaseChain, NftChain, NftCounter, NftDataType, NftFamily, NftMap, NftMapElement, NftRule, NftSelector, NftSet, NftStatement,
  NftTable, NftValue, NftVerdict,
} from "./model.ts";

export interface NftRuleState extends NftRule {
  handle: number;
  /** The rule's JSON when it holds an expression outside the model's vocabulary. */
  opaque?: string;
}

export interface NftChainState extends NftChain {
  handle: number;
  rules: readonly NftRuleState[];
}

export interface NftCounterState extends NftCounter {
  packets: number;
  bytes: number;
}

/** A table read back from the kernel: the model plus the handles nft assigned and counter values. */
export interface NftTableState extends NftTable {
  chains: readonly NftChainState[];
  counters: readonly NftCounterState[];
}

export class NftDecodeError extends Error {
  constructor(message: string) {
    super(`nft JSON: ${message}`);
    this.name = "NftDecodeError";
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Thrown inside rule decoding for an expression outside the vocabulary; caught per rule. */
class Unrecognised extends Error {}

function fail(what: string, value: Json | undefined): never {
  throw new Unrecognised(`${what}: ${JSON.stringify(value)}`);
}

const PAYLOAD_SELECTORS: Record<string, NftSelector> = {
  "ip saddr": "ip saddr", "ip daddr": "ip daddr", "ip6 saddr": "ip6 saddr", "ip6 daddr": "ip6 daddr",
  "th dport": "th dport", "th sport": "th sport", "tcp dport": "tcp dport", "udp dport": "udp dport",
  // nft names a transport-header port by the protocol an earlier match pinned down.
  "tcp sport": "th sport", "udp sport": "th sport",
  "ether saddr": "ether saddr", "ether type": "ether type",
  "arp operation": "arp operation", "arp saddr ip": "arp saddr ip", "arp saddr ether": "arp saddr ether",
};

function decodeSelector(e: Json | undefined): NftSelector {
  if (!isObject(e)) fail("selector", e);
  const payload = e["payload"];
  if (isObject(payload)) {
    const name = `${String(payload["protocol"])} ${String(payload["field"])}`;
    const selector = PAYLOAD_SELECTORS[name];
    if (selector) return selector;
    fail("payload", e);
  }
  const meta = e["meta"];
  if (isObject(meta)) {
    const key = meta["key"];
    if (key === "l4proto" || key === "nfproto" || key === "mark" || key === "iifname" || key === "oifname" || key === "pkttype") return `meta ${key}`;
    fail("meta", e);
  }
  const ct = e["ct"];
  if (isObject(ct)) {
    const key = ct["key"];
    if ((key === "state" || key === "status" || key === "mark") && ct["dir"] === undefined) return `ct ${key}`;
    fail("ct", e);
  }
  const fib = e["fib"];
  if (isObject(fib) && fib["result"] === "type" && JSON.stringify(fib["flags"]) === '["daddr"]') return "fib daddr type";
  fail("selector", e);
}

function decodeSelectors(e: Json | undefined): NftSelector[] {
  if (isObject(e) && Array.isArray(e["concat"])) return e["concat"].map(decodeSelector);
  return [decodeSelector(e)];
}

/** A literal: string, number, prefix, range. */
export function decodeValue(e: Json | undefined): NftValue {
  if (typeof e === "string" || typeof e === "number") return e;
  if (isObject(e)) {
    const prefix = e["prefix"];
    if (isObject(prefix) && typeof prefix["addr"] === "string" && typeof prefix["len"] === "number") return `${prefix["addr"]}/${prefix["len"]}`;
    const range = e["range"];
    if (Array.isArray(range) && range.length === 2) return `${decodeValue(range[0])}-${decodeValue(range[1])}`;
  }
  fail("value", e);
}

function decodeTuple(e: Json | undefined): NftValue[] {
  if (isObject(e) && Array.isArray(e["concat"])) return e["concat"].map(decodeValue);
  return [decodeValue(e)];
}

export function decodeVerdict(e: Json | undefined): NftVerdict {
  if (isObject(e)) {
    for (const v of ["accept", "drop", "return", "continue"] as const) if (v in e && e[v] === null) return { verdict: v };
    for (const v of ["jump", "goto"] as const) {
      const target = e[v];
      if (isObject(target) && typeof target["target"] === "string") return { verdict: v, chain: target["target"] };
    }
  }
  fail("verdict", e);
}

function setReference(e: Json | undefined): string | undefined {
  return typeof e === "string" && e.startsWith("@") ? e.slice(1) : undefined;
}

function decodeMatch(m: JsonObject): NftStatement {
  const op = m["op"];
  const left = m["left"];
  const right = m["right"];
  const set = setReference(right);
  if (set !== undefined) {
    if (op !== "==" && op !== "!=") fail("lookup op", op ?? null);
    return op === "!=" ? { lookup: decodeSelectors(left), set, negate: true } : { lookup: decodeSelectors(left), set };
  }
  if (isObject(left) && isObject(left["numgen"])) {
    const numgen = left["numgen"];
    if (op !== "==" || numgen["mode"] !== "random" || (numgen["offset"] ?? 0) !== 0 || typeof numgen["mod"] !== "number" || typeof right !== "number") fail("numgen match", m);
    return { numgenMatch: { mod: numgen["mod"], value: right } };
  }
  const selector = decodeSelector(left);
  // `in` is how nft shows a match on a bitmask (ct state new); it means the same as ==.
  if (op !== "==" && op !== "!=" && op !== "in") fail("match op", op ?? null);
  const value = isObject(right) && Array.isArray(right["set"]) ? right["set"].map(decodeValue) : decodeValue(right);
  return op === "!=" ? { match: selector, op: "!=", value } : { match: selector, value };
}

function decodeVmap(v: JsonObject): NftStatement {
  const key = v["key"];
  const data = v["data"];
  const map = setReference(data);
  if (isObject(key) && isObject(key["numgen"])) {
    const numgen = key["numgen"];
    if (numgen["mode"] !== "random" || (numgen["offset"] ?? 0) !== 0 || !isObject(data) || !Array.isArray(data["set"])) fail("numgen", key);
    const verdicts: NftVerdict[] = [];
    for (const entry of data["set"]) {
      if (!Array.isArray(entry) || typeof entry[0] !== "number") fail("numgen entry", entry);
      verdicts[entry[0]] = decodeVerdict(entry[1]);
    }
    if (verdicts.length !== numgen["mod"] || verdicts.some((x) => x === undefined)) fail("numgen entries", data);
    return { numgenVmap: verdicts };
  }
  const selectors = decodeSelectors(key);
  if (map !== undefined) return { vmapLookup: selectors, map };
  if (isObject(data) && Array.isArray(data["set"])) {
    const entries = data["set"].map((entry) => {
      if (!Array.isArray(entry) || entry.length !== 2) fail("vmap entry", entry);
      return { key: decodeTuple(entry[0]), verdict: decodeVerdict(entry[1]) };
    });
    return { inlineVmap: selectors, entries };
  }
  fail("vmap", v);
}

/**
 * nft 1.0.6 leaves "family" out of a nat statement in an `ip` or `ip6` table, where the table's
 * family is the statement's; only an `inet` table's statements carry it.
 */
function decodeNat(kind: "dnat" | "snat", n: Json | undefined, tableFamily: NftFamily): NftStatement {
  const implied = tableFamily === "ip" || tableFamily === "ip6" ? tableFamily : undefined;
  const family = isObject(n) ? (n["family"] ?? implied) : undefined;
  if (kind === "dnat" && isObject(n) && isObject(n["addr"])) return decodeDnatMap(n, family);
  if (!isObject(n) || (family !== "ip" && family !== "ip6") || typeof n["addr"] !== "string" || n["flags"] !== undefined) fail(kind, n ?? null);
  const address = n["addr"];
  if (kind === "snat") {
    if (n["port"] !== undefined) fail("snat port", n);
    return { snat: { family, address } };
  }
  const port = n["port"];
  if (port === undefined) return { dnat: { family, address } };
  if (typeof port !== "number") fail("dnat port", n);
  return { dnat: { family, address, port } };
}

const REJECTS: Record<string, NftStatement> = {
  "tcp reset": { reject: "tcp reset" },
  "icmp port-unreachable": { reject: "icmp port-unreachable" },
  "icmp host-unreachable": { reject: "icmp host-unreachable" },
  "icmpx port-unreachable": { reject: "icmpx port-unreachable" },
  "icmpx admin-prohibited": { reject: "icmpx admin-prohibited" },
};

function decodeStatement(e: Json, tableFamily: NftFamily): NftStatement {
  if (!isObject(e)) fail("statement", e);
  const keys = Object.keys(e);
  if (keys.length !== 1) fail("statement", e);
  const kind = keys[0]!;
  const body = e[kind];
  switch (kind) {
    case "accept": case "drop": case "return": case "continue": case "jump": case "goto":
      return decodeVerdict(e);
    case "match":
      if (!isObject(body)) fail("match", body ?? null);
      return decodeMatch(body);
    case "vmap":
      if (!isObject(body)) fail("vmap", body ?? null);
      return decodeVmap(body);
    case "dnat": case "snat":
      return decodeNat(kind, body, tableFamily);
    case "masquerade": {
      if (body === null) return { masquerade: {} };
      const flags = isObject(body) ? body["flags"] : undefined;
      if (flags === "fully-random" || JSON.stringify(flags) === '["fully-random"]') return { masquerade: { fullyRandom: true } };
      fail("masquerade", body ?? null);
    }
    case "counter":
      if (typeof body === "string") return { namedCounter: body };
      if (isObject(body) && typeof body["packets"] === "number") return { counter: true };
      fail("counter", body ?? null);
    case "reject": {
      if (!isObject(body)) fail("reject", body ?? null);
      const name = body["expr"] === undefined ? String(body["type"]) : `${String(body["type"])} ${String(body["expr"])}`;
      const statement = REJECTS[name];
      if (!statement) fail("reject", body);
      return statement;
    }
    case "log":
      if (isObject(body) && typeof body["prefix"] === "string" && Object.keys(body).length === 1) return { log: { prefix: body["prefix"] } };
      fail("log", body ?? null);
    case "set": {
      if (!isObject(body) || body["op"] !== "update") fail("set", body ?? null);
      const set = setReference(body["set"]);
      if (set === undefined) fail("set", body);
      return { updateSet: set, key: decodeSelectors(body["elem"]) };
    }
    case "mangle": {
      if (!isObject(body) || !isObject(body["key"])) fail("mangle", body ?? null);
      const target = JSON.stringify(body["key"]);
      const value = body["value"];
      if (target === '{"meta":{"key":"nftrace"}}' && value === 1) return { nftrace: true };
      if (target === '{"meta":{"key":"mark"}}' && isObject(value) && Array.isArray(value["|"])) {
        const [left, mark] = value["|"];
        if (JSON.stringify(left) === target && typeof mark === "number") return { setMarkOr: mark };
      }
      fail("mangle", body);
    }
    default:
      fail("statement", e);
  }
}

function decodeRule(r: JsonObject, tableFamily: NftFamily): NftRuleState {
  const handle = Number(r["handle"]);
  const comment = typeof r["comment"] === "string" ? r["comment"] : undefined;
  const base = comment === undefined ? { handle } : { handle, comment };
  const expr = r["expr"];
  try {
    if (!Array.isArray(expr)) fail("expr", expr ?? null);
    return { ...base, statements: expr.map((statement) => decodeStatement(statement, tableFamily)) };
  } catch (err) {
    if (!(err instanceof Unrecognised)) throw err;
    return { ...base, statements: [], opaque: JSON.stringify(expr) };
  }
}

function decodeTypes(t: Json | undefined, what: string): NftDataType[] {
  // nft writes a concatenated map value type as one string, "ipv4_addr . inet_service".
  const list = Array.isArray(t) ? t : typeof t === "string" ? t.split(" . ") : [t];
  return list.map((x) => {
    if (typeof x !== "string") throw new NftDecodeError(`${what}: type ${JSON.stringify(t)}`);
    return x as NftDataType;
  });
}

/** A set element, unwrapping `{elem: {val, timeout, expires}}` of sets with timeouts. */
function decodeElementKey(e: Json): NftValue[] {
  const wrapped = isObject(e) && isObject(e["elem"]) ? e["elem"]["val"] : e;
  try {
    return decodeTuple(wrapped);
  } catch (err) {
    if (err instanceof Unrecognised) throw new NftDecodeError(`element ${JSON.stringify(e)}`);
    throw err;
  }
}

/** nft writes a one-item list as the bare item. */
function stringList(v: Json | undefined): string[] {
  if (typeof v === "string") return [v];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

function decodeSet(s: JsonObject): NftSet {
  const name = String(s["name"]);
  const flags = stringList(s["flags"]) as NonNullable<NftSet["flags"]>;
  const set: NftSet = {
    name,
    keyType: decodeTypes(s["type"], `set ${name}`),
    ...(flags.length > 0 ? { flags } : {}),
    ...(typeof s["timeout"] === "number" ? { timeoutSeconds: s["timeout"] } : {}),
    ...(typeof s["comment"] === "string" ? { comment: s["comment"] } : {}),
    elements: Array.isArray(s["elem"]) ? s["elem"].map(decodeElementKey) : [],
  };
  return set;
}

function decodeMap(m: JsonObject): NftMap {
  const name = String(m["name"]);
  const valueType = decodeTypes(m["map"], `map ${name}`);
  const verdictMap = valueType.length === 1 && valueType[0] === "verdict";
  const flags = stringList(m["flags"]) as NonNullable<NftMap["flags"]>;
  const elements: NftMapElement[] = Array.isArray(m["elem"])
    ? m["elem"].map((pair) => {
        if (!Array.isArray(pair) || pair.length !== 2) throw new NftDecodeError(`map ${name} element ${JSON.stringify(pair)}`);
        try {
          const key = decodeTuple(pair[0]);
          return verdictMap ? { key, verdict: decodeVerdict(pair[1]) } : { key, value: decodeTuple(pair[1]) };
        } catch (err) {
          if (err instanceof Unrecognised) throw new NftDecodeError(`map ${name} element ${JSON.stringify(pair)}`);
          throw err;
        }
      })
    : [];
  const keyType = decodeTypes(m["type"], `map ${name}`);
  return {
    name,
    // A `typeof numgen …` key shows as "integer"; podnet makes such maps only for DNAT targets.
    keyType: keyType.length === 1 && (keyType[0] as string) === "integer" && valueType.join(" . ") === "ipv4_addr . inet_service" ? ["numgen"] : keyType,
    valueType,
    ...(flags.length > 0 ? { flags } : {}),
    ...(typeof m["comment"] === "string" ? { comment: m["comment"] } : {}),
    elements,
  };
}

function decodeBase(c: JsonObject): NftBaseChain | undefined {
  if (c["hook"] === undefined) return undefined;
  return {
    type: c["type"] as NftBaseChain["type"],
    hook: c["hook"] as NftBaseChain["hook"],
    priority: Number(c["prio"]),
    ...(c["policy"] === "accept" || c["policy"] === "drop" ? { policy: c["policy"] } : {}),
    ...(typeof c["dev"] === "string" ? { device: c["dev"] } : {}),
  };
}

function decodeCounter(c: JsonObject): NftCounterState {
  return {
    name: String(c["name"]),
    ...(typeof c["comment"] === "string" ? { comment: c["comment"] } : {}),
    packets: Number(c["packets"] ?? 0),
    bytes: Number(c["bytes"] ?? 0),
  };
}

/** The table in `nft -j list table FAMILY NAME` output (or `list counters table`, which gives only counters). */
export function decodeTableJson(text: string, family: NftFamily, name: string): NftTableState {
  let doc: Json;
  try {
    doc = JSON.parse(text) as Json;
  } catch (err) {
    throw new NftDecodeError(`not JSON: ${(err as Error).message}`);
  }
  const items = isObject(doc) ? doc["nftables"] : undefined;
  if (!Array.isArray(items)) throw new NftDecodeError("no nftables array");
  const chains = new Map<string, { chain: JsonObject; rules: NftRuleState[] }>();
  const sets: NftSet[] = [];
  const maps: NftMap[] = [];
  const counters: NftCounterState[] = [];
  let comment: string | undefined;
  for (const item of items) {
    if (!isObject(item)) continue;
    const [kind] = Object.keys(item);
    const body = kind === undefined ? undefined : item[kind];
    if (!isObject(body)) continue;
    if (kind !== "metainfo" && (body["family"] !== family || (kind === "table" ? body["name"] : body["table"]) !== name)) continue;
    if (kind === "table" && typeof body["comment"] === "string") comment = body["comment"];
    else if (kind === "chain") chains.set(String(body["name"]), { chain: body, rules: [] });
    else if (kind === "rule") {
      const chain = chains.get(String(body["chain"]));
      if (!chain) throw new NftDecodeError(`rule in unknown chain ${JSON.stringify(body["chain"])}`);
      chain.rules.push(decodeRule(body, family));
    } else if (kind === "set") sets.push(decodeSet(body));
    else if (kind === "map") maps.push(decodeMap(body));
    else if (kind === "counter") counters.push(decodeCounter(body));
  }
  const chainStates: NftChainState[] = [...chains.values()].map(({ chain, rules }) => {
    const base = decodeBase(chain);
    return { name: String(chain["name"]), handle: Number(chain["handle"]), rules, ...(base ? { base } : {}) };
  });
  return { family, name, chains: chainStates, sets, maps, counters, ...(comment === undefined ? {} : { comment }) };
}

/** `dnat ip to numgen random mod N [offset O] map @MAP`. */
function decodeDnatMap(n: JsonObject, family: Json | undefined): NftStatement {
  const addr = n["addr"];
  const map = isObject(addr) && isObject(addr["map"]) ? addr["map"] : undefined;
  const key = map && isObject(map["key"]) ? map["key"]["numgen"] : undefined;
  const name = map ? setReference(map["data"]) : undefined;
  if (family !== "ip" || !isObject(key) || key["mode"] !== "random" || typeof key["mod"] !== "number" || name === undefined || n["port"] !== undefined || n["flags"] !== undefined) fail("dnat map", n);
  const offset = key["offset"] ?? 0;
  if (typeof offset !== "number") fail("dnat map offset", n);
  return { dnatMap: { family: "ip", mod: key["mod"], offset, map: name } };
}
