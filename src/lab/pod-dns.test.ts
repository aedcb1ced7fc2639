import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseManifests } from "../k8s/manifest.ts";
import type { Pod, Service } from "../k8s/types.ts";
import { ETC_NETNS_MARKER, isDnsPod, kubeDnsManifest, removeAllResolvConfs, removePodResolvConf, resolvConfText, writePodResolvConf, type EtcNetnsRecord } from "./pod-dns.ts";

test("resolv.conf is kubelet's ClusterFirst file for the pod's namespace", () => {
  assert.equal(resolvConfText("team-a"), "nameserver 10.96.0.10\nsearch team-a.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
});

test("the kube-dns manifest: system namespaces, the Service at 10.96.0.10, one DNS pod on each of two nodes", () => {
  const objects = parseManifests(kubeDnsManifest(["node1", "node2", "node3"]), "kube-dns").map((d) => d.object);
  assert.deepEqual(objects.filter((o) => o.kind === "Namespace").map((o) => o.metadata.name), ["default", "kube-system", "kube-public", "kube-node-lease"]);
  const svc = objects.find((o) => o.kind === "Service") as Service;
  assert.equal(svc.metadata.namespace, "kube-system");
  assert.equal(svc.spec.clusterIP, "10.96.0.10");
  assert.deepEqual(svc.spec.ports?.map((p) => [p.name, p.port, p.protocol]), [["dns", 53, "UDP"], ["dns-tcp", 53, "TCP"]]);
  const pods = objects.filter((o) => o.kind === "Pod") as Pod[];
  assert.deepEqual(pods.map((p) => p.spec.nodeName), ["node1", "node2"]);
  assert.ok(pods.every((p) => isDnsPod(p) && p.metadata.labels?.["k8s-app"] === "kube-dns"));
});

test("a one-node lab gets one DNS pod", () => {
  const pods = parseManifests(kubeDnsManifest(["node1"]), "kube-dns").map((d) => d.object).filter((o) => o.kind === "Pod");
  assert.equal(pods.length, 1);
});

/** A scratch directory standing in for /etc/netns (the functions take the root as a parameter). */
function withScratchRoot(use: (root: string) => void): void {
  const parent = mkdtempSync(join(tmpdir(), "pnt-etcnetns-"));
  try {
    use(join(parent, "netns"));
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
}

test("two labs at once: the one that made /etc/netns leaves first, the other removes it when it leaves", () => {
  withScratchRoot((root) => {
    const a: EtcNetnsRecord = { createdRoot: false, dirs: [] };
    const b: EtcNetnsRecord = { createdRoot: false, dirs: [] };
    writePodResolvConf(a, () => undefined, "pnl-a-pod1", "default", root);
    writePodResolvConf(b, () => undefined, "pnl-b-pod1", "default", root);
    assert.equal(a.createdRoot, true);
    assert.equal(b.createdRoot, false, "b found it there");
    assert.deepEqual(readdirSync(root).sort(), [ETC_NETNS_MARKER, "pnl-a-pod1", "pnl-b-pod1"].sort());
    assert.deepEqual(removeAllResolvConfs(a, root), []);
    assert.deepEqual(readdirSync(root).sort(), [ETC_NETNS_MARKER, "pnl-b-pod1"].sort(), "b's pod still uses it");
    removePodResolvConf(b, () => undefined, "pnl-b-pod1", root);
    assert.deepEqual(removeAllResolvConfs(b, root), []);
    assert.equal(existsSync(root), false, "the last podnet lab to leave removed what a podnet lab made");
  });
});

test("an /etc/netns that was there before any lab is left as it was, with nothing of the lab in it", () => {
  withScratchRoot((root) => {
    mkdirSync(join(root, "admins-netns"), { recursive: true });
    writeFileSync(join(root, "admins-netns", "resolv.conf"), "nameserver 192.0.2.1\n");
    const lab: EtcNetnsRecord = { createdRoot: false, dirs: [] };
    writePodResolvConf(lab, () => undefined, "pnl-c-pod1", "team-a", root);
    assert.equal(lab.createdRoot, false);
    assert.deepEqual(removeAllResolvConfs(lab, root), []);
    assert.deepEqual(readdirSync(root), ["admins-netns"]);
    rmSync(join(root, "admins-netns"), { recursive: true });
    assert.deepEqual(removeAllResolvConfs(lab, root), []);
    assert.equal(existsSync(root), true, "an empty /etc/netns the lab did not make stays");
  });
});

test("a lab state from before the marker (it made /etc/netns, another lab's pod is still there) hands the removal on", () => {
  withScratchRoot((root) => {
    mkdirSync(join(root, "pnl-other-pod"), { recursive: true });
    const old: EtcNetnsRecord = { createdRoot: true, dirs: [] };
    assert.deepEqual(removeAllResolvConfs(old, root), []);
    assert.deepEqual(readdirSync(root).sort(), [ETC_NETNS_MARKER, "pnl-other-pod"].sort());
    rmSync(join(root, "pnl-other-pod"), { recursive: true });
    assert.deepEqual(removeAllResolvConfs({ createdRoot: false, dirs: [] }, root), []);
    assert.equal(existsSync(root), false);
  });
});
