// CNI_ARGS: "K=V;K=V", the runtime's per-attachment extras (podman's IP= and MAC=,
// kubelet's K8S_POD_*).
//
// libcni's rule (types.LoadArgs) makes a plugin fail on keys it does not know unless
// IgnoreUnknown=1 is passed. podnet applies it where a mistake should stop the pod: ADD and
// CHECK (`rejectUnknownArgs`, called by parseEnv). DEL, which a runtime may not retry, never
// fails over an unknown key: the keys are kept in `raw` and ignored. kubelet, containerd and
// podman all pass IgnoreUnknown=1 with their K8S_* keys.
//
// Two small leniencies over libcni: empty segments (a trailing ";") are skipped, and a
// value may itself contain "=" (only the first one splits key from value).
import { ipFamily } from "../net/address.ts";
import { CniError, ErrorCode, type CniArgs } from "./types.ts";

const MAC_SYNTAX = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

export function parseCniArgs(raw: string | undefined): CniArgs {
  // A Map, so that a key such as "__proto__" is just a key.
  const collected = new Map<string, string>();
  for (const segment of (raw ?? "").split(";")) {
    if (segment === "") continue;
    const equals = segment.indexOf("=");
    if (equals <= 0) {
      throw new CniError(ErrorCode.InvalidEnv, `CNI_ARGS: invalid pair ${JSON.stringify(segment)}`, 'expected "KEY=VALUE" pairs separated by ";"');
    }
    collected.set(segment.slice(0, equals), segment.slice(equals + 1));
  }
  const pairs: Record<string, string> = Object.fromEntries(collected);

  const args: CniArgs = { ignoreUnknown: parseIgnoreUnknown(pairs.IgnoreUnknown), raw: pairs };
  if (pairs.IP !== undefined && pairs.IP !== "") args.ip = parseIpList(pairs.IP);
  if (pairs.MAC !== undefined && pairs.MAC !== "") args.mac = parseMac(pairs.MAC);
  if (pairs.K8S_POD_NAMESPACE) args.k8sPodNamespace = pairs.K8S_POD_NAMESPACE;
  if (pairs.K8S_POD_NAME) args.k8sPodName = pairs.K8S_POD_NAME;
  if (pairs.K8S_POD_INFRA_CONTAINER_ID) args.k8sPodInfraContainerId = pairs.K8S_POD_INFRA_CONTAINER_ID;
  if (pairs.K8S_POD_UID) args.k8sPodUid = pairs.K8S_POD_UID;
  return args;
}

/** libcni's boolean: 1/true and 0/false, any case. */
function parseIgnoreUnknown(value: string | undefined): boolean {
  if (value === undefined || value === "") return false;
  const lower = value.toLowerCase();
  if (lower === "1" || lower === "true") return true;
  if (lower === "0" || lower === "false") return false;
  throw new CniError(ErrorCode.InvalidEnv, `CNI_ARGS: IgnoreUnknown must be 1, true, 0 or false, got ${JSON.stringify(value)}`);
}

/** IP= holds one or more addresses, comma-separated; a prefix length is not part of it. */
function parseIpList(value: string): string[] {
  const ips = value.split(",").map((ip) => ip.trim());
  for (const ip of ips) {
    if (ipFamily(ip) === 0) throw new CniError(ErrorCode.InvalidEnv, `CNI_ARGS: IP=${value} contains an invalid address ${JSON.stringify(ip)}`);
  }
  return ips;
}

/** Normalised to lower case with colons, the form `ip link` prints and the kernel code expects. */
function parseMac(value: string): string {
  if (!MAC_SYNTAX.test(value)) throw new CniError(ErrorCode.InvalidEnv, `CNI_ARGS: invalid MAC=${value}`, "expected six hex octets, e.g. 02:42:ac:11:00:02");
  return value.toLowerCase().replaceAll("-", ":");
}

/** The keys podnet reads; any other key is "unknown" in libcni's sense. */
export const KNOWN_CNI_ARGS: ReadonlySet<string> = new Set(["IgnoreUnknown", "IP", "MAC", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"]);

/** libcni's rule: unknown keys are an error unless IgnoreUnknown is true. */
export function rejectUnknownArgs(args: CniArgs): void {
  if (args.ignoreUnknown) return;
  const unknown = Object.keys(args.raw).filter((key) => !KNOWN_CNI_ARGS.has(key));
  if (unknown.length > 0) {
    throw new CniError(ErrorCode.InvalidEnv, `CNI_ARGS: unknown args ${JSON.stringify(unknown)}`, "pass IgnoreUnknown=1 to have them ignored");
  }
}
