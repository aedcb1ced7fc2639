// The CNI network config list the agent hands the runtime. Writing it is what makes the node Ready:
// before it exists the runtime has no network for pods, so it is written only once routes and
// masquerading are in place, and always atomically (temp file + rename) so a runtime never reads half a file.

import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const CONFLIST_FILE = "10-podnet.conflist";

export interface ConflistOptions {
  podSubnet: string;
  bridge: string;
  mtu: number;
  ipamDataDir: string;
}

export function buildConflist(opts: ConflistOptions): string {
  const conflist = {
    cniVersion: "1.1.0",
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
