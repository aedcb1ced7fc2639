// Delegation (spec section 4): run another CNI plugin, found by name in CNI_PATH, with
// the caller's environment and the full network config on stdin. This is how podnet
// hands IPAM to e.g. the reference host-local.
//
// Failure mapping:
//   type is a path ("/", "\", "." or "..")   InvalidConfig (7): the config is wrong
//   no executable of that name in CNI_PATH    InvalidConfig (7): the config names a plugin
//                                             this node does not have
//   delegate exits non-zero with error JSON   its own code and msg; details say which plugin
//   delegate exits non-zero without JSON,     Delegate (102)
//   dies by a signal, or cannot be started
//   ADD output that is not a valid result     Decode (6)
//
// Version fallback: the delegate receives the caller's config, cniVersion included. A
// delegate older than that version (Debian's host-local 1.1.1 stops at 1.0.0) answers
// IncompatibleVersion. Then, unless `versionFallback` is false, we ask it for VERSION and
// retry once with the newest version both sides support that is older than the config's.
// Results are read back into the 1.1 shape either way. STATUS and GC have no older
// version to fall back to: a delegate whose VERSION shows it predates them is skipped, since
// it has nothing to report or collect through those verbs.
import { accessSync, constants, statSync } from "node:fs";
import { join } from "node:path";
import { validatePluginType } from "./config.ts";
import { isRecord } from "./json-fields.ts";
import { compareVersions, isSupportedVersion, isWellFormedVersion, minimumVersionFor, upgradeResult, type VersionInfo } from "./version.ts";
import { CURRENT_VERSION, CniError, ErrorCode, type CniResult } from "./types.ts";

export type DelegateCommand = "ADD" | "DEL" | "CHECK" | "STATUS" | "GC";

export interface ExecPluginOptions {
  command: DelegateCommand;
  cniPath: string[];
  conf: object;
  env: Record<string, string | undefined>;
  /** Retry once with an older cniVersion when the delegate does not support the config's. Default true. */
  versionFallback?: boolean;
}

/** Runs delegate `type`; returns its result (1.1 shape) for ADD, undefined for the other verbs. */
export function execPlugin(type: string, opts: ExecPluginOptions): CniResult | undefined {
  const binary = findPlugin(type, opts.cniPath);
  const configVersion = isRecord(opts.conf) && typeof opts.conf.cniVersion === "string" ? opts.conf.cniVersion : undefined;
  try {
    return runDelegate(type, binary, opts.command, opts.conf, opts.env, configVersion);
  } catch (err) {
    if ((opts.command === "STATUS" || opts.command === "GC") && predatesVerb(type, binary, opts)) return undefined;
    const older = opts.versionFallback === false ? undefined : fallbackVersion(err, type, binary, opts, configVersion);
    if (older === undefined) throw err;
    return runDelegate(type, binary, opts.command, { ...opts.conf, cniVersion: older }, opts.env, older);
  }
}

/** Asks delegate `type` which CNI versions it speaks (the VERSION verb). */
export function queryPluginVersions(type: string, opts: { cniPath: string[]; env: Record<string, string | undefined>; cniVersion?: string }): VersionInfo {
  return readVersions(type, findPlugin(type, opts.cniPath), opts.env, opts.cniVersion ?? CURRENT_VERSION);
}

function readVersions(type: string, binary: string, env: Record<string, string | undefined>, cniVersion: string): VersionInfo {
  const stdout = invoke(type, binary, "VERSION", { cniVersion }, env);
  const parsed = parseJson(stdout);
  if (!isRecord(parsed) || typeof parsed.cniVersion !== "string") {
    throw new CniError(ErrorCode.Decode, `plugin ${JSON.stringify(type)} gave an invalid VERSION answer`, stdout.slice(0, 200));
  }
  const supported = parsed.supportedVersions;
  // A plugin of spec 0.2.0 may answer without a list; libcni reads that as 0.1.0 and 0.2.0.
  const supportedVersions = Array.isArray(supported) ? supported.filter((v): v is string => typeof v === "string") : parsed.cniVersion === "0.2.0" ? ["0.1.0", "0.2.0"] : [];
  return { cniVersion: parsed.cniVersion, supportedVersions };
}

/** The first executable regular file named `type` in the CNI_PATH directories, in order. */
export function findPlugin(type: string, cniPath: string[]): string {
  if (type === "") throw new CniError(ErrorCode.InvalidConfig, "delegated plugin type is empty");
  validatePluginType(type, "delegated plugin type");
  for (const dir of cniPath) {
    if (dir === "") continue;
    const candidate = join(dir, type);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Missing or not executable here: keep looking, as PATH lookup does.
    }
  }
  throw new CniError(ErrorCode.InvalidConfig, `failed to find plugin ${JSON.stringify(type)} in path [${cniPath.join(" ")}]`, "check the plugin's type and CNI_PATH");
}

function runDelegate(type: string, binary: string, command: DelegateCommand, conf: object, env: Record<string, string | undefined>, configVersion: string | undefined): CniResult | undefined {
  const stdout = invoke(type, binary, command, conf, env);
  if (command !== "ADD") return undefined;
  const parsed = parseJson(stdout);
  if (parsed === undefined) throw new CniError(ErrorCode.Decode, `plugin ${JSON.stringify(type)} printed no valid JSON result`, stdout.slice(0, 200));
  try {
    return upgradeResult(parsed, configVersion);
  } catch (err) {
    if (err instanceof CniError) throw new CniError(err.code, `plugin ${JSON.stringify(type)} returned an invalid result: ${err.message}`, err.details);
    throw err;
  }
}

/** Runs the binary; returns stdout on exit 0, throws the delegate's error otherwise. */
function invoke(type: string, binary: string, command: DelegateCommand | "VERSION", conf: object, env: Record<string, string | undefined>): string {
  const childEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined) childEnv[key] = value;
  childEnv.CNI_COMMAND = command;

  // child_process is loaded on first use: only ADD/DEL with a delegated IPAM need it, and loading
  // it up front would add to every plugin start.
  const run = process.getBuiltinModule("node:child_process").spawnSync(binary, [], {
    env: childEnv,
    input: JSON.stringify(conf),
    // The spec wants the delegate's stderr on ours.
    stdio: ["pipe", "pipe", "inherit"],
    maxBuffer: 16 * 1024 * 1024,
  });
  // EPIPE only means the delegate exited without reading its config; its exit status still tells.
  const broken = run.error !== undefined && (run.error as NodeJS.ErrnoException).code === "EPIPE";
  if (run.error && !broken) throw new CniError(ErrorCode.Delegate, `failed to run plugin ${JSON.stringify(type)}: ${run.error.message}`, binary);
  const stdout = run.stdout ? run.stdout.toString("utf8") : "";
  if (run.status === 0) return stdout;

  const reported = parseJson(stdout);
  const where = `delegated plugin ${JSON.stringify(type)} (${binary}, ${command})`;
  if (isRecord(reported) && typeof reported.code === "number" && Number.isSafeInteger(reported.code)) {
    const msg = typeof reported.msg === "string" ? reported.msg : "";
    const details = typeof reported.details === "string" && reported.details !== "" ? `: ${reported.details}` : "";
    throw new CniError(reported.code, msg || `plugin ${JSON.stringify(type)} failed`, `${where}${details}`);
  }
  const how = run.status === null ? `was killed by ${run.signal ?? "a signal"}` : `exited with status ${run.status}`;
  throw new CniError(ErrorCode.Delegate, `plugin ${JSON.stringify(type)} ${how}`, `${where}${stdout ? `: ${stdout.slice(0, 200)}` : ""}`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * True when the delegate's VERSION answer shows it is older than `command` (STATUS and GC came
 * with 1.1.0). Such a plugin cannot take part: Debian's host-local 1.1.1 answers either verb with
 * "missing containerID", which says nothing about the node. Asked only after a failure, so the
 * common case costs no extra exec.
 */
function predatesVerb(type: string, binary: string, opts: ExecPluginOptions): boolean {
  const minimum = minimumVersionFor(opts.command);
  try {
    return !readVersions(type, binary, opts.env, minimum).supportedVersions.some((v) => isWellFormedVersion(v) && compareVersions(v, minimum) >= 0);
  } catch {
    return false;
  }
}

/** The version to retry with after an IncompatibleVersion from the delegate, if there is one. */
function fallbackVersion(err: unknown, type: string, binary: string, opts: ExecPluginOptions, configVersion: string | undefined): string | undefined {
  if (!(err instanceof CniError) || err.code !== ErrorCode.IncompatibleVersion || !isWellFormedVersion(configVersion)) return undefined;
  let theirs: string[];
  try {
    theirs = readVersions(type, binary, opts.env, configVersion).supportedVersions;
  } catch {
    return undefined;
  }
  const minimum = minimumVersionFor(opts.command);
  const candidates = theirs
    .filter((v) => isSupportedVersion(v) && compareVersions(v, configVersion) < 0 && compareVersions(v, minimum) >= 0)
    .sort(compareVersions);
  return candidates[candidates.length - 1];
}
