import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { normaliseKeys, parseNetConf } from "./config.ts";
import { assertCniError } from "./test-helpers.ts";
import { ErrorCode } from "./types.ts";

const base = { cniVersion: "1.1.0", name: "podnet", type: "podnet" };
const parse = (extra: Record<string, unknown>) => parseNetConf(JSON.stringify({ ...base, ...extra }));

describe("parseNetConf: protocol fields", () => {
  it("accepts bytes or a string and keeps plugin-specific keys untouched", () => {
    const text = JSON.stringify({ ...base, bridge: "cni0", isGateway: true, keyA: ["x", { y: 1 }] });
    const fromBytes = parseNetConf(new TextEncoder().encode(text));
    assert.deepEqual(fromBytes, parseNetConf(text));
    assert.equal(fromBytes.bridge, "cni0");
    assert.deepEqual(fromBytes.keyA, ["x", { y: 1 }]);
  });

  it("reports undecodable input as Decode (6)", () => {
    assertCniError(() => parseNetConf(""), ErrorCode.Decode);
    assertCniError(() => parseNetConf("{"), ErrorCode.Decode);
    assertCniError(() => parseNetConf("[1,2]"), ErrorCode.Decode);
    assertCniError(() => parseNetConf('"text"'), ErrorCode.Decode);
    assertCniError(() => parseNetConf(new Uint8Array([0x7b, 0xff, 0x7d])), ErrorCode.Decode, /UTF-8/);
  });

  it("reports missing or malformed cniVersion, name and type as InvalidConfig (7)", () => {
    for (const key of ["cniVersion", "name", "type"]) {
      const without: Record<string, unknown> = { ...base };
      delete without[key];
      assertCniError(() => parseNetConf(JSON.stringify(without)), ErrorCode.InvalidConfig, new RegExp(key));
      assertCniError(() => parse({ [key]: 7 }), ErrorCode.InvalidConfig, new RegExp(key));
      assertCniError(() => parse({ [key]: "" }), ErrorCode.InvalidConfig, new RegExp(key));
    }
    assertCniError(() => parse({ cniVersion: "1.1" }), ErrorCode.InvalidConfig, /cniVersion/);
    assertCniError(() => parse({ cniVersion: "v1.0.0" }), ErrorCode.InvalidConfig, /cniVersion/);
  });

  it("reports a well-formed but unsupported cniVersion as IncompatibleVersion (1)", () => {
    for (const version of ["0.1.0", "0.2.0", "1.2.0", "2.0.0"]) assertCniError(() => parse({ cniVersion: version }), ErrorCode.IncompatibleVersion);
    for (const version of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) assert.equal(parse({ cniVersion: version }).cniVersion, version);
  });

  it("applies the spec's network name rule", () => {
    for (const name of ["-net", "net work", "net/1", "ne:t"]) assertCniError(() => parse({ name }), ErrorCode.InvalidConfig, /network name/);
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,40}$/), (name) => assert.equal(parse({ name }).name, name)),
    );
  });

  it("refuses plugin types that are paths", () => {
    for (const type of ["../bridge", "/bin/sh", "a\\b", ".", ".."]) assertCniError(() => parse({ type }), ErrorCode.InvalidConfig, /type/);
    assertCniError(() => parse({ ipam: { type: "../host-local" } }), ErrorCode.InvalidConfig, /ipam\.type/);
  });

  it("checks the shapes of capabilities, ipam, dns and args", () => {
    assertCniError(() => parse({ capabilities: { portMappings: "yes" } }), ErrorCode.InvalidConfig, /capabilities\.portMappings/);
    assertCniError(() => parse({ ipam: {} }), ErrorCode.InvalidConfig, /ipam\.type is required/);
    assertCniError(() => parse({ ipam: { type: "host-local", ranges: [{ subnet: "10.0.0.0/24" }] } }), ErrorCode.InvalidConfig, /ipam\.ranges\[0\]/);
    assertCniError(() => parse({ ipam: { type: "host-local", ranges: [[{ gateway: "10.0.0.1" }]] } }), ErrorCode.InvalidConfig, /ipam\.ranges\[0\]\[0\]\.subnet/);
    assertCniError(() => parse({ ipam: { type: "host-local", routes: [{ gw: "10.0.0.1" }] } }), ErrorCode.InvalidConfig, /ipam\.routes\[0\]\.dst/);
    assertCniError(() => parse({ ipam: { type: "host-local", subnet: 10 } }), ErrorCode.InvalidConfig, /ipam\.subnet/);
    assertCniError(() => parse({ dns: { nameservers: "10.0.0.10" } }), ErrorCode.InvalidConfig, /dns\.nameservers/);
    assertCniError(() => parse({ args: { cni: { ips: "10.0.0.5" } } }), ErrorCode.InvalidConfig, /args\.cni\.ips/);
    assertCniError(() => parse({ args: [] }), ErrorCode.InvalidConfig, /args/);
  });

  it("keeps a well-formed ipam section whole", () => {
    const ipam = {
      type: "host-local",
      ranges: [[{ subnet: "10.244.1.0/24", rangeStart: "10.244.1.10", gateway: "10.244.1.1" }], [{ subnet: "fd00::/64" }]],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "10.0.0.0/8", gw: "10.244.1.254" }],
      dataDir: "/var/lib/cni/networks",
      custom: { keep: true },
    };
    assert.deepEqual(parse({ ipam }).ipam, ipam);
  });

  it("treats JSON null as absent", () => {
    const conf = parse({ prevResult: null, runtimeConfig: null, ipam: null });
    assert.ok(!("prevResult" in conf));
    assert.ok(!("runtimeConfig" in conf));
    assert.ok(!("ipam" in conf));
  });
});

describe("parseNetConf: prevResult", () => {
  it("reads a prevResult of an older version into the 1.1 shape", () => {
    const conf = parse({
      cniVersion: "0.4.0",
      prevResult: { cniVersion: "0.4.0", interfaces: [{ name: "eth0", sandbox: "/run/netns/p" }], ips: [{ version: "4", address: "10.0.0.5/24", interface: 0 }] },
    });
    assert.deepEqual(conf.prevResult, { cniVersion: "1.1.0", interfaces: [{ name: "eth0", sandbox: "/run/netns/p" }], ips: [{ address: "10.0.0.5/24", interface: 0 }] });
  });

  it("reads a prevResult without cniVersion in the config's version", () => {
    const conf = parse({ cniVersion: "0.3.1", prevResult: { ips: [{ version: "6", address: "fd00::5/64" }] } });
    assert.deepEqual(conf.prevResult, { cniVersion: "1.1.0", ips: [{ address: "fd00::5/64" }] });
  });

  it("reports a malformed prevResult as Decode (6)", () => {
    assertCniError(() => parse({ prevResult: { cniVersion: "1.1.0", ips: [{ address: "bogus" }] } }), ErrorCode.Decode, /prevResult|result/);
    assertCniError(() => parse({ prevResult: "x" }), ErrorCode.Decode);
  });
});

describe("parseNetConf: GC attachments", () => {
  it("reads cni.dev/valid-attachments, or the spec's cni.dev/attachments in its place", () => {
    const list = [{ containerID: "c1", ifname: "eth0" }];
    assert.deepEqual(parse({ "cni.dev/valid-attachments": list })["cni.dev/valid-attachments"], list);
    assert.deepEqual(parse({ "cni.dev/attachments": list })["cni.dev/valid-attachments"], list);
    assert.deepEqual(parse({ "cni.dev/valid-attachments": [] })["cni.dev/valid-attachments"], []);
    assert.equal(parse({})["cni.dev/valid-attachments"], undefined);
  });

  it("rejects malformed attachment lists", () => {
    assertCniError(() => parse({ "cni.dev/valid-attachments": [{ containerID: "c1" }] }), ErrorCode.InvalidConfig, /ifname/);
    assertCniError(() => parse({ "cni.dev/attachments": {} }), ErrorCode.InvalidConfig, /attachments/);
  });
});

describe("parseNetConf: runtimeConfig", () => {
  it("normalises containerd's Go-cased keys", () => {
    const conf = parse({
      runtimeConfig: {
        PortMappings: [{ HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "" }],
        DNS: { Servers: ["10.96.0.10"], Searches: ["svc.cluster.local"], Options: ["ndots:5"] },
        IPs: ["10.244.1.9/24"],
        Mac: "02:00:00:00:00:01",
        Bandwidth: { IngressRate: 1000, EgressBurst: 10 },
        IPRanges: [[{ Subnet: "10.1.0.0/24", RangeStart: "10.1.0.10" }]],
        CgroupPath: "/kubepods/pod1",
        SomethingElse: 1,
      },
    });
    assert.deepEqual(conf.runtimeConfig, {
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "" }],
      dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"], options: ["ndots:5"] },
      ips: ["10.244.1.9/24"],
      mac: "02:00:00:00:00:01",
      bandwidth: { ingressRate: 1000, egressBurst: 10 },
      ipRanges: [[{ subnet: "10.1.0.0/24", rangeStart: "10.1.0.10" }]],
      cgroupPath: "/kubepods/pod1",
      SomethingElse: 1,
    });
  });

  it("reads the spec's DNS spelling too", () => {
    const dns = { Nameservers: ["1.1.1.1"], Search: ["a"], Domain: "b", Options: [] };
    assert.deepEqual(parse({ runtimeConfig: { dns } }).runtimeConfig, { dns: { nameservers: ["1.1.1.1"], search: ["a"], domain: "b", options: [] } });
  });

  it("prefers the canonical spelling when both appear", () => {
    assert.deepEqual(parse({ runtimeConfig: { MAC: "a", mac: "b" } }).runtimeConfig, { mac: "b" });
    assert.deepEqual(parse({ runtimeConfig: { mac: "b", MAC: "a" } }).runtimeConfig, { mac: "b" });
  });

  it("checks the shapes of well-known capabilities", () => {
    assertCniError(() => parse({ runtimeConfig: { ips: "10.0.0.1" } }), ErrorCode.InvalidConfig, /runtimeConfig\.ips/);
    assertCniError(() => parse({ runtimeConfig: { Mac: 5 } }), ErrorCode.InvalidConfig, /runtimeConfig\.mac/);
    assertCniError(() => parse({ runtimeConfig: { portMappings: [{ HostPort: "80", ContainerPort: 80 }] } }), ErrorCode.InvalidConfig, /hostPort/);
    assertCniError(() => parse({ runtimeConfig: { portMappings: [{ HostPort: 80 }] } }), ErrorCode.InvalidConfig, /containerPort/);
    assertCniError(() => parse({ runtimeConfig: { dns: "x" } }), ErrorCode.InvalidConfig, /runtimeConfig\.dns/);
    assertCniError(() => parse({ runtimeConfig: [] }), ErrorCode.InvalidConfig, /runtimeConfig/);
  });

  it("maps every casing of every well-known key to its canonical name (property)", () => {
    const names = ["ips", "mac", "dns", "portMappings", "ipRanges", "bandwidth", "infinibandGUID", "deviceID", "aliases", "cgroupPath"];
    const canonical = new Map(names.map((n) => [n.toLowerCase(), n]));
    const recased = fc
      .tuple(fc.constantFrom(...names), fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }))
      .map(([name, upper]) => ({ name, key: [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c.toLowerCase())).join("") }));
    fc.assert(
      fc.property(recased, fc.jsonValue(), ({ name, key }, value) => {
        assert.deepEqual(Object.keys(normaliseKeys({ [key]: value }, canonical)), [name]);
      }),
    );
  });

  it("normalises random casings of port mappings end to end (property)", () => {
    const recase = (word: string) => fc.array(fc.boolean(), { minLength: word.length, maxLength: word.length }).map((u) => [...word].map((c, i) => (u[i] ? c.toUpperCase() : c.toLowerCase())).join(""));
    fc.assert(
      fc.property(
        recase("portMappings"),
        recase("hostPort"),
        recase("containerPort"),
        recase("protocol"),
        fc.integer({ min: 1, max: 65535 }),
        fc.integer({ min: 1, max: 65535 }),
        (pm, hp, cp, proto, hostPort, containerPort) => {
          const conf = parse({ runtimeConfig: { [pm]: [{ [hp]: hostPort, [cp]: containerPort, [proto]: "udp" }] } });
          assert.deepEqual(conf.runtimeConfig, { portMappings: [{ hostPort, containerPort, protocol: "udp" }] });
        },
      ),
    );
  });
});
