// The host end of a pod's veth is named from its attachment, not at random: DEL, GC and a
// retried ADD can then find it without prevResult and without entering the pod's namespace,
// which may already be gone.
//
// The digest is FNV-1a (64-bit), not SHA-256: loading node:crypto costs the compiled plugin
// about 10 ms of start-up per call, and a name needs spread, not secrecy.

export const HOST_VETH_PREFIX = "pn";

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;

export function fnv1a64(text: string): bigint {
  let hash = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(text)) {
    hash = ((hash ^ BigInt(byte)) * FNV_PRIME) & MASK64;
  }
  return hash;
}

/** 14 characters: "pn" + 12 hex digits of the attachment's digest, inside IFNAMSIZ (15). */
export function hostVethName(containerId: string, ifname: string): string {
  return HOST_VETH_PREFIX + fnv1a64(`${containerId}/${ifname}`).toString(16).padStart(16, "0").slice(0, 12);
}

export function isHostVethName(name: string): boolean {
  return name.length === 14 && name.startsWith(HOST_VETH_PREFIX) && /^[0-9a-f]{12}$/.test(name.slice(2));
}

/** A stable, locally administered unicast MAC derived from a name. */
export function stableMac(name: string): string {
  const digest = fnv1a64(name).toString(16).padStart(16, "0");
  const octets = ["02", ...[0, 2, 4, 6, 8].map((i) => digest.slice(i, i + 2))];
  return octets.join(":");
}
