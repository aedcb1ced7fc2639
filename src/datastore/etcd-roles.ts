// Least privilege in etcd: the role each podnet client gets, from the key layout of this folder
// (etcd-datastore.ts, etcd-subnet-registry.ts, object-keys.ts). Pure: the lab applies them with etcdctl.
//
// etcd grants read/write on one key or on a key prefix (a range), nothing finer. What that allows:
// - an agent writes its own nodes/<name> and alive/<name> (single keys), and nothing else of nodes/;
// - it may read everything under the prefix (it routes to every node, and watches the whole prefix);
// - subnets/<a.b.c.d-len> claims: a new node claims a subnet it does not own yet, so the agent needs
//   write on the whole subnets/ prefix. Narrowing that needs a claim written by someone else (an IPAM
//   controller) — not done: an agent's credentials can delete another node's claim (the routes follow
//   the node records, which it cannot touch, so this can only block a future registration).
// - acks/<leaving>/<acker>: the acker is the last segment, and etcd prefixes cannot say "any key ending
//   in /<acker>", so an agent needs write on all of acks/. A forged ack can only hurry the final delete
//   of a node that is already leaving.
// - Marking an expired peer leaving and deleting a removed peer's record are writes to other nodes'
//   records: agents are refused them and skip those duties. The control plane's node lifecycle
//   controller (src/controlplane/node-lifecycle-controller.ts, role nodeLifecycleRole) does them, as
//   kube-controller-manager's node lifecycle controller does in Kubernetes, with a role of its own.

export type EtcdAccess = "read" | "write" | "readwrite";

export interface EtcdPermission {
  key: string;
  /** True: every key starting with `key`; false: that one key. */
  prefix: boolean;
  access: EtcdAccess;
}

export interface EtcdRoleSpec {
  /** etcd role and user (the same name); with client-certificate auth it is the certificate's CN. */
  name: string;
  permissions: EtcdPermission[];
}

/** The user and role of the agent on node `nodeName`. */
export function nodeAgentRole(prefix: string, nodeName: string): EtcdRoleSpec {
  return {
    name: nodeAgentUser(nodeName),
    permissions: [
      { key: prefix, prefix: true, access: "read" },
      { key: `${prefix}nodes/${nodeName}`, prefix: false, access: "readwrite" },
      { key: `${prefix}alive/${nodeName}`, prefix: false, access: "readwrite" },
      { key: `${prefix}acks/`, prefix: true, access: "readwrite" },
      { key: `${prefix}subnets/`, prefix: true, access: "readwrite" },
    ],
  };
}

export function nodeAgentUser(nodeName: string): string {
  return `podnet-node-${nodeName}`;
}

/** Controllers and `podnet apply`: the cluster config, cluster objects and their claims; reads of the rest. */
export function controlPlaneRole(prefix: string, name = "podnet-control-plane"): EtcdRoleSpec {
  return {
    name,
    permissions: [
      { key: prefix, prefix: true, access: "read" },
      { key: `${prefix}config`, prefix: false, access: "readwrite" },
      { key: `${prefix}objects/`, prefix: true, access: "readwrite" },
      { key: `${prefix}claims/`, prefix: true, access: "readwrite" },
    ],
  };
}

/**
 * The node lifecycle controller: marks nodes whose liveness lease expired leaving, and deletes a leaving
 * node's record, subnet claim, liveness key and acks once every live node has withdrawn its routes.
 * A role apart from controlPlaneRole, so that `podnet lab apply` credentials cannot rewrite nodes.
 */
export function nodeLifecycleRole(prefix: string, name = "podnet-node-lifecycle"): EtcdRoleSpec {
  return {
    name,
    permissions: [
      { key: prefix, prefix: true, access: "read" },
      { key: `${prefix}nodes/`, prefix: true, access: "readwrite" },
      { key: `${prefix}subnets/`, prefix: true, access: "readwrite" },
      { key: `${prefix}alive/`, prefix: true, access: "readwrite" },
      { key: `${prefix}acks/`, prefix: true, access: "readwrite" },
    ],
  };
}

/** `podnet dns`: reads cluster objects, writes nothing. */
export function dnsRole(prefix: string, name = "podnet-dns"): EtcdRoleSpec {
  return { name, permissions: [{ key: `${prefix}objects/`, prefix: true, access: "read" }] };
}
