// Kernel parameters through /proc/sys.
//
// /proc/sys/net/* shows the network namespace of the thread that opens the file, at open
// time. To read or set a namespace's sysctl, call these inside `withNetns(path, …)`:
//
//   withNetns("/run/netns/pod", () => setSysctl("net.ipv6.conf.all.disable_ipv6", "0"));
//
// Never use `ip netns exec`-style remounts of /proc or /sys for this; the open is enough.
import { readFileSync, writeFileSync } from "node:fs";
import { withNetns } from "./netns.ts";

/** Accepts "net.ipv4.ip_forward" or "net/ipv4/ip_forward"; slash form is needed when a name part contains a dot (e.g. a VLAN device "eth0.100"). */
export function sysctlPath(key: string): string {
  const relative = key.includes("/") ? key.replace(/^\/+/, "") : key.replaceAll(".", "/");
  if (relative.split("/").some((part) => part === ".." || part === "")) throw new Error(`invalid sysctl key: ${key}`);
  return `/proc/sys/${relative}`;
}

export function setSysctl(key: string, value: string): void {
  writeFileSync(sysctlPath(key), value);
}

/** The value with its trailing newline removed. */
export function getSysctl(key: string): string {
  return readFileSync(sysctlPath(key), "utf8").replace(/\n$/, "");
}

/** setSysctl inside the network namespace at nsPath (only /proc/sys/net/* differs per namespace). */
export function setSysctlIn(nsPath: string, key: string, value: string): void {
  withNetns(nsPath, () => setSysctl(key, value));
}

export function getSysctlIn(nsPath: string, key: string): string {
  return withNetns(nsPath, () => getSysctl(key));
}
