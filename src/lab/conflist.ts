// Reading a CNI network configuration list the way libcni does: each plugin of the chain gets its own
// config with the list's name and cniVersion injected, and (after the first) the previous plugin's result.

import type { CniResult, NetConf } from "../cni/types.ts";
import { formatIp } from "../net/address.ts";
import { tryParseCidr } from "../net/cidr.ts";

export interface PluginConf {
  type: string;
  [key: string]: unknown;
}

export interface NetConfList {
  cniVersion: string;
  name: string;
  plugins: PluginConf[];
}

export function parseConfList(text: string, source = "conflist"): NetConfList {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: not JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null) throw new Error(`${source}: not a JSON object`);
  const list = parsed as Record<string, unknown>;
  if (typeof list.cniVersion !== "string" || list.cniVersion === "") throw new Error(`${source}: missing cniVersion`);
  if (typeof list.name !== "string" || list.name === "") throw new Error(`${source}: missing name`);
  if (!Array.isArray(list.plugins) || list.plugins.length === 0) throw new Error(`${source}: plugins must be a non-empty array`);
  const plugins = list.plugins.map((plugin: unknown, i: number): PluginConf => {
    if (typeof plugin !== "object" || plugin === null) throw new Error(`${source}: plugins[${i}] is not an object`);
    const p = plugin as Record<string, unknown>;
    if (typeof p.type !== "string" || p.type === "" || p.type.includes("/")) throw new Error(`${source}: plugins[${i}].type is missing or invalid`);
    return { ...p, type: p.type };
  });
  return { cniVersion: list.cniVersion, name: list.name, plugins };
}

/** The stdin config for plugin `index` of the chain. */
export function pluginConfig(list: NetConfList, index: number, prevResult?: CniResult): NetConf {
  const plugin = list.plugins[index];
  if (!plugin) throw new RangeError(`conflist ${list.name} has no plugin ${index}`);
  const conf: NetConf = { ...plugin, cniVersion: list.cniVersion, name: list.name };
  if (prevResult) conf.prevResult = prevResult;
  else delete conf.prevResult;
  return conf;
}

/** The pod subnet a conflist hands out (the first range of the first plugin's IPAM), for `lab status`. */
export function conflistSubnet(list: NetConfList): string | undefined {
  for (const plugin of list.plugins) {
    const ipam = plugin.ipam;
    if (typeof ipam !== "object" || ipam === null) continue;
    const { subnet, ranges } = ipam as { subnet?: unknown; ranges?: unknown };
    if (typeof subnet === "string") return subnet;
    if (Array.isArray(ranges)) {
      const first: unknown = Array.isArray(ranges[0]) ? ranges[0][0] : undefined;
      if (typeof first === "object" && first !== null && typeof (first as { subnet?: unknown }).subnet === "string") {
        return (first as { subnet: string }).subnet;
      }
    }
  }
  return undefined;
}

/** The first IPv4 address of a result, without its prefix length. */
export function resultIPv4(result: CniResult): string | undefined {
  for (const ip of result.ips ?? []) {
    const parsed = tryParseCidr(ip.address);
    if (parsed?.address.family === 4) return formatIp(parsed.address);
  }
  return undefined;
}
