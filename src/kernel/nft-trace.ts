// nftables tracing of one probe packet: a table of the trace's own marks the packet with
// `meta nftrace set 1`, `nft monitor` reports every chain, rule and verdict it meets, and the table is
// deleted again. The monitor's text is parsed here, so callers see typed events and never nft syntax.
//
// Why `nft monitor` (all events) rather than `nft monitor trace`: the monitor then also prints the
// trace table's own "add table" and "delete table" lines, which tell us, without guessing with sleeps,
// that it is subscribed before the probe is sent and that it has read everything up to the delete.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { argvInNamedNetns } from "./netns-exec.ts";
import { namedNetnsPath } from "./named-netns-path.ts";
import { runNftAsync } from "./nft.ts";

export type TraceProto = "tcp" | "udp" | "icmp";

/** What identifies the probe packet in every namespace it crosses (addresses may be rewritten by NAT; these are not). */
export interface ProbeMatch {
  proto: TraceProto;
  /** tcp/udp: the probe's own source port, chosen at random per trace; the only thing matched, as NAT may rewrite the rest. */
  sport?: number;
  dport?: number;
  /** icmp: the echo request's identifier. */
  icmpId?: number;
}

export interface TracedPacket {
  iif?: string;
  oif?: string;
  saddr?: string;
  daddr?: string;
  sport?: number;
  dport?: number;
  etherSaddr?: string;
  etherDaddr?: string;
  ttl?: number;
  /** The whole `packet:` text as nft printed it. */
  text: string;
}

export type NftTraceEvent =
  | { kind: "packet"; traceId: string; family: string; table: string; chain: string; packet: TracedPacket }
  | { kind: "rule"; traceId: string; family: string; table: string; chain: string; rule: string; handle?: number; verdict: string }
  | { kind: "verdict" | "policy"; traceId: string; family: string; table: string; chain: string; verdict: string };

const TRACE_LINE = /^trace id (\S+) (\S+) (\S+) (\S+) (packet:|rule|verdict|policy) ?(.*)$/;

/** One line of `nft monitor` output as a trace event, or undefined for any other line. */
export function parseNftTraceLine(line: string): NftTraceEvent | undefined {
  const m = TRACE_LINE.exec(line.trim());
  if (!m) return undefined;
  const [, traceId, family, table, chain, what, rest] = m as unknown as [string, string, string, string, string, string, string];
  const base = { traceId, family, table, chain };
  if (what === "packet:") return { kind: "packet", ...base, packet: parsePacket(rest.trim()) };
  if (what === "rule") {
    const verdictMatch = /\s*\(verdict ([^)]*)\)\s*$/.exec(rest);
    let rule = verdictMatch ? rest.slice(0, verdictMatch.index) : rest;
    let handle: number | undefined;
    const handleMatch = /\s*# handle (\d+)\s*$/.exec(rule);
    if (handleMatch) {
      handle = Number(handleMatch[1]);
      rule = rule.slice(0, handleMatch.index);
    }
    const event: NftTraceEvent = { kind: "rule", ...base, rule: rule.trim(), verdict: verdictMatch?.[1]?.trim() ?? "continue" };
    if (handle !== undefined) event.handle = handle;
    return event;
  }
  return { kind: what as "verdict" | "policy", ...base, verdict: rest.trim() };
}

function parsePacket(text: string): TracedPacket {
  const packet: TracedPacket = { text };
  const word = (re: RegExp): string | undefined => re.exec(text)?.[1];
  const iif = word(/(?:^|\s)iif "([^"]+)"/);
  if (iif !== undefined) packet.iif = iif;
  const oif = word(/(?:^|\s)oif "([^"]+)"/);
  if (oif !== undefined) packet.oif = oif;
  const saddr = word(/(?:^|\s)ip6? saddr (\S+)/);
  if (saddr !== undefined) packet.saddr = saddr;
  const daddr = word(/(?:^|\s)ip6? daddr (\S+)/);
  if (daddr !== undefined) packet.daddr = daddr;
  const sport = word(/(?:^|\s)(?:tcp|udp) sport (\d+)/);
  if (sport !== undefined) packet.sport = Number(sport);
  const dport = word(/(?:^|\s)(?:tcp|udp) dport (\d+)/);
  if (dport !== undefined) packet.dport = Number(dport);
  const es = word(/(?:^|\s)ether saddr (\S+)/);
  if (es !== undefined) packet.etherSaddr = es;
  const ed = word(/(?:^|\s)ether daddr (\S+)/);
  if (ed !== undefined) packet.etherDaddr = ed;
  const ttl = word(/(?:^|\s)ip ttl (\d+)/);
  if (ttl !== undefined) packet.ttl = Number(ttl);
  return packet;
}

/** The match expression for the probe, in nft syntax (built here: only src/kernel writes nft). */
export function probeMatchExpression(match: ProbeMatch): string {
  const port = (n: number | undefined, what: string): number => {
    if (n === undefined || !Number.isInteger(n) || n < 1 || n > 65535) throw new RangeError(`probe ${what} must be a port 1-65535, got ${n}`);
    return n;
  };
  if (match.proto === "icmp") {
    const id = match.icmpId;
    if (id === undefined || !Number.isInteger(id) || id < 0 || id > 65535) throw new RangeError(`probe icmpId must be 0-65535, got ${id}`);
    return `icmp type echo-request icmp id ${id}`;
  }
  // The source port alone: a DNAT (a Service's endpoint, a NodePort) rewrites the destination port on the way,
  // and the trace must still see the packet after it.
  return `${match.proto} sport ${port(match.sport, "sport")}`;
}

const TABLE_NAME = /^pntrace_[a-z0-9_]{1,40}$/;

/** The trace table's script: prerouting and output in inet, prerouting in bridge (bridged frames never reach inet hooks). */
export function traceTableScript(table: string, match: ProbeMatch): string {
  if (!TABLE_NAME.test(table)) throw new RangeError(`trace table name must match ${TABLE_NAME}, got "${table}"`);
  const m = probeMatchExpression(match);
  // Priority -350 runs before conntrack (-200) and every NAT or filter chain, so the mark is set before anything decides.
  return [
    `table inet ${table} {`,
    `  chain pre { type filter hook prerouting priority -350; policy accept; ${m} meta nftrace set 1; }`,
    `  chain out { type filter hook output priority -350; policy accept; ${m} meta nftrace set 1; }`,
    `}`,
    `table bridge ${table} {`,
    `  chain pre { type filter hook prerouting priority -350; policy accept; ${m} meta nftrace set 1; }`,
    `}`,
  ].join("\n");
}

export interface NftTraceSession {
  netns: string;
  table: string;
  /** Delete the trace table, wait until the monitor has seen the delete, stop it; the events in order. */
  stop(): Promise<NftTraceEvent[]>;
}

const MONITOR_TIMEOUT_MS = 10_000;

/**
 * Starts a monitor in the named namespace and installs the trace table once it listens. On any
 * failure the table is removed and the monitor stopped before the error is thrown.
 */
export async function startNftTrace(netns: string, table: string, match: ProbeMatch): Promise<NftTraceSession> {
  const script = traceTableScript(table, match);
  const nsPath = namedNetnsPath(netns);
  const argv = argvInNamedNetns(netns, ["nft", "-a", "monitor"]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let buffered = "";
  let stderr = "";
  const waiters: { test: (line: string) => boolean; resolve: () => void }[] = [];
  child.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    for (const line of parts) {
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const waitFor = (what: string, test: (line: string) => boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      if (lines.some(test)) return resolve();
      const timer = setTimeout(() => reject(new Error(`nft monitor in ${netns}: no "${what}" within ${MONITOR_TIMEOUT_MS} ms${stderr ? `: ${stderr.trim()}` : ""}`)), MONITOR_TIMEOUT_MS);
      waiters.push({ test, resolve: () => (clearTimeout(timer), resolve()) });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`nft monitor in ${netns} exited${stderr ? `: ${stderr.trim()}` : ""}`));
      });
    });
  const stopMonitor = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  const removeTable = async (): Promise<void> => {
    await runNftAsync(`delete table inet ${table}\ndelete table bridge ${table}`, nsPath);
  };

  // The monitor cannot say it is listening; a table it sees being added proves it. If it missed the add
  // (it was still starting), the table goes and comes again, a few times.
  let installed = false;
  try {
    for (let attempt = 1; ; attempt++) {
      const seen = waitFor("add table", (l) => l.startsWith(`add table inet ${table}`));
      await runNftAsync(script, nsPath);
      installed = true;
      const ok = await Promise.race([seen.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 300 * attempt))]);
      seen.catch(() => {});
      if (ok) break;
      await removeTable();
      installed = false;
      if (attempt >= 5) throw new Error(`nft monitor in ${netns} did not report the trace table being added${stderr ? `: ${stderr.trim()}` : ""}`);
    }
  } catch (error) {
    if (installed) await removeTable().catch(() => {});
    await stopMonitor();
    throw error;
  }
  return {
    netns,
    table,
    async stop(): Promise<NftTraceEvent[]> {
      try {
        const deleted = waitFor("delete table", (l) => l.startsWith(`delete table bridge ${table}`));
        await removeTable();
        await deleted;
      } finally {
        await stopMonitor();
      }
      return lines.map(parseNftTraceLine).filter((e): e is NftTraceEvent => e !== undefined);
    },
  };
}

// Reading what the probe's trace names, for the walk (synchronous, like its other kernel reads): the rules
// of one chain, and one element of a set. Object names are passed as separate arguments, never through a shell.

function nftSync(netns: string, args: string[]): { ok: boolean; stdout: string; stderr: string } {
  const argv = ["nsenter", `--net=${namedNetnsPath(netns)}`, "nft", ...args];
  const run = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 10_000 });
  if (run.error) throw new Error(`nft ${args.join(" ")} in ${netns}: ${run.error.message}`);
  return { ok: run.status === 0, stdout: run.stdout, stderr: run.stderr };
}

const NAME = /^[A-Za-z0-9_./-]{1,256}$/;
const FAMILIES = new Set(["ip", "ip6", "inet", "bridge", "arp", "netdev"]);
function checkNames(family: string, ...names: string[]): void {
  if (!FAMILIES.has(family)) throw new RangeError(`nft family must be one of ${[...FAMILIES].join(", ")}, got "${family}"`);
  for (const n of names) if (!NAME.test(n)) throw new RangeError(`nft object name "${n}" has characters nft does not take here`);
}

/** The rules of one chain as `nft list chain` prints them (handles dropped), or undefined when the chain is gone. */
export function listChainRules(netns: string, family: string, table: string, chain: string): string[] | undefined {
  checkNames(family, table, chain);
  const run = nftSync(netns, ["list", "chain", family, table, chain]);
  if (!run.ok) return undefined;
  const lines = run.stdout.split("\n").map((l) => l.trim());
  const start = lines.findIndex((l) => l.startsWith("chain "));
  return lines.slice(start + 1).filter((l) => l !== "" && l !== "}" && !l.startsWith("type "));
}

/** One IPv4 element of a set: present or not, and for a timeout set when it expires ("2h59m55s568ms"). */
export function getSetElement(netns: string, family: string, table: string, set: string, address: string): { present: boolean; expires?: string } {
  checkNames(family, table, set);
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) throw new RangeError(`set element must be an IPv4 address, got "${address}"`);
  const run = nftSync(netns, ["get", "element", family, table, set, `{ ${address} }`]);
  if (!run.ok) {
    if (/No such file or directory/.test(run.stderr)) return { present: false };
    throw new Error(`nft get element ${family} ${table} ${set} { ${address} } in ${netns}: ${run.stderr.trim()}`);
  }
  const expires = new RegExp(`${address.replaceAll(".", "\\.")}(?: timeout \\S+)? expires (\\S+?)[,\\s}]`).exec(run.stdout)?.[1];
  return { present: true, ...(expires ? { expires } : {}) };
}
