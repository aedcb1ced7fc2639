// The server in-process on loopback, against tiny dns-packet upstreams: readiness, the forward cache,
// search-path answering, the loop guard, malformed input. Real clients are in test/dns-server.test.ts.

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import * as dnsPacket from "dns-packet";
import { MemoryObjectStore } from "./memory-store.ts";
import { clusterIPService, namespace } from "./fixtures.ts";
import { DnsServer } from "./server.ts";
import type { ObjectStore, ObjectWatchHandler } from "../datastore/objects.ts";

type Reply = dnsPacket.DecodedPacket & { rcode: string; flag_tc: boolean };

async function ask(port: number, name: string, type: dnsPacket.RecordType = "A"): Promise<Reply> {
  const socket = dgram.createSocket("udp4");
  try {
    const id = Math.floor(Math.random() * 65536);
    const reply = new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply for ${name}`)), 3000);
      socket.on("message", (msg) => {
        clearTimeout(timer);
        resolve(dnsPacket.decode(msg) as Reply);
      });
    });
    socket.send(dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] }), port, "127.0.0.1");
    return await reply;
  } finally {
    setTimeout(() => socket.close(), 0);
  }
}

/** A small upstream: names under example.test answer A 192.0.2.1 (TTL 60); others NXDOMAIN with an SOA. */
async function fakeUpstream(behaviour: "answer" | { forwardTo: number } = "answer"): Promise<{ port: number; queries: string[]; close(): void }> {
  const socket = dgram.createSocket("udp4");
  const queries: string[] = [];
  socket.on("message", (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    const question = q.questions?.[0];
    if (!question) return;
    queries.push(`${question.name} ${question.type}`);
    if (behaviour !== "answer") {
      // A resolver that forwards back to the server asking it: the loop.
      const out = dgram.createSocket("udp4");
      out.send(msg, behaviour.forwardTo, "127.0.0.1", () => setTimeout(() => out.close(), 500));
      return;
    }
    const known = question.name.toLowerCase().endsWith("example.test");
    socket.send(
      dnsPacket.encode({
        type: "response",
        id: q.id,
        flags: (known ? 0 : 3) | dnsPacket.RECURSION_AVAILABLE,
        questions: [question],
        answers: known && question.type === "A" ? [{ type: "A", name: question.name, ttl: 60, data: "192.0.2.1" }] : [],
        authorities: known ? [] : [{ type: "SOA", name: ".", ttl: 60, data: { mname: "a.root", rname: "x.root", serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 30 } }],
      }),
      rinfo.port,
      rinfo.address,
    );
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  return { port: socket.address().port, queries, close: () => socket.close() };
}

const servers: DnsServer[] = [];
const closers: (() => void)[] = [];
after(async () => {
  for (const s of servers) await s.stop();
  for (const c of closers) c();
});

async function startServer(store: ObjectStore, upstreamPort: number | undefined, extra: Partial<ConstructorParameters<typeof DnsServer>[0]> = {}): Promise<DnsServer> {
  const server = new DnsServer({ store, host: "127.0.0.1", port: 0, upstreams: upstreamPort ? [{ host: "127.0.0.1", port: upstreamPort }] : [], forwardTimeoutMs: 400, log: () => undefined, ...extra });
  servers.push(server);
  await server.start();
  return server;
}

async function clusterStore(): Promise<MemoryObjectStore> {
  const store = new MemoryObjectStore();
  await store.apply(namespace("default"), namespace("other"), clusterIPService("default", "web", ["10.96.0.20"]));
  return store;
}

describe("dns server", () => {
  it("answers SERVFAIL for cluster names until the first list, then the records", async () => {
    const store = await clusterStore();
    let release: () => void = () => undefined;
    const gated: ObjectStore = {
      ...store,
      get: store.get.bind(store),
      list: store.list.bind(store),
      claims: store.claims.bind(store),
      commit: store.commit.bind(store),
      watchObjects: async (kinds, handler: ObjectWatchHandler) => {
        await new Promise<void>((r) => (release = r));
        return store.watchObjects(kinds, handler);
      },
    };
    const server = await startServer(gated, undefined);
    assert.equal(server.ready, false);
    assert.equal((await ask(server.address.port, "web.default.svc.cluster.local")).rcode, "SERVFAIL");
    release();
    await server.whenSynced();
    const reply = await ask(server.address.port, "web.default.svc.cluster.local");
    assert.equal(reply.rcode, "NOERROR");
    assert.deepEqual(reply.answers?.map((a) => ("data" in a ? a.data : "")), ["10.96.0.20"]);
  });

  it("a new service resolves as soon as its event is applied", async () => {
    const store = await clusterStore();
    const server = await startServer(store, undefined);
    await server.whenSynced();
    assert.equal((await ask(server.address.port, "new.default.svc.cluster.local")).rcode, "NXDOMAIN");
    await store.apply(clusterIPService("default", "new", ["10.96.0.30"]));
    const reply = await ask(server.address.port, "new.default.svc.cluster.local");
    assert.deepEqual(reply.answers?.map((a) => ("data" in a ? a.data : "")), ["10.96.0.30"], "the cached NXDOMAIN was not served after the change");
  });

  it("keeps at most answerCacheEntries encoded answers, dropping the oldest, and answers right throughout", async () => {
    const store = await clusterStore();
    for (let i = 0; i < 60; i++) await store.apply(clusterIPService("default", `s${i}`, [`10.96.1.${i + 1}`]));
    const server = await startServer(store, undefined, { answerCacheEntries: 25 });
    await server.whenSynced();
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 60; i++) {
        const reply = await ask(server.address.port, `s${i}.default.svc.cluster.local`);
        assert.deepEqual(reply.answers?.map((a) => ("data" in a ? a.data : "")), [`10.96.1.${i + 1}`], `s${i}, round ${round}`);
        assert.ok(server.answerCacheSize <= 25, `${server.answerCacheSize} cached answers`);
      }
    }
    assert.equal(server.answerCacheSize, 25);
  });

  it("caches upstream answers and denials by their TTLs", async () => {
    const upstream = await fakeUpstream();
    closers.push(upstream.close);
    const server = await startServer(await clusterStore(), upstream.port);
    await server.whenSynced();
    for (let i = 0; i < 3; i++) assert.equal((await ask(server.address.port, "www.example.test")).answers?.length, 1);
    for (let i = 0; i < 3; i++) assert.equal((await ask(server.address.port, "nope.invalid")).rcode, "NXDOMAIN");
    const counted = (name: string) => upstream.queries.filter((q) => q.startsWith(name)).length;
    assert.equal(counted("www.example.test A"), 1);
    assert.equal(counted("nope.invalid A"), 1);
    const cached = await ask(server.address.port, "www.example.test");
    assert.ok(((cached.answers?.[0] as { ttl: number }).ttl ?? 0) <= 60);
  });

  it("search-path answering: one round trip for an external name's first search step, none for cluster names", async () => {
    const upstream = await fakeUpstream();
    closers.push(upstream.close);
    const server = await startServer(await clusterStore(), upstream.port);
    await server.whenSynced();
    const reply = await ask(server.address.port, "WWW.example.test.default.svc.cluster.local");
    assert.equal(reply.rcode, "NOERROR");
    assert.deepEqual(reply.answers?.map((a) => [a.type, a.name, "data" in a ? a.data : ""]), [
      ["CNAME", "WWW.example.test.default.svc.cluster.local", "WWW.example.test"],
      ["A", "WWW.example.test", "192.0.2.1"],
    ]);
    // Not a walk: the last label is a namespace (web.other could be a service further down the walk).
    assert.equal((await ask(server.address.port, "web.other.default.svc.cluster.local")).rcode, "NXDOMAIN");
    // The whole walk fails: the plain NXDOMAIN, and the client walks on.
    assert.equal((await ask(server.address.port, "nothing.invalid.default.svc.cluster.local")).rcode, "NXDOMAIN");
  });

  it("without search-path answering the first step is a plain NXDOMAIN", async () => {
    const upstream = await fakeUpstream();
    closers.push(upstream.close);
    const server = await startServer(await clusterStore(), upstream.port, { autopath: false });
    await server.whenSynced();
    assert.equal((await ask(server.address.port, "www.example.test.default.svc.cluster.local")).rcode, "NXDOMAIN");
    assert.deepEqual(upstream.queries.filter((q) => !q.includes("podnet-loop-probe")), []);
  });

  it("refuses to forward to its own address, and takes out an upstream that loops back (probe)", async () => {
    const looping = await fakeUpstream({ forwardTo: 0 });
    closers.push(looping.close);
    // Pick the server's port first, then point the looping upstream at it.
    const probeServer = new DnsServer({ store: await clusterStore(), host: "127.0.0.1", port: 0, upstreams: [], log: () => undefined });
    await probeServer.start();
    const port = probeServer.address.port;
    await probeServer.stop();
    const self = await startServer(await clusterStore(), undefined, { port, upstreams: [{ host: "127.0.0.1", port }] });
    assert.equal(self.forwarder.activeUpstreams.length, 0, "own address refused");
    const started = Date.now();
    assert.equal((await ask(port, "www.example.test")).rcode, "SERVFAIL");
    assert.ok(Date.now() - started < 300, "no upstream: SERVFAIL at once");
    await self.stop();

    const loopUpstream = await fakeUpstream({ forwardTo: port });
    closers.push(loopUpstream.close);
    const server = await startServer(await clusterStore(), loopUpstream.port, { port });
    const deadline = Date.now() + 3000;
    while (server.forwarder.activeUpstreams.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(server.forwarder.activeUpstreams.length, 0, "the probe came back and the upstream is out");
    assert.match([...server.forwarder.disabledReasons.values()].join(), /loop/);
  });

  for (const batch of [true, false]) {
    it(`a burst from several clients: each query gets its own id and answer (${batch ? "batched recvmmsg/sendmmsg" : "one datagram at a time"})`, async () => {
      const upstream = await fakeUpstream();
      closers.push(upstream.close);
      const server = await startServer(await clusterStore(), upstream.port, { batch });
      await server.whenSynced();
      assert.equal(server.batching, batch);
      const kinds = [
        { name: "web.default.svc.cluster.local", rcode: "NOERROR", data: ["10.96.0.20"] },
        { name: "WEB.default.svc.cluster.local", rcode: "NOERROR", data: ["10.96.0.20"] },
        { name: "missing.default.svc.cluster.local", rcode: "NXDOMAIN", data: [] },
        { name: "host.example.test", rcode: "NOERROR", data: ["192.0.2.1"] },
      ];
      const clients = await Promise.all(
        [0, 1, 2].map(async () => {
          const socket = dgram.createSocket("udp4");
          await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
          closers.push(() => socket.close());
          return socket;
        }),
      );
      const perClient = 150;
      const replies = new Map<string, Reply>();
      const done = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${replies.size} of ${clients.length * perClient} answered`)), 5000);
        clients.forEach((socket, c) =>
          socket.on("message", (msg) => {
            const reply = dnsPacket.decode(msg) as Reply;
            replies.set(`${c}/${reply.id}`, reply);
            if (replies.size === clients.length * perClient) {
              clearTimeout(timer);
              resolve();
            }
          }),
        );
      });
      // Waves of 30 datagrams: enough to queue behind the first, few enough for the socket's receive buffer.
      const wave = 10;
      for (let start = 0; start < perClient; start += wave) {
        for (let i = start; i < start + wave; i++) {
          clients.forEach((socket, c) => {
            const kind = kinds[(i + c) % kinds.length] as (typeof kinds)[number];
            socket.send(dnsPacket.encode({ type: "query", id: 1000 + i, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: kind.name, type: "A" }] }), server.address.port, "127.0.0.1");
          });
        }
        const expected = (start + wave) * clients.length;
        for (let waited = 0; replies.size < expected && waited < 100; waited++) await new Promise((r) => setTimeout(r, 10));
      }
      await done;
      for (let i = 0; i < perClient; i++) {
        clients.forEach((_, c) => {
          const kind = kinds[(i + c) % kinds.length] as (typeof kinds)[number];
          const reply = replies.get(`${c}/${1000 + i}`);
          assert.ok(reply, `client ${c} query ${i} answered`);
          assert.equal(reply.questions?.[0]?.name, kind.name, "the question as asked (case kept)");
          assert.equal(reply.rcode, kind.rcode, kind.name);
          assert.deepEqual(reply.answers?.filter((a) => a.type === "A").map((a) => ("data" in a ? a.data : "")), kind.data, kind.name);
        });
      }
      if (batch) assert.ok(server.batchedDatagrams > 0, "some datagrams went through the batch path");
      else assert.equal(server.batchedDatagrams, 0);
      assert.equal(server.metrics.queryTotal(), clients.length * perClient);
    });
  }

  it("a queue longer than one batch, all cached answers: every query answered, batching kept", async () => {
    // The datagram that wakes the server takes send slot 0 of the first batch; with a full batch
    // waiting behind it the slots must still suffice (once they did not: sendmmsg read past them).
    const server = await startServer(await clusterStore(), undefined);
    await server.whenSynced();
    const names = ["web.default.svc.cluster.local", "WEB.default.svc.cluster.local", "missing.default.svc.cluster.local"];
    for (const name of names) await ask(server.address.port, name);
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
    closers.push(() => socket.close());
    const total = 150;
    const replies = new Map<number, Reply>();
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${replies.size} of ${total} answered`)), 5000);
      socket.on("message", (msg) => {
        const reply = dnsPacket.decode(msg) as Reply;
        replies.set(reply.id as number, reply);
        if (replies.size === total) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const before = server.batchedDatagrams;
    // All sent before the server's callback runs (one process, one thread): they queue on its socket.
    for (let id = 0; id < total; id++) {
      socket.send(dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: names[id % names.length] as string, type: "A" }] }), server.address.port, "127.0.0.1");
    }
    await done;
    for (let id = 0; id < total; id++) {
      const reply = replies.get(id) as Reply;
      assert.equal(reply.questions?.[0]?.name, names[id % names.length]);
      assert.equal(reply.rcode, id % names.length === 2 ? "NXDOMAIN" : "NOERROR");
    }
    assert.ok(server.batchedDatagrams - before >= 64, `a full batch was taken (${server.batchedDatagrams - before} datagrams)`);
    assert.equal(server.batching, true, "the batch path is still in use");
  });

  it("malformed packets: FORMERR with the id, or nothing; never an exception", async () => {
    const server = await startServer(await clusterStore(), undefined);
    await server.whenSynced();
    // Header (id 0xabcd, one question), then a name that is a pointer to itself.
    const loop = Buffer.alloc(18);
    loop.writeUInt16BE(0xabcd, 0);
    loop.writeUInt16BE(1, 4);
    loop.writeUInt16BE(0xc00c, 12);
    loop.writeUInt16BE(1, 14);
    loop.writeUInt16BE(1, 16);
    const formerr = server.handle(loop, "udp");
    assert.ok(formerr && !(formerr instanceof Promise));
    assert.equal(formerr.rcode, "FORMERR");
    assert.equal(formerr.buffer.readUInt16BE(0), 0xabcd);
    assert.equal(server.handle(Buffer.alloc(5), "udp"), undefined, "shorter than a header: dropped");
    const response = dnsPacket.encode({ type: "response", id: 1, questions: [{ name: "x", type: "A" }] });
    assert.equal(server.handle(response, "udp"), undefined, "a response: dropped");
    const two = dnsPacket.encode({ type: "query", id: 2, questions: [{ name: "a", type: "A" }, { name: "b", type: "A" }] });
    assert.equal((server.handle(two, "udp") as { rcode: string }).rcode, "FORMERR");
  });
});
