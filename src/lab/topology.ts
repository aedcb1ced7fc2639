// The lab's shape as plain data: which namespaces, links, addresses and pods a lab of N nodes has.
// Pure, so the naming rules (unique lab prefix, 15-character link names, one underlay) are testable
// without root; underlay.ts and lab.ts turn a plan into kernel state.

import { formatIp } from "../net/address.ts";
import { nthAddress, parseCidr } from "../net/cidr.ts";

export const UNDERLAY_PREFIX_LENGTH = 24;
export const UNDERLAY_NETWORK = "192.168.1.0";
const UNDERLAY = parseCidr(`${UNDERLAY_NETWORK}/${UNDERLAY_PREFIX_LENGTH}`, { hostBits: "reject" });
export const CONTROL_PLANE_IP = "192.168.1.10";
export const EXTERNAL_IP = "192.168.1.200";
export const FIRST_NODE_HOST = 11;
export const CLUSTER_CIDR = "10.244.0.0/16";
export const ETCD_CLIENT_PORT = 2379;
/**
 * etcd's second client port, for the few pods that must watch the datastore (cluster DNS), as pods
 * reach the API server on a real cluster. Nodes' agents drop pod traffic to ETCD_CLIENT_PORT; this one
 * is guarded by the lab's own table, which lets only the DNS pods' addresses through.
 */
export const ETCD_POD_CLIENT_PORT = 2382;
/** The TCP port of every probe server (pods and the external host). */
export const PROBE_PORT = 7007;

/** Nodes take .11 upwards and must stay below the external host at .200. */
export const MAX_NODES = 100;
/** A node's /24 leaves room for about 250 pods; more than this makes the check matrix unreadable anyway. */
export const MAX_PODS_PER_NODE = 50;
/** Link names are at most 15 bytes (IFNAMSIZ - 1); "pnl-<id>-n100" must fit. */
export const MAX_LAB_ID_LENGTH = 6;
const LAB_ID_PATTERN = /^[a-z0-9]+$/;
const LINK_NAME_MAX = 15;

/**
 * flat: one switch, every host on 192.168.1.0/24 (host-gw works). routed: two switches, 192.168.1.0/24
 * (control plane, external host, odd nodes) and 192.168.2.0/24 (even nodes), joined by a router namespace
 * that routes between them and knows no pod subnet, as a datacentre router would not.
 */
export type LabTopology = "flat" | "routed";
export const TOPOLOGIES: readonly LabTopology[] = ["flat", "routed"];
export const SECOND_UNDERLAY_NETWORK = "192.168.2.0";
const SECOND_UNDERLAY = parseCidr(`${SECOND_UNDERLAY_NETWORK}/${UNDERLAY_PREFIX_LENGTH}`, { hostBits: "reject" });
/** The router's address on each underlay subnet, and every host's default gateway in the routed topology. */
export const ROUTER_HOST = 1;

export interface LabOptions {
  id: string;
  nodes: number;
  podsPerNode: number;
  /** Default "flat". */
  topology?: LabTopology;
}

/** One L2 segment: a bridge in its own namespace. */
export interface SwitchPlan {
  netns: string;
  bridge: string;
  /** The underlay subnet on this switch, e.g. 192.168.2.0/24. */
  cidr: string;
}

/** The routed topology's router: one uplink into each switch. */
export interface RouterPlan {
  netns: string;
  uplinks: { name: string; switchPort: string; switchIndex: number; ip: string }[];
}

/** A host on the underlay switch: a namespace with one veth (uplink) into the switch namespace. */
export interface UnderlayHost {
  role: "control-plane" | "external" | "node";
  /** Short name used on the command line: "node1", "external", "control-plane". */
  name: string;
  netns: string;
  ip: string;
  /** The uplink's name inside the host namespace. */
  uplink: string;
  /** The uplink's peer, a port of the switch bridge, in the switch namespace. */
  switchPort: string;
  /** Which of the plan's switches the host is plugged into. */
  switchIndex: number;
  /** Default route via this address (the routed topology's router), if any. */
  gateway?: string;
}

export interface PodPlan {
  name: string;
  node: string;
  netns: string;
  /** The CNI container ID the runtime passes in CNI_CONTAINERID. */
  containerId: string;
}

export interface LabPlan {
  id: string;
  /** Every namespace and every link the lab names starts with this. */
  prefix: string;
  topology: LabTopology;
  /** The first switch (192.168.1.0/24). */
  switchNetns: string;
  switchBridge: string;
  /** Every switch, the first one included. */
  switches: SwitchPlan[];
  router?: RouterPlan;
  controlPlane: UnderlayHost;
  external: UnderlayHost;
  nodes: UnderlayHost[];
  pods: PodPlan[];
}

export function validateLabId(id: string): string | undefined {
  if (id.length === 0 || id.length > MAX_LAB_ID_LENGTH || !LAB_ID_PATTERN.test(id)) {
    return `lab id must be 1-${MAX_LAB_ID_LENGTH} characters of a-z and 0-9, got "${id}"`;
  }
  return undefined;
}

export function labPrefix(id: string): string {
  return `pnl-${id}-`;
}

export function planLab(opts: LabOptions): LabPlan {
  const idProblem = validateLabId(opts.id);
  if (idProblem) throw new RangeError(idProblem);
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > MAX_NODES) {
    throw new RangeError(`--nodes must be an integer from 1 to ${MAX_NODES}, got ${opts.nodes}`);
  }
  if (!Number.isInteger(opts.podsPerNode) || opts.podsPerNode < 0 || opts.podsPerNode > MAX_PODS_PER_NODE) {
    throw new RangeError(`--pods-per-node must be an integer from 0 to ${MAX_PODS_PER_NODE}, got ${opts.podsPerNode}`);
  }
  const topology = opts.topology ?? "flat";
  if (!TOPOLOGIES.includes(topology)) throw new RangeError(`--topology must be ${TOPOLOGIES.join(" or ")}, got ${JSON.stringify(topology)}`);
  const routed = topology === "routed";
  const prefix = labPrefix(opts.id);
  const host = (role: UnderlayHost["role"], name: string, ip: string, portSuffix: string, switchIndex = 0): UnderlayHost => {
    const h: UnderlayHost = { role, name, netns: `${prefix}${name}`, ip, uplink: "eth0", switchPort: linkName(prefix, portSuffix), switchIndex };
    if (routed) h.gateway = formatIp(nthAddress(switchIndex === 0 ? UNDERLAY : SECOND_UNDERLAY, ROUTER_HOST));
    // A real node has a default route; on the flat underlay the external host stands in for the upstream
    // router. Without one, a packet to an address no rule claims (a ClusterIP without endpoints) fails in
    // the node's routing with "network unreachable" before any filter hook can reject it.
    else if (role === "node") h.gateway = EXTERNAL_IP;
    return h;
  };
  const nodes: UnderlayHost[] = [];
  for (let i = 1; i <= opts.nodes; i++) {
    // Routed: even nodes on the second subnet, so any two neighbours in the check cross the router.
    const second = routed && i % 2 === 0;
    const ip = formatIp(nthAddress(second ? SECOND_UNDERLAY : UNDERLAY, FIRST_NODE_HOST + i - 1));
    nodes.push(host("node", nodeName(i), ip, `n${i}`, second ? 1 : 0));
  }
  const switches: SwitchPlan[] = [{ netns: `${prefix}switch`, bridge: linkName(prefix, "br"), cidr: `${UNDERLAY_NETWORK}/${UNDERLAY_PREFIX_LENGTH}` }];
  let router: RouterPlan | undefined;
  if (routed) {
    switches.push({ netns: `${prefix}switch2`, bridge: linkName(prefix, "br2"), cidr: `${SECOND_UNDERLAY_NETWORK}/${UNDERLAY_PREFIX_LENGTH}` });
    router = {
      netns: `${prefix}router`,
      uplinks: [
        { name: "eth0", switchPort: linkName(prefix, "rt1"), switchIndex: 0, ip: formatIp(nthAddress(UNDERLAY, ROUTER_HOST)) },
        { name: "eth1", switchPort: linkName(prefix, "rt2"), switchIndex: 1, ip: formatIp(nthAddress(SECOND_UNDERLAY, ROUTER_HOST)) },
      ],
    };
  }
  const pods: PodPlan[] = [];
  for (const node of nodes) {
    for (let j = 1; j <= opts.podsPerNode; j++) {
      const name = `${node.name}-pod${j}`;
      pods.push({ name, node: node.name, netns: `${prefix}${name}`, containerId: `${prefix}${name}` });
    }
  }
  return {
    id: opts.id,
    prefix,
    topology,
    switchNetns: switches[0]!.netns,
    switchBridge: switches[0]!.bridge,
    switches,
    ...(router ? { router } : {}),
    controlPlane: host("control-plane", "control-plane", CONTROL_PLANE_IP, "cp"),
    external: host("external", "external", EXTERNAL_IP, "ext"),
    nodes,
    pods,
  };
}

export function nodeName(index: number): string {
  return `node${index}`;
}

/** The underlay host address .host, e.g. 192.168.1.11. */
export function underlayIp(hostPart: number): string {
  return formatIp(nthAddress(UNDERLAY, hostPart));
}

export function underlayHosts(plan: LabPlan): UnderlayHost[] {
  return [plan.controlPlane, plan.external, ...plan.nodes];
}

/** The endpoint cluster DNS pods use (ETCD_POD_CLIENT_PORT). */
export function etcdPodEndpoint(): string {
  return `https://${CONTROL_PLANE_IP}:${ETCD_POD_CLIENT_PORT}`;
}

export function etcdEndpoint(): string {
  // TLS only, client certificates required (etcd-security.ts).
  return `https://${CONTROL_PLANE_IP}:${ETCD_CLIENT_PORT}`;
}

function linkName(prefix: string, suffix: string): string {
  const name = `${prefix}${suffix}`;
  if (Buffer.byteLength(name) > LINK_NAME_MAX) throw new RangeError(`link name ${name} is longer than ${LINK_NAME_MAX} bytes`);
  return name;
}
