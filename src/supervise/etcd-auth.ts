// Turns on etcd authentication with etcdctl: a root user (an administrator's certificate CN is "root"),
// and one user per role, without passwords: with --client-cert-auth, etcd takes the client
// certificate's CN as the user (etcd docs, "Using TLS Common Name"), so a client proves who it is with
// its key alone and no password sits on disk or in argv. Users with passwords are possible too.

import { argvInNamedNetns } from "../kernel/netns-exec.ts";
import { runChecked } from "./command.ts";
import { ETCDCTL_BINARY, etcdctlTlsFlags, type EtcdctlTls } from "./etcd-server.ts";

export interface EtcdUserRole {
  /** User and role name (one role per user). */
  name: string;
  permissions: readonly { key: string; prefix: boolean; access: "read" | "write" | "readwrite" }[];
}

export interface EtcdctlTarget {
  endpoint: string;
  /** The administrator's (root) certificate. */
  tls: EtcdctlTls;
  netns?: string;
}

export async function etcdctl(target: EtcdctlTarget, args: readonly string[]): Promise<string> {
  const command = [ETCDCTL_BINARY, "--endpoints", target.endpoint, ...etcdctlTlsFlags(target.tls), "--command-timeout=5s", ...args];
  return runChecked(target.netns ? argvInNamedNetns(target.netns, command) : command, { env: { ...process.env, ETCDCTL_API: "3" }, timeoutMs: 15_000 });
}

/** Add the users and roles, then enable auth (the root user must exist first). Run once, on a fresh etcd. */
export async function enableEtcdAuth(target: EtcdctlTarget, users: readonly EtcdUserRole[]): Promise<void> {
  await etcdctl(target, ["user", "add", "root", "--no-password"]);
  await etcdctl(target, ["user", "grant-role", "root", "root"]);
  await Promise.all(users.map((user) => addUserRole(target, user)));
  await etcdctl(target, ["auth", "enable"]);
}

/** Add one user with its role (auth may already be on: the target is root). */
export async function addUserRole(target: EtcdctlTarget, user: EtcdUserRole): Promise<void> {
  await Promise.all([etcdctl(target, ["role", "add", user.name]), etcdctl(target, ["user", "add", user.name, "--no-password"])]);
  // One grant at a time: each rewrites the whole role, so concurrent grants to one role could lose one.
  for (const p of user.permissions) {
    await etcdctl(target, ["role", "grant-permission", user.name, ...(p.prefix ? ["--prefix=true"] : []), p.access, p.key]);
  }
  await etcdctl(target, ["user", "grant-role", user.name, user.name]);
}
