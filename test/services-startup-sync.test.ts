// The first full sync of a large table, made by the agent's startup child (src/agent/services-child.ts),
// end to end: a real agent restarted with 1,000 Services in etcd, its child listing etcd itself and
// writing the table, the agent taking that table as its own (later changes are incremental), and
// an agent killed during its start leaving no child behind.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { ObjectWrite } from "../src/datastore/objects.ts";
import { service, ServiceCluster, slice, waitFor, type Pod } from "./helpers/agent-services.ts";

const root = process.getuid?.() === 0;
const FILLER = 1000;

type FullSync = { kind: string; appliedBy?: string; kernelAnsweredAt?: number; startupChild?: Record<string, number> };
type ServicesStatus = { revision?: number; services?: number; lastFullSync?: FullSync | null; lastSync?: { kind: string } | null };

describe("the agent's first full sync of a large table, by its startup child", { skip: root ? false : "needs root" }, () => {
  const sc = new ServiceCluster();
  let client: Pod;
  let a: Pod;

  const servicesStatus = async (): Promise<ServicesStatus | undefined> =>
    ((await sc.cluster.health(sc.nodes[0]!)) as { reconcilers?: { services?: ServicesStatus } }).reconcilers?.services;
  const pidsIn = (netns: string) => execFileSync("ip", ["netns", "pids", netns], { encoding: "utf8" }).split("\n").filter(Boolean);
  const commandOf = (pid: string) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
    } catch {
      return ""; // gone meanwhile
    }
  };
  const startupChildrenIn = (netns: string) => pidsIn(netns).filter((pid) => commandOf(pid).includes("internal-services-startup-sync"));

  before(async () => {
    await sc.start(1);
    const node = sc.nodes[0]!;
    client = await sc.addPod("client", node, 2);
    a = await sc.addPod("a", node, 3);
    await sc.startServer(a);
    await sc.create(service("web", "10.96.0.20"), slice("web", [a]));
    for (let i = 0; i < FILLER; i += 25) {
      const writes: ObjectWrite[] = [];
      for (let k = i; k < i + 25; k++) writes.push({ op: "create", object: service(`f${k}`, `10.97.${k >> 8}.${k & 255}`) }, { op: "create", object: slice(`f${k}`, [a]) });
      await sc.commit(writes);
    }
  });
  after(async () => {
    await sc.destroy();
  });

  it("is written by the child from its own list, taken by the agent as its own, and followed by incremental changes", async () => {
    const node = sc.nodes[0]!;
    await sc.cluster.stopAgent(node, "SIGKILL");
    const restartedAt = Date.now();
    sc.cluster.startAgent(node, sc.agentArgs);
    let full: FullSync | undefined;
    await waitFor(async () => {
      const status = await servicesStatus();
      full = status?.lastFullSync ?? undefined;
      return full !== undefined && (status?.services ?? 0) > FILLER;
    }, 60_000, () => `no full sync after the restart: ${sc.cluster.logOf(node).slice(-2000)}`);
    assert.equal(full!.kind, "full");
    assert.equal(full!.appliedBy, "startup child", sc.cluster.logOf(node).slice(-2000));
    assert.ok(full!.kernelAnsweredAt! >= restartedAt, "the kernel answered the child after the restart");
    assert.ok(full!.startupChild!["listedAtMs"]! > 0);
    assert.equal(await sc.answers(client.netns, "http://10.96.0.20/hostname"), "pod-a");
    assert.equal(await sc.answers(client.netns, `http://10.97.3.231/hostname`), "pod-a", "a filler service (f999) is in the table too");

    // The agent's state is the child's table: a new service is one incremental change.
    const revision = await sc.create(service("late", "10.96.0.21"), slice("late", [a]));
    await sc.synced(node, revision);
    assert.equal((await servicesStatus())?.lastSync?.kind, "incremental");
    assert.equal(await sc.answers(client.netns, "http://10.96.0.21/hostname"), "pod-a");
    assert.deepEqual(startupChildrenIn(node.netns), [], "the child is gone once the sync is done");
  });

  it("an agent killed during its start leaves no startup child behind", async () => {
    const node = sc.nodes[0]!;
    await sc.cluster.stopAgent(node, "SIGKILL");
    sc.cluster.startAgent(node, sc.agentArgs);
    // Killed once its startup child is running (the agent starts it before it registers).
    await waitFor(() => startupChildrenIn(node.netns).length === 1, 10_000, () => "the agent started no startup child");
    // Ahead of the agent on the CPUs (the agent runs as root here, so it may raise its child's priority).
    const [child] = startupChildrenIn(node.netns);
    const stat = readFileSync(`/proc/${child}/stat`, "utf8");
    assert.equal(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]), -5, "the startup child's niceness");
    await sc.cluster.stopAgent(node, "SIGKILL");
    await waitFor(() => startupChildrenIn(node.netns).length === 0, 10_000, () => `startup children left in ${node.netns}: ${startupChildrenIn(node.netns).join(", ")}`);
    // And the next start still syncs, through its own child.
    sc.cluster.startAgent(node, sc.agentArgs);
    await sc.waitReady(node);
    assert.equal(await sc.answers(client.netns, "http://10.96.0.21/hostname", 30_000), "pod-a");
  });
});
