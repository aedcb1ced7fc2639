// The host end of a pod's veth is named from its attachment, not at random: DEL, GC and a
// retried ADD can then find it without prevResult and without entering the pod's namespace,
// which may already be gone.
import { createHash } from "node:crypto";

export const HOST_VETH_PREFIX = "pn";

/** 14 characters: "pn" + 12 hex digits of sha256(containerId/ifname), inside IFNAMSIZ (15). */
export function hostVethName(containerId: string, ifname: string): string {
  const digest = createHash("sha256").update(`${containerId}/${ifname}`).digest("hex");
  return HOST_VETH_PREFIX + digest.slice(0, 12);
}

export function isHostVethName(name: string): boolean {
  return name.length === 14 && name.startsWith(HOST_VETH_PREFIX) && /^[0-9a-f]{12}$/.test(name.slice(2));
}
