// A node namespace with podnet's plugins ready to run in it, and pods to attach.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { CniNetwork, invoke, type Attachment, type InvokeResult, type NetworkConfigList } from "../../src/runtime/cni-driver.ts";
import { Netns, tempDir } from "./netns.ts";
import { formatIp, isIp } from "../../src/net/address.ts";
import { parseCidr } from "../../src/net/cidr.ts";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const DIST_CNI = join(ROOT, "dist/cni");
export const REFERENCE_CNI = "/usr/lib/cni";
export const PODNET = join(DIST_CNI, "podnet");

export function requireBuild(): void {
  if (!existsSync(PODNET)) throw new Error(`${PODNET} is missing: run npm run build first`);
}

export interface PodnetConfOptions {
  subnet?: string;
  bridge?: string;
  cniVersion?: string;
  dataDir: string;
  extra?: Record<string, unknown>;
  ipam?: Record<string, unknown>;
}

export function podnetConfList(opts: PodnetConfOptions): NetworkConfigList {
  return {
    cniVersion: opts.cniVersion ?? "1.1.0",
    name: "podnet-test",
    plugins: [
      {
        type: "podnet",
        bridge: opts.bridge ?? "cni0",
        isGateway: true,
        isDefaultGateway: true,
        ipam: opts.ipam ?? { type: "podnet-ipam", ranges: [[{ subnet: opts.subnet ?? "10.244.1.0/24" }]], dataDir: opts.dataDir },
        ...opts.extra,
      },
    ],
  };
}

/** A "node": its own network namespace and IPAM data dir; the plugin runs inside it. */
export class TestNode {
  readonly ns: Netns;
  readonly dataDir: string;
  readonly pods: Netns[] = [];
  private counter = 0;

  constructor(tag = "n") {
    this.ns = Netns.create(tag);
    this.dataDir = tempDir("ipam");
  }

  network(list: NetworkConfigList, cniPath: string[] = [DIST_CNI]): CniNetwork {
    return new CniNetwork(list, { cniPath, nodeNetns: this.ns.path });
  }

  pod(): { ns: Netns; attachment: Attachment } {
    const ns = Netns.create("p");
    this.pods.push(ns);
    this.counter += 1;
    return { ns, attachment: { containerId: `ctr-${ns.name}-${this.counter}`, netns: ns.path, ifname: "eth0" } };
  }

  /** Runs a plugin binary with a raw environment and stdin, inside this node. */
  raw(binary: string, env: Record<string, string>, stdin: string): Promise<InvokeResult> {
    return invoke(binary, { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdin, { cniPath: [DIST_CNI], nodeNetns: this.ns.path });
  }

  /** IPs reserved in the podnet IPAM store (host-local layout: one file per address). */
  reservations(network = "podnet-test"): string[] {
    const dir = join(this.dataDir, network);
    if (!existsSync(dir)) return [];
    return readdirSync(dir).filter((f) => isIp(f));
  }

  /** Host-side veths podnet created (named pn + 12 hex digits). */
  hostVeths(): string[] {
    return this.ns.links().filter((l) => /^pn[0-9a-f]{12}$/.test(l));
  }

  destroy(): void {
    for (const pod of this.pods) pod.delete();
    this.ns.delete();
  }
}

export function ipOf(result: Record<string, unknown>, index = 0): string {
  const ips = result.ips as { address: string }[] | undefined;
  const address = ips?.[index]?.address;
  if (!address) throw new Error(`no address in result ${JSON.stringify(result)}`);
  return formatIp(parseCidr(address).address);
}
