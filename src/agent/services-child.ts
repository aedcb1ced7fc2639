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

import type { EndpointSlice, Service } from "../k8s/types.ts";
import { runApplyChild } from "../kernel/nft/netlink-child.ts";
import type { NftTransaction } from "../kernel/nft/model.ts";
import { IncrementalProxyCompiler, type ProxyNodeFacts } from "../services/proxy-compiler.ts";
import { planProxyTransaction } from "../services/proxy-plan.ts";

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
