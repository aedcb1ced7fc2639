// Real agents in real node namespaces on a bridged underlay, with etcd in a control-plane namespace.
// Steps share one cluster and run in order; each states what it leaves behind for the next.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CniNetwork, PluginError } from "../src/runtime/cni-driver.ts";
import { AgentCluster, ETCD_URL, ip, waitFor, type TestNode } from "./agent-harness.ts";

const REPO = resolve(import.meta.dirname, "..");

/** CNI STATUS of the node's network, run as a runtime would: the agent's conflist, our plugins, inside the node. */
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

describe("podnet agent, host-gw, three nodes", () => {
  const cluster = new AgentCluster();
  let n1: TestNode, n2: TestNode, n3: TestNode;
  const subnets = new Map<string, string>();

  const expectedRoutes = (self: TestNode, peers: TestNode[]) =>
    peers.filter((p) => p !== self).map((p) => `${subnets.get(p.name)} via ${p.ip}`).sort();
  const describeNode = (node: TestNode) => () => `routes of ${node.name}: ${JSON.stringify(cluster.routes(node))}\n--- log ---\n${cluster.logOf(node)}`;

  before(async () => {
    await cluster.create(3);
    [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode];
  });
  after(async () => {
    await cluster.destroy();
  });

  it("every node gets a distinct subnet, routes to the others and a conflist with its subnet", async () => {
    for (const node of cluster.nodes) cluster.startAgent(node);
    for (const node of cluster.nodes) {
      await waitFor(async () => (await cluster.health(node)).ready === true, 20_000, describeNode(node));
      const health = await cluster.health(node);
      subnets.set(node.name, String(health.podSubnet));
    }
    assert.equal(new Set(subnets.values()).size, 3);
    for (const node of cluster.nodes) {
      await waitFor(() => cluster.routes(node).length === 2, 5000, describeNode(node));
      assert.deepEqual(cluster.routes(node), expectedRoutes(node, cluster.nodes));
      const conflist = JSON.parse(readFileSync(join(node.confDir, "10-podnet.conflist"), "utf8"));
      assert.equal(conflist.cniVersion, "1.1.0");
      assert.equal(conflist.plugins[0].type, "podnet");
      assert.equal(conflist.plugins[0].ipMasq, false);
      assert.deepEqual(conflist.plugins[0].ipam.ranges, [[{ subnet: subnets.get(node.name) }]]);
      assert.deepEqual(readdirSync(node.confDir), ["10-podnet.conflist"], "no temporary files left behind");
      assert.equal(await cniStatus(node), 0, "STATUS is ready once the agent is");
    }
  });

  it("serves /healthz and Prometheus metrics", async () => {
    const healthz = await cluster.get(n1, "/healthz");
    assert.equal(healthz.status, 200);
    const metrics = await cluster.get(n1, "/metrics");
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^podnet_agent_routes_programmed 2$/m);
    assert.match(metrics.body, /^podnet_agent_ready 1$/m);
    assert.match(metrics.body, /^podnet_agent_sync_duration_seconds_count\{phase="kernel"\} [1-9]/m);
    assert.match(metrics.body, /^podnet_agent_sync_duration_seconds_count\{phase="datastore"\} [1-9]/m);
    assert.match(metrics.body, /^# TYPE podnet_agent_datastore_errors_total counter$/m);
  });

  it("masquerades only pod traffic leaving the cluster CIDR", () => {
    const ruleset = execFileSync("ip", ["netns", "exec", n1.netns, "nft", "list", "table", "ip", "podnet"], { encoding: "utf8" });
    assert.match(ruleset, /ip saddr 10\.244\.0\.0\/16 ip daddr != 10\.244\.0\.0\/16 masquerade/);
  });

  it("a route deleted by hand comes back within a second", async () => {
    const victim = subnets.get(n2.name)!;
    // `ip route del` fails unless the route was there; no check that it is gone afterwards, since the
    // agent's next resync (every 500 ms) may already have put it back.
    ip("-n", n1.netns, "route", "del", victim);
    const elapsed = await waitFor(() => cluster.routes(n1).some((r) => r.startsWith(victim)), 1500, describeNode(n1), 10);
    assert.ok(elapsed <= 1000, `came back after ${elapsed} ms`);
  });

  it("a flushed table is rebuilt, and routes of others are never touched", async () => {
    // A route of someone else to a destination outside podnet, and one (proto static) to the same kind of place.
    ip("-n", n1.netns, "route", "add", "10.99.0.0/24", "via", "192.168.1.13", "proto", "static");
    const flushed = ip("-s", "-n", n1.netns, "route", "flush", "root", "10.244.0.0/16");
    assert.match(flushed, /deleting 2 entries/, "the flush removed both of our routes");
    await waitFor(() => cluster.routes(n1).length === 2, 1500, describeNode(n1), 10);
    assert.deepEqual(cluster.routes(n1), expectedRoutes(n1, cluster.nodes));
    const foreign = ip("-n", n1.netns, "route", "show", "10.99.0.0/24");
    assert.match(foreign, /10\.99\.0\.0\/24 via 192\.168\.1\.13 .*proto static/);
    ip("-n", n1.netns, "route", "del", "10.99.0.0/24");
  });

  it("a route someone else made to a peer's subnet is left alone and reported, and ours returns once it is gone", async () => {
    const dst = subnets.get(n2.name)!;
    // Replace ours with a route of another owner (proto static) to the same destination.
    ip("-n", n1.netns, "route", "replace", dst, "via", n3.ip, "proto", "static");
    assert.ok(!cluster.routes(n1).some((r) => r.startsWith(dst)), "our route is gone");
    await waitFor(async () => /^podnet_agent_route_conflicts 1$/m.test((await cluster.get(n1, "/metrics")).body), 3000, describeNode(n1), 50);
    await new Promise((r) => setTimeout(r, 700));
    assert.match(ip("-n", n1.netns, "route", "show", dst), new RegExp(`via ${n3.ip.replace(/\./g, "\\.")} .*proto static`), "theirs is untouched");
    assert.ok(!cluster.routes(n1).some((r) => r.startsWith(dst)), "the agent did not take the destination over");
    ip("-n", n1.netns, "route", "del", dst, "proto", "static");
    await waitFor(() => cluster.routes(n1).includes(`${dst} via ${n2.ip}`), 1500, describeNode(n1), 10);
  });

  it("a route of ours with a wrong gateway is replaced", async () => {
    const dst = subnets.get(n3.name)!;
    ip("-n", n1.netns, "route", "replace", dst, "via", n2.ip, "proto", "80");
    await waitFor(() => cluster.routes(n1).includes(`${dst} via ${n3.ip}`), 1500, describeNode(n1), 10);
  });

  it("SIGTERM leaves the routes in place; a restarted agent keeps its subnet", async () => {
    await cluster.stopAgent(n1, "SIGTERM");
    assert.deepEqual(cluster.routes(n1), expectedRoutes(n1, cluster.nodes));
    assert.match(cluster.logOf(n1), /SIGTERM: stopping/);
    cluster.startAgent(n1);
    await waitFor(async () => (await cluster.health(n1)).ready === true, 20_000, describeNode(n1));
    assert.equal((await cluster.health(n1)).podSubnet, subnets.get(n1.name));
    assert.deepEqual(cluster.routes(n1), expectedRoutes(n1, cluster.nodes));
  });

  it("a changed node IP is replaced on the other nodes", async () => {
    ip("-n", n2.netns, "addr", "add", "192.168.1.22/24", "dev", "eth0");
    await cluster.stopAgent(n2);
    n2.ip = "192.168.1.22";
    cluster.startAgent(n2);
    for (const node of [n1, n3]) {
      await waitFor(() => cluster.routes(node).includes(`${subnets.get(n2.name)} via 192.168.1.22`), 20_000, describeNode(node));
      assert.deepEqual(cluster.routes(node), expectedRoutes(node, cluster.nodes));
    }
  });

  it("survives an etcd restart: keeps routes and repairs the kernel during the outage, then recovers", async () => {
    await cluster.stopEtcd();
    const victim = subnets.get(n3.name)!;
    ip("-n", n1.netns, "route", "del", victim);
    await waitFor(() => cluster.routes(n1).some((r) => r.startsWith(victim)), 1500, describeNode(n1), 10);
    await new Promise((r) => setTimeout(r, 1500));
    for (const node of cluster.nodes) assert.deepEqual(cluster.routes(node), expectedRoutes(node, cluster.nodes), "no flapping while etcd is down");
    await waitFor(async () => (await cluster.health(n1)).datastoreConnected === false, 15_000, describeNode(n1));
    await waitFor(async () => /podnet_agent_datastore_errors_total\{op="[a-z]+"\} [1-9]/.test((await cluster.get(n1, "/metrics")).body), 10_000, describeNode(n1));

    // An agent restarted during the outage cannot know the cluster: its node is NotReady, although
    // the conflist of its earlier run stays for the pods already running.
    await cluster.stopAgent(n2, "SIGTERM");
    cluster.startAgent(n2);
    await waitFor(async () => (await cluster.health(n2).catch(() => undefined))?.ready === false, 10_000, describeNode(n2));
    assert.equal(await cniStatus(n2), 50, "STATUS is NotReady until the restarted agent has synced");
    assert.equal((await cluster.get(n2, "/healthz")).status, 503);
    assert.deepEqual(cluster.routes(n2), expectedRoutes(n2, cluster.nodes), "the routes stay meanwhile");

    await cluster.startEtcd();
    await waitFor(async () => (await cluster.health(n2)).ready === true, 30_000, describeNode(n2), 100);
    assert.equal(await cniStatus(n2), 0);
    assert.equal((await cluster.get(n2, "/healthz")).status, 200);
    for (const node of cluster.nodes) {
      await waitFor(async () => (await cluster.health(node)).datastoreConnected === true, 30_000, describeNode(node), 100);
    }
    // Recovered for real: a change made after the restart reaches the kernel.
    await cluster.stopAgent(n3);
    ip("-n", n3.netns, "addr", "add", "192.168.1.23/24", "dev", "eth0");
    n3.ip = "192.168.1.23";
    cluster.startAgent(n3);
    await waitFor(() => cluster.routes(n1).includes(`${subnets.get(n3.name)} via 192.168.1.23`), 20_000, describeNode(n1));
  });

  it("`podnet node remove` withdraws the node's routes everywhere, then frees its subnet", async () => {
    const output = execFileSync(
      "ip",
      ["netns", "exec", cluster.controlNs, process.execPath, join(REPO, "bin/podnet.js"), "node", "remove", n3.name, "--etcd", ETCD_URL, "--etcd-insecure", "--timeout", "20"],
      { encoding: "utf8" },
    );
    assert.match(output, /node3 removed; subnet .* is free/);
    for (const node of [n1, n2]) assert.deepEqual(cluster.routes(node), expectedRoutes(node, [n1, n2]));
    await waitFor(() => n3.agent?.exitCode === 0, 5000, describeNode(n3));
    assert.throws(() => readFileSync(join(n3.confDir, "10-podnet.conflist")), "the removed node is no longer Ready");
    n3.agent = undefined;
    const list = execFileSync("ip", ["netns", "exec", cluster.controlNs, process.execPath, join(REPO, "bin/podnet.js"), "node", "list", "--etcd", ETCD_URL, "--etcd-insecure"], { encoding: "utf8" });
    assert.doesNotMatch(list, /node3/);
  });

  it("a node whose agent dies is removed after the lease TTL, and gets its subnet back when it returns", async () => {
    await cluster.stopAgent(n2, "SIGKILL");
    const dst = subnets.get(n2.name)!;
    // Lease TTL 4 s, then every live node withdraws and acks; allow for etcd's lease-expiry granularity.
    await waitFor(() => !cluster.routes(n1).some((r) => r.startsWith(dst)), 20_000, describeNode(n1), 100);
    await waitFor(async () => !(await cluster.health(n1)).nodes || !((await cluster.health(n1)).nodes as { name: string }[]).some((n) => n.name === n2.name), 10_000, describeNode(n1), 100);
    cluster.startAgent(n2);
    await waitFor(async () => (await cluster.health(n2)).ready === true, 20_000, describeNode(n2));
    assert.equal((await cluster.health(n2)).podSubnet, dst, "the subnet in its old conflist was still free");
    await waitFor(() => cluster.routes(n1).includes(`${dst} via ${n2.ip}`), 5000, describeNode(n1));
  });
});
