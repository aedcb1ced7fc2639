// Version negotiation and result conversion between the CNI versions podnet speaks.
// Inside podnet every result has the 1.1.0 shape; only at the edges (printing an ADD
// result, reading a prevResult or a delegate's output) does it change shape.
//
// What differs between versions:
//   0.3.0, 0.3.1, 0.4.0  ips[] carry "version" ("4" or "6"); interfaces {name, mac, sandbox};
//                        routes {dst, gw}
//   1.0.0                no ips[].version
//   1.1.0                adds interfaces[].{mtu, socketPath, pciID} and
//                        routes[].{mtu, advmss, priority, table, scope}
import { ipFamily } from "../net/address.ts";
import { cidrFamily } from "../net/cidr.ts";
import { JsonFields, withoutUndefined } from "./json-fields.ts";
import {
  CURRENT_VERSION,
  CniError,
  ErrorCode,
  SUPPORTED_VERSIONS,
  type CniDns,
  type CniInterface,
  type CniIpConfig,
  type CniResult,
  type CniRoute,
  type CniVersion,
} from "./types.ts";

export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

const VERSION_SYNTAX = /^(\d{1,9})\.(\d{1,9})\.(\d{1,9})$/;

export function isWellFormedVersion(version: unknown): version is string {
  return typeof version === "string" && VERSION_SYNTAX.test(version);
}

export function isSupportedVersion(version: unknown): version is CniVersion {
  return typeof version === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(version);
}

/** Orders two "major.minor.patch" versions: negative, zero or positive like a sort comparator. */
export function compareVersions(a: string, b: string): number {
  const left = parseVersion(a);
  const right = parseVersion(b);
  for (let i = 0; i < 3; i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0);
    if (difference !== 0) return Math.sign(difference);
  }
  return 0;
}

function parseVersion(version: string): number[] {
  const match = VERSION_SYNTAX.exec(version);
  if (!match) throw new CniError(ErrorCode.Decode, `invalid CNI version ${JSON.stringify(version)}`);
  return match.slice(1).map(Number);
}

/**
 * The VERSION answer. The spec echoes the requested cniVersion; libcni's skel always
 * answers its own version. We echo a well-formed request and otherwise answer ours,
 * since runtimes only read supportedVersions.
 */
export function versionResponse(requested?: string): VersionInfo {
  return {
    cniVersion: isWellFormedVersion(requested) ? requested : CURRENT_VERSION,
    supportedVersions: [...SUPPORTED_VERSIONS],
  };
}

/** The oldest config version that may use `command`: CHECK exists from 0.4.0, STATUS and GC from 1.1.0. */
export function minimumVersionFor(command: string): CniVersion {
  if (command === "CHECK") return "0.4.0";
  if (command === "STATUS" || command === "GC") return "1.1.0";
  return "0.3.0";
}

/** Renders a 1.1-shaped result in the format of `toVersion`, dropping fields that version does not know. */
export function convertResult(result: CniResult, toVersion: string): object {
  if (!isSupportedVersion(toVersion)) {
    throw new CniError(ErrorCode.IncompatibleVersion, `cannot convert a result to unsupported CNI version ${JSON.stringify(toVersion)}`);
  }
  const legacy = compareVersions(toVersion, "1.0.0") < 0;
  const current = compareVersions(toVersion, "1.1.0") >= 0;
  return withoutUndefined({
    cniVersion: toVersion,
    interfaces: result.interfaces?.map((iface) =>
      withoutUndefined({
        name: iface.name,
        mac: iface.mac,
        ...(current ? { mtu: iface.mtu, socketPath: iface.socketPath, pciID: iface.pciID } : {}),
        sandbox: iface.sandbox,
      }),
    ),
    ips: result.ips?.map((ip) =>
      withoutUndefined({
        // Only IPv6 addresses contain a colon, so the family needs no full parse.
        ...(legacy ? { version: ip.address.includes(":") ? "6" : "4" } : {}),
        address: ip.address,
        gateway: ip.gateway,
        interface: ip.interface,
      }),
    ),
    routes: result.routes?.map((route) =>
      withoutUndefined({
        dst: route.dst,
        gw: route.gw,
        ...(current
          ? { mtu: route.mtu, advmss: route.advmss, priority: route.priority, table: route.table, scope: route.scope }
          : {}),
      }),
    ),
    dns: result.dns === undefined ? undefined : copyDns(result.dns),
  });
}

/**
 * Reads a result of any supported version (a prevResult, a delegate's output) into the
 * 1.1 shape, validating it on the way. Results before 1.0.0 may omit cniVersion; then
 * `fallbackVersion` (the config's version) says how to read it, as libcni does.
 * Shape errors are Decode (6); an unsupported version is IncompatibleVersion (1).
 */
export function upgradeResult(raw: unknown, fallbackVersion?: string): CniResult {
  const fields = JsonFields.of(raw, "result", ErrorCode.Decode);
  const version = fields.string("cniVersion") || fallbackVersion;
  if (version === undefined || version === "") throw new CniError(ErrorCode.Decode, "result has no cniVersion");
  if (!isSupportedVersion(version)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `result has unsupported CNI version ${JSON.stringify(version)}`,
      `podnet reads results of versions ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  const legacy = compareVersions(version, "1.0.0") < 0;

  const interfaces = fields.objectArray("interfaces")?.map(readInterface);
  const ips = fields.objectArray("ips")?.map((ip) => readIp(ip, legacy, interfaces?.length));
  const routes = fields.objectArray("routes")?.map(readRoute);
  const dnsFields = fields.nested("dns");
  return withoutUndefined({
    cniVersion: CURRENT_VERSION,
    interfaces,
    ips,
    routes,
    dns: dnsFields === undefined ? undefined : readDns(dnsFields),
  });
}

function readInterface(fields: JsonFields): CniInterface {
  return withoutUndefined({
    name: fields.requiredString("name"),
    mac: fields.string("mac"),
    mtu: fields.unsigned("mtu"),
    sandbox: fields.string("sandbox"),
    socketPath: fields.string("socketPath"),
    pciID: fields.string("pciID"),
  });
}

function readIp(fields: JsonFields, legacy: boolean, interfaceCount: number | undefined): CniIpConfig {
  const address = fields.requiredString("address");
  const family = cidrFamily(address);
  if (family === 0) fields.fail("address", "an address in CIDR notation");
  const gateway = fields.string("gateway");
  if (gateway !== undefined && gateway !== "" && ipFamily(gateway) === 0) fields.fail("gateway", "an IP address");
  const index = fields.unsigned("interface");
  // An IPAM result has neither interfaces nor indexes; a full result must point inside its list.
  if (index !== undefined && interfaceCount !== undefined && index >= interfaceCount) {
    fields.fail("interface", `an index below ${interfaceCount}`);
  }
  if (legacy) {
    const declared = fields.string("version");
    if (declared !== undefined && declared !== String(family)) fields.fail("version", `"${family}" for ${address}`);
  }
  return withoutUndefined({ address, gateway: gateway || undefined, interface: index });
}

function readRoute(fields: JsonFields): CniRoute {
  const dst = fields.requiredString("dst");
  if (cidrFamily(dst) === 0) fields.fail("dst", "a destination in CIDR notation");
  const gw = fields.string("gw");
  if (gw !== undefined && gw !== "" && ipFamily(gw) === 0) fields.fail("gw", "an IP address");
  return withoutUndefined({
    dst,
    gw: gw || undefined,
    mtu: fields.unsigned("mtu"),
    advmss: fields.unsigned("advmss"),
    priority: fields.unsigned("priority"),
    table: fields.unsigned("table"),
    scope: fields.unsigned("scope"),
  });
}

/** Reads the spec's DNS object; used for results and for the `dns` key of a config. */
export function readDns(fields: JsonFields): CniDns {
  return withoutUndefined({
    nameservers: fields.stringArray("nameservers"),
    domain: fields.string("domain"),
    search: fields.stringArray("search"),
    options: fields.stringArray("options"),
  });
}

function copyDns(dns: CniDns): CniDns {
  return withoutUndefined({
    nameservers: dns.nameservers && [...dns.nameservers],
    domain: dns.domain,
    search: dns.search && [...dns.search],
    options: dns.options && [...dns.options],
  });
}

