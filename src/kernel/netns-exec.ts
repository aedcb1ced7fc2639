// Running a program inside a network namespace, as an argv prefix for spawn. Pure: it imports
// nothing that loads FFI, so the runtime and the process supervisor can use it cheaply.
//
// Two ways, for two kinds of namespace path (iproute2 takes only names under /run/netns):
// - a named namespace: `ip netns exec NAME`, which also gives the program a private mount namespace
//   with /sys remounted for that netns and the files of /etc/netns/NAME/ bind-mounted over /etc
//   (a per-namespace resolv.conf, for example). It execs in place, so the PID spawn returns is the
//   program's own.
// - any namespace file (/run/netns/NAME or /proc/PID/ns/net): `nsenter --net=PATH`, which only
//   switches the network namespace and also execs in place.

import { namedNetnsPath } from "./named-netns-path.ts";

/** argv that runs `argv` inside the named namespace /run/netns/NAME. */
export function argvInNamedNetns(name: string, argv: readonly string[]): string[] {
  namedNetnsPath(name);
  return ["ip", "netns", "exec", name, ...argv];
}

/** argv that runs `argv` inside the namespace at `nsPath`. */
export function argvInNetnsPath(nsPath: string, argv: readonly string[]): string[] {
  if (!nsPath.startsWith("/")) throw new Error(`network namespace path must be absolute, got "${nsPath}"`);
  return ["nsenter", `--net=${nsPath}`, ...argv];
}
