// A node namespace with podnet's plugins ready to run in it, and pods to attach.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { CniNetwork, invoke, type Attachment, type InvokeResult, type NetworkConfigList } from "../../src/runtime/cni-driver.ts";
import { startService, type RunningService, type ServiceOptions } from "./cni-service.ts";
import { Netns, tempDir } from "./netns.ts";
import { formatIp, isIp } from "../../src/net/address.ts";
import { parseCidr } from "../../src/net/cidr.ts";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const DIST_CNI = join(ROOT, "dist/cni");
export const REFERENCE_CNI = "/usr/lib/cni";
/** The forwarder (src/plugin/forwarder.c): what runtimes exec; it execs PODNET_PLUGIN when no service answers. */
export const PODNET = join(DIST_CNI, "podnet");
/** The full plugin (Bun): does the work itself, never forwards. */
export const PODNET_PLUGIN = join(DIST_CNI, "podnet-plugin");

/**
 * PODNET_TEST_SERVICE=1 runs the plugin tests through podnet's resident service: every TestNode
 * starts one (`startService`) and its networks name its socket, so every call is forwarded to it.
 * Unset, the same tests run the plugin on its own.
 */
export const THROUGH_SERVICE = process.env.PODNET_TEST_SERVICE === "1";

export function requireBuild(): void {
  for (const file of [PODNET, PODNET_PLUGIN]) if (!existsSync(file)) throw new Error(`${file} is missing: run npm run build first`);
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

  /** The node's service, when the tests run through it (THROUGH_SERVICE); started on first use. */
  service: RunningService | undefined;

  /** Starts this node's service; a network made afterwards forwards to it. */
  async startService(options?: ServiceOptions): Promise<RunningService> {
    this.service ??= await startService(PODNET, this.ns.path, options);
    return this.service;
  }

  network(list: NetworkConfigList, cniPath: string[] = [DIST_CNI]): CniNetwork {
    return new CniNetwork(this.withService(list), { cniPath, nodeNetns: this.ns.path });
  }

  /** The list with this node's service socket in every podnet plugin, if a service is running. */
  withService(list: NetworkConfigList): NetworkConfigList {
    const socket = this.service?.socket;
    if (socket === undefined) return list;
    return { ...list, plugins: list.plugins.map((p) => (p.type === "podnet" ? { ...p, serviceSocket: socket } : p)) };
  }

  pod(): { ns: Netns; attachment: Attachment } {
    const ns = Netns.create("p");
    this.pods.push(ns);
    this.counter += 1;
    return { ns, attachment: { containerId: `ctr-${ns.name}-${this.counter}`, netns: ns.path, ifname: "eth0" } };
  }

  /** Runs a plugin binary with a raw environment and stdin, inside this node. */
  raw(binary: string, env: Record<string, string>, stdin: string): Promise<InvokeResult> {
    return invoke(binary, { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, this.stdinWithService(stdin), { cniPath: [DIST_CNI], nodeNetns: this.ns.path });
  }

  /** A podnet config as given, plus this node's service socket when one runs; anything else unchanged. */
  private stdinWithService(stdin: string): string {
    if (!this.service) return stdin;
    try {
      const conf: unknown = JSON.parse(stdin);
      if (typeof conf === "object" && conf !== null && !Array.isArray(conf) && (conf as { type?: unknown }).type === "podnet") {
        return JSON.stringify({ ...conf, serviceSocket: this.service.socket });
      }
    } catch {
      // Malformed on purpose (a bad-input test): it cannot name a service, so the plugin runs alone.
    }
    return stdin;
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
    if (this.service) void this.service.kill();
    for (const pod of this.pods) pod.delete();
    this.ns.delete();
  }
}

/** A TestNode, with its service running when the tests run through it (PODNET_TEST_SERVICE=1). */
export async function testNode(tag?: string): Promise<TestNode> {
  const node = new TestNode(tag);
  if (THROUGH_SERVICE) await node.startService();
  return node;
}

export function ipOf(result: Record<string, unknown>, index = 0): string {
  const ips = result.ips as { address: string }[] | undefined;
  const address = ips?.[index]?.address;
  if (!address) throw new Error(`no address in result ${JSON.stringify(result)}`);
  return formatIp(parseCidr(address).address);
}
