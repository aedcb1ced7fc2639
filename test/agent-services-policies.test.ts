// Service policies as the real agent programs them, end to end: two real `podnet agent` processes
// in node namespaces on one underlay, etcd, pods routed to their node running the lab's test
// server, and real connections. Until now these behaviours had only compiler tests
// (src/services/proxy-compiler.test.ts):
// - internalTrafficPolicy: Local — a pod reaches only its own node's endpoints, and a pod on a node
//   with none gets no answer (traffic is dropped, not sent elsewhere);
// - sessionAffinity: ClientIP with timeoutSeconds — a client sticks to one endpoint, and once it has
//   been quiet for longer than the timeout it may land on another;
// - loadBalancerSourceRanges — an allowed source reaches the LoadBalancer IP, another is dropped.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ip, service, ServiceCluster, slice, waitFor, type Pod } from "./helpers/agent-services.ts";

const root = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("service policies programmed by the agent", { skip: root ? false : "needs root" }, () => {
  const sc = new ServiceCluster();
  let client1: Pod;
  let client2: Pod;
  let a: Pod;
  let b: Pod;
  let c: Pod;

  before(async () => {
    await sc.start(2);
    const [node1, node2] = sc.nodes as [NonNullable<(typeof sc.nodes)[0]>, NonNullable<(typeof sc.nodes)[1]>];
    client1 = await sc.addPod("cl1", node1, 2);
    client2 = await sc.addPod("cl2", node2, 2);
    a = await sc.addPod("a", node1, 3);
    b = await sc.addPod("b", node1, 4);
    c = await sc.addPod("c", node2, 3);
    for (const pod of [a, b, c]) await sc.startServer(pod);
  });
  after(async () => {
    await sc.destroy();
  });

  const hostnames = (pod: Pod, url: string, times: number) => {
    const seen: string[] = [];
    for (let i = 0; i < times; i++) {
      const run = sc.curl(pod.netns, url, 2);
      assert.equal(run.status, 0, `${url} from ${pod.name}: exit ${run.status} ${run.stderr}`);
      seen.push(run.stdout);
    }
    return seen;
  };

  it("internalTrafficPolicy Local: a pod gets only its own node's endpoints; on a node with none, no answer", async () => {
    // https://kubernetes.io/docs/reference/networking/virtual-ips/#internal-traffic-policy and
    // kube-proxy (pkg/proxy/nftables/proxier.go): with Local, a ClusterIP goes only to endpoints on
    // the client's node; with none there the traffic is dropped, so the client sees a timeout.
    await sc.create(service("itp", "10.96.0.40", { internalTrafficPolicy: "Local" }), slice("itp", [a, b, c]));
    const onlyNode1 = service("itp1", "10.96.0.41", { internalTrafficPolicy: "Local" });
    const revision = await sc.create(onlyNode1, slice("itp1", [a, b]));
    for (const node of sc.nodes) await sc.synced(node, revision);

    await sc.answers(client1.netns, "http://10.96.0.40/hostname");
    const fromNode1 = new Set(hostnames(client1, "http://10.96.0.40/hostname", 20));
    assert.deepEqual([...fromNode1].sort(), ["pod-a", "pod-b"], "node1's client reaches both of node1's endpoints and never node2's");
    assert.deepEqual(new Set(hostnames(client2, "http://10.96.0.40/hostname", 10)), new Set(["pod-c"]), "node2's client reaches only pod-c");

    assert.match(await sc.answers(client1.netns, "http://10.96.0.41/hostname"), /^pod-[ab]$/);
    // Where the packet would go if node2 let it through: node2 routes by default to the external
    // host, which holds 10.96.0.41 itself with nothing listening, so a connection that got there
    // would be refused at once (curl exit 7). Dropped on node2, it times out (exit 28).
    const node2 = sc.nodes[1]!;
    const control = sc.cluster.controlNs;
    ip("-n", node2.netns, "route", "add", "default", "via", "192.168.1.10");
    ip("-n", control, "addr", "add", "10.96.0.41/32", "dev", "lo");
    ip("-n", control, "route", "add", `${client2.ip}/32`, "via", node2.ip);
    try {
      const none = sc.curl(client2.netns, "http://10.96.0.41/hostname", 2);
      assert.equal(none.status, 28, `a pod on a node without local endpoints gets no answer (dropped: curl timeout), got exit ${none.status} ${none.stdout} ${none.stderr}`);
      // The same path without the policy's drop is refused by the external host: the test can tell.
      ip("-n", control, "addr", "add", "10.96.0.99/32", "dev", "lo");
      const elsewhere = sc.curl(client2.netns, "http://10.96.0.99/hostname", 2);
      assert.equal(elsewhere.status, 7, `an address no service has reaches the external host and is refused: exit ${elsewhere.status} ${elsewhere.stderr}`);
    } finally {
      ip("-n", node2.netns, "route", "del", "default");
      ip("-n", control, "addr", "flush", "dev", "lo", "scope", "global");
      ip("-n", control, "route", "del", `${client2.ip}/32`);
    }

    // The same service with the policy back to Cluster: node2's client is served by node1's pods.
    const back = await sc.apply({ ...onlyNode1, metadata: { ...onlyNode1.metadata }, spec: { ...onlyNode1.spec, internalTrafficPolicy: "Cluster" } });
    await sc.synced(sc.nodes[1]!, back);
    assert.match(await sc.answers(client2.netns, "http://10.96.0.41/hostname"), /^pod-[ab]$/);
  });

  it("sessionAffinity ClientIP: a client sticks to one endpoint, and after timeoutSeconds of quiet can move", async () => {
    // Service.spec.sessionAffinityConfig.clientIP.timeoutSeconds (API reference: 1 to 86400, default
    // 10800): kube-proxy's nftables mode keeps per-endpoint sets of client IPs with that timeout,
    // refreshed by every new connection (pkg/proxy/nftables/proxier.go, affinity sets).
    const timeoutSeconds = 2;
    const revision = await sc.create(
      service("sticky", "10.96.0.42", { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds } } }),
      slice("sticky", [a, b, c]),
    );
    await sc.synced(sc.nodes[0]!, revision);
    await sc.answers(client1.netns, "http://10.96.0.42/hostname");
    // Back to back (each a new connection, well within the timeout): one endpoint.
    const burst = hostnames(client1, "http://10.96.0.42/hostname", 15);
    assert.equal(new Set(burst).size, 1, `sticks within the timeout: ${burst.join(" ")}`);

    // After more than the timeout without traffic the affinity entry has expired and the choice is
    // random again: over eight such rounds, three endpoints, all on one has chance (1/3)^7.
    const firsts: string[] = [];
    for (let round = 0; round < 8; round++) {
      await sleep(timeoutSeconds * 1000 + 800);
      const [first, second] = hostnames(client1, "http://10.96.0.42/hostname", 2);
      assert.equal(second, first, "the next connection right after sticks again");
      firsts.push(first!);
    }
    assert.ok(new Set(firsts).size >= 2, `after the timeout a client can move to another endpoint: ${firsts.join(" ")}`);
  });

  it("loadBalancerSourceRanges: an allowed source reaches the LoadBalancer IP, another is dropped", async () => {
    // Service.spec.loadBalancerSourceRanges: "traffic through the cloud-provider load-balancer will
    // be restricted to the specified client IPs"; kube-proxy drops other sources in its firewall
    // chain (pkg/proxy/nftables/proxier.go, firewall-check, "drop").
    const LB_IP = "192.168.1.240";
    // A second host on the underlay, outside the allowed range.
    const other = sc.cluster.podNamespace("ext2");
    ip("-n", sc.cluster.switchNs, "link", "add", "ext2", "type", "veth", "peer", "name", "eth0", "netns", other);
    ip("-n", sc.cluster.switchNs, "link", "set", "ext2", "master", "br0", "up");
    ip("-n", other, "addr", "add", "192.168.1.50/24", "dev", "eth0");
    ip("-n", other, "link", "set", "eth0", "up");

    const revision = await sc.create(
      service("fw", "10.96.0.43", { type: "LoadBalancer", loadBalancerSourceRanges: ["192.168.1.10/32"], ports: [{ port: 80, targetPort: 8080, nodePort: 30090 }] }, { loadBalancer: { ingress: [{ ip: LB_IP }] } }),
      slice("fw", [a, c]),
    );
    for (const node of sc.nodes) await sc.synced(node, revision);
    const holders = () => sc.nodes.filter((n) => ip("-n", n.netns, "-4", "addr", "show", "dev", "eth0").includes(`${LB_IP}/32`));
    await waitFor(() => holders().length === 1, 5000, () => `${LB_IP} held by ${holders().map((n) => n.name)}`);

    assert.match(await sc.answers(sc.cluster.controlNs, `http://${LB_IP}/hostname`), /^pod-[ac]$/, "192.168.1.10 is in the allowed range");
    const denied = sc.curl(other, `http://${LB_IP}/hostname`, 2);
    assert.equal(denied.status, 28, `192.168.1.50 is dropped (timeout), got exit ${denied.status} ${denied.stdout} ${denied.stderr}`);
    // The range is what decides: widen it and the other host gets in.
    const widened = await sc.apply(service("fw", "10.96.0.43", { type: "LoadBalancer", loadBalancerSourceRanges: ["192.168.1.10/32", "192.168.1.48/29"], ports: [{ port: 80, targetPort: 8080, nodePort: 30090 }] }, { loadBalancer: { ingress: [{ ip: LB_IP }] } }));
    for (const node of sc.nodes) await sc.synced(node, widened);
    assert.match(await sc.answers(other, `http://${LB_IP}/hostname`), /^pod-[ac]$/);
  });
});
