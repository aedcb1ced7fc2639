// podnet's resident service (`podnet serve`) behind the forwarder (`podnet`, forwarder.c): what it
// serves must be exactly what the full plugin does on its own, the full plugin must take over
// whenever the service cannot answer, and nothing may leak when either side dies. Needs root and
// `npm run build`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { CniNetwork, PluginError, type Attachment, type NetworkConfigList } from "../src/runtime/cni-driver.ts";
import { DIST_CNI, ipOf, PODNET, podnetConfList, requireBuild, TestNode } from "./helpers/cni.ts";
import { readTable } from "../src/kernel/nft.ts";
import { ANTISPOOF_FAMILY, ANTISPOOF_TABLE } from "../src/plugin/podfilter.ts";
import { startService } from "./helpers/cni-service.ts";
import { cleanupAll, Netns, tempDir } from "./helpers/netns.ts";

before(requireBuild);
after(cleanupAll);

/** The anti-spoofing sets' elements in the node, as "set:key" (the plugin adds them at ADD). */
function antispoofElements(node: TestNode): string[] {
  const table = readTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, node.ns.path);
  return (table?.sets ?? []).flatMap((s) => s.elements.map((e) => `${s.name}:${e.join(" . ")}`));
}

function traceLines(file: string): { command: string; labels: string[] }[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => {
      const parsed = JSON.parse(line) as { command: string; marks: [string, number][] };
      return { command: parsed.command, labels: parsed.marks.map(([label]) => label) };
    });
}

/**
 * Who did each call: the full plugin records a line in the network's trace file (PODNET_TRACE
 * reaches it through the forwarder's exec), the service one in its own. The forwarder records none.
 */
interface Tracer {
  net: CniNetwork;
  /** Calls done by the full plugin so far. */
  local(): { command: string; labels: string[] }[];
  /** Calls served by the node's service so far (the service must have been started with serviceTrace). */
  served(): { command: string; labels: string[] }[];
}

function tracedNetwork(node: TestNode, list: NetworkConfigList, serviceTrace?: string): Tracer {
  const traceFile = join(tempDir("svc-trace"), "trace.jsonl");
  const net = new CniNetwork(node.withService(list), { cniPath: [DIST_CNI], nodeNetns: node.ns.path, env: { PODNET_TRACE: traceFile } });
  return { net, local: () => traceLines(traceFile), served: () => (serviceTrace ? traceLines(serviceTrace) : []) };
}

async function errorOf(promise: Promise<unknown>): Promise<{ code: number | undefined; msg: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof PluginError) return { code: error.code, msg: error.msg };
    throw error;
  }
  throw new Error("expected the plugin to fail");
}

describe("the forwarder on its own", () => {
  test("without podnet-plugin beside it, it answers a CNI I/O error (code 5) naming what is missing, and exits 1", () => {
    const lonely = join(tempDir("fwd-alone"), "podnet");
    copyFileSync(PODNET, lonely);
    const run = spawnSync(lonely, [], {
      env: { PATH: "/usr/bin:/bin", CNI_COMMAND: "ADD", CNI_CONTAINERID: "fwd-alone", CNI_NETNS: "/run/netns/none", CNI_IFNAME: "eth0", CNI_PATH: "/nonexistent" },
      input: JSON.stringify({ cniVersion: "1.1.0", name: "n", type: "podnet" }),
      encoding: "utf8",
    });
    assert.equal(run.status, 1);
    const error = JSON.parse(run.stdout) as { code: number; msg: string; details: string };
    assert.equal(error.code, 5);
    assert.match(error.msg, /cannot run the full plugin/);
    assert.match(error.details, /^podnet-plugin: errno 2$/);
  });
});

describe("podnet serve", () => {
  let node: TestNode;
  let alone: TestNode;
  const serviceTrace = join(tempDir("svc-trace"), "service.jsonl");
  before(async () => {
    node = new TestNode("sv");
    await node.startService({ traceFile: serviceTrace });
    alone = new TestNode("sa");
  });
  after(async () => {
    await node.service?.kill();
    node.destroy();
    alone.destroy();
  });

  test("ADD, CHECK and DEL are served by the service and answer as the plugin alone does; DEL leaves nothing", async () => {
    const list = podnetConfList({ dataDir: node.dataDir, subnet: "10.244.20.0/24" });
    const traced = tracedNetwork(node, list, serviceTrace);
    const servedBefore = traced.served().length;
    const pod = node.pod();
    const served = await traced.net.add(pod.attachment);
    await traced.net.check(pod.attachment, served);
    assert.deepEqual(traced.local(), [], "the full plugin ran although the service was up");
    assert.deepEqual(
      traced.served().slice(servedBefore).map((l) => l.command),
      ["service ADD", "service CHECK"],
    );

    const aloneNet = alone.network(podnetConfList({ dataDir: alone.dataDir, subnet: "10.244.20.0/24" }));
    const alonePod = alone.pod();
    const local = await aloneNet.add(alonePod.attachment);
    // Same addresses, routes and interfaces; MACs are random, and host veths are named after the container ID.
    const shape = (r: Record<string, unknown>) => ({
      ...r,
      interfaces: (r.interfaces as { name: string; sandbox?: string }[]).map((i) => ({
        name: /^pn[0-9a-f]{12}$/.test(i.name) ? "host veth" : i.name,
        sandbox: i.sandbox === undefined ? "no" : "yes",
      })),
    });
    assert.deepEqual(shape(served), shape(local));
    assert.equal(ipOf(served), "10.244.20.2");

    pod.ns.exec("ping", "-c", "1", "-W", "2", "10.244.20.1");
    await traced.net.del(pod.attachment, served);
    assert.equal(traced.served().at(-1)?.command, "service DEL");
    assert.deepEqual(traced.local(), [], "the full plugin ran the DEL although the service was up");
    await aloneNet.del(alonePod.attachment, local);
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(), []);
    assert.deepEqual(antispoofElements(node), []);
  });

  test("a served DEL answers with the pair gone from both namespaces and the address free; the attachment can be added again at once", async () => {
    const list = podnetConfList({ dataDir: node.dataDir, subnet: "10.244.21.0/24", bridge: "cni21" });
    const traced = tracedNetwork(node, list, serviceTrace);
    const pod = node.pod();
    for (let round = 0; round < 3; round++) {
      const result = await traced.net.add(pod.attachment);
      assert.equal(node.hostVeths().length, 1);
      assert.deepEqual(node.reservations(), [ipOf(result)]);
      // The service answers once the kernel announces the veth gone (bridge.ts); by then nothing of the pair is in view.
      await traced.net.del(pod.attachment, result);
      assert.equal(traced.served().at(-1)?.command, "service DEL");
      assert.deepEqual(node.hostVeths(), [], `round ${round}: the host veth is gone`);
      assert.deepEqual(pod.ns.links().filter((l) => l !== "lo"), [], `round ${round}: eth0 is gone from the pod`);
      assert.deepEqual(node.reservations(), []);
    }
    await traced.net.del(pod.attachment);
    assert.deepEqual(traced.local(), [], "the full plugin ran although the service was up");
  });

  test("errors are the same through the service as from the plugin alone", async () => {
    const bad = podnetConfList({
      dataDir: node.dataDir,
      ipam: { type: "podnet-ipam", ranges: [[{ subnet: "10.244.21.0/24", rangeStart: "10.244.22.5" }]], dataDir: node.dataDir },
    });
    const viaService = tracedNetwork(node, bad, serviceTrace);
    const servedBefore = viaService.served().length;
    const pod = node.pod();
    const served = await errorOf(viaService.net.add(pod.attachment));
    assert.equal(viaService.served().length, servedBefore + 1, "the failing ADD was not served");
    assert.deepEqual(viaService.local(), []);
    const local = await errorOf(alone.network({ ...bad, plugins: bad.plugins.map((p) => ({ ...p, ipam: { ...(p.ipam as object), dataDir: alone.dataDir } })) }).add(alone.pod().attachment));
    assert.equal(served.code, 7);
    assert.deepEqual(served, { ...local, msg: local.msg.replace(alone.dataDir, node.dataDir) });

    const missing: Attachment = { containerId: "svc-missing-netns", netns: "/run/netns/pnt-does-not-exist", ifname: "eth0" };
    const list = podnetConfList({ dataDir: node.dataDir, subnet: "10.244.23.0/24" });
    assert.deepEqual(await errorOf(node.network(list).add(missing)), await errorOf(alone.network(list).add(missing)));
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(), []);
  });

  test("with no service listening (its socket left behind: connection refused), the full plugin does the work itself", async () => {
    const down = new TestNode("sd");
    try {
      const service = await down.startService();
      // Killed without removing its socket, as a crash leaves it.
      process.kill(service.pid, "SIGKILL");
      while (existsSync(`/proc/${service.pid}`)) await new Promise((r) => setTimeout(r, 5));
      assert.ok(existsSync(service.socket), "the dead service's socket should still be there");
      const list = podnetConfList({ dataDir: down.dataDir, subnet: "10.244.24.0/24" });
      const { net, local } = tracedNetwork(down, list);
      const pod = down.pod();
      const result = await net.add(pod.attachment);
      assert.ok(local()[0]?.labels.includes("handler start"), "the full plugin did not do the ADD itself");
      assert.equal(ipOf(result), "10.244.24.2");
      await net.del(pod.attachment, result);
      assert.deepEqual(
        local().map((l) => l.command),
        ["ADD", "DEL"],
      );
      assert.deepEqual(down.hostVeths(), []);
      assert.deepEqual(down.reservations(), []);
      // And with no socket file at all.
      await service.kill();
      assert.ok(!existsSync(service.socket));
      const again = await net.add(pod.attachment);
      assert.match(ipOf(again), /^10\.244\.24\.\d+$/);
      assert.equal(local().length, 3, "the full plugin did not do the second ADD");
      await net.del(pod.attachment, again);
      assert.deepEqual(down.hostVeths(), []);
      assert.deepEqual(down.reservations(), []);
      assert.deepEqual(antispoofElements(down), []);
    } finally {
      down.destroy();
    }
  });

  test("a service in another network namespace declines, and the plugin works in its own", async () => {
    const elsewhere = Netns.create("so");
    const other = await startService(PODNET, elsewhere.path);
    try {
      const list = podnetConfList({ dataDir: alone.dataDir, subnet: "10.244.25.0/24", extra: { serviceSocket: other.socket } });
      const traceFile = join(tempDir("svc-trace"), "trace.jsonl");
      const net = new CniNetwork(list, { cniPath: [DIST_CNI], nodeNetns: alone.ns.path, env: { PODNET_TRACE: traceFile } });
      const pod = alone.pod();
      const result = await net.add(pod.attachment);
      assert.ok(readFileSync(traceFile, "utf8").includes("handler start"), "the ADD was served in the wrong namespace");
      assert.equal(alone.hostVeths().length, 1);
      assert.deepEqual(elsewhere.links(), ["lo"]);
      await net.del(pod.attachment, result);
    } finally {
      await other.kill();
      elsewhere.delete();
    }
  });

  test("the service SIGKILLed at random moments under 8 ADDs, then 8 DELs, at once: every call completes, nothing is left", async () => {
    const crashing = new TestNode("sk");
    try {
      const list = podnetConfList({ dataDir: crashing.dataDir, subnet: "10.244.26.0/24" });
      let killedMidDel = 0;
      // At least 4 rounds, and more (up to 12) until a kill has landed while DELs were in progress.
      for (let round = 0; round < 4 || (killedMidDel === 0 && round < 12); round++) {
        let service = await crashing.startService();
        let net = crashing.network(list);
        const pods = Array.from({ length: 8 }, () => crashing.pod());
        const adds = pods.map(async (p) => ({ attachment: p.attachment, result: await net.add(p.attachment) }));
        await new Promise((r) => setTimeout(r, Math.random() * 40));
        await service.kill();
        crashing.service = undefined;
        const results = await Promise.all(adds);
        const ips = results.map((r) => ipOf(r.result));
        assert.equal(new Set(ips).size, ips.length, `duplicate addresses: ${ips.join(" ")}`);
        assert.equal(crashing.reservations().length, ips.length);
        assert.equal(crashing.hostVeths().length, ips.length);

        service = await crashing.startService();
        net = crashing.network(list);
        const dels = results.map(({ attachment, result }) => net.del(attachment, result));
        // 8 DELs overlap in the service and are done within tens of ms: kill early in that window.
        await new Promise((r) => setTimeout(r, 1 + Math.random() * 8));
        if (crashing.hostVeths().length > 0) killedMidDel += 1;
        await service.kill();
        crashing.service = undefined;
        await Promise.all(dels);
        assert.deepEqual(crashing.hostVeths(), [], `veths left, round ${round}`);
        assert.deepEqual(crashing.reservations(), [], `reservations left, round ${round}`);
        assert.deepEqual(antispoofElements(crashing), [], `anti-spoofing elements left, round ${round}`);
        for (const p of pods) assert.ok(!p.ns.links().includes("eth0"), `pod interface left, round ${round}`);
      }
      assert.ok(killedMidDel > 0, "no kill landed while DELs were in progress; the DEL half proves nothing");
    } finally {
      crashing.destroy();
    }
  });

  test("forwarders killed while their ADDs wait in the service's queue: DELs right afterwards leave nothing (requests of one attachment keep their order)", async () => {
    const list = podnetConfList({ dataDir: node.dataDir, subnet: "10.244.27.0/24" });
    const conf = JSON.stringify({ ...node.withService(list).plugins[0], name: list.name, cniVersion: list.cniVersion });
    const net = node.network(list);
    const killedAdd = (att: Attachment, delayMs: number): Promise<void> =>
      new Promise<void>((resolve) => {
        const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", CNI_COMMAND: "ADD", CNI_CONTAINERID: att.containerId, CNI_NETNS: att.netns, CNI_IFNAME: att.ifname, CNI_PATH: DIST_CNI };
        // nsenter execs the plugin in place, so the PID killed is the plugin's own.
        const child = spawn("nsenter", [`--net=${node.ns.path}`, PODNET], { env, stdio: ["pipe", "ignore", "ignore"] });
        child.stdin.end(conf);
        const timer = setTimeout(() => child.kill("SIGKILL"), delayMs);
        child.on("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    // A service that is slow to get to requests (here: stopped) while the runtime kills the
    // plugins that sent them and DELs at once. A DEL that ran before the service got to the ADD it
    // undoes would find nothing, and the ADD would then leave a veth and a reservation behind.
    const service = node.service!;
    const pods = Array.from({ length: 4 }, () => node.pod());
    process.kill(service.pid, "SIGSTOP");
    let dels: Promise<void>[] = [];
    try {
      await Promise.all(pods.map((p) => killedAdd(p.attachment, 400)));
      dels = pods.map((p) => net.del(p.attachment));
      await new Promise((r) => setTimeout(r, 400));
    } finally {
      process.kill(service.pid, "SIGCONT");
    }
    await Promise.all(dels);
    assert.deepEqual(node.hostVeths(), [], "veths left behind");
    assert.deepEqual(node.reservations(), [], "reservations left behind");

    // And the same at random moments, with requests queued up by 8 plugins at once.
    for (let round = 0; round < 3; round++) {
      const burst = Array.from({ length: 8 }, () => node.pod());
      await Promise.all(burst.map((p) => killedAdd(p.attachment, 5 + Math.random() * 25)));
      await Promise.all(burst.map((p) => net.del(p.attachment)));
      assert.deepEqual(node.hostVeths(), [], `veths left after the plugins were killed, round ${round}`);
      assert.deepEqual(node.reservations(), [], `reservations left after the plugins were killed, round ${round}`);
      for (const p of burst) p.ns.delete();
    }
  });
});
