// Builds the lab's underlay: a switch (a bridge in its own namespace) and hosts plugged into it,
// each host a namespace with one veth uplink. Only `ip` inside namespaces the lab records first;
// the root namespace is never touched.

import { inNetns, runChecked } from "./command.ts";
import type { LabState } from "./lab-state.ts";
import { UNDERLAY_PREFIX_LENGTH, type LabPlan, type UnderlayHost } from "./topology.ts";

/** Create a namespace after recording it, so a crash right after creation still gets it cleaned up. */
export async function createNetns(state: LabState, name: string): Promise<void> {
  state.recordNamespace(name);
  await runChecked(["ip", "netns", "add", name]);
  await runChecked(["ip", "-n", name, "link", "set", "lo", "up"]);
}

export async function deleteNetns(name: string): Promise<void> {
  await runChecked(["ip", "netns", "delete", name]);
}

export async function listNetns(): Promise<string[]> {
  const out = await runChecked(["ip", "netns", "list"]);
  return out
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name.length > 0);
}

export async function createSwitch(state: LabState, plan: LabPlan): Promise<void> {
  await createNetns(state, plan.switchNetns);
  await ipBatch(plan.switchNetns, [`link add ${plan.switchBridge} type bridge`, `link set ${plan.switchBridge} up`]);
}

/** A namespace with an uplink into the switch and its underlay address; nodes also forward IPv4. */
export async function createUnderlayHost(state: LabState, plan: LabPlan, host: UnderlayHost): Promise<void> {
  await createNetns(state, host.netns);
  // The peer is created directly inside the host namespace: moving a link afterwards costs ~15 ms.
  await ipBatch(plan.switchNetns, [
    `link add ${host.switchPort} type veth peer name ${host.uplink} netns ${host.netns}`,
    `link set ${host.switchPort} master ${plan.switchBridge} up`,
  ]);
  await ipBatch(host.netns, [`addr add ${host.ip}/${UNDERLAY_PREFIX_LENGTH} dev ${host.uplink}`, `link set ${host.uplink} up`]);
  if (host.role === "node") await runChecked(inNetns(host.netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]));
}

/** Run several `ip` commands in one process inside netns. */
export async function ipBatch(netns: string, commands: readonly string[]): Promise<void> {
  await runChecked(["ip", "-n", netns, "-batch", "-"], { input: commands.join("\n") + "\n" });
}
