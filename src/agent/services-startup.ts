// The agent's side of its first full sync made by a child process (the child's side is
// runServicesStartupChild in services-child.ts). Kept apart from the child's side, which loads the etcd
// client and the proxy compiler: `podnet agent` imports this module first and starts the child before
// the agent's own modules (etcd3 and gRPC alone: ~0.2 s) are loaded.

import { parseArgs } from "node:util";
import { ETCD_CLIENT_FLAGS, parseEtcdConnection, type EtcdConnection } from "../datastore/etcd-client-options.ts";
import { ChildApplier, childApplyAvailable } from "../kernel/nft/netlink-child.ts";
import type { ProxyNodeFacts } from "../services/proxy-compiler.ts";

export const SERVICES_STARTUP_COMMAND = "internal-services-startup-sync";
/** Below this many Services the startup child leaves the first full sync to the agent (it is quick in-process). */
export const CHILD_FULL_SYNC_AT_SERVICES = 1000;

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
 * end of stdin (the agent ended it, or died) ends the child as soon as it next looks: not while it
 * compiles or writes the table, which it then finishes.
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
export const STARTUP_DEADLINE_MS = 60_000;

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

/** The startup child's niceness (the agent's is 0): see the constructor of StartupFullSync. */
const STARTUP_CHILD_NICENESS = -5;
/** The child's progress report once it has its list. */
export const LISTED_PROGRESS = "listed";
/** The longest the agent's own list waits for the child's (see listed). */
const LISTED_WAIT_MS = 3000;

/** How long the startup child may wait for this node's facts before the agent ends it. */
const STARTUP_IDLE_MS = 60_000;

/**
 * The etcd connection and key prefix named by `podnet agent ARGS`, read leniently (other flags are
 * not known here); undefined when there is none that parses, or when help is asked for.
 */
export function etcdOfAgentArgs(args: readonly string[]): { connection: EtcdConnection; prefix: string } | undefined {
  if (args.some((arg) => arg === "--help" || arg === "-h")) return undefined;
  try {
    const { values } = parseArgs({ args: [...args], options: { ...ETCD_CLIENT_FLAGS, "etcd-prefix": { type: "string" } }, strict: false, allowPositionals: true });
    const etcdValues = Object.fromEntries(Object.keys(ETCD_CLIENT_FLAGS).filter((k) => values[k] !== undefined).map((k) => [k, values[k]]));
    const prefix = values["etcd-prefix"];
    return { connection: parseEtcdConnection(etcdValues), prefix: typeof prefix === "string" ? prefix : "/podnet/" };
  } catch {
    return undefined;
  }
}

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

  /**
   * The child for `podnet agent ARGS`, started before the agent has even loaded its modules, from a
   * lenient read of its etcd flags alone. Undefined when they name no usable etcd (the agent's own
   * strict parse then says what is wrong) or when asked for help. The agent checks the connection
   * against its own parse (sameConnection) and ends a child that was told another.
   */
  static startForAgentArgs(args: readonly string[]): StartupFullSync | undefined {
    const etcd = etcdOfAgentArgs(args);
    return etcd && StartupFullSync.start(etcd.connection, etcd.prefix);
  }

  /** True when the child was told to list this etcd under this prefix. */
  sameConnection(connection: EtcdConnection, prefix: string): boolean {
    return JSON.stringify([this.connection, this.prefix]) === JSON.stringify([connection, prefix]);
  }

  private constructor(
    private readonly connection: EtcdConnection,
    private readonly prefix: string,
  ) {
    // Ahead of the agent (and etcd) on the CPUs for the second or two it runs: it is what puts the
    // services in the kernel, and the agent's own list and compile of the same objects can wait.
    this.child = new ChildApplier(SERVICES_STARTUP_COMMAND, { niceness: STARTUP_CHILD_NICENESS });
    this.child.tell({ list: { connection, prefix } } satisfies StartupListRequest);
    // No registration for a minute (etcd unreachable at start): it does not sit there holding a
    // Node process's memory; the first full sync is then the agent's own.
    setTimeout(() => {
      if (!this.nodeTold) void this.end();
    }, STARTUP_IDLE_MS).unref();
  }

  /**
   * Resolves once the child has its list of Services and EndpointSlices, has ended, or after 3 s.
   * The agent's own list of the same objects waits for it: both at once share etcd and the CPUs,
   * and the child's list is on the way to the kernel while the agent's is not.
   */
  listed(): Promise<void> {
    return new Promise((resolve) => {
      this.child.onProgress((step) => {
        if (step === LISTED_PROGRESS) resolve();
      });
      void this.child.whenExited().then(resolve);
      setTimeout(resolve, LISTED_WAIT_MS).unref();
    });
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

