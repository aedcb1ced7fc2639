// From one compiled proxy table to the next: the nft transaction that touches only what changed,
// and the UDP flows the caller must clear from conntrack.
//
// The ordering rules of a transaction (create before refer, flush before delete, element value
// changes as delete + add) are the nft layer's diffTables (src/kernel/nft/diff.ts). This module
// narrows what it compares: the ProxyCompiler returns the very same objects for a service that did
// not change, so those chains, sets and map elements are dropped from both sides by identity
// before diffing. A change to one service among 10,000 then costs the diff of that service only,
// and the incremental path never reads the kernel's table.

import { diffTables } from "../kernel/nft/diff.ts";
import type { NftMap, NftMapElement, NftSet, NftTable, NftTransaction, NftValue } from "../kernel/nft/model.ts";
import type { CompiledProxy, UdpFrontend } from "./proxy-compiler.ts";

/**
 * The transaction from `previous` (what this process last applied successfully) to `next`.
 * Without `previous` (start, or after a failed apply) it is a full sync: the table is created
 * from nothing in one transaction, replacing whatever the kernel holds under that name (rules
 * deleted or added by hand included). Established connections keep their conntrack NAT.
 */
export function planProxyTransaction(previous: CompiledProxy | undefined, next: CompiledProxy): NftTransaction {
  if (previous === undefined) return planFullSync(next.table);
  const prev = previous.table;
  const want = next.table;

  const prevChains = new Map(prev.chains.map((c) => [c.name, c]));
  const sameChain = new Set(want.chains.filter((c) => prevChains.get(c.name) === c).map((c) => c.name));
  const prevSets = new Map(prev.sets.map((s) => [s.name, s]));
  const sameSet = new Set(want.sets.filter((s) => prevSets.get(s.name) === s).map((s) => s.name));

  const narrowedCurrent: NftTable = {
    ...prev,
    chains: prev.chains.filter((c) => !sameChain.has(c.name)),
    sets: narrowSets(prev.sets.filter((s) => !sameSet.has(s.name)), want.sets),
    maps: narrowMaps(prev.maps, want.maps),
  };
  const narrowedWanted: NftTable = {
    ...want,
    chains: want.chains.filter((c) => !sameChain.has(c.name)),
    sets: narrowSets(want.sets.filter((s) => !sameSet.has(s.name)), prev.sets),
    maps: narrowMaps(want.maps, prev.maps),
  };
  return diffTables(narrowedWanted, narrowedCurrent);
}

/** Create the table from nothing, dropping anything the kernel had under that name, atomically. */
export function planFullSync(table: NftTable): NftTransaction {
  const fromNothing = diffTables(table, undefined);
  return { ...fromNothing, changes: [{ op: "ensureTable" }, { op: "deleteTable" }, ...fromNothing.changes] };
}

/** Each set with the elements that `other`'s set of the same name does not hold as the same object. */
function narrowSets(sets: readonly NftSet[], other: readonly NftSet[]): NftSet[] {
  const otherByName = new Map(other.map((s) => [s.name, s]));
  return sets.map((set) => {
    const twin = otherByName.get(set.name);
    if (!twin) return set;
    const shared = new Set<readonly NftValue[]>(twin.elements);
    return { ...set, elements: set.elements.filter((e) => !shared.has(e)) };
  });
}

function narrowMaps(maps: readonly NftMap[], other: readonly NftMap[]): NftMap[] {
  const otherByName = new Map(other.map((m) => [m.name, m]));
  return maps.map((map) => {
    const twin = otherByName.get(map.name);
    if (!twin) return map;
    const shared = new Set<NftMapElement>(twin.elements);
    return { ...map, elements: map.elements.filter((e) => !shared.has(e)) };
  });
}

/** A UDP flow to clear: `conntrack -D -p udp --orig-dst IP --dport PORT --dst-nat ENDPOINT` (no IP: a NodePort, any local address). */
export interface StaleUdpFlow {
  frontendIp?: string;
  port: number;
  /** The endpoint that went away; undefined: every flow of the frontend (it had no endpoints and now has some). */
  endpointIp?: string;
}

/**
 * UDP conntrack entries that would keep sending to the wrong place after the change, as
 * kube-proxy's conntrack cleanup (pkg/proxy/conntrack/cleanup.go) finds them:
 * - an endpoint that no longer backs a frontend: its flows through that frontend;
 * - a frontend that had no endpoints and now has some: all its flows, because packets sent
 *   while it was rejected or unhandled may have left entries without DNAT (kubernetes#48370).
 */
export function staleUdpFlows(previous: CompiledProxy | undefined, next: CompiledProxy): StaleUdpFlow[] {
  if (!previous) return [];
  const key = (f: UdpFrontend) => `${f.ip ?? "*"}:${f.port}`;
  const before = new Map(previous.udpFrontends.map((f) => [key(f), f]));
  const after = new Map(next.udpFrontends.map((f) => [key(f), f]));
  const stale: StaleUdpFlow[] = [];
  const frontendOf = (f: UdpFrontend) => ({ ...(f.ip ? { frontendIp: f.ip } : {}), port: f.port });
  for (const [k, old] of before) {
    const now = after.get(k);
    const remaining = new Set(now?.endpointIps ?? []);
    for (const ip of new Set(old.endpointIps)) if (!remaining.has(ip)) stale.push({ ...frontendOf(old), endpointIp: ip });
  }
  for (const [k, now] of after) {
    const old = before.get(k);
    if (now.endpointIps.length > 0 && (old === undefined || old.endpointIps.length === 0)) stale.push(frontendOf(now));
  }
  return stale;
}
