// The agent's reconcilers against real agents, etcd and kernels: a backend that cannot be built leaves
// the node NotReady with the reason but never wedges node removal elsewhere, and is picked up again when
// the config is fixed; a failing or hanging masquerade reconciler never stops the routes.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CniNetwork, PluginError } from "../src/runtime/cni-driver.ts";
import { AgentCluster, ETCD_URL, ip, waitFor, type TestNode } from "./agent-harness.ts";

const REPO = resolve(import.meta.dirname, "..");

interface ReconcilerStatus {
  ready: boolean;
  healthy: boolean;
  lastError: string | null;
  lastSuccessAt: string | null;
  runningForMs: number | null;
  syncs: number;
  running?: string | null;
  wanted?: string | null;
  buildError?: string | null;
}

interface Status {
  ready: boolean;
  notReadyReasons: string[];
  podSubnet: string | null;
  backend: string | null;
  podMtu: number | null;
  reconcilers: Record<string, ReconcilerStatus>;
}

function describeNode(cluster: AgentCluster, node: TestNode) {
  return () => `routes of ${node.name}: ${JSON.stringify(cluster.routes(node))}\n--- log ---\n${cluster.logOf(node)}`;
}

async function status(cluster: AgentCluster, node: TestNode): Promise<Status> {
  return (await cluster.health(node)) as unknown as Status;
}

/** CNI STATUS as a runtime runs it: the agent's conflist, our plugins, inside the node. 0 or the error code. */
async function cniStatus(node: TestNode): Promise<number> {
  const net = CniNetwork.fromFile(join(node.confDir, "10-podnet.conflist"), { cniPath: [join(REPO, "dist/cni")], nodeNetns: `/run/netns/${node.netns}` });
  try {
    await net.status();
    return 0;
  } catch (err) {
    if (err instanceof PluginError && err.code !== undefined) return err.code;
    throw err;
  }
}

function readyFile(cluster: AgentCluster, node: TestNode): string {
  return join(cluster.dir, node.name, "agent.ready");
}

describe("podnet agent: a backend that cannot be built", () => {
  const cluster = new AgentCluster();
  let n1: TestNode, n2: TestNode, n3: TestNode;
  const subnets = new Map<string, string>();
  let config: Record<string, unknown>;

  before(async () => {
    await cluster.create(3);
    [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode];
  });
  after(async () => {
    await cluster.destroy();
  });

  it("starts host-gw everywhere, with the underlay's MTU in the conflist", async () => {
    // The underlay of node1 gets a smaller MTU: the conflist must carry it (host-gw adds no header).
    ip("-n", n1.netns, "link", "set", "eth0", "mtu", "1400");
    for (const node of cluster.nodes) cluster.startAgent(node);
    for (const node of cluster.nodes) {
      await waitFor(async () => (await status(cluster, node)).ready, 20_000, describeNode(cluster, node));
      subnets.set(node.name, String((await status(cluster, node)).podSubnet));
    }
    for (const node of cluster.nodes) await waitFor(() => cluster.routes(node).length === 2, 5000, describeNode(cluster, node));
    const conflist = (node: TestNode) => JSON.parse(readFileSync(join(node.confDir, "10-podnet.conflist"), "utf8")) as { plugins: { mtu: number }[] };
    assert.equal(conflist(n1).plugins[0]!.mtu, 1400);
    assert.equal(conflist(n2).plugins[0]!.mtu, 1500);
    const s1 = await status(cluster, n1);
    assert.equal(s1.podMtu, 1400);
    assert.equal(s1.backend, "host-gw");
    assert.equal(s1.reconcilers.routes?.healthy, true);
    assert.equal(s1.reconcilers.masquerade?.healthy, true);
    const metrics = (await cluster.get(n1, "/metrics")).body;
    assert.match(metrics, /^podnet_agent_reconciler_syncs_total\{reconciler="routes",result="success"\} [1-9]/m);
    assert.match(metrics, /^podnet_agent_reconciler_ready\{reconciler="masquerade"\} 1$/m);
    assert.match(metrics, /^podnet_agent_pod_mtu 1400$/m);
    config = JSON.parse(cluster.etcdctl("get", "/podnet/config", "--print-value-only")) as Record<string, unknown>;
    assert.equal(config.backend, "host-gw");
  });

  it("an unknown backend in the config: NotReady with the reason, routes kept, and removing another node completes", async () => {
    // node1 restarts under the broken config, so it builds no backend at all, while the kernel still
    // holds the routes its earlier run made (to node3 among them). node2 keeps running: its host-gw
    // backend stays in charge while the one the config names cannot be built.
    await cluster.stopAgent(n1);
    cluster.etcdctl("put", "/podnet/config", JSON.stringify({ ...config, backend: "bogus" }));
    cluster.startAgent(n1);
    for (const node of [n1, n2, n3]) {
      await waitFor(async () => {
        const s = await status(cluster, node);
        return !s.ready && s.notReadyReasons.some((r) => /routes: backend "bogus": unknown backend/.test(r));
      }, 15_000, describeNode(cluster, node));
      assert.equal(existsSync(readyFile(cluster, node)), false, `${node.name}: the ready file is gone`);
      assert.equal(await cniStatus(node), 50, `${node.name}: the conflist stays but STATUS says NotReady`);
      assert.equal((await cluster.get(node, "/healthz")).status, 503);
    }
    const s1 = await status(cluster, n1);
    assert.equal(s1.backend, null, "node1 built no backend");
    assert.equal(s1.reconcilers.routes?.ready, false);
    assert.match(s1.reconcilers.routes?.lastError ?? "", /unknown backend \(this agent knows: host-gw, vxlan\)/);
    assert.equal(s1.reconcilers.masquerade?.healthy, true, "masquerade is unaffected");
    const s2 = await status(cluster, n2);
    assert.equal(s2.backend, "host-gw", "node2 keeps its running backend");
    assert.equal(s2.reconcilers.routes?.wanted, "bogus");
    assert.match(cluster.logOf(n1), /backend "bogus" cannot be built: unknown backend/);
    assert.match(cluster.logOf(n1), /registered node node1/, "node1 registered all the same");
    for (const node of [n1, n2]) assert.equal(cluster.routes(node).length, 2, `${node.name}: routes to running pods stay`);

    const n3Subnet = subnets.get(n3.name)!;
    const output = execFileSync(
      "ip",
      ["netns", "exec", cluster.controlNs, process.execPath, join(REPO, "bin/podnet.js"), "node", "remove", n3.name, "--etcd", ETCD_URL, "--timeout", "20"],
      { encoding: "utf8" },
    );
    assert.match(output, new RegExp(`node3 removed; subnet ${n3Subnet.replace(/\./g, "\\.")} is free`));
    assert.equal(cluster.etcdctl("get", "--prefix", "/podnet/subnets/", "--keys-only").includes(n3Subnet.replace("/", "-")), false, "the subnet claim is gone");
    for (const node of [n1, n2]) {
      assert.deepEqual(cluster.routes(node), [`${subnets.get(node === n1 ? n2.name : n1.name)} via ${(node === n1 ? n2 : n1).ip}`], `${node.name} withdrew its route to node3 before acknowledging`);
    }
    assert.match(cluster.logOf(n1), /no backend runs: removed 1 host-gw entry an earlier run left for leaving nodes/);
    await waitFor(() => n3.agent?.exitCode === 0, 5000, describeNode(cluster, n3));
    n3.agent = undefined;
  });

  it("fixing the config makes the nodes Ready again, without a restart", async () => {
    cluster.etcdctl("put", "/podnet/config", JSON.stringify(config));
    for (const node of [n1, n2]) {
      await waitFor(async () => (await status(cluster, node)).ready, 15_000, describeNode(cluster, node));
      const s = await status(cluster, node);
      assert.deepEqual(s.notReadyReasons, []);
      assert.equal(s.backend, "host-gw");
      assert.equal(s.reconcilers.routes?.buildError, null);
      assert.equal(existsSync(readyFile(cluster, node)), true);
      assert.equal(await cniStatus(node), 0);
    }
    assert.deepEqual(cluster.routes(n1), [`${subnets.get(n2.name)} via ${n2.ip}`]);
    assert.match(cluster.logOf(n1), /backend host-gw built/);
  });
});

describe("podnet agent: a failing masquerade reconciler", () => {
  const cluster = new AgentCluster();
  let n1: TestNode, n2: TestNode, n3: TestNode;

  before(async () => {
    await cluster.create(3);
    [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode];
  });
  after(async () => {
    await cluster.destroy();
  });

  it("does not stop routes from being programmed and repaired; the node stays NotReady with the reason", async () => {
    cluster.startAgent(n1, [], { PODNET_AGENT_FAULTS: "masquerade=throw" });
    cluster.startAgent(n2, [], { PODNET_AGENT_FAULTS: "masquerade=hang" });
    cluster.startAgent(n3);
    await waitFor(async () => (await status(cluster, n3)).ready, 20_000, describeNode(cluster, n3));
    for (const node of [n1, n2]) await waitFor(() => cluster.routes(node).length === 2, 20_000, describeNode(cluster, node));

    const s1 = await status(cluster, n1);
    assert.equal(s1.ready, false);
    assert.equal(s1.reconcilers.routes?.healthy, true);
    assert.equal(s1.reconcilers.masquerade?.healthy, false);
    assert.match(s1.reconcilers.masquerade?.lastError ?? "", /injected failure/);
    assert.ok(s1.notReadyReasons.some((r) => /^masquerade: injected failure/.test(r)), JSON.stringify(s1.notReadyReasons));
    assert.equal(existsSync(readyFile(cluster, n1)), false);
    await waitFor(async () => /^podnet_agent_reconciler_syncs_total\{reconciler="masquerade",result="error"\} ([3-9]|\d\d)/m.test((await cluster.get(n1, "/metrics")).body), 10_000, describeNode(cluster, n1));

    const s2 = await status(cluster, n2);
    assert.equal(s2.ready, false);
    assert.equal(s2.reconcilers.routes?.healthy, true);
    assert.equal(s2.reconcilers.masquerade?.syncs, 0, "the hung sync never finished");
    assert.ok((s2.reconcilers.masquerade?.runningForMs ?? 0) > 0);

    // Routes keep being reconciled on their own timer: a route deleted by hand comes back.
    for (const node of [n1, n2]) {
      const victim = cluster.routes(node)[0]!.split(" ")[0]!;
      ip("-n", node.netns, "route", "del", victim);
      await waitFor(() => cluster.routes(node).some((r) => r.startsWith(victim)), 1500, describeNode(cluster, node), 10);
    }
  });
});
