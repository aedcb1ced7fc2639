import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CniError, ErrorCode, type CniArgs, type NetConf } from "../cni/types.ts";
import { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamStatus, openStoreFor, requestedIps } from "./ipam.ts";
import { MemoryStore } from "./memory-store.ts";

function netConf(ipam: NetConf["ipam"], extra: Partial<NetConf> = {}): NetConf {
  return { cniVersion: "1.1.0", name: "podnet-test", type: "podnet-ipam", ipam, ...extra };
}

const dualStack = netConf(
  {
    type: "podnet-ipam",
    ranges: [[{ subnet: "10.244.1.0/24" }], [{ subnet: "fd00:10:244:1::/64" }]],
    routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
  },
  { dns: { nameservers: ["10.96.0.10"] } },
);

const a1 = { containerId: "ctr1", ifname: "eth0" };
const a2 = { containerId: "ctr2", ifname: "eth0" };

function hasCode(code: number, pattern?: RegExp) {
  return (error: unknown) => error instanceof CniError && error.code === code && (!pattern || pattern.test(error.message));
}

describe("ipamAdd", () => {
  it("returns one address per range set, with gateways, routes and dns", () => {
    const result = ipamAdd(dualStack, a1, [], new MemoryStore());
    assert.deepEqual(result, {
      cniVersion: "1.1.0",
      ips: [
        { address: "10.244.1.2/24", gateway: "10.244.1.1" },
        { address: "fd00:10:244:1::2/64", gateway: "fd00:10:244:1::1" },
      ],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
      dns: { nameservers: ["10.96.0.10"] },
    });
  });

  it("omits routes and dns when the config has none", () => {
    const result = ipamAdd(netConf({ type: "x", subnet: "10.1.0.0/24" }), a1, [], new MemoryStore());
    assert.deepEqual(Object.keys(result).sort(), ["cniVersion", "ips"]);
  });

  it("gives a retried ADD the same addresses", () => {
    const store = new MemoryStore();
    const first = ipamAdd(dualStack, a1, [], store);
    assert.deepEqual(ipamAdd(dualStack, a1, [], store), first);
    assert.equal(store.list().length, 2);
  });

  it("honours requested addresses, one per set", () => {
    const store = new MemoryStore();
    const result = ipamAdd(dualStack, a1, ["10.244.1.77", "fd00:10:244:1::77"], store);
    assert.deepEqual(result.ips?.map((ip) => ip.address), ["10.244.1.77/24", "fd00:10:244:1::77/64"]);
    assert.throws(() => ipamAdd(dualStack, a2, ["10.244.1.77"], store), hasCode(ErrorCode.AddressInUse));
    assert.throws(() => ipamAdd(dualStack, a2, ["10.9.9.9"], store), hasCode(ErrorCode.InvalidConfig, /not in any range/));
    assert.throws(() => ipamAdd(dualStack, a2, ["10.244.1.5", "10.244.1.6"], store), hasCode(ErrorCode.InvalidConfig, /both fall in range set 0/));
    assert.throws(() => ipamAdd(dualStack, a2, ["ten.one"], store), hasCode(ErrorCode.InvalidConfig, /invalid IP address/));
  });

  it("is all-or-nothing: a failing second set releases the first set's address", () => {
    const store = new MemoryStore();
    const tiny = netConf({ type: "x", ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "10.1.0.0/30" }]] });
    ipamAdd(tiny, a1, [], store); // takes the only address of 10.1.0.0/30
    assert.throws(() => ipamAdd(tiny, a2, [], store), hasCode(ErrorCode.RangeExhausted, /10\.1\.0\.0\/30/));
    assert.deepEqual(store.findByAttachment(a2.containerId, a2.ifname), []);
    assert.equal(store.list().length, 2);
  });

  it("does not release an address the attachment already held when a later set fails", () => {
    const store = new MemoryStore();
    const tiny = netConf({ type: "x", ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "10.1.0.0/30" }]] });
    store.reserve({ ip: "10.0.0.50", ...a2, rangeSetId: 0 });
    ipamAdd(tiny, a1, [], store);
    assert.throws(() => ipamAdd(tiny, a2, [], store), hasCode(ErrorCode.RangeExhausted));
    assert.deepEqual(store.findByAttachment(a2.containerId, a2.ifname).map((r) => r.ip), ["10.0.0.50"]);
  });

  it("rejects a config without ipam", () => {
    assert.throws(() => ipamAdd(netConf(undefined), a1, [], new MemoryStore()), hasCode(ErrorCode.InvalidConfig, /no "ipam" section/));
  });
});

describe("ipamDel / ipamCheck / ipamGc / ipamStatus", () => {
  it("DEL releases the attachment and is idempotent, even with a broken config", () => {
    const store = new MemoryStore();
    ipamAdd(dualStack, a1, [], store);
    ipamAdd(dualStack, a2, [], store);
    ipamDel(dualStack, a1, store);
    ipamDel(dualStack, a1, store);
    ipamDel(netConf({ type: "x", subnet: "garbage" }), a1, store);
    assert.deepEqual(new Set(store.list().map((r) => r.containerId)), new Set(["ctr2"]));
  });

  it("CHECK passes for a full attachment and fails otherwise", () => {
    const store = new MemoryStore();
    const result = ipamAdd(dualStack, a1, [], store);
    ipamCheck({ ...dualStack, prevResult: result }, a1, store);
    assert.throws(() => ipamCheck(dualStack, a2, store), hasCode(ErrorCode.UnknownContainer, /holds no address/));
    const wrongPrev = { ...result, ips: [{ address: "10.244.1.200/24" }] };
    assert.throws(() => ipamCheck({ ...dualStack, prevResult: wrongPrev }, a1, store), /prevResult has 10\.244\.1\.200/);
    store.release(result.ips![1]!.address.split("/")[0]!);
    assert.throws(() => ipamCheck(dualStack, a1, store), /no address in range set 1/);
  });

  it("GC releases everything not in the valid list", () => {
    const store = new MemoryStore();
    ipamAdd(dualStack, a1, [], store);
    ipamAdd(dualStack, a2, [], store);
    ipamAdd(dualStack, { containerId: "ctr1", ifname: "net1" }, [], store);
    const released = ipamGc(dualStack, [{ containerID: "ctr1", ifname: "eth0" }], store);
    assert.equal(released.length, 4);
    assert.deepEqual(new Set(store.list().map((r) => `${r.containerId}/${r.ifname}`)), new Set(["ctr1/eth0"]));
    assert.equal(ipamGc(dualStack, [], store).length, 2);
    assert.deepEqual(store.list(), []);
  });

  it("STATUS is NotReady when a range set is full or the store unusable", () => {
    const store = new MemoryStore();
    const tiny = netConf({ type: "x", ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "10.1.0.0/30" }]] });
    ipamStatus(tiny, store);
    ipamAdd(tiny, a1, [], store);
    assert.throws(() => ipamStatus(tiny, store), hasCode(ErrorCode.NotReady, /range set 1/));
    const broken = new MemoryStore();
    broken.withLock = () => {
      throw new Error("EROFS: read-only file system");
    };
    assert.throws(() => ipamStatus(tiny, broken), hasCode(ErrorCode.NotReady, /EROFS/));
  });
});

describe("requestedIps", () => {
  const args = (ip?: string[]): CniArgs => ({ ignoreUnknown: true, raw: {}, ...(ip ? { ip } : {}) });

  it("gathers runtimeConfig.ips, args.cni.ips and CNI_ARGS IP=, without prefixes or duplicates", () => {
    const conf = netConf(dualStack.ipam, {
      runtimeConfig: { ips: ["10.244.1.9/24"] },
      args: { cni: { ips: ["fd00:10:244:1::9", "10.244.1.9"] } },
    });
    assert.deepEqual(requestedIps({ conf, env: { args: args(["10.244.1.10,fd00::1/64"]) } }), [
      "10.244.1.9",
      "fd00:10:244:1::9",
      "10.244.1.10",
      "fd00::1",
    ]);
    assert.deepEqual(requestedIps({ conf: dualStack, env: { args: args() } }), []);
  });

  it("rejects non-string entries", () => {
    const conf = netConf(dualStack.ipam, { runtimeConfig: { ips: [42 as unknown as string] } });
    assert.throws(() => requestedIps({ conf, env: { args: args() } }), hasCode(ErrorCode.InvalidConfig));
  });
});

describe("openStoreFor", () => {
  let dataDir: string;
  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), "pnt-ipam-open-"));
  });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it("opens <dataDir>/<name> and tags reservations with their range set", () => {
    const conf = netConf({ ...dualStack.ipam!, dataDir });
    const store = openStoreFor(conf);
    ipamAdd(conf, a1, [], store);
    assert.deepEqual(readdirSync(join(dataDir, "podnet-test")).sort(), [
      "10.244.1.2",
      "fd00:10:244:1::2",
      "last_reserved_ip.0",
      "last_reserved_ip.1",
      "lock",
    ]);
    assert.deepEqual(
      openStoreFor(conf)
        .list()
        .map((r) => [r.ip, r.rangeSetId])
        .sort(),
      [
        ["10.244.1.2", 0],
        ["fd00:10:244:1::2", 1],
      ],
    );
  });
});
