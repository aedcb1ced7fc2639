// What the agent's service proxy repairs on its own after things happened without it, end to end
// (real agents, etcd, pods, the kernel's conntrack and neighbour tables):
// - an endpoint deleted while the agent was down: the restarted agent's full sync clears the UDP
//   conntrack entries still pointing at it, so a client's next datagram on the same flow reaches a
//   live endpoint (kube-proxy clears stale UDP entries at every full sync too:
//   pkg/proxy/conntrack/cleanup.go);
// - a LoadBalancer IP taken over by another node: the new holder sends gratuitous ARP, so a host on
//   the underlay that cached the old holder's MAC switches to the new one without sending anything
//   itself (MetalLB's L2 mode does the same on failover).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ip, service, ServiceCluster, slice, waitFor, type Pod } from "./helpers/agent-services.ts";
import type { ChildProcess } from "node:child_process";

const root = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the agent's service proxy cleans up after what happened without it", { skip: root ? false : "needs root" }, () => {
  const sc = new ServiceCluster();
  let client: Pod;
  let a: Pod;
  let c: Pod;
  const servers = new Map<string, ChildProcess>();

  before(async () => {
    await sc.start(2);
    const [node1, node2] = sc.nodes as [NonNullable<(typeof sc.nodes)[0]>, NonNullable<(typeof sc.nodes)[1]>];
    client = await sc.addPod("client", node1, 2);
    a = await sc.addPod("a", node1, 3);
    c = await sc.addPod("c", node2, 3);
    for (const pod of [a, c]) servers.set(pod.name, await sc.startServer(pod));
  });
  after(async () => {
    await sc.destroy();
  });

  it("clears a UDP flow to an endpoint deleted while the agent was down, at the restart's full sync", async () => {
    const node1 = sc.nodes[0]!;
    const revision = await sc.create(service("udp", "10.96.0.50", { ports: [{ port: 8080, targetPort: 8080, protocol: "UDP" }] }), slice("udp", [a, c], "UDP"));
    await sc.synced(node1, revision);
    const flow = sc.udpClient(client.netns, "10.96.0.50", 8080, 41000, 200);
    try {
      await waitFor(() => flow.replies.length >= 2, 5000, () => "no UDP answers");
      const first = flow.replies.at(-1)!.from;
      const victim = first === "pod-a" ? a : c;
      const survivor = victim === a ? c : a;

      await sc.cluster.stopAgent(node1, "SIGKILL");
      sc.deletePod(victim, servers.get(victim.name)!);
      await sc.apply(slice("udp", [survivor], "UDP"));
      // The client keeps sending on its flow, which keeps the conntrack entry to the dead pod alive.
      await sleep(1500);
      const downAt = Date.now();
      await sleep(1000);
      assert.equal(flow.replies.filter((r) => r.at > downAt).length, 0, `no answers while the flow points at the deleted ${victim.name}`);

      const restartedAt = Date.now();
      sc.cluster.startAgent(node1, sc.agentArgs);
      await waitFor(() => flow.replies.some((r) => r.at > restartedAt && r.from === `pod-${survivor.name}`), 20_000,
        () => `the flow was not moved to ${survivor.name} after the restart: ${sc.cluster.logOf(node1).slice(-2000)}`);
      const status = (await sc.cluster.health(node1)) as { reconcilers?: { services?: { udpFlowsDeleted?: number } } };
      assert.ok((status.reconcilers?.services?.udpFlowsDeleted ?? 0) >= 1, "the agent deleted the entry");
    } finally {
      flow.stop();
    }
  });

  it("sends gratuitous ARP when it takes a LoadBalancer IP over, so the underlay's cached MAC moves at once", async () => {
    const LB_IP = "192.168.1.245";
    await sc.waitReady(sc.nodes[0]!);
    const survivors = [...sc.pods.values()].filter((p) => p.name !== "client");
    const revision = await sc.create(
      service("garp", "10.96.0.51", { type: "LoadBalancer", ports: [{ port: 80, targetPort: 8080, nodePort: 30095 }] }, { loadBalancer: { ingress: [{ ip: LB_IP }] } }),
      slice("garp", survivors),
    );
    for (const node of sc.nodes) await sc.synced(node, revision);
    const holders = () => sc.nodes.filter((n) => ip("-n", n.netns, "-4", "addr", "show", "dev", "eth0").includes(`${LB_IP}/32`));
    await waitFor(() => holders().length === 1, 5000, () => `${LB_IP} held by ${holders().map((n) => n.name)}`);
    const leaving = holders()[0]!;
    const staying = sc.nodes.find((n) => n !== leaving)!;
    const macOf = (netns: string) => ip("-n", netns, "-j", "link", "show", "dev", "eth0").match(/"address":"([0-9a-f:]{17})"/)![1]!;
    const neighbour = () => {
      const entry = (JSON.parse(ip("-n", sc.cluster.controlNs, "-j", "neigh", "show", LB_IP)) as { lladdr?: string; state?: string[] }[])[0];
      return entry ? { mac: entry.lladdr, state: (entry.state ?? []).join(",") } : undefined;
    };

    // The external host talks to the LB IP, so it caches the holder's MAC.
    assert.match(await sc.answers(sc.cluster.controlNs, `http://${LB_IP}/hostname`), /^pod-/);
    const cached = neighbour();
    assert.equal(cached?.mac, macOf(leaving.netns), `the external host caches ${leaving.name}'s MAC for ${LB_IP}`);
    assert.match(cached!.state, /REACHABLE|STALE|DELAY/);

    // The holder dies: agent gone, underlay dark. The other node takes the IP over once the lease expires.
    await sc.cluster.stopAgent(leaving, "SIGKILL");
    ip("-n", leaving.netns, "link", "set", "eth0", "down");
    await waitFor(() => holders().some((n) => n === staying), 30_000, () => `${staying.name} did not take ${LB_IP} over: ${sc.cluster.logOf(staying).slice(-1500)}`);
    // Without sending anything from the external host, its entry moves to the new holder's MAC.
    await waitFor(() => neighbour()?.mac === macOf(staying.netns), 5000,
      () => `the external host still has ${JSON.stringify(neighbour())} for ${LB_IP}; ${staying.name} is ${macOf(staying.netns)}`);
  });
});
