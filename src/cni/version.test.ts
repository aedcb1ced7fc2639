import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { assertCniError } from "./test-helpers.ts";
import { SUPPORTED_VERSIONS, ErrorCode, type CniResult } from "./types.ts";
import { cidrFamily } from "../net/cidr.ts";
import { compareVersions, convertResult, isSupportedVersion, upgradeResult, versionResponse } from "./version.ts";

/** A result using every field 1.1.0 defines. */
const FULL: CniResult = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "0a:58:0a:f4:01:01", mtu: 1500 },
    { name: "veth1a2b3c", mac: "ee:ee:ee:ee:ee:01" },
    { name: "eth0", mac: "0a:58:0a:f4:01:05", mtu: 1450, sandbox: "/run/netns/pod1", socketPath: "/run/sock", pciID: "0000:00:04.0" },
  ],
  ips: [
    { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 2 },
    { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 2 },
  ],
  routes: [
    { dst: "0.0.0.0/0", gw: "10.244.1.1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 },
    { dst: "::/0" },
  ],
  dns: { nameservers: ["10.96.0.10"], domain: "cluster.local", search: ["default.svc.cluster.local"], options: ["ndots:5"] },
};

const LEGACY_GOLDEN = (version: string): object => ({
  cniVersion: version,
  interfaces: [
    { name: "cni0", mac: "0a:58:0a:f4:01:01" },
    { name: "veth1a2b3c", mac: "ee:ee:ee:ee:ee:01" },
    { name: "eth0", mac: "0a:58:0a:f4:01:05", sandbox: "/run/netns/pod1" },
  ],
  ips: [
    { version: "4", address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 2 },
    { version: "6", address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 2 },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "10.244.1.1" }, { dst: "::/0" }],
  dns: { nameservers: ["10.96.0.10"], domain: "cluster.local", search: ["default.svc.cluster.local"], options: ["ndots:5"] },
});

describe("convertResult (golden shapes)", () => {
  for (const version of ["0.3.0", "0.3.1", "0.4.0"]) {
    it(`${version}: ips carry version, 1.1-only fields are gone`, () => {
      assert.deepEqual(convertResult(FULL, version), LEGACY_GOLDEN(version));
    });
  }

  it("1.0.0: no ips[].version and no 1.1-only fields", () => {
    assert.deepEqual(convertResult(FULL, "1.0.0"), {
      cniVersion: "1.0.0",
      interfaces: [
        { name: "cni0", mac: "0a:58:0a:f4:01:01" },
        { name: "veth1a2b3c", mac: "ee:ee:ee:ee:ee:01" },
        { name: "eth0", mac: "0a:58:0a:f4:01:05", sandbox: "/run/netns/pod1" },
      ],
      ips: [
        { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 2 },
        { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 2 },
      ],
      routes: [{ dst: "0.0.0.0/0", gw: "10.244.1.1" }, { dst: "::/0" }],
      dns: FULL.dns,
    });
  });

  it("1.1.0: everything is kept", () => {
    assert.deepEqual(convertResult(FULL, "1.1.0"), FULL);
  });

  it("keeps an IPAM result abbreviated: no interfaces, no interface index", () => {
    const ipam: CniResult = { cniVersion: "1.1.0", ips: [{ address: "10.1.0.5/16", gateway: "10.1.0.1" }], routes: [{ dst: "0.0.0.0/0" }] };
    assert.equal(
      JSON.stringify(convertResult(ipam, "0.4.0")),
      '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.5/16","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]}',
    );
  });

  it("refuses a version podnet does not speak", () => {
    assertCniError(() => convertResult(FULL, "0.2.0"), ErrorCode.IncompatibleVersion);
    assertCniError(() => convertResult(FULL, "2.0.0"), ErrorCode.IncompatibleVersion);
  });
});

describe("upgradeResult", () => {
  it("reads what host-local 1.1.1 prints for 0.4.0", () => {
    const raw = { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.99.0.2/24", gateway: "10.99.0.1" }], dns: {} };
    assert.deepEqual(upgradeResult(raw), { cniVersion: "1.1.0", ips: [{ address: "10.99.0.2/24", gateway: "10.99.0.1" }], dns: {} });
  });

  it("reads every golden legacy shape back to the full result minus 1.1-only fields", () => {
    for (const version of ["0.3.0", "0.3.1", "0.4.0"]) {
      assert.deepEqual(upgradeResult(LEGACY_GOLDEN(version)), upgradeResult(convertResult(FULL, "1.0.0")));
    }
  });

  it("uses the fallback version when the result states none, and needs one", () => {
    const raw = { ips: [{ version: "4", address: "10.0.0.2/24" }] };
    assert.deepEqual(upgradeResult(raw, "0.3.1"), { cniVersion: "1.1.0", ips: [{ address: "10.0.0.2/24" }] });
    assertCniError(() => upgradeResult(raw), ErrorCode.Decode, /no cniVersion/);
  });

  it("rejects unsupported versions with IncompatibleVersion", () => {
    assertCniError(() => upgradeResult({ cniVersion: "0.2.0", ip4: { ip: "10.0.0.2/24" } }), ErrorCode.IncompatibleVersion);
  });

  it("rejects malformed results with Decode, naming the field", () => {
    const cases: Array<[unknown, RegExp]> = [
      [null, /must be a JSON object/],
      [[], /must be a JSON object/],
      [{ cniVersion: "1.0.0", ips: {} }, /result\.ips must be a list/],
      [{ cniVersion: "1.0.0", ips: [{}] }, /result\.ips\[0\]\.address is required/],
      [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2" }] }, /address must be an address in CIDR/],
      [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/33" }] }, /address/],
      [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24", gateway: "nope" }] }, /gateway/],
      [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24", interface: -1 }] }, /interface/],
      [{ cniVersion: "1.0.0", interfaces: [{ name: "eth0" }], ips: [{ address: "10.0.0.2/24", interface: 1 }] }, /index below 1/],
      [{ cniVersion: "0.4.0", ips: [{ version: "6", address: "10.0.0.2/24" }] }, /version/],
      [{ cniVersion: "1.0.0", interfaces: [{ mac: "x" }] }, /interfaces\[0\]\.name is required/],
      [{ cniVersion: "1.1.0", interfaces: [{ name: "eth0", mtu: "1500" }] }, /mtu/],
      [{ cniVersion: "1.0.0", routes: [{ dst: "default" }] }, /dst/],
      [{ cniVersion: "1.0.0", routes: [{ dst: "0.0.0.0/0", gw: "x" }] }, /gw/],
      [{ cniVersion: "1.0.0", dns: { nameservers: "10.0.0.1" } }, /nameservers must be a list of strings/],
    ];
    for (const [raw, msg] of cases) assertCniError(() => upgradeResult(raw), ErrorCode.Decode, msg);
  });
});

describe("versions", () => {
  it("orders versions numerically", () => {
    const shuffled = ["1.0.0", "0.10.0", "0.4.0", "1.1.0", "0.3.1", "0.3.0"];
    assert.deepEqual([...shuffled].sort(compareVersions), ["0.3.0", "0.3.1", "0.4.0", "0.10.0", "1.0.0", "1.1.0"]);
    assert.equal(compareVersions("1.1.0", "1.1.0"), 0);
    assertCniError(() => compareVersions("1.1", "1.0.0"), ErrorCode.Decode);
  });

  it("knows exactly the supported versions", () => {
    for (const v of SUPPORTED_VERSIONS) assert.ok(isSupportedVersion(v));
    for (const v of ["0.1.0", "0.2.0", "1.2.0", "1.1", "", undefined, 1]) assert.ok(!isSupportedVersion(v));
  });

  it("answers VERSION with the requested version echoed and the supported list", () => {
    assert.deepEqual(versionResponse("1.0.0"), { cniVersion: "1.0.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
    assert.equal(versionResponse().cniVersion, "1.1.0");
    assert.equal(versionResponse("garbage").cniVersion, "1.1.0");
  });

  it("recognises CIDRs of both families", () => {
    assert.equal(cidrFamily("10.0.0.0/8"), 4);
    assert.equal(cidrFamily("fd00::/8"), 6);
    assert.equal(cidrFamily("fd00::/129"), 0);
    assert.equal(cidrFamily("10.0.0.0"), 0);
    assert.equal(cidrFamily("10.0.0.0/"), 0);
  });
});

// ---- properties -------------------------------------------------------------------

const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });
const v4Cidr = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([ip, p]) => `${ip}/${p}`);
const v6Cidr = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([ip, p]) => `${ip}/${p}`);
const uint = fc.integer({ min: 0, max: 65535 });
const text = fc.stringMatching(/^[a-z0-9:./-]{1,20}$/);

/** Drops undefined-valued keys, as JSON does. */
function clean<T extends object>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

const resultArb = (withCurrentFields: boolean): fc.Arbitrary<CniResult> =>
  fc
    .record({
      interfaces: maybe(
        fc.array(
          fc.record({
            name: fc.stringMatching(/^[a-z0-9]{1,15}$/),
            mac: maybe(text),
            sandbox: maybe(text),
            mtu: withCurrentFields ? maybe(uint) : fc.constant(undefined),
            socketPath: withCurrentFields ? maybe(text) : fc.constant(undefined),
            pciID: withCurrentFields ? maybe(text) : fc.constant(undefined),
          }),
          { minLength: 1, maxLength: 3 },
        ),
      ),
      ips: maybe(
        fc.array(
          fc.oneof(
            fc.record({ address: v4Cidr, gateway: maybe(fc.ipV4()), index: maybe(fc.nat(2)) }),
            fc.record({ address: v6Cidr, gateway: maybe(fc.ipV6()), index: maybe(fc.nat(2)) }),
          ),
          { maxLength: 4 },
        ),
      ),
      routes: maybe(
        fc.array(
          fc.record({
            dst: fc.oneof(v4Cidr, v6Cidr),
            gw: maybe(fc.oneof(fc.ipV4(), fc.ipV6())),
            mtu: withCurrentFields ? maybe(uint) : fc.constant(undefined),
            advmss: withCurrentFields ? maybe(uint) : fc.constant(undefined),
            priority: withCurrentFields ? maybe(uint) : fc.constant(undefined),
            table: withCurrentFields ? maybe(uint) : fc.constant(undefined),
            scope: withCurrentFields ? maybe(fc.constantFrom(0, 253, 254)) : fc.constant(undefined),
          }),
          { maxLength: 4 },
        ),
      ),
      dns: maybe(fc.record({ nameservers: maybe(fc.array(fc.ipV4(), { maxLength: 3 })), domain: maybe(text), search: maybe(fc.array(text, { maxLength: 3 })), options: maybe(fc.array(text, { maxLength: 3 })) })),
    })
    .map(({ interfaces, ips, routes, dns }) =>
      clean({
        cniVersion: "1.1.0",
        interfaces,
        // An index must point inside the interface list; an IPAM-style result has none.
        ips: ips?.map(({ address, gateway, index }) => ({
          address,
          gateway,
          interface: interfaces === undefined || index === undefined ? undefined : index % interfaces.length,
        })),
        routes,
        dns,
      }),
    );

/** What survives in `version`: the 1.0 field set below 1.1.0. */
function knownTo(result: CniResult, version: string): CniResult {
  if (version === "1.1.0") return result;
  return clean({
    ...result,
    interfaces: result.interfaces?.map(({ name, mac, sandbox }) => ({ name, mac, sandbox })),
    routes: result.routes?.map(({ dst, gw }) => ({ dst, gw })),
  });
}

describe("convertResult / upgradeResult (properties)", () => {
  it("1.1 → any version → JSON → upgrade gives back what that version can hold", () => {
    fc.assert(
      fc.property(resultArb(true), fc.constantFrom(...SUPPORTED_VERSIONS), (result, version) => {
        const wire: unknown = JSON.parse(JSON.stringify(convertResult(result, version)));
        assert.deepEqual(upgradeResult(wire), knownTo(result, version));
      }),
    );
  });

  it("a result with only 1.0 fields survives every version exactly", () => {
    fc.assert(
      fc.property(resultArb(false), fc.constantFrom(...SUPPORTED_VERSIONS), (result, version) => {
        assert.deepEqual(upgradeResult(JSON.parse(JSON.stringify(convertResult(result, version)))), result);
      }),
    );
  });

  it("legacy versions tag every IP with its family; 1.x never does", () => {
    fc.assert(
      fc.property(resultArb(true), fc.constantFrom(...SUPPORTED_VERSIONS), (result, version) => {
        const converted = convertResult(result, version) as { cniVersion: string; ips?: Array<{ version?: string; address: string }> };
        assert.equal(converted.cniVersion, version);
        for (const ip of converted.ips ?? []) {
          if (version.startsWith("0.")) assert.equal(ip.version, String(cidrFamily(ip.address)));
          else assert.ok(!("version" in ip));
        }
      }),
    );
  });
});
