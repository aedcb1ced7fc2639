// Named network namespaces, as iproute2 keeps them: a bind mount of a namespace file on
// /run/netns/NAME. Creating one needs a fresh namespace bind-mounted onto that path with /run/netns
// itself a shared mount, so that other mount namespaces see it; `ip netns add` does exactly that and
// costs ~1 ms, so creation and deletion call it rather than repeat its mount dance over FFI.
// Listing, look-up and `lo` are native.
import { execFile } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { promisify } from "node:util";
import { getLink, setLinkUp } from "./link.ts";
import { NetlinkSocket } from "./netlink/socket.ts";
import { netnsExists } from "./netns.ts";
import { NAMED_NETNS_DIR, namedNetnsPath, validateNetnsName } from "./named-netns-path.ts";

export { NAMED_NETNS_DIR, namedNetnsPath, validateNetnsName };

const execFileAsync = promisify(execFile);

async function ipNetns(args: string[]): Promise<void> {
  try {
    await execFileAsync("ip", ["netns", ...args], { timeout: 30_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`ip netns ${args.join(" ")}: ${stderr || (error as Error).message}`);
  }
}

/**
 * Creates the named namespace and brings its `lo` up (a fresh namespace has it down, and pods, etcd and
 * probes all expect 127.0.0.1 to work). Fails if the name is taken.
 */
export async function createNamedNetns(name: string): Promise<string> {
  const path = namedNetnsPath(name);
  await ipNetns(["add", name]);
  const nl = NetlinkSocket.open(path);
  try {
    const lo = getLink(nl, "lo");
    if (!lo) throw new Error(`netns ${name}: no lo`);
    setLinkUp(nl, lo.index);
  } finally {
    nl.close();
  }
  return path;
}

/**
 * Unmounts and removes /run/netns/NAME; the namespace itself goes when nothing else holds it.
 * A stale file (its mount already gone) is removed too.
 */
export async function deleteNamedNetns(name: string): Promise<void> {
  namedNetnsPath(name);
  await ipNetns(["delete", name]);
}

/**
 * Names of live namespaces under /run/netns. A stale file whose mount is gone is left out unless
 * `includeStale` (a cleaner wants those too: deleteNamedNetns removes them).
 */
export function listNamedNetns(opts: { includeStale?: boolean } = {}): string[] {
  let entries: string[];
  try {
    entries = readdirSync(NAMED_NETNS_DIR);
  } catch {
    return [];
  }
  return entries.filter((name) => opts.includeStale || netnsExists(`${NAMED_NETNS_DIR}/${name}`)).sort();
}

/** The nsfs inode of a named namespace (what /proc/PID/ns/net links to), or undefined when it does not exist. */
export function namedNetnsInode(name: string): number | undefined {
  const path = namedNetnsPath(name);
  if (!netnsExists(path)) return undefined;
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}
