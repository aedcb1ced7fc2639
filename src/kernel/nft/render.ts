// The nft script text of a typed transaction: one command per line, applied by `nft -f FILE` (or
// libnftables) as one atomic batch. Everything that reaches the text is checked first: names must be
// plain identifiers and not nft keywords (rejected, never escaped: nft has no quoting for names), values may hold only the characters addresses, ports,
// interface names and keywords use, and comments must fit nft's quoted-string grammar, which has no
// escapes at all (a `"` inside a comment cannot be written).

import type {
  NftBaseChain, NftChain, NftChange, NftDataType, NftFamily, NftMap, NftMapElement, NftRule, NftSelector, NftSet,
  NftStatement, NftTable, NftTransaction, NftValue, NftVerdict,
} from "./model.ts";
import { NFT_KEYWORDS } from "./keywords.ts";

export class NftModelError extends Error {
  constructor(readonly field: string, problem: string) {
    super(`nft model: ${field}: ${problem}`);
    this.name = "NftModelError";
  }
}

const FAMILIES: ReadonlySet<string> = new Set(["ip", "ip6", "inet", "arp", "bridge", "netdev"]);
// nft's identifier grammar allows more, but these cover every name podnet makes (kube-proxy-style
// chain names use `-`, `/` and `.`), and none of them can end a token early.
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
const NAME_MAX = 255;
// Addresses, CIDRs, ranges (a-b), ports, MACs, protocol and keyword names, hex marks.
const VALUE = /^[A-Za-z0-9_.:/-]+$/;
// Linux interface names: at most 15 bytes, no `/`, whitespace or quotes (we also refuse `"` and `\`).
const IFNAME = /^[^\s"\\/]{1,15}$/;
const COMMENT_MAX = 128;
const IFNAME_SELECTORS: ReadonlySet<NftSelector> = new Set(["iifname", "oifname", "meta iifname", "meta oifname"]);

export function checkIdentifier(field: string, name: string): string {
  if (typeof name !== "string" || name.length === 0 || name.length > NAME_MAX || !IDENTIFIER.test(name)) {
    throw new NftModelError(field, `${JSON.stringify(name)} is not a valid nft name (a letter or _, then letters, digits, _ . / -; at most ${NAME_MAX})`);
  }
  // nft cannot quote a name, so one of its keywords cannot be a name at all.
  if (NFT_KEYWORDS.has(name)) throw new NftModelError(field, `${JSON.stringify(name)} is an nft keyword, which nft does not accept as a name`);
  return name;
}

/** `"text"`, for comments and log prefixes: nft strings cannot escape a quote, so such text is refused. */
export function quoteText(field: string, text: string): string {
  if (typeof text !== "string" || /["\\\x00-\x1f\x7f]/.test(text)) {
    throw new NftModelError(field, `${JSON.stringify(text)} holds a quote, backslash or control character, which nft strings cannot carry`);
  }
  if (Buffer.byteLength(text) > COMMENT_MAX) throw new NftModelError(field, `longer than ${COMMENT_MAX} bytes`);
  return `"${text}"`;
}

export function checkFamily(family: NftFamily): NftFamily {
  if (!FAMILIES.has(family)) throw new NftModelError("family", `${JSON.stringify(family)} is not an nftables family`);
  return family;
}

/** One literal as nft text; `ifname` says the value is an interface name, which nft wants quoted. */
function renderValue(field: string, value: NftValue, ifname = false): string {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) throw new NftModelError(field, `${value} is not a non-negative integer`);
    return String(value);
  }
  if (ifname) {
    if (typeof value !== "string" || !IFNAME.test(value)) throw new NftModelError(field, `${JSON.stringify(value)} is not an interface name`);
    return `"${value}"`;
  }
  if (typeof value !== "string" || !VALUE.test(value)) throw new NftModelError(field, `${JSON.stringify(value)} is not a plain nft value`);
  return value;
}

function renderSelectors(field: string, selectors: readonly NftSelector[]): string {
  if (selectors.length === 0) throw new NftModelError(field, "needs at least one selector");
  return selectors.join(" . ");
}

/** A tuple key (`a . b . c`); components at `ifnamePositions` are interface names. */
function renderKey(field: string, key: readonly NftValue[], ifnamePositions: readonly boolean[] = []): string {
  if (key.length === 0) throw new NftModelError(field, "empty key");
  return key.map((v, i) => renderValue(`${field}[${i}]`, v, ifnamePositions[i] ?? false)).join(" . ");
}

export function renderVerdict(field: string, verdict: NftVerdict): string {
  switch (verdict.verdict) {
    case "accept": case "drop": case "return": case "continue":
      return verdict.verdict;
    case "jump": case "goto":
      return `${verdict.verdict} ${checkIdentifier(`${field}.chain`, verdict.chain)}`;
    default:
      throw new NftModelError(field, `unknown verdict ${JSON.stringify((verdict as { verdict: unknown }).verdict)}`);
  }
}

function isVerdict(statement: NftStatement): statement is NftVerdict {
  return "verdict" in statement;
}

export function renderStatement(field: string, s: NftStatement): string {
  if (isVerdict(s)) return renderVerdict(field, s);
  if ("match" in s) {
    const ifname = IFNAME_SELECTORS.has(s.match);
    const op = s.op === "!=" ? "!= " : "";
    if (s.op !== undefined && s.op !== "==" && s.op !== "!=") throw new NftModelError(`${field}.op`, `unknown operator ${JSON.stringify(s.op)}`);
    const values = Array.isArray(s.value) ? (s.value as readonly NftValue[]) : [s.value as NftValue];
    if (values.length === 0) throw new NftModelError(`${field}.value`, "empty value list");
    const rendered = values.map((v, i) => renderValue(`${field}.value[${i}]`, v, ifname));
    return `${renderSelectors(`${field}.match`, [s.match])} ${op}${rendered.length === 1 ? rendered[0] : `{ ${rendered.join(", ")} }`}`;
  }
  if ("lookup" in s) return `${renderSelectors(`${field}.lookup`, s.lookup)} ${s.negate ? "!= " : ""}@${checkIdentifier(`${field}.set`, s.set)}`;
  if ("vmapLookup" in s) return `${renderSelectors(`${field}.vmapLookup`, s.vmapLookup)} vmap @${checkIdentifier(`${field}.map`, s.map)}`;
  if ("numgenMatch" in s) {
    const { mod, value } = s.numgenMatch;
    if (!Number.isSafeInteger(mod) || mod < 1) throw new NftModelError(`${field}.numgenMatch.mod`, `${mod} is not a positive integer`);
    if (!Number.isSafeInteger(value) || value < 0 || value >= mod) throw new NftModelError(`${field}.numgenMatch.value`, `${value} is not in 0..${mod - 1}`);
    return `numgen random mod ${mod} ${value}`;
  }
  if ("numgenVmap" in s) {
    if (s.numgenVmap.length === 0) throw new NftModelError(`${field}.numgenVmap`, "needs at least one verdict");
    const entries = s.numgenVmap.map((v, i) => `${i} : ${renderVerdict(`${field}.numgenVmap[${i}]`, v)}`);
    return `numgen random mod ${s.numgenVmap.length} vmap { ${entries.join(", ")} }`;
  }
  if ("inlineVmap" in s) {
    if (s.entries.length === 0) throw new NftModelError(`${field}.entries`, "needs at least one entry");
    const ifnames = s.inlineVmap.map((sel) => IFNAME_SELECTORS.has(sel));
    const entries = s.entries.map((e, i) => `${renderKey(`${field}.entries[${i}].key`, e.key, ifnames)} : ${renderVerdict(`${field}.entries[${i}].verdict`, e.verdict)}`);
    return `${renderSelectors(`${field}.inlineVmap`, s.inlineVmap)} vmap { ${entries.join(", ")} }`;
  }
  if ("dnat" in s) {
    const { family, address, port } = s.dnat;
    if (family !== "ip" && family !== "ip6") throw new NftModelError(`${field}.dnat.family`, `must be ip or ip6`);
    const addr = renderValue(`${field}.dnat.address`, address);
    const target = port === undefined ? addr : family === "ip6" ? `[${addr}]:${renderValue(`${field}.dnat.port`, port)}` : `${addr}:${renderValue(`${field}.dnat.port`, port)}`;
    return `dnat ${family} to ${target}`;
  }
  if ("dnatMap" in s) return renderDnatMap(field, s.dnatMap);
  if ("snat" in s) {
    if (s.snat.family !== "ip" && s.snat.family !== "ip6") throw new NftModelError(`${field}.snat.family`, `must be ip or ip6`);
    return `snat ${s.snat.family} to ${renderValue(`${field}.snat.address`, s.snat.address)}`;
  }
  if ("masquerade" in s) return s.masquerade.fullyRandom ? "masquerade fully-random" : "masquerade";
  if ("setMarkOr" in s) return `meta mark set meta mark or ${renderMark(`${field}.setMarkOr`, s.setMarkOr)}`;
  if ("updateSet" in s) return `update @${checkIdentifier(`${field}.updateSet`, s.updateSet)} { ${renderSelectors(`${field}.key`, s.key)} }`;
  if ("counter" in s) return "counter";
  if ("namedCounter" in s) return `counter name ${checkIdentifier(`${field}.namedCounter`, s.namedCounter)}`;
  if ("reject" in s) {
    const kinds: readonly string[] = ["tcp reset", "icmp port-unreachable", "icmpx port-unreachable", "icmpx admin-prohibited", "icmp host-unreachable"];
    if (!kinds.includes(s.reject)) throw new NftModelError(`${field}.reject`, `unknown reject kind ${JSON.stringify(s.reject)}`);
    return s.reject === "tcp reset" ? "reject with tcp reset" : `reject with ${s.reject.replace(" ", " type ")}`;
  }
  if ("nftrace" in s) return "meta nftrace set 1";
  if ("log" in s) return `log prefix ${quoteText(`${field}.log.prefix`, s.log.prefix)}`;
  throw new NftModelError(field, `unknown statement ${JSON.stringify(s)}`);
}

function renderMark(field: string, mark: number): string {
  if (!Number.isSafeInteger(mark) || mark < 0 || mark > 0xffffffff) throw new NftModelError(field, `${mark} is not a 32-bit mark`);
  return `0x${mark.toString(16).padStart(8, "0")}`;
}

export function renderRuleBody(field: string, rule: NftRule): string {
  if (rule.statements.length === 0) throw new NftModelError(`${field}.statements`, "a rule needs at least one statement");
  const body = rule.statements.map((s, i) => renderStatement(`${field}.statements[${i}]`, s)).join(" ");
  return rule.comment === undefined ? body : `${body} comment ${quoteText(`${field}.comment`, rule.comment)}`;
}

const PRIORITY = /^(raw|mangle|dstnat|filter|security|srcnat|out)( [+-] \d{1,4})?$/;

function renderBase(field: string, base: NftBaseChain): string {
  const types = ["filter", "nat", "route"];
  const hooks = ["prerouting", "input", "forward", "output", "postrouting", "ingress", "egress"];
  if (!types.includes(base.type)) throw new NftModelError(`${field}.type`, `unknown chain type ${JSON.stringify(base.type)}`);
  if (!hooks.includes(base.hook)) throw new NftModelError(`${field}.hook`, `unknown hook ${JSON.stringify(base.hook)}`);
  let priority: string;
  if (typeof base.priority === "number") {
    if (!Number.isSafeInteger(base.priority)) throw new NftModelError(`${field}.priority`, `${base.priority} is not an integer`);
    priority = String(base.priority);
  } else {
    if (!PRIORITY.test(base.priority)) throw new NftModelError(`${field}.priority`, `${JSON.stringify(base.priority)} is not a number or a standard priority name (with an optional + or - offset)`);
    priority = base.priority;
  }
  const device = base.device === undefined ? "" : ` device ${renderValue(`${field}.device`, base.device, true)}`;
  if (base.policy !== undefined && base.policy !== "accept" && base.policy !== "drop") throw new NftModelError(`${field}.policy`, `must be accept or drop`);
  const policy = base.policy === undefined ? "" : ` policy ${base.policy};`;
  return `type ${base.type} hook ${base.hook}${device} priority ${priority};${policy}`;
}

function renderTypes(field: string, types: readonly NftDataType[]): string {
  const known = ["ipv4_addr", "ipv6_addr", "ether_addr", "inet_proto", "inet_service", "ifname", "mark", "verdict"];
  if (types.length === 0) throw new NftModelError(field, "needs at least one type");
  for (const t of types) if (!known.includes(t)) throw new NftModelError(field, `unknown data type ${JSON.stringify(t)}`);
  return types.join(" . ");
}

function renderSetBody(field: string, set: NftSet): string {
  const parts = [`type ${renderTypes(`${field}.keyType`, set.keyType)};`];
  if (set.flags && set.flags.length > 0) {
    for (const f of set.flags) if (!["interval", "timeout", "dynamic", "constant"].includes(f)) throw new NftModelError(`${field}.flags`, `unknown flag ${JSON.stringify(f)}`);
    parts.push(`flags ${set.flags.join(",")};`);
  }
  if (set.timeoutSeconds !== undefined) {
    if (!Number.isSafeInteger(set.timeoutSeconds) || set.timeoutSeconds <= 0) throw new NftModelError(`${field}.timeoutSeconds`, `${set.timeoutSeconds} is not a positive whole number of seconds`);
    parts.push(`timeout ${set.timeoutSeconds}s;`);
  }
  if (set.autoMerge) {
    if (!set.flags?.includes("interval")) throw new NftModelError(`${field}.autoMerge`, "only interval sets can auto-merge");
    parts.push("auto-merge;");
  }
  if (set.comment !== undefined) parts.push(`comment ${quoteText(`${field}.comment`, set.comment)};`);
  return `{ ${parts.join(" ")} }`;
}

function renderMapBody(field: string, map: NftMap): string {
  const parts = [map.keyType.includes("numgen") ? numgenMapType(field, map) : `type ${renderTypes(`${field}.keyType`, map.keyType)} : ${renderTypes(`${field}.valueType`, map.valueType)};`];
  if (map.flags && map.flags.length > 0) {
    for (const f of map.flags) if (!["interval", "constant"].includes(f)) throw new NftModelError(`${field}.flags`, `unknown flag ${JSON.stringify(f)}`);
    parts.push(`flags ${map.flags.join(",")};`);
  }
  if (map.comment !== undefined) parts.push(`comment ${quoteText(`${field}.comment`, map.comment)};`);
  return `{ ${parts.join(" ")} }`;
}

function isMapElement(e: readonly NftValue[] | NftMapElement): e is NftMapElement {
  return !Array.isArray(e);
}

function renderElement(field: string, e: readonly NftValue[] | NftMapElement, ifnames: readonly boolean[]): string {
  if (!isMapElement(e)) return renderKey(field, e, ifnames);
  const key = renderKey(`${field}.key`, e.key, ifnames);
  if (e.verdict !== undefined && e.value !== undefined) throw new NftModelError(field, "has both a verdict and a value");
  if (e.verdict !== undefined) return `${key} : ${renderVerdict(`${field}.verdict`, e.verdict)}`;
  if (e.value !== undefined) return `${key} : ${renderKey(`${field}.value`, e.value)}`;
  throw new NftModelError(field, "a map element needs a verdict or a value");
}

/** Elements are written in lines of this many, so no single line grows without bound. */
const ELEMENTS_PER_LINE = 500;

function elementLines(prefix: string, field: string, elements: readonly (readonly NftValue[] | NftMapElement)[], ifnames: readonly boolean[]): string[] {
  const lines: string[] = [];
  for (let i = 0; i < elements.length; i += ELEMENTS_PER_LINE) {
    const chunk = elements.slice(i, i + ELEMENTS_PER_LINE).map((e, j) => renderElement(`${field}[${i + j}]`, e, ifnames));
    lines.push(`${prefix} { ${chunk.join(", ")} }`);
  }
  return lines;
}

function chainLines(where: string, field: string, chain: NftChain, replace: boolean): string[] {
  const name = checkIdentifier(`${field}.name`, chain.name);
  const lines = [chain.base ? `add chain ${where} ${name} { ${renderBase(`${field}.base`, chain.base)} }` : `add chain ${where} ${name}`];
  if (replace) lines.push(`flush chain ${where} ${name}`);
  chain.rules.forEach((rule, i) => lines.push(`add rule ${where} ${name} ${renderRuleBody(`${field}.rules[${i}]`, rule)}`));
  return lines;
}

/**
 * The positions of a key that hold interface names, which are quoted. A transaction's element
 * changes name their set but not its type; elements of ifname sets must then be strings that the
 * caller passes through `ifnameKeys` (the table's sets say which).
 */
export type IfnameKeys = ReadonlyMap<string, readonly boolean[]>;

function ifnamePositions(types: readonly NftDataType[]): boolean[] {
  return types.map((t) => t === "ifname");
}

/** Which sets' and maps' keys hold interface names, for rendering their element changes. */
export function ifnameKeysOf(table: Pick<NftTable, "sets" | "maps">): IfnameKeys {
  const keys = new Map<string, readonly boolean[]>();
  for (const s of [...table.sets, ...table.maps]) if (s.keyType.includes("ifname")) keys.set(s.name, ifnamePositions(s.keyType));
  return keys;
}

function changeLines(where: string, field: string, change: NftChange, ifnameKeys: IfnameKeys, table: string): string[] {
  switch (change.op) {
    case "ensureTable": return [`add table ${where}`];
    case "deleteTable": return [`delete table ${where}`];
    case "flushTable": return [`flush table ${where}`];
    case "addChain": return chainLines(where, `${field}.chain`, change.chain, false);
    case "replaceChain": return chainLines(where, `${field}.chain`, change.chain, true);
    case "deleteChain": {
      // The kernel refuses to delete a chain that still holds rules.
      const name = checkIdentifier(`${field}.name`, change.name);
      return [`flush chain ${where} ${name}`, `delete chain ${where} ${name}`];
    }
    case "addSet": {
      const name = checkIdentifier(`${field}.set.name`, change.set.name);
      const ifnames = ifnamePositions(change.set.keyType);
      return [`add set ${where} ${name} ${renderSetBody(`${field}.set`, change.set)}`, ...elementLines(`add element ${where} ${name}`, `${field}.set.elements`, change.set.elements, ifnames)];
    }
    case "deleteSet": return [`delete set ${where} ${checkIdentifier(`${field}.name`, change.name)}`];
    case "addMap": {
      const name = checkIdentifier(`${field}.map.name`, change.map.name);
      const ifnames = ifnamePositions(change.map.keyType);
      return [`add map ${where} ${name} ${renderMapBody(`${field}.map`, change.map)}`, ...elementLines(`add element ${where} ${name}`, `${field}.map.elements`, change.map.elements, ifnames)];
    }
    case "deleteMap": return [`delete map ${where} ${checkIdentifier(`${field}.name`, change.name)}`];
    case "addCounter": {
      const name = checkIdentifier(`${field}.counter.name`, change.counter.name);
      const comment = change.counter.comment === undefined ? "" : ` { comment ${quoteText(`${field}.counter.comment`, change.counter.comment)}; }`;
      return [`add counter ${where} ${name}${comment}`];
    }
    case "deleteCounter": return [`delete counter ${where} ${checkIdentifier(`${field}.name`, change.name)}`];
    case "addElements": {
      const name = checkIdentifier(`${field}.setOrMap`, change.setOrMap);
      return elementLines(`add element ${where} ${name}`, `${field}.elements`, change.elements, ifnameKeys.get(name) ?? []);
    }
    case "deleteElements": {
      const name = checkIdentifier(`${field}.setOrMap`, change.setOrMap);
      const ifnames = ifnameKeys.get(name) ?? [];
      const deletes = elementLines(`delete element ${where} ${name}`, `${field}.keys`, change.keys, ifnames);
      if (!change.ifPresent) return deletes;
      return [...elementLines(`add element ${where} ${name}`, `${field}.keys`, change.keys, ifnames), ...deletes];
    }
    default:
      throw new NftModelError(field, `unknown change ${JSON.stringify((change as { op: unknown }).op)} in table ${table}`);
  }
}

/** The script of one transaction; an empty transaction renders as the empty string. */
export function renderTransaction(tx: NftTransaction, ifnameKeys: IfnameKeys = new Map()): string {
  const where = `${checkFamily(tx.family)} ${checkIdentifier("table", tx.table)}`;
  const lines = tx.changes.flatMap((change, i) => changeLines(where, `changes[${i}]`, change, ifnameKeys, tx.table));
  return lines.length === 0 ? "" : lines.join("\n") + "\n";
}

/**
 * Everything a table holds, as changes that create it where it is missing and add to it where it
 * exists: the table, its sets and maps (empty), every chain (empty, so jumps between them resolve),
 * then each chain's rules (after a flush) and the elements. Applied to an existing table it leaves
 * objects the model does not name alone; `diffTables` is what removes them.
 */
export function tableChanges(table: NftTable): NftChange[] {
  return [
    { op: "ensureTable" },
    ...(table.counters ?? []).map((counter): NftChange => ({ op: "addCounter", counter })),
    ...table.sets.map((set): NftChange => ({ op: "addSet", set: { ...set, elements: [] } })),
    ...table.maps.map((map): NftChange => ({ op: "addMap", map: { ...map, elements: [] } })),
    ...table.chains.map((chain): NftChange => ({ op: "addChain", chain: { ...chain, rules: [] } })),
    ...table.chains.map((chain): NftChange => ({ op: "replaceChain", chain })),
    ...table.sets.filter((s) => s.elements.length > 0).map((s): NftChange => ({ op: "addElements", setOrMap: s.name, elements: s.elements })),
    ...table.maps.filter((m) => m.elements.length > 0).map((m): NftChange => ({ op: "addElements", setOrMap: m.name, elements: m.elements })),
  ];
}

/** The script that brings a table to `table`'s content, as described in tableChanges. */
export function renderTable(table: NftTable): string {
  if (table.comment !== undefined) quoteText("comment", table.comment);
  const script = renderTransaction({ family: table.family, table: table.name, changes: tableChanges(table) }, ifnameKeysOf(table));
  if (table.comment === undefined) return script;
  // The table's comment is set where the table is created (nft has no separate command for it).
  return script.replace(/^add table (\S+ \S+)\n/, `add table $1 { comment ${quoteText("comment", table.comment)}; }\n`);
}

/** The `typeof` mod nft records for a map keyed by numgen (a type only: any number is a valid key). */
export const NUMGEN_TYPEOF_MOD = 4096;

/** A map from a numgen value to an address and port: nft has no type name for the key, so `typeof`. */
function numgenMapType(field: string, map: NftMap): string {
  if (map.keyType.length !== 1 || map.valueType.length !== 2 || map.valueType[0] !== "ipv4_addr" || map.valueType[1] !== "inet_service") {
    throw new NftModelError(`${field}.keyType`, "a numgen key is supported only as numgen : ipv4_addr . inet_service");
  }
  if (map.flags && map.flags.length > 0) throw new NftModelError(`${field}.flags`, "a numgen map takes no flags");
  const dport = map.numgenDport ?? "tcp";
  if (!["tcp", "udp", "sctp"].includes(dport)) throw new NftModelError(`${field}.numgenDport`, `${JSON.stringify(dport)} is not tcp, udp or sctp`);
  return `typeof numgen random mod ${NUMGEN_TYPEOF_MOD} : ip daddr . ${dport} dport;`;
}

function renderDnatMap(field: string, d: Extract<NftStatement, { dnatMap: unknown }>["dnatMap"]): string {
  if (d.family !== "ip") throw new NftModelError(`${field}.dnatMap.family`, "must be ip");
  if (!Number.isSafeInteger(d.mod) || d.mod < 1 || d.mod > 0xffffffff) throw new NftModelError(`${field}.dnatMap.mod`, `${d.mod} is not a positive 32-bit integer`);
  if (!Number.isSafeInteger(d.offset) || d.offset < 0 || d.offset + d.mod > 2 ** 32) throw new NftModelError(`${field}.dnatMap.offset`, `${d.offset} does not keep offset + mod within 32 bits`);
  return `dnat ip to numgen random mod ${d.mod}${d.offset > 0 ? ` offset ${d.offset}` : ""} map @${checkIdentifier(`${field}.dnatMap.map`, d.map)}`;
}
