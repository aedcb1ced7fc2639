// etcd with mutual TLS and least privilege, against a real etcd on loopback (no links, routes or rules
// are touched): certificates made with openssl, etcd requiring client certificates, auth on with one
// role per client (src/datastore/etcd-roles.ts), and a certificate rotation under a running client.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeLoopbackPorts, startEtcd, type EtcdServer, type EtcdServerTls } from "../src/supervise/etcd-server.ts";
import { createCertificateAuthority, issueCertificate, type CertificateAuthority, type CertPair } from "../src/supervise/certs.ts";
import { enableEtcdAuth, etcdctl } from "../src/supervise/etcd-auth.ts";
import { EtcdDatastore } from "../src/datastore/etcd-datastore.ts";
import { DEFAULT_CLUSTER_CONFIG, type ClusterConfig } from "../src/datastore/datastore.ts";
import { EtcdFlagError, explainEtcdError, parseEtcdConnection, type EtcdTlsFiles } from "../src/datastore/etcd-client-options.ts";
import { controlPlaneRole, dnsRole, nodeAgentRole, nodeAgentUser, nodeLifecycleRole } from "../src/datastore/etcd-roles.ts";
import { NodeLifecycleController } from "../src/controlplane/node-lifecycle-controller.ts";
import { spawn } from "node:child_process";
import { REPO_ROOT } from "../src/lab/repo-root.ts";

const PREFIX = "/podnet/";
const config: ClusterConfig = { ...DEFAULT_CLUSTER_CONFIG, nodeLeaseTtlSeconds: 5 };

interface Pki {
  ca: CertificateAuthority;
  server: CertPair;
  root: CertPair;
  node1: CertPair;
  node2: CertPair;
  lifecycle: CertPair;
}

async function makePki(dir: string, caName: string): Promise<Pki> {
  const ca = await createCertificateAuthority(dir, caName);
  const server = await issueCertificate(ca, { name: "server", commonName: "etcd", usage: "peer", ips: ["127.0.0.1"], dnsNames: ["localhost"] });
  const root = await issueCertificate(ca, { name: "root", commonName: "root", usage: "client" });
  const node1 = await issueCertificate(ca, { name: "node1", commonName: nodeAgentUser("node1"), usage: "client" });
  const node2 = await issueCertificate(ca, { name: "node2", commonName: nodeAgentUser("node2"), usage: "client" });
  const lifecycle = await issueCertificate(ca, { name: "lifecycle", commonName: nodeLifecycleRole(PREFIX).name, usage: "client" });
  return { ca, server, root, node1, node2, lifecycle };
}

function serverTls(pki: Pki): EtcdServerTls {
  return { caFile: pki.ca.caFile, serverCertFile: pki.server.certFile, serverKeyFile: pki.server.keyFile, healthCertFile: pki.root.certFile, healthKeyFile: pki.root.keyFile };
}

function files(pki: Pki, pair: CertPair): EtcdTlsFiles {
  return { caFile: pki.ca.caFile, certFile: pair.certFile, keyFile: pair.keyFile };
}

async function withDatastore<T>(ds: EtcdDatastore, body: (ds: EtcdDatastore) => Promise<T>): Promise<T> {
  try {
    return await body(ds);
  } finally {
    await ds.close();
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  assert.fail("expected etcd to refuse");
}

describe("etcd with mutual TLS and per-client roles", () => {
  let dir: string;
  let pki: Pki;
  let etcd: EtcdServer;
  let endpoint: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pnt-etcdtls-"));
    pki = await makePki(join(dir, "pki"), "podnet-test-ca");
    etcd = await startEtcd({ dataDir: join(dir, "etcd"), tls: serverTls(pki) });
    endpoint = etcd.endpoints[0]!;
    await enableEtcdAuth({ endpoint, tls: files(pki, pki.root) }, [nodeAgentRole(PREFIX, "node1"), nodeAgentRole(PREFIX, "node2"), controlPlaneRole(PREFIX), dnsRole(PREFIX), nodeLifecycleRole(PREFIX)]);
    // The administrator writes the cluster config: agents may read it, not create it.
    await withDatastore(new EtcdDatastore({ endpoints: [endpoint], tls: files(pki, pki.root) }), (ds) => ds.ensureClusterConfig(config));
  });
  after(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("keys are written 0600 in a 0700 directory", () => {
    assert.equal(statSync(pki.ca.dir).mode & 0o777, 0o700);
    for (const key of [pki.ca.keyFile, pki.server.keyFile, pki.root.keyFile, pki.node1.keyFile]) assert.equal(statSync(key).mode & 0o777, 0o600, key);
  });

  it("an agent with valid certificates registers, reads the cluster and writes its own record", async () => {
    await withDatastore(new EtcdDatastore({ endpoints: [endpoint], tls: files(pki, pki.node1) }), async (ds) => {
      assert.deepEqual(await ds.ensureClusterConfig(config), config);
      const lease = await ds.registerNode({ name: "node1", nodeIp: "192.0.2.1" });
      try {
        const snapshot = await ds.snapshot({ fresh: true });
        assert.deepEqual(snapshot.nodes.map((n) => [n.name, n.alive]), [["node1", true]]);
      } finally {
        lease.release();
      }
    });
  });

  it("an agent's credentials cannot write another node's record", async () => {
    await withDatastore(new EtcdDatastore({ endpoints: [endpoint], tls: files(pki, pki.node2) }), async (ds) => {
      const lease = await ds.registerNode({ name: "node2", nodeIp: "192.0.2.2" });
      lease.release();
    });
    await withDatastore(new EtcdDatastore({ endpoints: [endpoint], tls: files(pki, pki.node1) }), async (ds) => {
      const before = await ds.client.get(`${PREFIX}nodes/node2`).string();
      assert.ok(before, "node2's record exists");
      const put = await rejection(ds.client.put(`${PREFIX}nodes/node2`).value(before.replace("192.0.2.2", "192.0.2.66")).exec());
      assert.match(put.message, /permission denied/i);
      const mark = await rejection(ds.markNodeLeaving("node2", "removed"));
      assert.match(mark.message, /permission denied/i);
      assert.match(explainEtcdError(mark, {}), /permission denied for this client's role/);
      // Registering under another node's name is refused too.
      const impersonate = await rejection(ds.registerNode({ name: "node2", nodeIp: "192.0.2.66" }));
      assert.match(impersonate.message, /permission denied/i);
      assert.equal(await ds.client.get(`${PREFIX}nodes/node2`).string(), before, "node2's record is unchanged");
      // Nor the cluster config or the cluster objects.
      assert.match((await rejection(ds.client.put(`${PREFIX}config`).value("{}").exec())).message, /permission denied/i);
      assert.match((await rejection(ds.client.put(`${PREFIX}objects/Service/default/x`).value("{}").exec())).message, /permission denied/i);
    });
  });

  it("the node lifecycle controller's role expires a dead node and removes it once live peers acked, which agents may not", async () => {
    const node1 = new EtcdDatastore({ endpoints: [endpoint], tls: files(pki, pki.node1) });
    const controllerStore = new EtcdDatastore({ endpoints: [endpoint], tls: files(pki, pki.lifecycle) });
    const lines: string[] = [];
    const controller = new NodeLifecycleController(controllerStore, (line) => lines.push(line));
    try {
      const lease1 = await node1.registerNode({ name: "node1", nodeIp: "192.0.2.1" });
      try {
        // node2 registers, then its agent dies: the lease is left to run out (TTL 5 s here).
        await withDatastore(new EtcdDatastore({ endpoints: [endpoint], tls: files(pki, pki.node2) }), async (ds) => {
          (await ds.registerNode({ name: "node2", nodeIp: "192.0.2.2" })).release();
        });
        const node2Subnet = (await node1.snapshot({ fresh: true })).nodes.find((n) => n.name === "node2")!.podSubnet;
        const claimKey = `${PREFIX}subnets/${node2Subnet.replace("/", "-")}`;
        assert.equal(await node1.client.get(claimKey).string(), "node2", "node2 holds its subnet claim");

        // The agent of node1 is refused the expiry duty; the controller does it once the lease is gone.
        const deadline = Date.now() + 15_000;
        let actions = await controller.reconcile();
        while (!actions.expired.includes("node2") && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 250));
          actions = await controller.reconcile();
        }
        assert.deepEqual(actions.expired, ["node2"], `node2 marked expired (log: ${lines.join(" | ")})`);
        const leaving = (await node1.snapshot({ fresh: true })).nodes.find((n) => n.name === "node2")!;
        assert.equal(leaving.phase, "leaving");
        const refused = await rejection(node1.finalizeNodeRemoval("node2", leaving.revision));
        assert.match(refused.message, /permission denied/i);

        // node1 is alive and has not withdrawn its routes yet: nothing is deleted.
        assert.deepEqual((await controller.reconcile()).removed, []);
        await node1.ackNodeLeaving("node2", "node1");
        assert.deepEqual((await controller.reconcile()).removed, ["node2"]);
        const after = await node1.snapshot({ fresh: true });
        assert.deepEqual(after.nodes.map((n) => n.name), ["node1"], "node2's record is gone, node1's stays");
        assert.equal(await node1.client.get(claimKey).string(), null, "node2's subnet is free again");

        // The controller's role reaches nodes, not the cluster config or objects.
        assert.match((await rejection(controllerStore.client.put(`${PREFIX}config`).value("{}").exec())).message, /permission denied/i);
        assert.match((await rejection(controllerStore.client.put(`${PREFIX}objects/Service/default/x`).value("{}").exec())).message, /permission denied/i);
      } finally {
        lease1.release();
      }
    } finally {
      await controllerStore.close();
      await node1.close();
    }
  });

  it("with --etcd-username and a password file, the password's user (not the certificate's CN) is who writes", async () => {
    await etcdctl({ endpoint, tls: files(pki, pki.root) }, ["role", "add", "password-role"]);
    await etcdctl({ endpoint, tls: files(pki, pki.root) }, ["role", "grant-permission", "password-role", "readwrite", `${PREFIX}password-only`]);
    await etcdctl({ endpoint, tls: files(pki, pki.root) }, ["user", "add", "password-user:s3cret-for-test", "--interactive=false"]);
    await etcdctl({ endpoint, tls: files(pki, pki.root) }, ["user", "grant-role", "password-user", "password-role"]);
    const passwordFile = join(dir, "password-user");
    writeFileSync(passwordFile, "s3cret-for-test\n", { mode: 0o600 });
    const connection = parseEtcdConnection({ etcd: endpoint, "etcd-cafile": pki.ca.caFile, "etcd-certfile": pki.node1.certFile, "etcd-keyfile": pki.node1.keyFile, "etcd-username": "password-user", "etcd-password-file": passwordFile });
    await withDatastore(new EtcdDatastore({ endpoints: connection.endpoints, tls: connection.tls!, auth: connection.auth! }), async (ds) => {
      await ds.client.put(`${PREFIX}password-only`).value("ok").exec();
      // node1's own key is not this user's: the password, not the CN, decided.
      assert.match((await rejection(ds.client.put(`${PREFIX}alive/node1`).value("x").exec())).message, /permission denied/i);
    });
    writeFileSync(passwordFile, "wrong\n", { mode: 0o600 });
    const wrong = await rejection(
      withDatastore(new EtcdDatastore({ endpoints: connection.endpoints, tls: connection.tls!, auth: connection.auth! }), (ds) => ds.client.get(`${PREFIX}config`).string()),
    );
    assert.match(explainEtcdError(wrong, {}), /authentication failed/, wrong.message);
  });

  it("a client without a certificate is refused", async () => {
    // It trusts etcd's CA (so the server is verified) but has no certificate of its own.
    const err = await rejection(
      withDatastore(new EtcdDatastore({ endpoints: [endpoint], requestTimeoutMs: 2000, caFile: pki.ca.caFile }), (ds) => ds.client.get(`${PREFIX}config`).string()),
    );
    assert.match(explainEtcdError(err, {}), /^etcd TLS connection failed/, err.message);
    // A password is no way around it: etcd's --client-cert-auth wants the certificate first.
    const passwordFile = join(dir, "password");
    writeFileSync(passwordFile, "not-a-certificate\n", { mode: 0o600 });
    const withPassword = await rejection(
      withDatastore(new EtcdDatastore({ endpoints: [endpoint], requestTimeoutMs: 2000, caFile: pki.ca.caFile, auth: { username: "root", passwordFile } }), (ds) =>
        ds.client.get(`${PREFIX}config`).string(),
      ),
    );
    assert.match(explainEtcdError(withPassword, {}), /TLS connection failed|authentication failed/, withPassword.message);
  });

  it("a certificate from another CA is refused", async () => {
    const other = await makePki(join(dir, "other-pki"), "someone-elses-ca");
    // The right CA for the server, but a client certificate signed by another one.
    const err = await rejection(
      withDatastore(new EtcdDatastore({ endpoints: [endpoint], requestTimeoutMs: 2000, tls: { caFile: pki.ca.caFile, certFile: other.node1.certFile, keyFile: other.node1.keyFile } }), (ds) =>
        ds.client.get(`${PREFIX}config`).string(),
      ),
    );
    assert.match(explainEtcdError(err, { tls: files(other, other.node1) }), /TLS connection failed/);
  });

  it("an expired certificate is refused, and the error says it expired", async () => {
    const expired = await issueCertificate(pki.ca, { name: "node1-expired", commonName: nodeAgentUser("node1"), usage: "client", days: -1 });
    const tls = files(pki, expired);
    const err = await rejection(
      withDatastore(new EtcdDatastore({ endpoints: [endpoint], requestTimeoutMs: 2000, tls }), (ds) => ds.client.get(`${PREFIX}config`).string()),
    );
    assert.match(explainEtcdError(err, { tls }), /expired at/);
  });

  it("podnet dns serves from etcd with its own certificate and read-only role", async () => {
    const dnsCert = await issueCertificate(pki.ca, { name: "dns", commonName: dnsRole(PREFIX).name, usage: "client" });
    const [dnsPort, metricsPort] = await freeLoopbackPorts(2);
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const child = spawn(process.execPath, [join(REPO_ROOT, "bin/podnet.js"), "dns", "--etcd", endpoint, "--etcd-cafile", pki.ca.caFile, "--etcd-certfile", dnsCert.certFile, "--etcd-keyfile", dnsCert.keyFile,
      "--listen", `127.0.0.1:${dnsPort}`, "--upstream", "127.0.0.1:9", "--metrics", `127.0.0.1:${metricsPort}`], { stdio: ["ignore", "ignore", "pipe"], env });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const ready = await retry(async () => {
        const response = await fetch(`http://127.0.0.1:${metricsPort}/ready`);
        if (response.status !== 200) throw new Error(`/ready ${response.status}`);
        return true;
      }, 20_000).catch((err: Error) => assert.fail(`podnet dns never became ready (${err.message}): ${stderr}`));
      assert.equal(ready, true);
      assert.match(stderr, /etcd client certificate .*CN podnet-dns/);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });

  it("the flags refuse plain http unless --etcd-insecure, and pair their files", () => {
    assert.throws(() => parseEtcdConnection({ etcd: "http://127.0.0.1:2379" }), (e: Error) => e instanceof EtcdFlagError && /plain http.*--etcd-insecure/.test(e.message));
    assert.equal(parseEtcdConnection({ etcd: "http://127.0.0.1:2379", "etcd-insecure": true }).insecure, true);
    assert.throws(() => parseEtcdConnection({ etcd: endpoint, "etcd-certfile": pki.node1.certFile }), /--etcd-certfile and --etcd-keyfile go together/);
    assert.throws(() => parseEtcdConnection({ etcd: endpoint, "etcd-cafile": pki.ca.caFile, "etcd-certfile": pki.node1.certFile, "etcd-keyfile": pki.node2.keyFile }), /is not the key of/);
    assert.throws(() => parseEtcdConnection({ etcd: endpoint, "etcd-cafile": join(dir, "missing.crt"), "etcd-certfile": pki.node1.certFile, "etcd-keyfile": pki.node1.keyFile }), /--etcd-cafile .*missing\.crt: cannot read \(ENOENT\)/);
    assert.throws(() => parseEtcdConnection({ etcd: endpoint, "etcd-username": "x" }), /--etcd-username and --etcd-password-file go together/);
    assert.throws(() => parseEtcdConnection({ etcd: "http://127.0.0.1:2379", "etcd-insecure": true, "etcd-cafile": pki.ca.caFile }), /need https/);
    assert.equal(parseEtcdConnection({ etcd: endpoint, "etcd-cafile": pki.ca.caFile }).caFile, pki.ca.caFile);
    const ok = parseEtcdConnection({ etcd: endpoint, "etcd-cafile": pki.ca.caFile, "etcd-certfile": pki.node1.certFile, "etcd-keyfile": pki.node1.keyFile });
    assert.deepEqual(ok.tls, files(pki, pki.node1));
  });
});

describe("certificate rotation under a running client", () => {
  let dir: string;
  let etcd: EtcdServer | undefined;
  after(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("follows new certificate files: after etcd moves to a new CA, the client still works without a restart", async () => {
    dir = mkdtempSync(join(tmpdir(), "pnt-etcdrot-"));
    const first = await makePki(join(dir, "pki1"), "podnet-ca-2026");
    const [clientPort, peerPort] = await freeLoopbackPorts(2);
    const etcdOptions = { dataDir: join(dir, "etcd"), clientPort: clientPort!, peerPort: peerPort! };
    etcd = await startEtcd({ ...etcdOptions, tls: serverTls(first) });
    const endpoint = etcd.endpoints[0]!;
    await enableEtcdAuth({ endpoint, tls: files(first, first.root) }, [nodeAgentRole(PREFIX, "node1")]);
    await withDatastore(new EtcdDatastore({ endpoints: [endpoint], tls: files(first, first.root) }), (ds) => ds.ensureClusterConfig(config));

    // The agent's own copies of its files, which the operator replaces in place.
    const live = { caFile: join(dir, "agent-ca.crt"), certFile: join(dir, "agent.crt"), keyFile: join(dir, "agent.key") };
    const install = (pki: Pki) => {
      // As a rotation tool does: write beside, then rename over (each file atomically).
      for (const [from, to] of [[pki.ca.caFile, live.caFile], [pki.node1.certFile, live.certFile], [pki.node1.keyFile, live.keyFile]] as const) {
        copyFileSync(from, `${to}.new`);
        renameSync(`${to}.new`, to);
      }
    };
    install(first);
    const logs: string[] = [];
    const ds = new EtcdDatastore({ endpoints: [endpoint], tls: live, credentialCheckMs: 100, requestTimeoutMs: 2000, log: (l) => logs.push(l) });
    try {
      let changes = 0;
      const watch = await ds.watch({ onChange: () => changes++ });
      const lease = await ds.registerNode({ name: "node1", nodeIp: "192.0.2.1" });
      assert.equal((await ds.snapshot({ fresh: true })).nodes.length, 1);

      // A new CA: etcd's server certificate and the agent's client certificate both change. A client that
      // kept its old files in memory could neither verify etcd nor be accepted by it.
      const second = await makePki(join(dir, "pki2"), "podnet-ca-2027");
      install(second);
      const deadline = Date.now() + 5000;
      while (ds.connection.reloads === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(ds.connection.reloads, 1, `the client reloaded its files (log: ${logs.join(" | ")})`);
      assert.match(logs.join("\n"), /reloaded .*CN podnet-node-node1/);

      await etcd.stop();
      etcd = await startEtcd({ ...etcdOptions, tls: serverTls(second) });
      // The same client object: reads and a write of its own record go through on the new certificates.
      const snapshot = await retry(() => ds.snapshot({ fresh: true }), 10_000);
      assert.deepEqual(snapshot.nodes.map((n) => n.name), ["node1"]);
      const own = snapshot.nodes[0]!;
      assert.equal(await retry(() => ds.markNodeLeaving("node1", "expired", own.revision), 5000), true);
      // The node watch moved to the new client too: it reports changes again.
      const seen = changes;
      await ds.markNodeLeaving("node1", "removed");
      const watchDeadline = Date.now() + 5000;
      while (changes === seen && Date.now() < watchDeadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(changes > seen, "the watch delivers events after the rotation");
      lease.release();
      await watch.close();
    } finally {
      await ds.close();
    }
  });
});

async function retry<T>(body: () => Promise<T>, withinMs: number): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await body();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
