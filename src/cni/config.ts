// The network configuration on stdin: decoded, validated, normalised.
//
// Validation covers what the protocol defines (cniVersion, name, type, capabilities,
// args, runtimeConfig, prevResult, GC's attachment list) and the shapes of the
// well-known `ipam` and `dns` keys. Plugin-specific keys pass through untouched; their
// meaning belongs to the plugin.
//
// runtimeConfig keys are matched case-insensitively, because containerd marshals Go
// structs without JSON tags ({"portMappings":[{"HostPort":8080,…}]}), and its DNS
// capability uses "servers"/"searches" where the spec's DNS type says
// "nameservers"/"search". Everything is renamed to the lower-camel names of
// CONVENTIONS.md and the spec, so plugin code reads one spelling.
import { CNI_NAME_SYNTAX } from "./env.ts";
import { JsonFields } from "./json-fields.ts";
import { isSupportedVersion, isWellFormedVersion, readDns, upgradeResult } from "./version.ts";
import {
  CniError,
  ErrorCode,
  SUPPORTED_VERSIONS,
  type CniAttachment,
  type CniRoute,
  type IpamConf,
  type IpamRangeConf,
  type NetConf,
  type PortMapping,
  type RuntimeConfig,
} from "./types.ts";

const INVALID = ErrorCode.InvalidConfig;

export function parseNetConf(stdin: Uint8Array | string): NetConf {
  const fields = JsonFields.of(decodeJson(stdin), "", ErrorCode.Decode);
  const config = new JsonFields(fields.object, "", INVALID);

  const cniVersion = config.requiredString("cniVersion");
  if (!isWellFormedVersion(cniVersion)) config.fail("cniVersion", 'a version such as "1.1.0"');
  if (!isSupportedVersion(cniVersion)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      "incompatible CNI versions",
      `config is ${JSON.stringify(cniVersion)}, podnet supports ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  const name = config.requiredString("name");
  if (!CNI_NAME_SYNTAX.test(name)) {
    throw new CniError(INVALID, "invalid characters found in network name", `${JSON.stringify(name)}: must start with a letter or digit, followed by letters, digits, "_", "." or "-"`);
  }
  const type = config.requiredString("type");
  validatePluginType(type, "type");

  const conf: NetConf = { ...config.object, cniVersion, name, type };
  setOrDelete(conf, "capabilities", readCapabilities(config));
  setOrDelete(conf, "ipam", config.has("ipam") ? readIpam(config.nested("ipam")!) : undefined);
  setOrDelete(conf, "dns", config.has("dns") ? readDns(config.nested("dns")!) : undefined);
  setOrDelete(conf, "args", readArgs(config));
  setOrDelete(conf, "runtimeConfig", config.has("runtimeConfig") ? readRuntimeConfig(config.nested("runtimeConfig")!) : undefined);
  // libcni reads a prevResult in the config's version when it does not state its own.
  setOrDelete(conf, "prevResult", config.has("prevResult") ? upgradeResult(config.object.prevResult, cniVersion) : undefined);

  // The spec names GC's list "cni.dev/attachments"; libcni sends it under both names.
  // Plugins read "cni.dev/valid-attachments".
  const valid = readAttachments(config, "cni.dev/valid-attachments") ?? readAttachments(config, "cni.dev/attachments");
  setOrDelete(conf, "cni.dev/valid-attachments", valid);
  return conf;
}

function decodeJson(stdin: Uint8Array | string): unknown {
  let text: string;
  try {
    text = typeof stdin === "string" ? stdin : new TextDecoder("utf-8", { fatal: true }).decode(stdin);
  } catch {
    throw new CniError(ErrorCode.Decode, "error decoding network config: not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new CniError(ErrorCode.Decode, `error decoding network config: ${reason}`, text.length === 0 ? "stdin was empty" : "");
  }
}

/** A plugin type names a file in CNI_PATH, so it must not be able to name any other path. */
export function validatePluginType(type: string, where: string): void {
  if (type.includes("/") || type.includes("\\") || type.includes("\0") || type === "." || type === "..") {
    throw new CniError(INVALID, `${where} must be a plugin name, not a path: ${JSON.stringify(type)}`);
  }
}

function setOrDelete<K extends keyof NetConf>(conf: NetConf, key: K, value: NetConf[K] | undefined): void {
  if (value === undefined) delete conf[key];
  else conf[key] = value;
}

function readCapabilities(config: JsonFields): Record<string, boolean> | undefined {
  const capabilities = config.nested("capabilities");
  if (capabilities === undefined) return undefined;
  const out: Record<string, boolean> = {};
  for (const key of Object.keys(capabilities.object)) out[key] = capabilities.boolean(key) ?? false;
  return out;
}

function readIpam(ipam: JsonFields): IpamConf {
  const type = ipam.requiredString("type");
  validatePluginType(type, "ipam.type");
  const out: IpamConf = { ...ipam.object, type };
  if (ipam.has("ranges")) out.ranges = readRangeSets(ipam, "ranges");
  else delete out.ranges;
  for (const key of ["subnet", "rangeStart", "rangeEnd", "gateway", "dataDir", "resolvConf"] as const) {
    const value = ipam.string(key);
    if (value === undefined) delete out[key];
  }
  const routes = ipam.objectArray("routes")?.map(readConfigRoute);
  if (routes !== undefined) out.routes = routes;
  else delete out.routes;
  return out;
}

/** host-local's "ranges" and the ipRanges capability: a list of range sets, each a list of ranges. */
function readRangeSets(parent: JsonFields, key: string, names?: Map<string, string>): IpamRangeConf[][] {
  const sets = parent.object[key];
  if (!Array.isArray(sets)) return parent.fail(key, "a list of range sets");
  return sets.map((set: unknown, setIndex) => {
    const where = `${parent.where(key)}[${setIndex}]`;
    if (!Array.isArray(set)) throw new CniError(INVALID, `${where} must be a list of ranges`);
    return set.map((range: unknown, rangeIndex) => {
      const path = `${where}[${rangeIndex}]`;
      const raw = JsonFields.of(range, path, INVALID);
      const fields = names === undefined ? raw : new JsonFields(normaliseKeys(raw.object, names), path, INVALID);
      const out: IpamRangeConf = { ...fields.object, subnet: fields.requiredString("subnet") };
      for (const key of ["rangeStart", "rangeEnd", "gateway"] as const) if (fields.string(key) === undefined) delete out[key];
      return out;
    });
  });
}

function readConfigRoute(route: JsonFields): CniRoute {
  const out: CniRoute = { ...route.object, dst: route.requiredString("dst") };
  if (route.string("gw") === undefined) delete out.gw;
  return out;
}

function readArgs(config: JsonFields): NetConf["args"] {
  const args = config.nested("args");
  if (args === undefined) return undefined;
  const cni = args.nested("cni");
  if (cni === undefined) return { ...args.object };
  const cniOut: Record<string, unknown> = { ...cni.object };
  const ips = cni.stringArray("ips");
  const mac = cni.string("mac");
  if (ips === undefined) delete cniOut.ips;
  if (mac === undefined) delete cniOut.mac;
  return { ...args.object, cni: cniOut };
}

function readAttachments(config: JsonFields, key: string): CniAttachment[] | undefined {
  return config.objectArray(key)?.map((attachment) => ({
    containerID: attachment.requiredString("containerID"),
    ifname: attachment.requiredString("ifname"),
  }));
}

// Canonical spellings, looked up by lower-case key.
const RUNTIME_KEYS = canonical(["ips", "mac", "dns", "portMappings", "ipRanges", "bandwidth", "infinibandGUID", "deviceID", "aliases", "cgroupPath"]);
const DNS_KEYS = new Map([
  ...canonical(["nameservers", "search", "options", "domain"]),
  ["servers", "nameservers"],
  ["searches", "search"],
]);
const PORT_MAPPING_KEYS = canonical(["hostPort", "containerPort", "protocol", "hostIP"]);
const IP_RANGE_KEYS = canonical(["subnet", "rangeStart", "rangeEnd", "gateway"]);
const BANDWIDTH_KEYS = canonical(["ingressRate", "ingressBurst", "egressRate", "egressBurst"]);

function canonical(names: string[]): Map<string, string> {
  return new Map(names.map((name) => [name.toLowerCase(), name]));
}

/**
 * Renames keys to their canonical spelling; unknown keys keep theirs. When two keys map
 * to the same name, the one already spelled canonically wins.
 */
export function normaliseKeys(object: Record<string, unknown>, names: Map<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const exact = new Set<string>();
  for (const [key, value] of Object.entries(object)) {
    const name = names.get(key.toLowerCase()) ?? key;
    if (exact.has(name)) continue;
    if (name === key) exact.add(name);
    Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function readRuntimeConfig(raw: JsonFields): RuntimeConfig {
  const fields = new JsonFields(normaliseKeys(raw.object, RUNTIME_KEYS), raw.path, INVALID);
  const out: RuntimeConfig = { ...fields.object };

  const ips = fields.stringArray("ips");
  if (ips !== undefined) out.ips = ips;
  fields.string("mac");
  if (fields.has("dns")) {
    const dns = JsonFields.of(fields.object.dns, fields.where("dns"), INVALID);
    out.dns = readDns(new JsonFields(normaliseKeys(dns.object, DNS_KEYS), dns.path, INVALID));
  }
  if (fields.has("portMappings")) {
    out.portMappings = fields.objectArray("portMappings")!.map((mapping) => readPortMapping(new JsonFields(normaliseKeys(mapping.object, PORT_MAPPING_KEYS), mapping.path, INVALID)));
  }
  if (fields.has("ipRanges")) out.ipRanges = readRangeSets(fields, "ipRanges", IP_RANGE_KEYS);
  if (fields.has("bandwidth")) out.bandwidth = normaliseKeys(fields.nested("bandwidth")!.object, BANDWIDTH_KEYS);
  return out;
}

function readPortMapping(mapping: JsonFields): PortMapping {
  const hostPort = mapping.unsigned("hostPort");
  const containerPort = mapping.unsigned("containerPort");
  if (hostPort === undefined) mapping.fail("hostPort", "a port number");
  if (containerPort === undefined) mapping.fail("containerPort", "a port number");
  const out: PortMapping = { ...mapping.object, hostPort, containerPort };
  for (const key of ["protocol", "hostIP"] as const) if (mapping.string(key) === undefined) delete out[key];
  return out;
}
