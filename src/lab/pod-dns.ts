// Cluster DNS in the lab: what the kubelet gives every pod (its resolv.conf) and how it runs the
// `podnet dns` pods behind the kube-dns Service.
//
// A pod's resolv.conf is the file kubelet writes for dnsPolicy ClusterFirst (kubelet
// pkg/kubelet/network/dns/dns.go, GetPodDNS / formDNSSearchFitsLimits): the cluster DNS Service's
// ClusterIP, the three cluster search domains and ndots:5. In the lab it lives at
// /etc/netns/<pod netns>/resolv.conf, which `ip netns exec` bind-mounts over /etc/resolv.conf for
// everything started in the pod (kernel/netns-exec.ts): the host's own /etc/resolv.conf is untouched.

import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Pod } from "../k8s/types.ts";

/** The cluster DNS Service's ClusterIP (the tenth address of 10.96.0.0/12, as kubeadm's default). */
export const CLUSTER_DNS_IP = "10.96.0.10";
export const CLUSTER_DOMAIN = "cluster.local";
/** A pod whose (first) container names this image runs `podnet dns` instead of the test server. */
export const DNS_IMAGE = "podnet/dns";
export const ETC_NETNS = "/etc/netns";
/**
 * Left in /etc/netns by the lab that made it, so that whichever lab is the last to leave removes it:
 * with two labs at once, the one that made it may finish first while the other still has pods there.
 * (`ip netns exec` bind-mounts only /etc/netns/NAME/, so a file beside those is never seen by a pod.)
 */
export const ETC_NETNS_MARKER = ".made-by-podnet-lab";
/** Where a `podnet dns` pod serves /metrics, /health and /ready (CoreDNS's metrics port). */
export const DNS_METRICS_PORT = 9153;

export function resolvConfText(namespace: string): string {
  return [
    `nameserver ${CLUSTER_DNS_IP}`,
    `search ${namespace}.svc.${CLUSTER_DOMAIN} svc.${CLUSTER_DOMAIN} ${CLUSTER_DOMAIN}`,
    "options ndots:5",
    "",
  ].join("\n");
}

export function etcNetnsDir(netns: string, root = ETC_NETNS): string {
  return join(root, netns);
}

export function isDnsPod(pod: Pod): boolean {
  return (pod.spec.containers ?? []).some((c) => c.image === DNS_IMAGE);
}

/** What the lab's state records about /etc/netns before it writes there. */
export interface EtcNetnsRecord {
  /** /etc/netns did not exist and the lab made it: removed again once empty. */
  createdRoot: boolean;
  /** /etc/netns/<netns> directories the lab made (each holding only its resolv.conf). */
  dirs: string[];
}

/** Write the pod's resolv.conf; `record` is updated (and must be saved by `save`) before anything is written. */
export function writePodResolvConf(record: EtcNetnsRecord, save: () => void, netns: string, namespace: string, root = ETC_NETNS): void {
  const dir = etcNetnsDir(netns, root);
  if (!existsSync(root)) record.createdRoot = true;
  if (!record.dirs.includes(dir)) record.dirs.push(dir);
  save();
  try {
    mkdirSync(root);
    writeFileSync(join(root, ETC_NETNS_MARKER), "made by a podnet lab; removed by the last lab to leave\n");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "resolv.conf"), resolvConfText(namespace));
}

/** Remove one pod's directory (only the file the lab wrote, then the directory if empty). */
export function removePodResolvConf(record: EtcNetnsRecord, save: () => void, netns: string, root = ETC_NETNS): void {
  const dir = etcNetnsDir(netns, root);
  removeDir(dir);
  record.dirs = record.dirs.filter((d) => d !== dir);
  save();
}

/**
 * Everything recorded, and /etc/netns itself when a podnet lab made it (its marker, or this lab's
 * record) and nothing but the marker is left; returns problems.
 */
export function removeAllResolvConfs(record: EtcNetnsRecord, root = ETC_NETNS): string[] {
  const problems: string[] = [];
  for (const dir of record.dirs) {
    try {
      removeDir(dir);
    } catch (error) {
      problems.push(`${dir}: ${(error as Error).message}`);
    }
  }
  record.dirs = [];
  try {
    removeRootIfLabMade(root, record.createdRoot);
  } catch (error) {
    problems.push(`${root}: ${(error as Error).message}`);
  }
  record.createdRoot = false;
  return problems;
}

function removeRootIfLabMade(root: string, madeByThisLab: boolean): void {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  const marker = join(root, ETC_NETNS_MARKER);
  const marked = entries.includes(ETC_NETNS_MARKER);
  if (!marked && !madeByThisLab) return; // not ours: someone else's /etc/netns
  if (entries.some((name) => name !== ETC_NETNS_MARKER)) {
    // Another lab still has pods there (or something else put files there): the last to leave removes it.
    if (!marked) writeFileSync(marker, "made by a podnet lab; removed by the last lab to leave\n");
    return;
  }
  rmSync(marker, { force: true });
  try {
    rmdirSync(root);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    // A lab wrote a pod's directory in between: it is the last to leave now.
    if (code === "ENOTEMPTY" || code === "EEXIST") writeFileSync(marker, "made by a podnet lab; removed by the last lab to leave\n");
    else throw error;
  }
}

function removeDir(dir: string): void {
  rmSync(join(dir, "resolv.conf"), { force: true });
  try {
    rmdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

/**
 * The kube-dns Service (the name, namespace, labels and port names of kubeadm's CoreDNS addon,
 * cmd/kubeadm/app/phases/addons/dns/manifests.go) and one `podnet dns` pod per node given (at most
 * two), each bound to its node so the two are never on the same one. The ClusterIP is asked for
 * explicitly: the allocator keeps 10.96.0.10 out of its dynamic range.
 */
export function kubeDnsManifest(nodeNames: readonly string[]): string {
  const labels = { "k8s-app": "kube-dns" };
  const service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "kube-dns", namespace: "kube-system", labels: { ...labels, "kubernetes.io/name": "CoreDNS" } },
    spec: {
      selector: labels,
      clusterIP: CLUSTER_DNS_IP,
      ports: [
        { name: "dns", port: 53, protocol: "UDP", targetPort: 53 },
        { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 53 },
      ],
    },
  };
  const pods = nodeNames.slice(0, 2).map((node, i) => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: `podnet-dns-${i + 1}`, namespace: "kube-system", labels },
    spec: {
      nodeName: node,
      containers: [{
        name: "dns",
        image: DNS_IMAGE,
        ports: [
          { name: "dns", containerPort: 53, protocol: "UDP" },
          { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
          { name: "metrics", containerPort: DNS_METRICS_PORT, protocol: "TCP" },
        ],
        // As CoreDNS's (kubeadm's manifest: httpGet /ready on 8181, periodSeconds 10), checked more
        // often here so the lab's pods turn Ready within a second or two of their first sync.
        readinessProbe: { httpGet: { path: "/ready", port: "metrics", scheme: "HTTP" }, periodSeconds: 1, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 2 },
      }],
    },
  }));
  // The system namespaces are stored objects on a real cluster (kube-apiserver's system namespaces
  // controller, pkg/controlplane/controller/systemnamespaces), and DNS denies names in a namespace it
  // does not know: store them, as the apiserver would.
  const namespaces = ["default", "kube-system", "kube-public", "kube-node-lease"].map((name) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } }));
  return [...namespaces, service, ...pods].map((o) => JSON.stringify(o)).join("\n---\n");
}
