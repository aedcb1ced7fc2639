// hostPort against the real kernel (issue 8): the plugin declares the portMappings capability and
// DNATs node:hostPort to pod:containerPort itself. Driven through the runtime driver (which passes
// runtimeConfig only to plugins that declare the capability, as libcni does) and through podman.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readTable } from "../src/kernel/nft.ts";
import { PluginError } from "../src/runtime/cni-driver.ts";
import { HOSTPORT_FAMILY, HOSTPORT_TABLE } from "../src/plugin/podfilter.ts";
import { DIST_CNI, ipOf, podnetConfList, REFERENCE_CNI, requireBuild, testNode, type TestNode } from "./helpers/cni.ts";
import { cleanupAll, Netns } from "./helpers/netns.ts";
import { podmanAvailable, PodmanSandbox } from "./helpers/podman.ts";

before(requireBuild);
after(cleanupAll);

const NODE_IP = "192.168.77.1";
const CLIENT_IP = "192.168.77.2";

/** A TCP server in `ns` on `port` that answers each connection with the address it came from. */
function echoClientAddress(ns: Netns, port: number): ChildProcess {
  const program = [
    "import socket",
    "s=socket.socket()",
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)",
    `s.bind(("0.0.0.0",${port}))`,
    "s.listen(16)",
    "while True:",
    "  c,a=s.accept()",
    "  c.sendall(('from '+a[0]+'\\n').encode())",
    "  c.close()",
  ].join("\n");
  return spawn("ip", ["netns", "exec", ns.name, "python3", "-c", program], { stdio: "ignore" });
}

/** What a connection from `ns` to host:port reads, or "" when it fails; retried while the server starts. */
function connect(ns: Netns, host: string, port: number, attempts = 20): string {
  const program = `import socket,sys\ntry:\n  c=socket.create_connection(("${host}",${port}),timeout=1)\n  print(c.recv(100).decode().strip())\nexcept Exception as e:\n  print("")`;
  for (let i = 0; i < attempts; i++) {
    const out = ns.exec("python3", "-c", program).trim();
    if (out !== "") return out;
  }
  return "";
}

/** An outside host on a veth to the node: the node holds NODE_IP, the client CLIENT_IP. */
function attachClient(node: TestNode): Netns {
  const client = Netns.create("c");
  const veth = `pnhc${client.name.slice(-6)}`;
  node.ns.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", client.name);
  node.ns.ip("addr", "add", `${NODE_IP}/24`, "dev", veth);
  node.ns.ip("link", "set", veth, "up");
  client.ip("addr", "add", `${CLIENT_IP}/24`, "dev", "eth0");
  client.ip("link", "set", "eth0", "up");
  return client;
}

function tableSummary(node: TestNode): { chains: string[]; elements: number } {
  const table = readTable(HOSTPORT_FAMILY, HOSTPORT_TABLE, node.ns.path);
  return {
    chains: (table?.chains ?? []).map((c) => c.name).filter((n) => n.startsWith("pod_")),
    elements: [...(table?.sets ?? []), ...(table?.maps ?? [])].filter((s) => !s.name.startsWith("sources")).reduce((n, s) => n + s.elements.length, 0),
  };
}

describe("hostPort through the runtime driver", () => {
  let node: TestNode;
  let client: Netns;
  const servers: ChildProcess[] = [];
  before(async () => {
    node = await testNode();
    client = attachClient(node);
  });
  after(() => {
    for (const s of servers) s.kill();
    node.destroy();
  });

  const conf = () => podnetConfList({ dataDir: node.dataDir, extra: { hairpinMode: true, capabilities: { portMappings: true } } });

  test("node:hostPort reaches the pod from outside, from the node and from pods (hairpin); DEL removes it", async () => {
    const net = node.network(conf());
    const web = node.pod();
    const other = node.pod();
    // containerd's spelling: capitalised Go field names.
    const mapping = { HostPort: 8080, ContainerPort: 80, Protocol: "TCP", HostIP: "" };
    const rWeb = await net.add({ ...web.attachment, runtimeConfig: { portMappings: [mapping] } });
    const rOther = await net.add(other.attachment);
    servers.push(echoClientAddress(web.ns, 80));

    assert.equal(connect(client, NODE_IP, 8080), `from ${CLIENT_IP}`, "outside → node:hostPort, the client's address kept");
    assert.match(connect(node.ns, NODE_IP, 8080, 3), /^from /, "the node's own connection to its hostPort");
    const seen = connect(other.ns, NODE_IP, 8080, 3);
    assert.match(seen, /^from 10\.244\.1\.1$/, "another pod, masqueraded to the bridge so the reply comes back through the node");
    assert.match(connect(web.ns, "10.244.1.1", 8080, 3), /^from 10\.244\.1\.1$/, "the pod to its own hostPort (hairpin)");
    assert.equal(connect(client, NODE_IP, 8081, 1), "", "no other port is forwarded");

    assert.deepEqual(tableSummary(node).chains.length, 1);
    await net.del({ ...web.attachment, runtimeConfig: { portMappings: [mapping] } }, rWeb);
    assert.equal(connect(client, NODE_IP, 8080, 1), "", "DEL removed the forwarding");
    assert.deepEqual(tableSummary(node), { chains: [], elements: 0 }, "DEL left nothing of the pod in the hostPort table");
    await net.del(other.attachment, rOther);
    void ipOf;
  });

  test("a hostPort another pod holds fails the ADD clearly and leaves nothing behind", async () => {
    const net = node.network(conf());
    const first = node.pod();
    const second = node.pod();
    const mapping = { hostPort: 9090, containerPort: 80, protocol: "tcp" };
    const r1 = await net.add({ ...first.attachment, runtimeConfig: { portMappings: [mapping] } });
    const before = { veths: node.hostVeths().length, reservations: node.reservations().length, table: tableSummary(node) };
    await assert.rejects(
      net.add({ ...second.attachment, runtimeConfig: { portMappings: [{ ...mapping, containerPort: 8000 }] } }),
      (err: unknown) => err instanceof PluginError && /hostPort already in use/.test(err.message) && /9090\/tcp/.test(err.message),
    );
    assert.equal(node.hostVeths().length, before.veths, "the failed ADD removed its veth");
    assert.equal(node.reservations().length, before.reservations, "the failed ADD released its address");
    assert.deepEqual(tableSummary(node), before.table);
    // UDP on the same port is another key, and is free.
    const r2 = await net.add({ ...second.attachment, runtimeConfig: { portMappings: [{ ...mapping, protocol: "udp" }] } });
    await net.del(first.attachment, r1);
    await net.del(second.attachment, r2);
    assert.deepEqual(tableSummary(node), { chains: [], elements: 0 });
  });

  test("a bad mapping is refused naming the field, before anything is created", async () => {
    const net = node.network(conf());
    const pod = node.pod();
    const veths = node.hostVeths().length;
    const reservations = node.reservations().length;
    await assert.rejects(
      net.add({ ...pod.attachment, runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } }),
      (err: unknown) => err instanceof PluginError && err.code === 7 && /hostPort/.test(err.message),
    );
    await assert.rejects(
      net.add({ ...pod.attachment, runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, protocol: "icmp" }] } }),
      (err: unknown) => err instanceof PluginError && err.code === 7 && /protocol/.test(err.message),
    );
    assert.equal(node.hostVeths().length, veths);
    assert.equal(node.reservations().length, reservations);
  });

  test("GC removes the forwarding of attachments the runtime no longer knows", async () => {
    const net = node.network(conf());
    const pod = node.pod();
    await net.add({ ...pod.attachment, runtimeConfig: { portMappings: [{ hostPort: 7070, containerPort: 70 }] } });
    assert.equal(tableSummary(node).chains.length, 1);
    await net.gc([]);
    assert.deepEqual(tableSummary(node), { chains: [], elements: 0 });
  });
});

describe("hostPort through podman (CNI backend)", { skip: !podmanAvailable() }, () => {
  let node: TestNode;
  let client: Netns;
  let podman: PodmanSandbox;
  before(async () => {
    node = await testNode("pm");
    client = attachClient(node);
    const conflist = podnetConfList({ dataDir: node.dataDir, cniVersion: "1.0.0", extra: { capabilities: { portMappings: true } } });
    podman = new PodmanSandbox({ node: node.ns, conflist, cniPath: [DIST_CNI, REFERENCE_CNI] });
  });
  after(() => {
    podman?.destroy();
    node?.destroy();
  });

  test("podman run -p 8088:7000 is reachable at the node's address; rm removes it", () => {
    const run = podman.podman(
      "run", "-d", "--name", "published", "--network", podman.network, "-p", "8088:7000",
      "--rootfs", podman.rootfs, "sh", "-c", "while true; do echo published-here | nc -l -p 7000; done",
    );
    assert.equal(run.status, 0, run.stderr);
    assert.equal(connect(client, NODE_IP, 8088), "published-here");
    podman.rm("published");
    assert.equal(connect(client, NODE_IP, 8088, 1), "");
    assert.deepEqual(tableSummary(node), { chains: [], elements: 0 });
  });
});
