// The lab runs etcd as production does: a CA of its own (in <state dir>/pki, 0700, keys 0600), etcd
// serving only TLS and requiring a client certificate on its client and peer ports, auth enabled with one
// least-privilege role per client (datastore/etcd-roles.ts), and each client holding its own certificate:
// one per node agent, one for the control plane, one for its node lifecycle controller, one for DNS, one for
// the administrator (root).
//
// Users come from the certificate's CN (etcd's --client-cert-auth mapping), so no password exists on
// disk or in any argv. `lab down` removes the pki directory even when it must keep the rest of the state.
//
// A pod must not reach etcd at all: every node drops forwarded traffic from the cluster CIDR to the
// control plane's etcd ports (etcdGuardTable), in a table of the lab's own in the node's namespace.

import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { resolveClusterConfig } from "../datastore/cluster-config.ts";
import { DEFAULT_CLUSTER_CONFIG, type ClusterConfig } from "../datastore/datastore.ts";
import { controlPlaneRole, dnsRole, nodeAgentRole, nodeAgentUser, nodeLifecycleRole } from "../datastore/etcd-roles.ts";
import type { NftRule, NftTable } from "../kernel/nft/model.ts";
import { createCertificateAuthority, issueCertificate } from "../supervise/certs.ts";
import { enableEtcdAuth, etcdctl, type EtcdctlTarget } from "../supervise/etcd-auth.ts";
import type { EtcdServerTls } from "../supervise/etcd-server.ts";
import { CLUSTER_CIDR, CONTROL_PLANE_IP, ETCD_CLIENT_PORT, ETCD_POD_CLIENT_PORT, etcdEndpoint, etcdPodEndpoint } from "./topology.ts";

export const ETCD_PREFIX = "/podnet/";

/** Who talks to the lab's etcd: each has its own certificate and role. */
export type LabEtcdClient = "root" | "control-plane" | "node-lifecycle" | "dns" | { node: string };

export function labPkiDir(labDir: string): string {
  return join(labDir, "pki");
}

function stem(client: LabEtcdClient): string {
  return typeof client === "string" ? client : `node-${client.node}`;
}

/** The files a client presents: the lab CA, and its own certificate and key. */
export function labClientTls(labDir: string, client: LabEtcdClient): { caFile: string; certFile: string; keyFile: string } {
  const dir = labPkiDir(labDir);
  return { caFile: join(dir, "ca.crt"), certFile: join(dir, `${stem(client)}.crt`), keyFile: join(dir, `${stem(client)}.key`) };
}

/** The etcd flags of a podnet command run by `client` in the lab. */
export function labEtcdFlags(labDir: string, client: LabEtcdClient, fromPod = false): string[] {
  const tls = labClientTls(labDir, client);
  return ["--etcd", fromPod ? etcdPodEndpoint() : etcdEndpoint(), "--etcd-cafile", tls.caFile, "--etcd-certfile", tls.certFile, "--etcd-keyfile", tls.keyFile];
}

/** EtcdDatastore options for `client` (endpoints and TLS files). */
export function labEtcdDatastoreOptions(labDir: string, client: LabEtcdClient): { endpoints: string[]; tls: { caFile: string; certFile: string; keyFile: string } } {
  return { endpoints: [etcdEndpoint()], tls: labClientTls(labDir, client) };
}

export function labEtcdServerTls(labDir: string): EtcdServerTls {
  const dir = labPkiDir(labDir);
  const root = labClientTls(labDir, "root");
  return {
    caFile: join(dir, "ca.crt"),
    serverCertFile: join(dir, "etcd-server.crt"),
    serverKeyFile: join(dir, "etcd-server.key"),
    peerCertFile: join(dir, "etcd-peer.crt"),
    peerKeyFile: join(dir, "etcd-peer.key"),
    healthCertFile: root.certFile,
    healthKeyFile: root.keyFile,
  };
}

/** Make the CA and every certificate the lab needs. */
export async function makeLabPki(labDir: string, nodeNames: readonly string[]): Promise<void> {
  const ca = await createCertificateAuthority(labPkiDir(labDir), `podnet-lab-ca-${Date.now()}`);
  const etcdIps = [CONTROL_PLANE_IP, "127.0.0.1"];
  await Promise.all([
    issueCertificate(ca, { name: "etcd-server", commonName: "etcd-server", usage: "server", ips: etcdIps, dnsNames: ["localhost"] }),
    issueCertificate(ca, { name: "etcd-peer", commonName: "etcd-peer", usage: "peer", ips: etcdIps, dnsNames: ["localhost"] }),
    issueCertificate(ca, { name: "root", commonName: "root", usage: "client" }),
    issueCertificate(ca, { name: "control-plane", commonName: controlPlaneRole(ETCD_PREFIX).name, usage: "client" }),
    issueCertificate(ca, { name: "node-lifecycle", commonName: nodeLifecycleRole(ETCD_PREFIX).name, usage: "client" }),
    issueCertificate(ca, { name: "dns", commonName: dnsRole(ETCD_PREFIX).name, usage: "client" }),
    ...nodeNames.map((node) => issueCertificate(ca, { name: stem({ node }), commonName: nodeAgentUser(node), usage: "client" })),
  ]);
}

/**
 * On a freshly started lab etcd (run inside `netns`): users and roles, auth on, and, given `config`,
 * the cluster config, stored as the administrator if none is there yet. Agents may read the config but
 * not create it, so someone must store it: pass it here, or undefined when a process with the
 * control-plane role (which may write `config`) stores it. Run once per `lab up`.
 */
export async function secureLabEtcd(labDir: string, netns: string, nodeNames: readonly string[], config: ClusterConfig | undefined = DEFAULT_CLUSTER_CONFIG): Promise<void> {
  const target: EtcdctlTarget = { endpoint: etcdEndpoint(), tls: labClientTls(labDir, "root"), netns };
  await enableEtcdAuth(target, [controlPlaneRole(ETCD_PREFIX), nodeLifecycleRole(ETCD_PREFIX), dnsRole(ETCD_PREFIX), ...nodeNames.map((n) => nodeAgentRole(ETCD_PREFIX, n))]);
  if (config) await storeConfigIfAbsent(target, config);
}

async function storeConfigIfAbsent(target: EtcdctlTarget, config: ClusterConfig): Promise<void> {
  const key = `${ETCD_PREFIX}config`;
  // Only if absent: an agent that came up before auth was enabled may have stored the same already.
  const existing = await etcdctl(target, ["get", key, "--print-value-only"]);
  if (existing.trim() !== "") return;
  await etcdctl(target, ["put", key, JSON.stringify(resolveClusterConfig(config))]);
}

/** Remove every key and certificate of the lab; true if there was anything. */
export function removeLabPki(labDir: string): boolean {
  const dir = labPkiDir(labDir);
  if (!existsSync(dir)) return false;
  rmSync(dir, { recursive: true, force: true });
  return true;
}

/** The etcd ports pods are kept away from: client, peer, and the pods' client port (but for DNS pods). */
export const ETCD_GUARDED_PORTS = [ETCD_CLIENT_PORT, ETCD_CLIENT_PORT + 1, ETCD_POD_CLIENT_PORT] as const;

/**
 * A node's guard: pod traffic (from the cluster CIDR) forwarded to the control plane's etcd ports is
 * dropped before it leaves the node, so a pod cannot even open a connection to etcd. Node processes
 * (the agent) are not forwarded traffic and are unaffected. `allowedPodIps` (the cluster DNS pods,
 * which must watch the datastore) may reach etcd's pod client port, and only that one.
 */
export function etcdGuardTable(allowedPodIps: readonly string[] = []): NftTable {
  return {
    family: "ip",
    name: "podnet-lab-guard",
    sets: [],
    maps: [],
    chains: [{
      name: "forward",
      base: { type: "filter", hook: "forward", priority: "filter", policy: "accept" },
      rules: [
        ...(allowedPodIps.length > 0
          ? [{ statements: [{ match: "ip saddr", value: [...allowedPodIps] }, { match: "ip daddr", value: CONTROL_PLANE_IP }, { match: "tcp dport", value: ETCD_POD_CLIENT_PORT }, { verdict: "accept" }] } satisfies NftRule]
          : []),
        {
        statements: [
          { match: "ip saddr", value: CLUSTER_CIDR },
          { match: "ip daddr", value: CONTROL_PLANE_IP },
          { match: "tcp dport", value: [...ETCD_GUARDED_PORTS] },
          { counter: true },
          { verdict: "drop" },
        ],
      }],
    }],
  };
}
