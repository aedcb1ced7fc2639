// The bridge plugin's own configuration, read from the NetConf the protocol layer parsed.
// Defaults follow the reference bridge plugin, so a conflist written for it means the same here.
import { CniError, ErrorCode, type CniEnv, type NetConf } from "../cni/types.ts";

export interface BridgeConf {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  /** Undefined leaves the kernel's default (1500 for a new bridge, the bridge's MTU for a veth). */
  mtu?: number;
  hairpinMode: boolean;
  ipMasq: boolean;
  /** Destinations inside these CIDRs are never masqueraded: pod-to-pod traffic keeps its source. */
  clusterCidrs: string[];
  /** MAC for the pod interface, from runtimeConfig, args or CNI_ARGS (most specific wins). */
  mac?: string;
  /** In-process IPAM when true; otherwise ipam.type is exec'd from CNI_PATH. */
  ipamInProcess: boolean;
  /**
   * A file the node agent keeps while the node's network is in place (`readyFile`, written into the
   * conflist by the agent). STATUS answers NotReady (50) while it is missing.
   */
  readyFile?: string;
  /** Drop what a pod sends from an address not its own (podfilter.ts); on unless `antiSpoofing: false`. */
  antiSpoofing: boolean;
}

/** IPAM types served in-process: no second exec per ADD. */
export const IN_PROCESS_IPAM_TYPES = new Set(["podnet-ipam"]);

const MAC_PATTERN = /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/;
const IFNAME_PATTERN = /^[^\s/:]{1,15}$/;

function optionalBoolean(conf: NetConf, key: string, fallback: boolean): boolean {
  const value = conf[key];
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new CniError(ErrorCode.InvalidConfig, `"${key}" must be a boolean`);
  return value;
}

export function parseBridgeConf(conf: NetConf, env: CniEnv): BridgeConf {
  const bridge = conf.bridge ?? "cni0";
  if (typeof bridge !== "string" || !IFNAME_PATTERN.test(bridge) || bridge === "." || bridge === "..") {
    throw new CniError(ErrorCode.InvalidConfig, `invalid bridge name ${JSON.stringify(bridge)}`);
  }
  const mtu = conf.mtu;
  if (mtu !== undefined && (typeof mtu !== "number" || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) {
    throw new CniError(ErrorCode.InvalidConfig, `invalid mtu ${JSON.stringify(mtu)}: expected an integer from 68 to 65535`);
  }
  const isDefaultGateway = optionalBoolean(conf, "isDefaultGateway", false);
  const clusterCidrs = conf.clusterCIDR === undefined ? [] : Array.isArray(conf.clusterCIDR) ? conf.clusterCIDR : [conf.clusterCIDR];
  if (!clusterCidrs.every((c): c is string => typeof c === "string")) {
    throw new CniError(ErrorCode.InvalidConfig, `"clusterCIDR" must be a CIDR string or a list of them`);
  }
  const mac = env.args.mac ?? conf.args?.cni?.mac ?? conf.runtimeConfig?.mac;
  if (mac !== undefined && (typeof mac !== "string" || !MAC_PATTERN.test(mac))) {
    throw new CniError(ErrorCode.InvalidConfig, `invalid MAC address ${JSON.stringify(mac)}`);
  }
  const ipamType = conf.ipam?.type;
  if (typeof ipamType !== "string" || ipamType === "") {
    throw new CniError(ErrorCode.InvalidConfig, `"ipam.type" is required`);
  }
  const readyFile = conf.readyFile;
  if (readyFile !== undefined && (typeof readyFile !== "string" || !readyFile.startsWith("/"))) {
    throw new CniError(ErrorCode.InvalidConfig, `"readyFile" must be an absolute path, got ${JSON.stringify(readyFile)}`);
  }
  return {
    bridge,
    // A default gateway on the bridge needs the bridge to hold the gateway address.
    isGateway: isDefaultGateway || optionalBoolean(conf, "isGateway", false),
    isDefaultGateway,
    ...(mtu === undefined ? {} : { mtu }),
    hairpinMode: optionalBoolean(conf, "hairpinMode", false),
    ipMasq: optionalBoolean(conf, "ipMasq", false),
    clusterCidrs,
    ...(mac === undefined ? {} : { mac: mac.toLowerCase() }),
    ipamInProcess: IN_PROCESS_IPAM_TYPES.has(ipamType),
    ...(readyFile === undefined ? {} : { readyFile }),
    antiSpoofing: optionalBoolean(conf, "antiSpoofing", true),
  };
}
