// The child process of a large full sync (`podnet internal-services-apply`, started by the services
// reconciler through src/kernel/nft/netlink-child.ts). It takes either
//   - { tx }: a planned transaction, which it encodes and applies (what NFT_APPLY_COMMAND does), or
//   - { full: { node, services, slices } }: the objects themselves (the agent's compact projections),
//     which it compiles and plans as the agent's own compiler would (the same code, the same input,
//     so the same table) and then encodes and applies.
// The second takes the compile off the full sync's critical path: the child runs with V8's
// optimising compilers, the agent (in --lite-mode) compiles the same objects at the same time for
// its own incremental state, and the objects (~20,000 small ones) are a far cheaper hand-over than
// the planned transaction's ~120,000 statements (bench/RESULTS.md, "Full sync after a restart").
// The first full sync after the agent's start has a child of its own, which lists etcd itself
// (runServicesStartupChild, below; services-startup.ts).

import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import { etcdDatastoreFor } from "../datastore/etcd-datastore.ts";
import type { EndpointSlice, Service } from "../k8s/types.ts";
import { applyAndAnswer, runApplyChild } from "../kernel/nft/netlink-child.ts";
import type { NftTransaction } from "../kernel/nft/model.ts";
import { IncrementalProxyCompiler, type ProxyNodeFacts } from "../services/proxy-compiler.ts";
import { planProxyTransaction } from "../services/proxy-plan.ts";
import { objectKey } from "./object-feed.ts";
import { compactObject } from "./object-projection.ts";
import { CHILD_FULL_SYNC_AT_SERVICES, LISTED_PROGRESS, STARTUP_DEADLINE_MS, STARTUP_DECLINED_EXIT, type StartupListRequest, type StartupNodeRequest } from "./services-startup.ts";

export const SERVICES_APPLY_COMMAND = "internal-services-apply";

export interface FullSyncObjects {
  node: ProxyNodeFacts;
  services: readonly Service[];
  slices: readonly EndpointSlice[];
}

export type ServicesChildPayload = { tx: NftTransaction } | { full: FullSyncObjects };

/** The full table's transaction for these objects: what the reconciler's own full sync plans. */
export function planFullSyncOf(objects: FullSyncObjects): NftTransaction {
  const compiler = new IncrementalProxyCompiler();
  compiler.replaceAll(objects.services, objects.slices);
  return planProxyTransaction(undefined, compiler.compile(objects.node));
}

export function runServicesApplyChild(): Promise<number> {
  return runApplyChild((payload) => {
    const p = payload as ServicesChildPayload;
    if ("tx" in p) return { tx: p.tx };
    const started = performance.now();
    const tx = planFullSyncOf(p.full);
    return { tx, stats: { compileMs: performance.now() - started } };
  });
}

/** Values of a map keyed "namespace/name", in key order: the order both compiles of a full sync take. */
export function inKeyOrder<T>(objects: ReadonlyMap<string, T>): T[] {
  return [...objects.keys()].sort().map((key) => objects.get(key) as T);
}

/**
 * What a full sync's table is compiled from, as one string: every Service and EndpointSlice by
 * key and resourceVersion (the etcd ModRevision; the JSON of one without), and the node's facts. Two compiles with the same
 * digest had the same input in the same order, so they planned the same table.
 */
export function fullSyncDigest(services: ReadonlyMap<string, Service>, slices: ReadonlyMap<string, EndpointSlice>, node: ProxyNodeFacts): string {
  const hash = createHash("sha256").update(JSON.stringify(node));
  for (const [tag, objects] of [["S", services], ["E", slices]] as const) {
    for (const key of [...objects.keys()].sort()) {
      const object = objects.get(key);
      // Objects read from the datastore always carry one; others are known by their content.
      hash.update(`\n${tag} ${key} ${object?.metadata.resourceVersion ?? JSON.stringify(object)}`);
    }
  }
  return hash.digest("hex");
}

/**
 * The child's side of the first full sync (`podnet internal-services-startup-sync`; the protocol and
 * the agent's side are in services-startup.ts): list as soon as told where, report the list done,
 * then compile, plan and apply once told this node's facts, and answer with the input's digest.
 */
/**
 * Keys per etcd range request: fewer round trips than the agent's 500 (10,000 Services and their
 * EndpointSlices: 0.24 s instead of 0.28 s, measured side by side); this process lives seconds, and
 * holds the whole list anyway.
 */
const LIST_PAGE_SIZE = 2500;

export async function runServicesStartupChild(): Promise<number> {
  const code = await startupSync();
  // The agent keeps this child's stdin open (and etcd's channel may linger): nothing else ends it.
  process.exit(code);
}

async function startupSync(): Promise<number> {
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const next = async <T>(): Promise<T | undefined> => {
    const line = await lines.next();
    return line.done ? undefined : (JSON.parse(line.value) as T);
  };
  const deadline = setTimeout(() => {
    process.stderr.write(`no list or node facts within ${STARTUP_DEADLINE_MS / 1000} s\n`);
    process.exit(1);
  }, STARTUP_DEADLINE_MS);
  const where = await next<StartupListRequest>();
  if (where === undefined) return 0;
  const datastore = etcdDatastoreFor(where.list.connection, where.list.prefix);
  let listedAt = NaN;
  const listing = datastore.objects.listAtOneRevision(["Service", "EndpointSlice"], LIST_PAGE_SIZE).then((listed) => {
    listedAt = Date.now();
    // The agent holds its own list of the same objects back until this one is done (StartupFullSync.listed).
    process.stdout.write(`${JSON.stringify({ progress: LISTED_PROGRESS })}\n`);
    return listed;
  });
  listing.catch(() => undefined); // awaited below
  const facts = await next<StartupNodeRequest>();
  const toldAt = Date.now();
  // The agent cancelled it, or is gone: nothing is applied.
  if (facts === undefined) process.exit(0);
  process.stdin.on("end", () => process.exit(0));
  let listed;
  try {
    listed = await listing;
  } catch (error) {
    process.stderr.write(`listing etcd: ${(error as Error).message}\n`);
    return 1;
  } finally {
    clearTimeout(deadline);
    void datastore.close().catch(() => undefined);
  }
  const services = new Map<string, Service>();
  for (const service of listed.lists.Service ?? []) services.set(objectKey(service), compactObject("Service", service));
  const slices = new Map<string, EndpointSlice>();
  for (const slice of listed.lists.EndpointSlice ?? []) slices.set(objectKey(slice), compactObject("EndpointSlice", slice));
  if (services.size < CHILD_FULL_SYNC_AT_SERVICES) {
    process.stderr.write(`declined: only ${services.size} services\n`);
    return STARTUP_DECLINED_EXIT;
  }
  const digest = fullSyncDigest(services, slices, facts.node);
  return applyAndAnswer(() => {
    const started = performance.now();
    const tx = planFullSyncOf({ node: facts.node, services: inKeyOrder(services), slices: inKeyOrder(slices) });
    return { tx, stats: { compileMs: performance.now() - started, startedAt: performance.timeOrigin, listedAt, toldAt, revision: listed.revision }, texts: { digest } };
  }, { decodeMs: 0 });
}

