// The CNI network config list the agent hands the runtime. Writing it is what makes the node Ready:
// before it exists the runtime has no network for pods, so it is written only once routes and
// masquerading are in place, and always atomically (temp file + rename) so a runtime never reads half a file.

import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export const CONFLIST_FILE = "10-podnet.conflist";

export interface ConflistOptions {
  podSubnet: string;
  bridge: string;
  mtu: number;
  ipamDataDir: string;
  /** The file whose presence tells the plugin's STATUS that the agent has the node's network in place. */
  readyFile: string;
  /** The conflist's cniVersion: 1.1.0, or 1.0.0 for runtimes whose libcni predates 1.1 (podman 4, containerd 1.6). */
  cniVersion: string;
  /**
   * The socket of the node's `podnet serve`: the installed `podnet` forwards every call there, and runs
   * the full plugin itself when nothing listens (src/plugin/forwarder.c).
   */
  serviceSocket?: string;
}

/**
 * Where the ready file lives by default: on /run, a tmpfs, so that a reboot clears it and the node
 * reads NotReady until the agent has run again. (Beside the conflist or the IPAM store it would
 * survive the reboot and vouch for routes that are not there yet.)
 */
export const DEFAULT_READY_FILE = "/run/podnet/agent.ready";

/** Create the ready file if it is missing (atomically, so STATUS never sees a half-written one). */
export function markReady(readyFile: string): void {
  if (existsSync(readyFile)) return;
  mkdirSync(dirname(readyFile), { recursive: true });
  const temp = `${readyFile}.${process.pid}.tmp`;
  writeFileSync(temp, `${new Date().toISOString()} pid ${process.pid}\n`, { mode: 0o644 });
  renameSync(temp, readyFile);
}

export function markNotReady(readyFile: string): void {
  rmSync(readyFile, { force: true });
}

export function buildConflist(opts: ConflistOptions): string {
  const conflist = {
    cniVersion: opts.cniVersion,
    name: "podnet",
    plugins: [
      {
        type: "podnet",
        bridge: opts.bridge,
        isGateway: true,
        isDefaultGateway: true,
        mtu: opts.mtu,
        hairpinMode: true,
        // The agent masquerades for the whole node (masquerade.ts), so the plugin must not add its own NAT.
        ipMasq: false,
        readyFile: opts.readyFile,
        // Pods may send only from their own addresses (the plugin's podfilter.ts); counted in the agent's metrics.
        antiSpoofing: true,
        // hostPort: the runtime passes the pod's ports, and the plugin DNATs them itself (no portmap in the chain).
        capabilities: { portMappings: true },
        ...(opts.serviceSocket ? { serviceSocket: opts.serviceSocket } : {}),
        ipam: { type: "podnet-ipam", ranges: [[{ subnet: opts.podSubnet }]], dataDir: opts.ipamDataDir },
      },
    ],
  };
  return `${JSON.stringify(conflist, null, 2)}\n`;
}

/** Write the conflist unless the file already holds exactly `content`. Returns true if it wrote. */
export function ensureConflist(confDir: string, content: string): boolean {
  const path = join(confDir, CONFLIST_FILE);
  try {
    if (readFileSync(path, "utf8") === content) return false;
  } catch {
    // Missing or unreadable: write it.
  }
  mkdirSync(confDir, { recursive: true });
  const temp = join(confDir, `.${CONFLIST_FILE}.${process.pid}.tmp`);
  writeFileSync(temp, content, { mode: 0o644 });
  renameSync(temp, path);
  return true;
}

export function removeConflist(confDir: string): void {
  rmSync(join(confDir, CONFLIST_FILE), { force: true });
}

/** The pod subnet in a conflist a previous run left, so a restarted agent can ask for it again. */
export function subnetFromExistingConflist(confDir: string): string | undefined {
  try {
    const parsed = JSON.parse(readFileSync(join(confDir, CONFLIST_FILE), "utf8")) as {
      plugins?: { ipam?: { ranges?: { subnet?: unknown }[][] } }[];
    };
    const subnet = parsed.plugins?.[0]?.ipam?.ranges?.[0]?.[0]?.subnet;
    return typeof subnet === "string" ? subnet : undefined;
  } catch {
    return undefined;
  }
}
