// Builds the lab's underlay: a switch (a bridge in its own namespace) and hosts plugged into it,
// each host a namespace with one veth uplink; for the routed topology, a second switch and a router. Every kernel change goes through src/kernel, inside
// namespaces the lab records first; the root namespace is never touched.

import { addAddress } from "../kernel/address.ts";
import { ensureBridge, getLink, setLinkUp } from "../kernel/link.ts";
import { createNamedNetns, namedNetnsPath } from "../kernel/named-netns.ts";
import { NetlinkSocket } from "../kernel/netlink/socket.ts";
import { addRoute } from "../kernel/route.ts";
import { setSysctlIn } from "../kernel/sysctl.ts";
import { createVethWithPeerIn } from "../kernel/veth.ts";
import type { LabState } from "./lab-state.ts";
import { UNDERLAY_PREFIX_LENGTH, type LabPlan, type SwitchPlan, type UnderlayHost } from "./topology.ts";

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

/** Every switch of the plan: one, or two for the routed topology. */
export async function createSwitch(state: LabState, plan: LabPlan): Promise<void> {
  for (const sw of plan.switches) {
    await createNetns(state, sw.netns);
    inNamespace(sw.netns, (nl) => ensureBridge(nl, { name: sw.bridge }));
  }
}

/** The routed topology's router: an uplink into each switch, forwarding between them; no pod routes. */
export async function createRouter(state: LabState, plan: LabPlan): Promise<void> {
  const router = plan.router;
  if (!router) return;
  const routerPath = await createNetns(state, router.netns);
  for (const uplink of router.uplinks) {
    plug(plan.switches[uplink.switchIndex]!, uplink.switchPort, uplink.name, routerPath);
    inNamespace(router.netns, (nl) => {
      const link = getLink(nl, uplink.name);
      if (!link) throw new Error(`${router.netns}: uplink ${uplink.name} missing right after it was created`);
      addAddress(nl, link.index, `${uplink.ip}/${UNDERLAY_PREFIX_LENGTH}`);
      setLinkUp(nl, link.index);
    });
  }
  setSysctlIn(routerPath, "net.ipv4.ip_forward", "1");
}

function plug(sw: SwitchPlan, switchPort: string, uplink: string, hostPath: string): void {
  inNamespace(sw.netns, (nl) => {
    const bridge = getLink(nl, sw.bridge);
    if (!bridge) throw new Error(`switch ${sw.netns} has no bridge ${sw.bridge}`);
    // createVethPair brings the switch end up with its master set; the peer starts down.
    createVethWithPeerIn(nl, { name: switchPort, masterIndex: bridge.index, peer: { name: uplink, nsPath: hostPath } });
  });
}

/** A namespace with an uplink into the switch and its underlay address; nodes also forward IPv4. */
export async function createUnderlayHost(state: LabState, plan: LabPlan, host: UnderlayHost): Promise<void> {
  const hostPath = await createNetns(state, host.netns);
  plug(plan.switches[host.switchIndex]!, host.switchPort, host.uplink, hostPath);
  inNamespace(host.netns, (nl) => {
    const uplink = getLink(nl, host.uplink);
    if (!uplink) throw new Error(`${host.netns}: uplink ${host.uplink} missing right after it was created`);
    addAddress(nl, uplink.index, `${host.ip}/${UNDERLAY_PREFIX_LENGTH}`);
    setLinkUp(nl, uplink.index);
    // Routed topology: everything off the host's own subnet goes to the router.
    if (host.gateway) addRoute(nl, { dst: "0.0.0.0/0", gw: host.gateway, oifIndex: uplink.index });
  });
  if (host.role === "node") setSysctlIn(hostPath, "net.ipv4.ip_forward", "1");
}
