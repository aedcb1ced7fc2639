// The CNI vocabulary shared by every podnet module. Shapes follow the CNI 1.1.0 spec;
// conversion to and from older versions lives in version.ts, never here.

export type CniCommand = "ADD" | "DEL" | "CHECK" | "STATUS" | "GC" | "VERSION";

export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const CURRENT_VERSION: CniVersion = "1.1.0";

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  /** Path of the network namespace holding the interface; absent for host-side interfaces. */
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface CniIpConfig {
  /** CIDR notation: the address and the prefix of its subnet, e.g. 10.244.1.5/24. */
  address: string;
  gateway?: string;
  /** Index into CniResult.interfaces. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A result in the current (1.1.0) shape. */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

/** One IP range of an IPAM range set, as written in the config. */
export interface IpamRangeConf {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

export interface IpamConf {
  type: string;
  /** Range sets: every inner array is one set and yields one address per ADD. */
  ranges?: IpamRangeConf[][];
  /** host-local's single-range shorthand, accepted for compatibility. */
  subnet?: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
  routes?: CniRoute[];
  dataDir?: string;
  resolvConf?: string;
  [key: string]: unknown;
}

/** One entry of the portMappings capability (CONVENTIONS.md). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol?: string;
  hostIP?: string;
  [key: string]: unknown;
}

export interface RuntimeConfig {
  ips?: string[];
  mac?: string;
  dns?: CniDns;
  portMappings?: PortMapping[];
  /** Same shape as IpamConf.ranges. */
  ipRanges?: IpamRangeConf[][];
  /** ingressRate, ingressBurst, egressRate, egressBurst: bits per second and bits. */
  bandwidth?: Record<string, unknown>;
  [key: string]: unknown;
}

/** The network configuration a plugin receives on stdin (one plugin of a conflist, with name and cniVersion injected). */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  capabilities?: Record<string, boolean>;
  ipam?: IpamConf;
  dns?: CniDns;
  args?: { cni?: { ips?: string[]; mac?: string; [key: string]: unknown }; [key: string]: unknown };
  /** Normalised to lower-camel keys ("ips", "mac", "dns", "portMappings") whatever case the runtime used. */
  runtimeConfig?: RuntimeConfig;
  prevResult?: CniResult;
  /** GC only: attachments the runtime still uses. parseNetConf fills it from "cni.dev/attachments" (the spec's name) when only that is sent. */
  "cni.dev/valid-attachments"?: CniAttachment[];
  "cni.dev/attachments"?: CniAttachment[];
  [key: string]: unknown;
}

export interface CniAttachment {
  containerID: string;
  ifname: string;
}

/** Parsed CNI_ARGS: K8S_* and friends, plus the IP= and MAC= requests. */
export interface CniArgs {
  ignoreUnknown: boolean;
  ip?: string[];
  mac?: string;
  k8sPodNamespace?: string;
  k8sPodName?: string;
  k8sPodInfraContainerId?: string;
  k8sPodUid?: string;
  /** Every key=value pair as given, for keys podnet does not interpret. */
  raw: Record<string, string>;
}

/** The validated CNI_* environment. Fields a verb does not need may be empty strings. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: CniArgs;
  path: string[];
}

/** Well-known error codes of the CNI spec; podnet's own codes start at 100. */
export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  Io: 5,
  Decode: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  NotReady: 50,
  LimitedConnectivity: 51,
  /** podnet: no free address left in a range set. */
  RangeExhausted: 100,
  /** podnet: a kernel operation failed. */
  Kernel: 101,
  /** podnet: a delegated plugin failed. */
  Delegate: 102,
  /** podnet: a requested IP address is already allocated to another attachment. */
  AddressInUse: 103,
  /** podnet: nft refused a ruleset transaction, or could not be run. */
  Nftables: 104,
  /** podnet: an internal error. */
  Internal: 999,
} as const;

export class CniError extends Error {
  readonly code: number;
  readonly details: string;
  constructor(code: number, msg: string, details = "") {
    super(msg);
    this.name = "CniError";
    this.code = code;
    this.details = details;
  }
}
