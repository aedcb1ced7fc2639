// Loading and validating CNI network configuration lists, and checking attachments, with the rules
// libcni applies before it runs any plugin (libcni's conf.go ConfListFromBytes, api.go validate, and
// pkg/utils ValidateContainerID / ValidateNetworkName / ValidateInterfaceName). A runtime that skipped
// them would hand plugins input a real runtime never sends. Pure apart from reading files.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { validatePluginType } from "../cni/config.ts";
import { CNI_NAME_SYNTAX, interfaceNameProblem } from "../cni/env.ts";
import { compareVersions, isWellFormedVersion } from "../cni/version.ts";

export interface NetworkConfigList {
  cniVersion: string;
  name: string;
  /** libcni's disableCheck: CHECK is skipped for this network. */
  disableCheck?: boolean;
  plugins: Record<string, unknown>[];
}

/** What a runtime hands one plugin of a network: which container and which of its interfaces. */
export interface Attachment {
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS, without the leading IgnoreUnknown which the driver adds. */
  args?: Record<string, string>;
  runtimeConfig?: Record<string, unknown>;
}

/** Input that libcni would refuse: `field` names what is wrong, e.g. "plugins[1].type". */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly field: string,
    problem: string,
  ) {
    super(`${source}: ${field} ${problem}`);
    this.name = "ConfigError";
  }
}

// Network names and container IDs follow pkg/utils/utils.go's cniValidNameChars (CNI_NAME_SYNTAX, cni/env.ts).

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks a parsed conflist and returns it typed; throws ConfigError naming the first bad field. */
export function validateConfigList(value: unknown, source = "conflist"): NetworkConfigList {
  if (!isObject(value)) throw new ConfigError(source, "the list", "must be a JSON object");
  const { cniVersion, name, plugins, disableCheck } = value;
  if (typeof cniVersion !== "string" || !isWellFormedVersion(cniVersion)) {
    throw new ConfigError(source, "cniVersion", `must be a version such as "1.1.0", got ${JSON.stringify(cniVersion)}`);
  }
  if (typeof name !== "string" || name === "") throw new ConfigError(source, "name", "is missing");
  if (!CNI_NAME_SYNTAX.test(name)) throw new ConfigError(source, "name", `"${name}" must start with a letter or digit and contain only letters, digits, _ . -`);
  if (disableCheck !== undefined && typeof disableCheck !== "boolean") throw new ConfigError(source, "disableCheck", "must be true or false");
  if (!Array.isArray(plugins)) throw new ConfigError(source, "plugins", "is missing");
  if (plugins.length === 0) throw new ConfigError(source, "plugins", "must not be empty");
  plugins.forEach((plugin: unknown, i: number) => {
    if (!isObject(plugin)) throw new ConfigError(source, `plugins[${i}]`, "must be a JSON object");
    const type = plugin.type;
    if (typeof type !== "string" || type === "") throw new ConfigError(source, `plugins[${i}].type`, "is missing");
    // libcni's FindInPath refuses a plugin name with a path separator: the type names a binary in CNI_PATH.
    // The same rule as the plugin's own delegation (cni/config.ts).
    try {
      validatePluginType(type, "type");
    } catch {
      throw new ConfigError(source, `plugins[${i}].type`, `${JSON.stringify(type)} must be a plugin name, not a path`);
    }
  });
  return { ...value, cniVersion, name, plugins: plugins as Record<string, unknown>[] } as NetworkConfigList;
}

export function parseConfigList(text: string, source = "conflist"): NetworkConfigList {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(source, "the file", `is not JSON: ${(error as Error).message}`);
  }
  return validateConfigList(parsed, source);
}

export function loadConfigList(path: string): NetworkConfigList {
  return parseConfigList(readFileSync(path, "utf8"), path);
}

/**
 * The conflist a runtime would load from confDir: the first *.conflist by name, as containerd's
 * libcni loader picks the lexically first network. Undefined when there is none yet.
 */
export function findConfigList(confDir: string): { path: string; list: NetworkConfigList } | undefined {
  if (!existsSync(confDir)) return undefined;
  const name = readdirSync(confDir)
    .filter((f) => f.endsWith(".conflist"))
    .sort()[0];
  if (!name) return undefined;
  const path = join(confDir, name);
  return { path, list: loadConfigList(path) };
}

/** libcni's checks on the runtime's side of an attachment, before any plugin runs. */
export function validateAttachment(att: Pick<Attachment, "containerId" | "ifname">, source = "attachment"): void {
  if (att.containerId === "") throw new ConfigError(source, "containerId", "is missing");
  if (!CNI_NAME_SYNTAX.test(att.containerId)) {
    throw new ConfigError(source, "containerId", `"${att.containerId}" must start with a letter or digit and contain only letters, digits, _ . -`);
  }
  // The same rules the plugin's side applies to CNI_CONTAINERID and CNI_IFNAME (cni/env.ts), as libcni
  // and skel share them in Go (pkg/utils).
  const problem = interfaceNameProblem(att.ifname);
  if (problem !== undefined) throw new ConfigError(source, "ifname", `${JSON.stringify(att.ifname)} ${problem}`);
}

/** True when `version` (x.y.z) is at least `min`. */
export function versionAtLeast(version: string, min: string): boolean {
  return compareVersions(version, min) >= 0;
}
