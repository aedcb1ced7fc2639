// Deleting conntrack entries, for the service proxy's stale-UDP clean-up (issue 8; kube-proxy's
// pkg/proxy/conntrack/cleanup.go does the same through netlink). This spawns Debian's `conntrack`
// tool (package `conntrack`, conntrack-tools 1.4.7) rather than writing IPCTNL_MSG_CT_DELETE with a
// filter over our own netlink socket: deletions happen only when an endpoint goes away, so a
// process start (~2 ms) per flow set is acceptable, and the tool's filter handling is proven.
// Runs in the caller's network namespace, or inside `netnsPath` through nsenter.

import { execFile } from "node:child_process";

export interface UdpFlowFilter {
  /** Original destination address (a ClusterIP, external or LoadBalancer IP); undefined: any (a NodePort). */
  originalDst?: string;
  /** Original destination port. */
  originalPort: number;
  /** The reply's source: the endpoint the flow was DNATed to; undefined: every flow of the frontend. */
  replySrc?: string;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function checkIpv4(field: string, value: string): void {
  const m = IPV4.exec(value);
  if (!m || m.slice(1).some((octet) => Number(octet) > 255)) throw new Error(`${field}: ${JSON.stringify(value)} is not an IPv4 address`);
}

/** The `conntrack -D` arguments that select the UDP flows `filter` names. */
export function conntrackDeleteArgs(filter: UdpFlowFilter): string[] {
  if (!Number.isInteger(filter.originalPort) || filter.originalPort < 1 || filter.originalPort > 65535) {
    throw new Error(`originalPort: ${filter.originalPort} is not a port (1-65535)`);
  }
  const args = ["-D", "-f", "ipv4", "-p", "udp", "--orig-port-dst", String(filter.originalPort)];
  if (filter.originalDst !== undefined) {
    checkIpv4("originalDst", filter.originalDst);
    args.push("--orig-dst", filter.originalDst);
  }
  if (filter.replySrc !== undefined) {
    checkIpv4("replySrc", filter.replySrc);
    args.push("--reply-src", filter.replySrc);
  }
  return args;
}

/**
 * Deletes the UDP conntrack entries matching `filter`; resolves to how many were deleted. Finding
 * none is not an error (the tool exits 1 then, saying "0 flow entries have been deleted").
 */
export function deleteUdpFlows(filter: UdpFlowFilter, netnsPath?: string): Promise<number> {
  const args = conntrackDeleteArgs(filter);
  const [command, argv] = netnsPath === undefined ? ["conntrack", args] : ["nsenter", [`--net=${netnsPath}`, "conntrack", ...args]];
  return new Promise((resolve, reject) => {
    execFile(command, argv, { encoding: "utf8", timeout: 10_000 }, (error, _stdout, stderr) => {
      const counted = /(\d+) flow entries have been deleted/.exec(stderr);
      if (counted) {
        resolve(Number(counted[1]));
        return;
      }
      reject(new Error(`conntrack ${args.join(" ")}: ${error ? error.message : ""} ${stderr.trim()}`.trim()));
    });
  });
}

/** A UDP conntrack entry: where its first packet was sent, and who answers (the DNAT target, or the same address when not NATed). */
export interface UdpFlow {
  originalDst: string;
  originalPort: number;
  replySrc: string;
}

/**
 * Parses `conntrack -L -f ipv4 -p udp` output (conntrack-tools 1.4.7): one entry per line, the
 * original tuple's `src= dst= sport= dport=` first and the reply tuple's after them.
 */
export function parseUdpFlows(text: string): UdpFlow[] {
  const flows: UdpFlow[] = [];
  for (const line of text.split("\n")) {
    if (!/^udp\s/.test(line)) continue;
    const dst: string[] = [];
    const src: string[] = [];
    const dport: string[] = [];
    for (const field of line.split(/\s+/)) {
      const eq = field.indexOf("=");
      if (eq < 0) continue;
      const [key, value] = [field.slice(0, eq), field.slice(eq + 1)];
      if (key === "dst") dst.push(value);
      else if (key === "src") src.push(value);
      else if (key === "dport") dport.push(value);
    }
    const [originalDst, replySrc, port] = [dst[0], src[1], Number(dport[0])];
    if (originalDst === undefined || replySrc === undefined || !Number.isInteger(port)) continue;
    flows.push({ originalDst, originalPort: port, replySrc });
  }
  return flows;
}

/** Every IPv4 UDP conntrack entry of the caller's network namespace (or of `netnsPath`). */
export function listUdpFlows(netnsPath?: string): Promise<UdpFlow[]> {
  const args = ["-L", "-f", "ipv4", "-p", "udp"];
  const [command, argv] = netnsPath === undefined ? ["conntrack", args] : ["nsenter", [`--net=${netnsPath}`, "conntrack", ...args]];
  return new Promise((resolve, reject) => {
    execFile(command, argv, { encoding: "utf8", timeout: 30_000, maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`conntrack ${args.join(" ")}: ${error.message} ${stderr.trim()}`.trim()));
      else resolve(parseUdpFlows(stdout));
    });
  });
}
