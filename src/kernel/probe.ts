// Sends one real probe packet from inside a namespace: a UDP datagram, a TCP SYN (a connect that is
// given up after a moment), or an ICMP echo request, each with identifiers the trace chose so that nft
// can pick exactly this packet out. Python's socket module does the sending: Node has no raw sockets
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
}

const SENDER = `
import socket, struct, sys, errno, json
proto, dst, sport, dport, ident, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        s.bind(("", sport)); s.sendto(b"p" * max(1, size - 28), (dst, dport))
    elif proto == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(("", sport)); s.settimeout(0.5)
        try: s.connect((dst, dport))
        except (socket.timeout, ConnectionRefusedError): pass
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        payload = b"p" * max(0, size - 28); hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, 1) + payload, (dst, 0))
    print(json.dumps({"outcome": "sent"}))
except OSError as e:
    print(json.dumps({"outcome": errno.errorcode.get(e.errno, str(e.errno))}))
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
