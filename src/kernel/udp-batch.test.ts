// Batched receive and send on a real loopback socket: datagrams from several senders arrive in one
// call with their lengths and senders, replies reach each sender, an oversize datagram is flagged.

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { close } from "./libc.ts";
import { MSG_TRUNC, openUdpBatch } from "./udp-batch.ts";
import { udpSocketDescriptor } from "./udp-reuseport.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A free UDP port on loopback (asked of the kernel, then released for our own descriptor). */
async function freePort(): Promise<number> {
  const probe = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => probe.bind(0, "127.0.0.1", () => resolve()));
  const port = probe.address().port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe("udp batch", () => {
  const clients: dgram.Socket[] = [];
  let fd = -1;
  let batch: ReturnType<typeof openUdpBatch>;
  after(() => {
    batch?.close();
    if (fd >= 0) close(fd);
    for (const c of clients) c.close();
  });

  it("receives from several senders in one call and answers each", async () => {
    const port = await freePort();
    fd = udpSocketDescriptor("127.0.0.1", port, false);
    batch = openUdpBatch(fd, { slots: 8, receiveSize: 64, sendSize: 128 });
    assert.ok(batch, "available on this platform");
    const replies = new Map<number, string[]>();
    for (let c = 0; c < 3; c++) {
      const client = dgram.createSocket("udp4");
      clients.push(client);
      await new Promise<void>((resolve) => client.bind(0, "127.0.0.1", () => resolve()));
      replies.set(c, []);
      client.on("message", (m) => replies.get(c)?.push(m.toString()));
      client.send(`q${c}a`, port, "127.0.0.1");
      client.send(`q${c}b`, port, "127.0.0.1");
    }
    clients[0]?.send("x".repeat(100), port, "127.0.0.1");
    await sleep(100);
    const n = batch.receive();
    assert.equal(n, 7);
    let out = 0;
    let truncated = 0;
    for (let i = 0; i < n; i++) {
      if ((batch.receivedFlags(i) & MSG_TRUNC) !== 0) {
        truncated++;
        assert.equal(batch.receivedLength(i), 64, "what fits in the slot, with MSG_TRUNC set");
        continue;
      }
      const at = batch.receiveOffset(i);
      const text = Buffer.from(batch.bytes.subarray(at, at + batch.receivedLength(i))).toString();
      assert.equal(batch.sender(i).address, "127.0.0.1");
      const reply = Buffer.from(`re:${text}`);
      batch.bytes.set(reply, batch.sendOffset(out));
      batch.setReply(out++, i, reply.length);
    }
    assert.equal(truncated, 1);
    assert.equal(batch.send(out), 6);
    assert.equal(batch.receive(), 0, "nothing left: no blocking either");
    await sleep(100);
    for (let c = 0; c < 3; c++) assert.deepEqual(replies.get(c)?.sort(), [`re:q${c}a`, `re:q${c}b`]);
  });

  it("answers a sender given as text (a datagram that came through dgram), IPv4 only", async () => {
    assert.ok(batch);
    const client = clients[1] as dgram.Socket;
    const got: string[] = [];
    client.on("message", (m) => got.push(m.toString()));
    const reply = Buffer.from("by-address");
    batch.bytes.set(reply, batch.sendOffset(0));
    for (const bad of ["::1", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1..2.3", "1.2.3.4 ", "1234.0.0.1"]) {
      assert.equal(batch.setReplyToIPv4(0, bad, 9, reply.length), false, bad);
    }
    assert.equal(batch.setReplyToIPv4(0, "127.0.0.1", client.address().port, reply.length), true);
    assert.equal(batch.send(1), 1);
    await sleep(100);
    assert.ok(got.includes("by-address"), `got ${JSON.stringify(got)}`);
  });
});
