// From one compiled proxy table to the next: the nft transaction that touches only what changed,
// and the UDP flows the caller must clear from conntrack.
//
// The ordering rules of a transaction (create before refer, flush before delete, element value
// changes as delete + add) are the nft layer's diffTables (src/kernel/nft/diff.ts). This module
// narrows what it compares: the ProxyCompiler hands back the very same fragment object for a
// service that did not change, so only the fragments of changed services (and the fixed chains,
// if the node's facts changed) are assembled into two small tables and diffed. A change to one
// service among 10,000 costs that service's diff, and the incremental path never reads the
// kernel's table or walks the whole ruleset.

import { diffTables } from "../kernel/nft/diff.ts";
import type { NftChain, NftChange, NftTable, NftTransaction, NftVerdict } from "../kernel/nft/model.ts";
import { assembleTable, type CompiledProxy, type ServiceFragment, type UdpFrontend } from "./proxy-compiler.ts";

/**
 * The transaction from `previous` (what this process last applied successfully) to `next`.
 * Without `previous` (start, or after a failed apply) it is a full sync: the table is created
 * from nothing in one transaction, replacing whatever the kernel holds under that name (rules
 * deleted or added by hand included). Established connections keep their conntrack NAT.
 */
export function planProxyTransaction(previous: CompiledProxy | undefined, next: CompiledProxy): NftTransaction {
  if (previous === undefined) return planFullSync(next.table);
  const changed = changedServicesOf(previous, next);
  const skeletonChanged = previous.skeleton !== next.skeleton;
  const pick = (compiled: CompiledProxy) => [...changed].map((key) => compiled.fragments.get(key)).filter((f): f is ServiceFragment => f !== undefined);
  const beforeFragments = pick(previous);
  const afterFragments = pick(next);
  // The shared endpoint maps always exist: both sides list the ones either side's fragments use, so the
  // diff compares their elements (and skips the 160-odd maps no changed service uses).
  const endpointMaps = new Set<string>();
  for (const f of [...beforeFragments, ...afterFragments]) for (const { map } of f.endpointElements) endpointMaps.add(map);
  const before = assembleTable(beforeFragments, skeletonChanged ? previous.skeleton : [], previous.contestedOwners, skeletonChanged ? previous.skeletonSets : [], endpointMaps).table;
  const after = assembleTable(afterFragments, skeletonChanged ? next.skeleton : [], next.contestedOwners, skeletonChanged ? next.skeletonSets : [], endpointMaps).table;
  return diffTables(after, before);
}

/**
 * The last pair compared and its answer: the agent plans and then looks for stale UDP flows with
 * the same pair, and each comparison is a pass over every service (10,000 map lookups).
 */
let lastComparison: { previous: CompiledProxy; next: CompiledProxy; changed: ReadonlySet<string> } | undefined;

function changedServicesOf(previous: CompiledProxy, next: CompiledProxy): ReadonlySet<string> {
  if (lastComparison?.previous !== previous || lastComparison.next !== next) lastComparison = { previous, next, changed: changedServices(previous, next) };
  return lastComparison.changed;
}

/**
 * Services whose fragment is not the identical object in both compilations, plus both sides of a
 * contested map key whose winner changed (the loser's element appears or goes although its own
 * fragment did not change).
 */
function changedServices(previous: CompiledProxy, next: CompiledProxy): Set<string> {
  const changed = new Set<string>();
  for (const [key, fragment] of next.fragments) if (previous.fragments.get(key) !== fragment) changed.add(key);
  for (const key of previous.fragments.keys()) if (!next.fragments.has(key)) changed.add(key);
  if (previous.contestedOwners.size > 0 || next.contestedOwners.size > 0) {
    for (const [contested, owner] of next.contestedOwners) {
      const before = previous.contestedOwners.get(contested);
      if (before !== owner) {
        changed.add(owner);
        if (before !== undefined) changed.add(before);
      }
    }
    for (const [contested, owner] of previous.contestedOwners) if (!next.contestedOwners.has(contested)) changed.add(owner);
    // Every service that claims a contested key of a changed service must be looked at too.
    for (const fragment of [...next.fragments.values()]) {
      if (fragment.contested.size === 0 || changed.has(fragment.key)) continue;
      for (const contested of fragment.contested) {
        const owner = next.contestedOwners.get(contested);
        if (owner !== undefined && changed.has(owner)) changed.add(fragment.key);
      }
    }
  }
  return changed;
}

/**
 * Create the table from nothing, dropping anything the kernel had under that name, in one
 * transaction: sets (with their elements) and empty maps first, then every chain with its rules
 * in an order where each chain comes after the chains it jumps to (so none is written twice),
 * then the maps' elements, whose verdicts name the chains.
 */
export function planFullSync(table: NftTable): NftTransaction {
  const changes: NftChange[] = [{ op: "ensureTable" }, { op: "deleteTable" }, { op: "ensureTable" }];
  for (const set of table.sets) changes.push({ op: "addSet", set });
  for (const map of table.maps) changes.push({ op: "addMap", map: { ...map, elements: [] } });
  for (const chain of targetsFirst(table.chains)) changes.push({ op: "addChain", chain });
  for (const map of table.maps) if (map.elements.length > 0) changes.push({ op: "addElements", setOrMap: map.name, elements: map.elements });
  return { family: table.family, table: table.name, changes };
}

/** The chains a chain's rules jump or go to, in rule and statement order (repeats kept). */
function verdictTargets(chain: NftChain): string[] {
  const targets: string[] = [];
  for (const rule of chain.rules) {
    for (const statement of rule.statements) {
      if ("verdict" in statement) addTarget(targets, statement);
      else if ("numgenVmap" in statement) for (const v of statement.numgenVmap) addTarget(targets, v);
      else if ("inlineVmap" in statement) for (const e of statement.entries) addTarget(targets, e.verdict);
    }
  }
  return targets;
}

/** Whether the chain jumps or goes to a chain of the table not yet written. */
function jumpsToPending(chain: NftChain, byName: ReadonlyMap<string, NftChain>, done: ReadonlySet<string>): boolean {
  for (const rule of chain.rules) {
    for (const statement of rule.statements) {
      if ("verdict" in statement) {
        if (isPending(statement, byName, done)) return true;
      } else if ("numgenVmap" in statement) {
        for (const v of statement.numgenVmap) if (isPending(v, byName, done)) return true;
      } else if ("inlineVmap" in statement) {
        for (const e of statement.entries) if (isPending(e.verdict, byName, done)) return true;
      }
    }
  }
  return false;
}

function isPending(v: NftVerdict, byName: ReadonlyMap<string, NftChain>, done: ReadonlySet<string>): boolean {
  return (v.verdict === "jump" || v.verdict === "goto") && byName.has(v.chain) && !done.has(v.chain);
}

function addTarget(targets: string[], v: NftVerdict): void {
  if (v.verdict === "jump" || v.verdict === "goto") targets.push(v.chain);
}

/** Chains ordered so that every jump or goto target precedes the chain that names it (a depth-first post-order). */
function targetsFirst(chains: readonly NftChain[]): NftChain[] {
  const byName = new Map<string, NftChain>();
  for (const c of chains) byName.set(c.name, c);
  const done = new Set<string>();
  const ordered: NftChain[] = [];
  for (const root of chains) {
    if (done.has(root.name)) continue;
    // Most chains jump only to chains already written (a service chain to mark-for-masquerade):
    // written at once, without the search's allocations.
    if (!jumpsToPending(root, byName, done)) {
      done.add(root.name);
      ordered.push(root);
      continue;
    }
    // Iterative, so a long chain of jumps cannot overflow the stack.
    const stack: { chain: NftChain; targets: string[] }[] = [{ chain: root, targets: verdictTargets(root) }];
    done.add(root.name);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const next = top.targets.pop();
      if (next === undefined) {
        ordered.push(top.chain);
        stack.pop();
        continue;
      }
      const target = byName.get(next);
      if (!target || done.has(next)) continue;
      done.add(next);
      stack.push({ chain: target, targets: verdictTargets(target) });
    }
  }
  return ordered;
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
  // Only services whose fragment changed can have changed UDP frontends.
  const frontends = (compiled: CompiledProxy, keys: Iterable<string>) => {
    const out = new Map<string, UdpFrontend>();
    for (const k of keys) for (const f of compiled.fragments.get(k)?.udpFrontends ?? []) out.set(key(f), f);
    return out;
  };
  // The same comparison the plan made (a superset of the changed fragments when map keys are
  // contested; an unchanged fragment yields the same frontends on both sides, so nothing stale).
  const changed = changedServicesOf(previous, next);
  const before = frontends(previous, changed);
  const after = frontends(next, changed);
  const stale: StaleUdpFlow[] = [];
  const frontendOf = (f: UdpFrontend) => ({ ...(f.ip ? { frontendIp: f.ip } : {}), port: f.port });
  for (const [k, old] of before) {
    const remaining = new Set(after.get(k)?.endpointIps ?? []);
    for (const ip of new Set(old.endpointIps)) if (!remaining.has(ip)) stale.push({ ...frontendOf(old), endpointIp: ip });
  }
  for (const [k, now] of after) {
    const old = before.get(k);
    if (now.endpointIps.length > 0 && (old === undefined || old.endpointIps.length === 0)) stale.push(frontendOf(now));
  }
  return stale;
}
