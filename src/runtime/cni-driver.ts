// The runtime side of CNI, as libcni does it for containerd and podman: load a conflist, run its
// plugins in order for ADD (each given the previous result) and in reverse for DEL, and turn a
// plugin's error JSON into an exception. Tests, the lab and the benchmark all drive plugins through
// this one driver, so podnet and the reference plugins are exercised the same way. Conflists and
// attachments are validated first, as libcni does (conflist.ts).
import { spawn, spawnSync } from "node:child_process";
import { findPlugin as findPluginInPath } from "../cni/delegate.ts";
import { argvInNetnsPath } from "../kernel/netns-exec.ts";
import { type Attachment, type NetworkConfigList, loadConfigList, validateAttachment, validateConfigList, versionAtLeast } from "./conflist.ts";

export { ConfigError, findConfigList, loadConfigList, parseConfigList, validateAttachment, validateConfigList } from "./conflist.ts";
export type { Attachment, NetworkConfigList } from "./conflist.ts";

export type DriverCommand = "ADD" | "DEL" | "CHECK" | "STATUS" | "GC" | "VERSION";

export interface DriverOptions {
  /** Directories searched for plugin binaries (CNI_PATH). */
  cniPath: string[];
  /** Run plugins inside this network namespace (the "node"), e.g. /run/netns/node1, as containerd runs them in the host's. */
  nodeNetns?: string;
  /** Extra environment; the driver otherwise passes only PATH and CNI_*, like conmon's cleanup does. */
  env?: Record<string, string>;
  timeoutMs?: number;
}

export class PluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly command: DriverCommand,
    readonly code: number | undefined,
    readonly msg: string,
    readonly details: string,
    readonly exitCode: number | null,
  ) {
    super(`${plugin} ${command} failed${code === undefined ? "" : ` (code ${code})`}: ${msg}${details ? ` (${details})` : ""}`);
    this.name = "PluginError";
  }
}

export interface InvokeResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/**
 * The plugin binary for `type`: the first executable of that name in cniPath, as libcni's FindInPath.
 * One lookup for the whole tree: the plugin's own delegation (cni/delegate.ts) uses the same.
 */
export function findPlugin(type: string, cniPath: readonly string[]): string {
  try {
    return findPluginInPath(type, [...cniPath]);
  } catch (error) {
    const hint = type.startsWith("podnet") ? " (run npm run build)" : "";
    throw new Error(`${(error as Error).message}${hint}`);
  }
}

function cniArgs(args: Record<string, string> | undefined): string {
  const pairs = Object.entries(args ?? {}).map(([k, v]) => `${k}=${v}`);
  return ["IgnoreUnknown=1", ...pairs].join(";");
}

function pluginConfig(list: NetworkConfigList, plugin: Record<string, unknown>, extra: Record<string, unknown>): string {
  return JSON.stringify({ ...plugin, name: list.name, cniVersion: list.cniVersion, ...extra });
}

function environment(command: DriverCommand, att: Partial<Attachment>, opts: DriverOptions): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_COMMAND: command,
    CNI_CONTAINERID: att.containerId ?? "",
    CNI_NETNS: att.netns ?? "",
    CNI_IFNAME: att.ifname ?? "",
    CNI_ARGS: cniArgs(att.args),
    CNI_PATH: opts.cniPath.join(":"),
    ...opts.env,
  };
}

function argv(binary: string, opts: DriverOptions): [string, string[]] {
  if (!opts.nodeNetns) return [binary, []];
  const [file, ...args] = argvInNetnsPath(opts.nodeNetns, [binary]);
  return [file!, args];
}

/** Execs one plugin binary once and reports what it did, without interpreting it. */
export function invokeSync(binary: string, env: Record<string, string>, stdin: string, opts: DriverOptions): InvokeResult {
  const [file, args] = argv(binary, opts);
  const started = performance.now();
  const run = spawnSync(file, args, { env, input: stdin, encoding: "utf8", timeout: opts.timeoutMs ?? 30_000 });
  return { exitCode: run.status, stdout: run.stdout ?? "", stderr: run.stderr ?? "", durationMs: performance.now() - started };
}

/** The same, without blocking the event loop, so several ADDs can run at once. */
export function invoke(binary: string, env: Record<string, string>, stdin: string, opts: DriverOptions): Promise<InvokeResult> {
  const [file, args] = argv(binary, opts);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ["pipe", "pipe", "pipe"], timeout: opts.timeoutMs ?? 30_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (exitCode) => resolve({ exitCode, stdout, stderr, durationMs: performance.now() - started }));
    // A plugin may exit without reading its stdin (VERSION does, and so does one that fails early): the
    // write then fails with EPIPE, which is not the plugin's answer. Its exit code and output are.
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
  });
}

function interpret(type: string, command: DriverCommand, run: InvokeResult): Record<string, unknown> | undefined {
  if (run.exitCode === 0) {
    const text = run.stdout.trim();
    return text === "" ? undefined : (JSON.parse(text) as Record<string, unknown>);
  }
  throw pluginErrorFrom(type, command, run);
}

/** The error a failed run reports: the plugin's error JSON when it printed one, else its output. */
export function pluginErrorFrom(type: string, command: DriverCommand, run: InvokeResult): PluginError {
  let parsed: { code?: unknown; msg?: unknown; details?: unknown } = {};
  try {
    parsed = JSON.parse(run.stdout) as typeof parsed;
  } catch {
    parsed = {};
  }
  if (typeof parsed !== "object" || parsed === null || typeof parsed.code !== "number") {
    const text = run.stdout.trim() || run.stderr.trim() || `exited with ${run.exitCode}`;
    return new PluginError(type, command, undefined, text, "", run.exitCode);
  }
  const msg = typeof parsed.msg === "string" ? parsed.msg : "";
  const details = typeof parsed.details === "string" ? parsed.details : "";
  return new PluginError(type, command, parsed.code, msg, details, run.exitCode);
}

/** A conflist bound to a CNI_PATH and a node namespace: what a runtime holds per network. */
export class CniNetwork {
  readonly list: NetworkConfigList;

  /** Throws ConfigError for a list libcni would refuse. */
  constructor(
    list: NetworkConfigList,
    readonly opts: DriverOptions,
  ) {
    this.list = validateConfigList(list, `network ${typeof list.name === "string" ? list.name : "?"}`);
  }

  static fromFile(path: string, opts: DriverOptions): CniNetwork {
    return new CniNetwork(loadConfigList(path), opts);
  }

  private async run(command: DriverCommand, plugin: Record<string, unknown>, att: Partial<Attachment>, extra: Record<string, unknown>) {
    const type = String(plugin.type);
    const binary = findPlugin(type, this.opts.cniPath);
    const run = await invoke(binary, environment(command, att, this.opts), pluginConfig(this.list, plugin, extra), this.opts);
    return interpret(type, command, run);
  }

  private runtimeConfig(plugin: Record<string, unknown>, att: Partial<Attachment>): Record<string, unknown> {
    // libcni passes a runtimeConfig key only to plugins that declare the capability.
    const caps = (plugin.capabilities ?? {}) as Record<string, boolean>;
    const wanted = Object.entries(att.runtimeConfig ?? {}).filter(([key]) => caps[key]);
    return wanted.length > 0 ? { runtimeConfig: Object.fromEntries(wanted) } : {};
  }

  private checkAttachment(att: Attachment): void {
    validateAttachment(att, `network ${this.list.name}`);
  }

  async add(att: Attachment): Promise<Record<string, unknown>> {
    this.checkAttachment(att);
    let prev: Record<string, unknown> | undefined;
    for (const plugin of this.list.plugins) {
      const extra = { ...this.runtimeConfig(plugin, att), ...(prev ? { prevResult: prev } : {}) };
      prev = (await this.run("ADD", plugin, att, extra)) ?? prev;
    }
    if (!prev) throw new Error(`network ${this.list.name}: ADD produced no result`);
    return prev;
  }

  async del(att: Attachment, prevResult?: Record<string, unknown>): Promise<void> {
    this.checkAttachment(att);
    for (const plugin of [...this.list.plugins].reverse()) {
      await this.run("DEL", plugin, att, { ...this.runtimeConfig(plugin, att), ...(prevResult ? { prevResult } : {}) });
    }
  }

  async check(att: Attachment, prevResult: Record<string, unknown>): Promise<void> {
    this.checkAttachment(att);
    if (this.list.disableCheck) return;
    for (const plugin of this.list.plugins) await this.run("CHECK", plugin, att, { ...this.runtimeConfig(plugin, att), prevResult });
  }

  /** True when the list's version has STATUS and GC (1.1.0); libcni skips both for older lists. */
  get hasStatus(): boolean {
    return versionAtLeast(this.list.cniVersion, "1.1.0");
  }

  /** Resolves when every plugin reports ready; throws the first PluginError (50, 51: not ready). */
  async status(): Promise<void> {
    if (!this.hasStatus) return;
    for (const plugin of this.list.plugins) await this.run("STATUS", plugin, {}, {});
  }

  async gc(valid: { containerID: string; ifname: string }[]): Promise<void> {
    if (!this.hasStatus) return;
    for (const plugin of this.list.plugins) {
      await this.run("GC", plugin, {}, { "cni.dev/valid-attachments": valid, "cni.dev/attachments": valid });
    }
  }
}
