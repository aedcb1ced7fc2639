// Deleting conntrack entries, for the service proxy's stale-UDP clean-up (issue 8; kube-proxy's
// pkg/proxy/conntrack/cleanup.go does the same through netlink). This spawns Debian's `conntrack`
// tool (package `conntrack`, conntrack-tools 1.4.7) rather than writing IPCTNL_MSG_CT_DELETE with a
// filter over our own netlink socket: deletions happen only when an endpoint goes away, so a
// process start (~2 ms) per flow set is acceptable, and the tool's filter handling is proven.
// Runs in the caller's network namespace, or inside `netnsPath` through nsenter.

import { execFile, spawnSync } from "node:child_process";

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

// Reading conntrack entries, for `podnet trace`: the flow a probe packet belongs to, when conntrack
// already knows it, decides its NAT (the nat hooks see only a flow's first packet). Read with the same
// tool (`conntrack -L` with filters) as the deletions above; a trace reads a handful of namespaces once.

export interface ConntrackTuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
}

export interface ConntrackEntry {
  /** "tcp", "udp", "icmp", … */
  proto: string;
  /** Seconds until the entry expires. */
  timeout: number;
  /** TCP's state ("ESTABLISHED", "TIME_WAIT", …); absent for other protocols. */
  state?: string;
  /** The tuple of the flow's first packet, as it arrived (before any NAT). */
  original: ConntrackTuple;
  /** The tuple a reply must carry: its source is where a DNAT sent the flow. */
  reply: ConntrackTuple;
  /** "ASSURED", "UNREPLIED". */
  flags: string[];
  mark?: number;
  /** The entry as `conntrack -L` printed it. */
  text: string;
}

export interface ConntrackFilter {
  proto: "tcp" | "udp";
  originalSrc?: string;
  originalSport?: number;
  originalDst?: string;
  originalDport?: number;
}

/** The `conntrack -L` arguments that list the IPv4 entries `filter` names. */
export function conntrackListArgs(filter: ConntrackFilter): string[] {
  if (filter.proto !== "tcp" && filter.proto !== "udp") throw new Error(`proto: ${JSON.stringify(filter.proto)} is not tcp or udp`);
  const args = ["-L", "-f", "ipv4", "-p", filter.proto];
  const port = (field: string, n: number | undefined, flag: string): void => {
    if (n === undefined) return;
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${field}: ${n} is not a port (1-65535)`);
    args.push(flag, String(n));
  };
  if (filter.originalSrc !== undefined) {
    checkIpv4("originalSrc", filter.originalSrc);
    args.push("--orig-src", filter.originalSrc);
  }
  if (filter.originalDst !== undefined) {
    checkIpv4("originalDst", filter.originalDst);
    args.push("--orig-dst", filter.originalDst);
  }
  port("originalSport", filter.originalSport, "--orig-port-src");
  port("originalDport", filter.originalDport, "--orig-port-dst");
  return args;
}

/** One line of `conntrack -L` (its default text output) as an entry, or undefined for any other line. */
export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const words = line.trim().split(/\s+/);
  if (words.length < 4 || !/^\d+$/.test(words[1] ?? "") || !/^\d+$/.test(words[2] ?? "")) return undefined;
  const entry: ConntrackEntry = { proto: words[0]!, timeout: Number(words[2]), original: { src: "", dst: "" }, reply: { src: "", dst: "" }, flags: [], text: line.trim() };
  const tuples: ConntrackTuple[] = [];
  let current: ConntrackTuple | undefined;
  for (const word of words.slice(3)) {
    const flag = /^\[(\w+)\]$/.exec(word);
    if (flag) {
      entry.flags.push(flag[1]!);
      continue;
    }
    const pair = /^(\w+)=(.*)$/.exec(word);
    if (!pair) {
      if (tuples.length === 0 && !current) entry.state = word;
      continue;
    }
    const [, key, value] = pair as unknown as [string, string, string];
    if (key === "src") {
      current = { src: value, dst: "" };
      tuples.push(current);
    } else if (key === "dst" && current) current.dst = value;
    else if (key === "sport" && current) current.sport = Number(value);
    else if (key === "dport" && current) current.dport = Number(value);
    else if (key === "mark") entry.mark = Number(value);
  }
  if (tuples.length < 2) return undefined;
  entry.original = tuples[0]!;
  entry.reply = tuples[1]!;
  return entry;
}

/**
 * The IPv4 conntrack entries matching `filter`, read synchronously (a trace's walk is synchronous),
 * in the caller's namespace or inside `netnsPath`. A namespace where conntrack never ran has none.
 */
export function listFlows(filter: ConntrackFilter, netnsPath?: string): ConntrackEntry[] {
  const args = conntrackListArgs(filter);
  const [command, argv] = netnsPath === undefined ? ["conntrack", args] : ["nsenter", [`--net=${netnsPath}`, "conntrack", ...args]];
  const run = spawnSync(command, argv, { encoding: "utf8", timeout: 10_000 });
  if (run.error) throw new Error(`conntrack ${args.join(" ")}: ${run.error.message}`);
  if (run.status !== 0) throw new Error(`conntrack ${args.join(" ")} exited ${run.status}: ${run.stderr.trim()}`);
  return run.stdout.split("\n").map(parseConntrackLine).filter((e): e is ConntrackEntry => e !== undefined);
}

/** A UDP conntrack entry: where its first packet was sent, and who answers (the DNAT target, or the same address when not NATed). */
export interface UdpFlow {
  originalDst: string;
  originalPort: number;
  replySrc: string;
}

/**
 * The UDP entries of `conntrack -L -f ipv4 -p udp` output (conntrack-tools 1.4.7), read with the same
 * line parser as listFlows.
 */
export function parseUdpFlows(text: string): UdpFlow[] {
  const flows: UdpFlow[] = [];
  for (const line of text.split("\n")) {
    const entry = parseConntrackLine(line);
    if (entry?.proto !== "udp" || entry.original.dport === undefined) continue;
    flows.push({ originalDst: entry.original.dst, originalPort: entry.original.dport, replySrc: entry.reply.src });
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
