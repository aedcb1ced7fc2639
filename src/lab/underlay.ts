// Builds the lab's underlay: a switch (a bridge in its own namespace) and hosts plugged into it,
// each host a namespace with one veth uplink. Every kernel change goes through src/kernel, inside
// namespaces the lab records first; the root namespace is never touched.

import { addAddress } from "../kernel/address.ts";
import { ensureBridge, getLink, setLinkUp } from "../kernel/link.ts";
import { createNamedNetns, namedNetnsPath } from "../kernel/named-netns.ts";
import { NetlinkSocket } from "../kernel/netlink/socket.ts";
import { setSysctlIn } from "../kernel/sysctl.ts";
import { createVethWithPeerIn } from "../kernel/veth.ts";
import type { LabState } from "./lab-state.ts";
import { UNDERLAY_PREFIX_LENGTH, type LabPlan, type UnderlayHost } from "./topology.ts";

/** Create a namespace (with lo up) after recording it, so a crash right after creation still gets it cleaned up. */
export async function createNetns(state: LabState, name: string): Promise<string> {
  state.recordNamespace(name);
  return createNamedNetns(name);
}

/** Run `fn` with a netlink socket inside the named namespace. */
export function inNamespace<T>(netns: string, fn: (nl: NetlinkSocket) => T): T {
  const nl = NetlinkSocket.open(namedNetnsPath(netns));
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}

export async function createSwitch(state: LabState, plan: LabPlan): Promise<void> {
  await createNetns(state, plan.switchNetns);
  inNamespace(plan.switchNetns, (nl) => ensureBridge(nl, { name: plan.switchBridge }));
}

/** A namespace with an uplink into the switch and its underlay address; nodes also forward IPv4. */
export async function createUnderlayHost(state: LabState, plan: LabPlan, host: UnderlayHost): Promise<void> {
  const hostPath = await createNetns(state, host.netns);
  inNamespace(plan.switchNetns, (nl) => {
    const bridge = getLink(nl, plan.switchBridge);
    if (!bridge) throw new Error(`switch ${plan.switchNetns} has no bridge ${plan.switchBridge}`);
    // createVethPair brings the switch end up with its master set; the peer starts down.
    createVethWithPeerIn(nl, { name: host.switchPort, masterIndex: bridge.index, peer: { name: host.uplink, nsPath: hostPath } });
  });
  inNamespace(host.netns, (nl) => {
    const uplink = getLink(nl, host.uplink);
    if (!uplink) throw new Error(`${host.netns}: uplink ${host.uplink} missing right after it was created`);
    addAddress(nl, uplink.index, `${host.ip}/${UNDERLAY_PREFIX_LENGTH}`);
    setLinkUp(nl, uplink.index);
  });
  if (host.role === "node") setSysctlIn(hostPath, "net.ipv4.ip_forward", "1");
}
