// Sends random and mutated DNS packets to a server and reports what came back, as JSON on stdout.
// Run inside the test's namespace: node --import tsx test/helpers/dns-fuzz.ts HOST PORT COUNT SEED
// Mutations: random bytes, truncation, bit flips, wrong section counts, compression pointers that
// point forward, at themselves or in a loop, over-long labels, many questions.

import dgram from "node:dgram";
import * as dnsPacket from "dns-packet";

const [host = "127.0.0.1", portText = "53", countText = "10000", seedText = "1"] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
let seed = Number(seedText) >>> 0 || 1;

/** xorshift32: reproducible from the seed printed by the test. */
function rand(n: number): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % n;
}

const names = ["web.default.svc.cluster.local", "_http._tcp.web.default.svc.cluster.local", "cluster.local", "x.y.z.svc.cluster.local", "www.example.test", "1.0.96.10.in-addr.arpa"];
const types = ["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "SOA", "NS", "MX", "ANY"] as const;

function validQuery(id: number): Buffer {
  return dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: names[rand(names.length)] as string, type: types[rand(types.length)] as "A" }],
    ...(rand(2) ? { additionals: [{ type: "OPT", name: ".", udpPayloadSize: 512 + rand(4000), extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] } : {}),
  });
}

function mutate(i: number): Buffer {
  const id = i & 0xffff;
  const kind = i % 9;
  const base = validQuery(id);
  switch (kind) {
    case 0: {
      const buf = Buffer.alloc(rand(600));
      for (let j = 0; j < buf.length; j++) buf[j] = rand(256);
      return buf;
    }
    case 1:
      return base.subarray(0, rand(base.length));
    case 2: {
      const buf = Buffer.from(base);
      for (let f = 0; f < 1 + rand(8); f++) {
        const at = rand(buf.length);
        buf[at] = (buf[at] as number) ^ (1 << rand(8));
      }
      buf.writeUInt16BE(id, 0);
      return buf;
    }
    case 3: {
      const buf = Buffer.from(base);
      buf.writeUInt16BE(rand(65536), 4 + 2 * rand(4));
      return buf;
    }
    case 4: {
      // A question whose name is a pointer to itself: a loop on the first jump.
      const buf = Buffer.alloc(18);
      buf.writeUInt16BE(id, 0);
      buf.writeUInt16BE(0x0100, 2);
      buf.writeUInt16BE(1, 4);
      buf.writeUInt16BE(0xc00c, 12);
      buf.writeUInt16BE(1, 14);
      buf.writeUInt16BE(1, 16);
      return buf;
    }
    case 5: {
      // Two labels pointing at each other: a -> b -> a.
      const buf = Buffer.alloc(24);
      buf.writeUInt16BE(id, 0);
      buf.writeUInt16BE(1, 4);
      buf[12] = 1;
      buf[13] = 0x61;
      buf.writeUInt16BE(0xc000 | 16, 14);
      buf[16] = 1;
      buf[17] = 0x62;
      buf.writeUInt16BE(0xc000 | 12, 18);
      buf.writeUInt16BE(1, 20);
      buf.writeUInt16BE(1, 22);
      return buf;
    }
    case 6: {
      // A pointer forward, past the end.
      const buf = Buffer.from(base);
      buf.writeUInt16BE(0xc000 | (buf.length + rand(100)), 12);
      return buf;
    }
    case 7: {
      // A label longer than 63 (the 0x40/0x80 length bits are reserved).
      const buf = Buffer.from(base);
      buf[12] = 64 + rand(128);
      return buf;
    }
    default: {
      // Many questions, or a real query followed by garbage.
      const buf = Buffer.concat([base, Buffer.alloc(rand(40), rand(256))]);
      if (rand(2)) buf.writeUInt16BE(2 + rand(50), 4);
      return buf;
    }
  }
}

const socket = dgram.createSocket("udp4");
const rcodes: Record<string, number> = {};
let replies = 0;
let badReplies = 0;
const badExamples: string[] = [];
const repliesByKind: Record<string, number> = {};
socket.on("message", (msg) => {
  replies++;
  if (msg.length >= 2) {
    const kind = String(msg.readUInt16BE(0) % 9);
    repliesByKind[kind] = (repliesByKind[kind] ?? 0) + 1;
  }
  try {
    const packet = dnsPacket.decode(msg) as dnsPacket.DecodedPacket & { rcode?: string; flag_qr?: boolean };
    if (!packet.flag_qr) throw new Error("reply without QR");
    const rcode = packet.rcode ?? "?";
    rcodes[rcode] = (rcodes[rcode] ?? 0) + 1;
  } catch (err) {
    badReplies++;
    if (badExamples.length < 5) badExamples.push(`${(err as Error).message}: ${msg.toString("hex").slice(0, 80)}`);
  }
});

const window = 20;
let sent = 0;
async function run(): Promise<void> {
  while (sent < count) {
    const batch = Math.min(window, count - sent);
    for (let k = 0; k < batch; k++) socket.send(mutate(sent++), port, host);
    // Pace so that a drop is the server's choice, not a full socket buffer.
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 1500));
  socket.close();
  process.stdout.write(`${JSON.stringify({ sent, replies, badReplies, rcodes, repliesByKind, badExamples })}\n`);
}
await run();
