// Concurrency and crash safety: many pods at once, and a plugin killed at random moments.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { Attachment } from "../src/runtime/cni-driver.ts";
import { ipOf, PODNET, podnetConfList, requireBuild, testNode, type TestNode } from "./helpers/cni.ts";
import { cleanupAll } from "./helpers/netns.ts";

before(requireBuild);
after(cleanupAll);

async function inBatches<T, R>(items: T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += size) results.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return results;
}

describe("concurrency", () => {
  let node: TestNode;
  before(async () => (node = await testNode()));
  after(() => node.destroy());

  test("100 pods added 8 at a time get 100 distinct IPs, and DEL leaves nothing", async () => {
    const net = node.network(podnetConfList({ dataDir: node.dataDir, subnet: "10.244.3.0/24" }));
    const pods = Array.from({ length: 100 }, () => node.pod());
    const results = await inBatches(pods, 8, (p) => net.add(p.attachment));
    const ips = results.map((r) => ipOf(r));
    assert.equal(new Set(ips).size, 100);
    assert.equal(node.reservations().length, 100);
    assert.equal(node.hostVeths().length, 100);
    // Spot-check that the kernel state matches the results, not just the store.
    pods[0]!.ns.exec("ping", "-c", "1", "-W", "2", ips[99]!);
    await inBatches(pods.map((p, i) => [p, results[i]!] as const), 8, ([p, r]) => net.del(p.attachment, r));
    assert.deepEqual(node.hostVeths(), []);
    assert.deepEqual(node.reservations(), []);
    for (const p of pods) p.ns.delete();
  });
});

describe("crash safety", () => {
  let node: TestNode;
  before(async () => (node = await testNode()));
  after(() => node.destroy());

  function killedAdd(conf: string, att: Attachment, delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", CNI_COMMAND: "ADD", CNI_CONTAINERID: att.containerId, CNI_NETNS: att.netns, CNI_IFNAME: att.ifname, CNI_PATH: "/nonexistent" };
      // nsenter execs the plugin in place, so the PID we kill is the plugin's own.
      const child = spawn("nsenter", [`--net=${node.ns.path}`, PODNET], { env, stdio: ["pipe", "ignore", "ignore"] });
      child.stdin.end(conf);
      const timer = setTimeout(() => child.kill("SIGKILL"), delayMs);
      child.on("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  test("SIGKILL at random moments during ADD; DEL afterwards leaves nothing", async () => {
    const list = podnetConfList({ dataDir: node.dataDir, subnet: "10.244.4.0/24" });
    const net = node.network(list);
    const conf = JSON.stringify({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion });
    // Spread the kills over the plugin's whole life, start-up included: measure how long an ADD
    // takes on this machine now (it varies with load), then kill anywhere in 0..1.1x that.
    const probe = node.pod();
    const started = performance.now();
    const probeResult = await net.add(probe.attachment);
    const lifetime = performance.now() - started;
    await net.del(probe.attachment, probeResult);
    let interrupted = 0;
    for (let i = 0; i < 40; i++) {
      const pod = node.pod();
      const delay = Math.floor(Math.random() * lifetime * 1.1);
      await killedAdd(conf, pod.attachment, delay);
      if (node.hostVeths().length > 0 || node.reservations().length > 0) interrupted += 1;
      await net.del(pod.attachment);
      assert.deepEqual(node.hostVeths(), [], `veth left after kill at ${delay} ms and DEL`);
      assert.deepEqual(node.reservations(), [], `reservation left after kill at ${delay} ms and DEL`);
      assert.ok(!pod.ns.links().includes("eth0"), `pod interface left after kill at ${delay} ms and DEL`);
      pod.ns.delete();
    }
    assert.ok(interrupted > 0, "some kills landed after the plugin had changed state; otherwise this test proves nothing");
  });

  test("SIGKILL during ADD; GC with no valid attachments cleans everything", async () => {
    const list = podnetConfList({ dataDir: node.dataDir, subnet: "10.244.5.0/24" });
    const net = node.network(list);
    const conf = JSON.stringify({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion });
    const keep = node.pod();
    const started = performance.now();
    const kept = await net.add(keep.attachment);
    const lifetime = performance.now() - started;
    let leftSomething = 0;
    for (let i = 0; i < 15; i++) {
      const pod = node.pod();
      const before = node.reservations().length + node.hostVeths().length;
      await killedAdd(conf, pod.attachment, Math.floor(Math.random() * lifetime * 1.1));
      if (node.reservations().length + node.hostVeths().length > before) leftSomething += 1;
    }
    assert.ok(leftSomething > 0, "some kills left state behind; otherwise GC had nothing to prove");
    await net.gc([{ containerID: keep.attachment.containerId, ifname: "eth0" }]);
    assert.deepEqual(node.reservations(), [ipOf(kept)]);
    assert.equal(node.hostVeths().length, 1);
    await net.del(keep.attachment, kept);
    assert.deepEqual(node.reservations(), []);
    assert.deepEqual(node.hostVeths(), []);
  });
});
