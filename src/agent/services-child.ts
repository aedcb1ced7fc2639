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

import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import type { EtcdConnection } from "../datastore/etcd-client-options.ts";
import { etcdDatastoreFor } from "../datastore/etcd-datastore.ts";
import type { EndpointSlice, Service } from "../k8s/types.ts";
import { applyAndAnswer, ChildApplier, childApplyAvailable, runApplyChild } from "../kernel/nft/netlink-child.ts";
import type { NftTransaction } from "../kernel/nft/model.ts";
import { IncrementalProxyCompiler, type ProxyNodeFacts } from "../services/proxy-compiler.ts";
import { planProxyTransaction } from "../services/proxy-plan.ts";
import { objectKey } from "./object-feed.ts";
import { compactObject } from "./object-projection.ts";

export const SERVICES_APPLY_COMMAND = "internal-services-apply";
export const SERVICES_STARTUP_COMMAND = "internal-services-startup-sync";
/** Below this many Services the startup child leaves the first full sync to the agent (it is quick in-process). */
export const CHILD_FULL_SYNC_AT_SERVICES = 1000;

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
 * The first full sync, started with the agent (`podnet internal-services-startup-sync`). The agent
 * lists etcd in --lite-mode (slow to decode 20,000 objects) and compiles in it; this child, with
 * V8's optimising compilers, lists the Services and EndpointSlices itself as soon as it is told
 * where, then compiles, plans and applies the table as soon as it is told this node's facts
 * (once the agent has registered). The agent's services reconciler compares the child's digest
 * (fullSyncDigest) with its own inputs' and takes the child's table as its full sync when they
 * agree; otherwise (a change in between) it applies its own plan.
 *
 * Requests, one JSON line each on stdin: `{ list: { connection, prefix } }`, then `{ node }`. The
 * end of stdin ends the child at once, whatever it is doing (the agent cancelled it, or died).
 */
export interface StartupListRequest {
  list: { connection: EtcdConnection; prefix: string };
}
export interface StartupNodeRequest {
  node: ProxyNodeFacts;
}
/** The child exits with this when it listed too few services to be worth it (the agent syncs in-process). */
export const STARTUP_DECLINED_EXIT = 5;
/** How long the child waits for its list and for the node's facts before it gives up. */
const STARTUP_DEADLINE_MS = 60_000;

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
  const listing = datastore.objects.listAtOneRevision(["Service", "EndpointSlice"]);
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
  const listedAt = Date.now();
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

/** What the startup child did: it applied the full table it compiled from its own list. */
export interface StartupSyncOutcome {
  bytes: number;
  encodeMs: number;
  kernelMs: number;
  compileMs: number;
  /** Statements in its transaction (the agent's own plan of the same input has as many). */
  changes: number;
  /** fullSyncDigest of its input. */
  digest: string;
  /** The etcd revision it listed at. */
  revision: number;
  /** Wall-clock times (ms since the epoch): the child's start, its list done, this node's facts received, the kernel's acknowledgement. */
  startedAt: number;
  listedAt: number;
  toldAt: number;
  kernelAnsweredAt: number;
}

/** How long the startup child may wait for this node's facts before the agent ends it. */
const STARTUP_IDLE_MS = 60_000;

/** The agent's side of a first full sync made elsewhere (the services reconciler's view of StartupFullSync). */
export interface StartupSync {
  nodeKnown(node: ProxyNodeFacts): void;
  outcome(): Promise<StartupSyncOutcome>;
  end(): Promise<void>;
}

/** The agent's side of the startup child (see runServicesStartupChild). */
export class StartupFullSync implements StartupSync {
  private readonly child: ChildApplier;
  private nodeTold = false;
  private finished = false;

  /** Undefined when this process cannot start the child (it was not started as the podnet command). */
  static start(connection: EtcdConnection, prefix: string): StartupFullSync | undefined {
    return childApplyAvailable() ? new StartupFullSync(connection, prefix) : undefined;
  }

  private constructor(connection: EtcdConnection, prefix: string) {
    this.child = new ChildApplier(SERVICES_STARTUP_COMMAND);
    this.child.tell({ list: { connection, prefix } } satisfies StartupListRequest);
    // No registration for a minute (etcd unreachable at start): it does not sit there holding a
    // Node process's memory; the first full sync is then the agent's own.
    setTimeout(() => {
      if (!this.nodeTold) void this.end();
    }, STARTUP_IDLE_MS).unref();
  }

  /** This node's facts, once registered: the child compiles and applies as soon as it has listed. */
  nodeKnown(node: ProxyNodeFacts): void {
    if (this.nodeTold || this.finished) return;
    this.nodeTold = true;
    this.child.tell({ node } satisfies StartupNodeRequest);
  }

  /**
   * The child's full sync. Rejects with NftChildFailed when it did not ask the kernel (it declined,
   * found no node facts, failed to list, crashed), NftNotEncodable, or the kernel's refusal.
   */
  async outcome(): Promise<StartupSyncOutcome> {
    this.finished = true;
    const answer = await this.child.answer();
    return {
      bytes: answer.bytes, encodeMs: answer.encodeMs, kernelMs: answer.kernelMs,
      compileMs: answer.extra["compileMs"] ?? NaN, changes: answer.extra["changes"] ?? NaN, revision: answer.extra["revision"] ?? NaN,
      kernelAnsweredAt: answer.extra["kernelAnsweredAt"] ?? NaN, digest: answer.texts?.["digest"] ?? "",
      startedAt: answer.extra["startedAt"] ?? NaN, listedAt: answer.extra["listedAt"] ?? NaN, toldAt: answer.extra["toldAt"] ?? NaN,
    };
  }

  /** Ends the child unused; resolves once it has exited (nothing it was about to send can land later). */
  end(): Promise<void> {
    this.finished = true;
    return this.child.end();
  }
}
