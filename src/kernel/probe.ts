// Sends one real probe packet from inside a namespace: a UDP datagram, a TCP SYN (a connect that is
// given up after a moment), or an ICMP echo request, each with identifiers the trace chose so that nft
// can pick exactly this packet out. When the source port is taken (the trace follows a client's existing
// flow), the packet is written on a raw socket instead, with that flow's ports. Python's socket module does the sending: Node has no raw sockets
// and cannot bind a socket inside another namespace without moving its main thread there.

import { spawn } from "node:child_process";
import { argvInNamedNetns } from "./netns-exec.ts";
import type { ProbeMatch } from "./nft-trace.ts";

export interface ProbeSpec extends ProbeMatch {
  dst: string;
  /** Total IP packet size in bytes; sent with DF set so that a too-small MTU shows. */
  size: number;
}

export interface ProbeResult {
  /** The sender's view: "sent", or the error the kernel gave the socket (EMSGSIZE, ENETUNREACH, ...). */
  outcome: string;
  /**
   * "socket": sent from a socket bound to the probe's port; "raw": another socket (a client's flow) held
   * that port, so the packet was written whole on a raw socket, as a packet of that flow.
   */
  via: "socket" | "raw";
}

const SENDER = `
import socket, struct, sys, errno, json
proto, dst, sport, dport, ident, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def raw(ipproto, segment):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, ipproto); s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    s.sendto(segment, (dst, 0))
def source():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect((dst, dport or 9)); return u.getsockname()[0]
via = "socket"
try:
    if proto == "udp":
        payload = b"p" * max(1, size - 28)
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            s.bind(("", sport)); s.sendto(payload, (dst, dport))
        except OSError as e:
            if e.errno != errno.EADDRINUSE: raise
            # Another socket (a client's flow) holds the port: the datagram is written whole, as that flow's.
            via = "raw"; raw(socket.IPPROTO_UDP, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
    elif proto == "tcp":
        try:
            # SO_REUSEADDR: a port whose last connection (an earlier trace's) lingers in TIME_WAIT is taken again.
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", sport)); s.settimeout(0.5)
            try: s.connect((dst, dport))
            except (socket.timeout, ConnectionRefusedError): pass
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL): raise
            # A connection holds the port: a SYN of our own on its tuple. conntrack ignores a SYN on an
            # established flow for its state but still NATs it as that flow; the peer answers a challenge ACK.
            via = "raw"; hdr = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 5 << 4, 0x02, 64240, 0, 0)
            pseudo = socket.inet_aton(source()) + socket.inet_aton(dst) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(hdr))
            raw(socket.IPPROTO_TCP, hdr[:16] + struct.pack("!H", csum(pseudo + hdr)) + hdr[18:])
    else:
        payload = b"p" * max(0, size - 28); hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        raw(socket.IPPROTO_ICMP, struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, 1) + payload)
    print(json.dumps({"outcome": "sent", "via": via}))
except OSError as e:
    print(json.dumps({"outcome": errno.errorcode.get(e.errno, str(e.errno)), "via": via}))
`;

export function sendProbe(netns: string, spec: ProbeSpec): Promise<ProbeResult> {
  const argv = argvInNamedNetns(netns, ["python3", "-c", SENDER, spec.proto, spec.dst, String(spec.sport ?? 0), String(spec.dport ?? 0), String(spec.icmpId ?? 0), String(spec.size)]);
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
    child.on("error", (e) => reject(new Error(`probe in ${netns}: could not run python3: ${e.message}`)));
    child.on("close", (code) => {
      try {
        resolve(JSON.parse(out.trim()) as ProbeResult);
      } catch {
        reject(new Error(`probe in ${netns} exited ${code}: ${(err || out).trim()}`));
      }
    });
  });
}
