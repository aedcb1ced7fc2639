// The smallest transaction that turns the current table into the wanted one, as kube-proxy's
// nftables proxier does with knftables (pkg/proxy/nftables/proxier.go): a chain whose rules differ
// is replaced (flushed and refilled), objects the owner no longer wants are deleted, and set and map
// contents change element by element. Nothing outside the owner's one table is ever named.
//
// Comparing rules: nft hands rules back in its own normal form (sets sorted, `ct state new` as a
// bitmask test, a port named after the protocol an earlier match fixed, a `meta l4proto tcp` it
// adds itself before `reject with tcp reset`), so both sides are reduced to one canonical text
// before they are compared. The reduction can only make differing rules look equal where nft
// itself treats them as the same packet test.

import type { NftBaseChain, NftChange, NftMap, NftMapElement, NftRule, NftSet, NftStatement, NftTable, NftTransaction, NftValue } from "./model.ts";
import type { NftRuleState } from "./readback.ts";
import { renderVerdict } from "./render.ts";

/** Standard priority names (nft(8), "CHAIN PRIORITIES"); the bridge family has its own values. */
const PRIORITIES: Record<string, number> = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50, srcnat: 100 };
const BRIDGE_PRIORITIES: Record<string, number> = { dstnat: -300, filter: -200, out: 100, srcnat: 300 };

export function priorityNumber(family: NftTable["family"], priority: number | string): number {
  if (typeof priority === "number") return priority;
  const m = /^(\w+)(?: ([+-]) (\d+))?$/.exec(priority);
  const base = m ? (family === "bridge" ? BRIDGE_PRIORITIES : PRIORITIES)[m[1]!] : undefined;
  if (m === null || base === undefined) return Number.NaN;
  const offset = m[3] === undefined ? 0 : Number(m[3]) * (m[2] === "-" ? -1 : 1);
  return base + offset;
}

function sameBase(family: NftTable["family"], a: NftBaseChain | undefined, b: NftBaseChain | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  // nft 1.0.6 does not report a netdev chain's device in JSON: a device is compared only when both sides name one.
  const sameDevice = a.device === undefined || b.device === undefined || a.device === b.device;
  return a.type === b.type && a.hook === b.hook && sameDevice && priorityNumber(family, a.priority) === priorityNumber(family, b.priority);
}

/** Canonical text of one value: decimal numbers, a host prefix as a bare address. */
function canonicalValue(v: NftValue): string {
  if (typeof v === "number") return String(v);
  if (/^0x[0-9a-f]+$/i.test(v)) return String(Number.parseInt(v, 16));
  if (/^\d+$/.test(v)) return String(Number(v));
  return v.replace(/\/(32|128)$/, (all) => (v.includes(":") === (all === "/128") ? "" : all));
}

export function canonicalKey(key: readonly NftValue[]): string {
  return key.map(canonicalValue).join(" . ");
}

function canonicalSelector(s: string): string {
  if (s === "iifname" || s === "oifname") return `meta ${s}`;
  // nft prints `th dport` as `tcp dport` once an earlier match fixed the protocol.
  return s.replace(/^(tcp|udp) (dport|sport)$/, "th $2");
}

function canonicalStatement(s: NftStatement): string {
  if ("verdict" in s) return renderVerdict("verdict", s);
  if ("match" in s) {
    const values = (Array.isArray(s.value) ? (s.value as readonly NftValue[]) : [s.value as NftValue]).map(canonicalValue).sort();
    return `${canonicalSelector(s.match)} ${s.op === "!=" ? "!=" : "=="} ${values.length === 1 ? values[0] : `{${values.join(",")}}`}`;
  }
  if ("lookup" in s) return `${s.lookup.map(canonicalSelector).join(" . ")} ${s.negate ? "!=" : "=="} @${s.set}`;
  if ("vmapLookup" in s) return `${s.vmapLookup.map(canonicalSelector).join(" . ")} vmap @${s.map}`;
  if ("numgenMatch" in s) return `numgen mod ${s.numgenMatch.mod} == ${s.numgenMatch.value}`;
  if ("numgenVmap" in s) return `numgen ${s.numgenVmap.map((v) => renderVerdict("verdict", v)).join(",")}`;
  if ("inlineVmap" in s) {
    const entries = s.entries.map((e) => `${canonicalKey(e.key)}:${renderVerdict("verdict", e.verdict)}`).sort();
    return `${s.inlineVmap.map(canonicalSelector).join(" . ")} vmap {${entries.join(",")}}`;
  }
  if ("dnat" in s) return `dnat ${s.dnat.family} ${s.dnat.address} ${s.dnat.port ?? ""}`;
  if ("dnatMap" in s) return `dnat ${s.dnatMap.family} numgen mod ${s.dnatMap.mod} offset ${s.dnatMap.offset} map @${s.dnatMap.map}`;
  if ("snat" in s) return `snat ${s.snat.family} ${s.snat.address}`;
  if ("masquerade" in s) return s.masquerade.fullyRandom ? "masquerade fully-random" : "masquerade";
  if ("setMarkOr" in s) return `mark |= ${s.setMarkOr}`;
  if ("updateSet" in s) return `update @${s.updateSet} ${s.key.map(canonicalSelector).join(" . ")}`;
  if ("counter" in s) return "counter";
  if ("namedCounter" in s) return `counter ${s.namedCounter}`;
  if ("reject" in s) return `reject ${s.reject}`;
  if ("nftrace" in s) return "nftrace";
  if ("log" in s) return `log ${JSON.stringify(s.log.prefix)}`;
  return JSON.stringify(s);
}

export function canonicalRule(rule: NftRule | NftRuleState): string {
  if ("opaque" in rule && rule.opaque !== undefined) return `opaque ${rule.opaque}`;
  let statements = rule.statements;
  // nft adds `meta l4proto tcp` in front of `reject with tcp reset`, and shows it.
  if (statements.some((s) => "reject" in s && s.reject === "tcp reset")) {
    statements = statements.filter((s) => !("match" in s && s.match === "meta l4proto" && s.op !== "!=" && canonicalValue(Array.isArray(s.value) && s.value.length === 1 ? (s.value as NftValue[])[0]! : (s.value as NftValue)) === "tcp"));
  }
  // Matches are pure tests, so their order within a run of them does not matter, and nft reorders
  // header matches by offset (`arp saddr ip` after `arp saddr ether`): each run is sorted.
  const parts: string[] = [];
  let run: string[] = [];
  for (const s of statements) {
    if ("match" in s || "lookup" in s) {
      run.push(canonicalStatement(s));
      continue;
    }
    parts.push(...run.sort(), canonicalStatement(s));
    run = [];
  }
  parts.push(...run.sort());
  return `${parts.join("; ")}${rule.comment === undefined ? "" : ` # ${rule.comment}`}`;
}

function sameRules(a: readonly NftRule[], b: readonly NftRule[]): boolean {
  // The same array (a model diffed against the one applied before it, reusing unchanged chains)
  // needs no look inside: this keeps an incremental sync of a large table cheap.
  if (a === b) return true;
  return a.length === b.length && a.every((rule, i) => rule === b[i] || canonicalRule(rule) === canonicalRule(b[i]!));
}

function sameTypes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

/** Set definitions nft cannot change in place. `dynamic` is not shown back by nft 1.0.6, so it is not compared. */
function sameSetDefinition(a: NftSet, b: NftSet): boolean {
  const flags = (s: NftSet) => (s.flags ?? []).filter((f) => f !== "dynamic").slice().sort().join(",");
  return sameTypes(a.keyType, b.keyType) && flags(a) === flags(b) && (a.timeoutSeconds ?? 0) === (b.timeoutSeconds ?? 0) && (a.comment ?? "") === (b.comment ?? "");
}

function sameMapDefinition(a: NftMap, b: NftMap): boolean {
  const flags = (m: NftMap) => (m.flags ?? []).slice().sort().join(",");
  return sameTypes(a.keyType, b.keyType) && sameTypes(a.valueType, b.valueType) && flags(a) === flags(b) && (a.comment ?? "") === (b.comment ?? "");
}

function mapElementText(e: NftMapElement): string {
  return e.verdict !== undefined ? renderVerdict("verdict", e.verdict) : canonicalKey(e.value ?? []);
}

function byName<T extends { name: string }>(items: readonly T[]): Map<string, T> {
  return new Map(items.map((i) => [i.name, i]));
}

/**
 * What the wanted table needs done to the current one (undefined: the table does not exist).
 * Changes come in an order the kernel accepts within one transaction: new sets, maps and chains
 * first (so rules and verdict-map elements can refer to them), stale elements out, changed chains
 * refilled, new elements in, and last the chains, sets and maps nothing refers to any more.
 *
 * A set or map whose type, flags or timeout changed, or a base chain whose type, hook, device or
 * priority changed, cannot be altered in place: those are deleted and created again in the same
 * transaction, after every chain that might refer to them is flushed and before it is refilled.
 */
export function diffTables(desired: NftTable, current: NftTable | undefined): NftTransaction {
  const tx = (changes: NftChange[]): NftTransaction => ({ family: desired.family, table: desired.name, changes });
  if (current === undefined) {
    const fromNothing = diffTables(desired, { family: desired.family, name: desired.name, chains: [], sets: [], maps: [] });
    return tx([{ op: "ensureTable" }, ...fromNothing.changes]);
  }
  const currentChains = byName(current.chains);
  const currentSets = byName(current.sets);
  const currentMaps = byName(current.maps);
  const wantedChains = byName(desired.chains);
  const wantedSets = byName(desired.sets);
  const wantedMaps = byName(desired.maps);

  const recreatedSets = desired.sets.filter((s) => currentSets.has(s.name) && !sameSetDefinition(s, currentSets.get(s.name)!));
  const recreatedMaps = desired.maps.filter((m) => currentMaps.has(m.name) && !sameMapDefinition(m, currentMaps.get(m.name)!));
  const recreatedChains = desired.chains.filter((c) => currentChains.has(c.name) && !sameBase(desired.family, c.base, currentChains.get(c.name)!.base));
  const recreating = recreatedSets.length + recreatedMaps.length + recreatedChains.length > 0;

  const early: NftChange[] = [];
  // A set, map or base chain being recreated may be referred to from any chain: empty them all first.
  if (recreating) {
    for (const c of current.chains) if (wantedChains.has(c.name) && c.rules.length > 0) early.push({ op: "replaceChain", chain: { name: c.name, ...(c.base ? { base: c.base } : {}), rules: [] } });
    for (const s of recreatedSets) early.push({ op: "deleteSet", name: s.name });
    for (const m of recreatedMaps) early.push({ op: "deleteMap", name: m.name });
    for (const c of recreatedChains) early.push({ op: "deleteChain", name: c.name });
  }
  const recreatedSetNames = new Set(recreatedSets.map((s) => s.name));
  const recreatedMapNames = new Set(recreatedMaps.map((m) => m.name));
  const recreatedChainNames = new Set(recreatedChains.map((c) => c.name));

  const created: NftChange[] = [];
  const currentCounters = new Set((current.counters ?? []).map((c) => c.name));
  const wantedCounters = new Set((desired.counters ?? []).map((c) => c.name));
  for (const c of desired.counters ?? []) if (!currentCounters.has(c.name)) created.push({ op: "addCounter", counter: c });
  for (const s of desired.sets) if (!currentSets.has(s.name) || recreatedSetNames.has(s.name)) created.push({ op: "addSet", set: { ...s, elements: [] } });
  for (const m of desired.maps) if (!currentMaps.has(m.name) || recreatedMapNames.has(m.name)) created.push({ op: "addMap", map: { ...m, elements: [] } });
  for (const c of desired.chains) if (!currentChains.has(c.name) || recreatedChainNames.has(c.name)) created.push({ op: "addChain", chain: { ...c, rules: [] } });

  const elementDeletes: NftChange[] = [];
  const elementAdds: NftChange[] = [];
  for (const s of desired.sets) {
    // A dynamic set is filled by the packet path (affinity); its elements are not the owner's to list.
    if (s.flags?.includes("dynamic")) continue;
    const have = recreatedSetNames.has(s.name) ? [] : (currentSets.get(s.name)?.elements ?? []);
    if (have === s.elements) continue;
    const haveKeys = new Set(have.map(canonicalKey));
    const wantKeys = new Set(s.elements.map(canonicalKey));
    const gone = have.filter((e) => !wantKeys.has(canonicalKey(e)));
    const added = s.elements.filter((e) => !haveKeys.has(canonicalKey(e)));
    if (gone.length > 0) elementDeletes.push({ op: "deleteElements", setOrMap: s.name, keys: gone });
    if (added.length > 0) elementAdds.push({ op: "addElements", setOrMap: s.name, elements: added });
  }
  for (const m of desired.maps) {
    const have = recreatedMapNames.has(m.name) ? [] : (currentMaps.get(m.name)?.elements ?? []);
    if (have === m.elements) continue;
    const haveByKey = new Map(have.map((e) => [canonicalKey(e.key), mapElementText(e)]));
    const wantByKey = new Map(m.elements.map((e) => [canonicalKey(e.key), mapElementText(e)]));
    // An element whose value changed is deleted and added again: nft's `add element` keeps the old value.
    const gone = have.filter((e) => wantByKey.get(canonicalKey(e.key)) !== mapElementText(e));
    const added = m.elements.filter((e) => haveByKey.get(canonicalKey(e.key)) !== mapElementText(e));
    if (gone.length > 0) elementDeletes.push({ op: "deleteElements", setOrMap: m.name, keys: gone.map((e) => e.key) });
    if (added.length > 0) elementAdds.push({ op: "addElements", setOrMap: m.name, elements: added });
  }

  const refilled: NftChange[] = [];
  for (const c of desired.chains) {
    const have = currentChains.get(c.name);
    const emptied = recreating || recreatedChainNames.has(c.name) || have === undefined;
    if (emptied ? c.rules.length > 0 : !sameRules(c.rules, have.rules) || (c.base?.policy ?? "accept") !== (have.base?.policy ?? "accept")) {
      refilled.push({ op: "replaceChain", chain: c });
    }
  }

  const removed: NftChange[] = [];
  const staleChains = current.chains.filter((c) => !wantedChains.has(c.name));
  // All emptied before any is deleted: one stale chain may still jump to another.
  for (const c of staleChains) if (c.rules.length > 0) removed.push({ op: "replaceChain", chain: { name: c.name, ...(c.base ? { base: c.base } : {}), rules: [] } });
  for (const c of staleChains) removed.push({ op: "deleteChain", name: c.name });
  for (const s of current.sets) if (!wantedSets.has(s.name)) removed.push({ op: "deleteSet", name: s.name });
  for (const m of current.maps) if (!wantedMaps.has(m.name)) removed.push({ op: "deleteMap", name: m.name });
  for (const c of current.counters ?? []) if (!wantedCounters.has(c.name)) removed.push({ op: "deleteCounter", name: c.name });

  return tx([...early, ...created, ...elementDeletes, ...refilled, ...elementAdds, ...removed]);
}
