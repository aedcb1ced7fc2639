// Debian's podman, with its CNI backend, confined to a node namespace and to temp dirs.
// Every podman run here gets its own containers.conf and storage.conf, so the system's podman
// config, image store and lock segment are never read or written. podman still keeps libcni's
// result cache in /var/lib/cni/results (podman 4.3 gives libcni no other cache dir); it removes
// each entry on `rm`, and `destroy` removes the directories if this helper created them.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NetworkConfigList } from "../../src/runtime/cni-driver.ts";
import { tempDir, type Netns } from "./netns.ts";

export const PODMAN = "podman";
const BUSYBOX = "/bin/busybox";
const BUSYBOX_APPLETS = ["sh", "sleep", "ping", "nc", "ip", "cat", "hostname"];
/** libcni's default cache dir, which podman 4.3 uses for every CNI network. */
export const LIBCNI_CACHE = "/var/lib/cni";

export interface PodmanCommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  name: string;
  ip?: string;
  mac?: string;
  /** The container's command; by default it sleeps until removed. */
  command?: string[];
}

export interface ContainerNetwork {
  ip: string;
  mac: string;
  gateway: string;
  sandboxKey: string;
}

export interface PodmanSandboxOptions {
  node: Netns;
  conflist: NetworkConfigList;
  cniPath: string[];
}

/** True when this machine can run the podman tests at all. */
export function podmanAvailable(): boolean {
  const run = spawnSync(PODMAN, ["--version"], { encoding: "utf8" });
  return run.status === 0 && existsSync(BUSYBOX);
}

/** podman pointed at private config and storage, running inside one node namespace. */
export class PodmanSandbox {
  readonly dir: string;
  readonly rootfs: string;
  readonly network: string;
  private readonly env: Record<string, string>;
  private readonly createdCacheDir: boolean;

  constructor(private readonly opts: PodmanSandboxOptions) {
    this.dir = tempDir("podman");
    this.network = opts.conflist.name;
    this.rootfs = join(this.dir, "rootfs");
    this.createdCacheDir = !existsSync(LIBCNI_CACHE);
    const netConfDir = join(this.dir, "net.d");
    for (const sub of ["net.d", "graphroot", "runroot", "tmp", "xdg", "rootfs/bin"]) mkdirSync(join(this.dir, sub), { recursive: true });
    writeFileSync(join(netConfDir, `${this.network}.conflist`), JSON.stringify(opts.conflist, null, 2));
    this.writeRootfs();
    writeFileSync(join(this.dir, "containers.conf"), this.containersConf(netConfDir));
    writeFileSync(join(this.dir, "storage.conf"), this.storageConf());
    this.env = {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: this.dir,
      TMPDIR: join(this.dir, "tmp"),
      XDG_RUNTIME_DIR: join(this.dir, "xdg"),
      CONTAINERS_CONF: join(this.dir, "containers.conf"),
      CONTAINERS_STORAGE_CONF: join(this.dir, "storage.conf"),
    };
  }

  private writeRootfs(): void {
    const bin = join(this.rootfs, "bin");
    copyFileSync(BUSYBOX, join(bin, "busybox"));
    for (const applet of BUSYBOX_APPLETS) symlinkSync("busybox", join(bin, applet));
  }

  private containersConf(netConfDir: string): string {
    const list = (items: string[]) => `[${items.map((i) => JSON.stringify(i)).join(", ")}]`;
    return [
      "[containers]",
      // CAP_SYS_RESOURCE is missing here, so runc may only lower rlimits, never raise them.
      `default_ulimits = ${list(["nofile=1024:1024", "nproc=4096:4096"])}`,
      "",
      "[network]",
      'network_backend = "cni"',
      `cni_plugin_dirs = ${list(this.opts.cniPath)}`,
      `network_config_dir = ${JSON.stringify(netConfDir)}`,
      `default_network = ${JSON.stringify(this.network)}`,
      "",
      "[engine]",
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${JSON.stringify(join(this.dir, "events.log"))}`,
      'runtime = "runc"',
      // File locks live under tmp_dir; the default shm locks would create /dev/shm/libpod_lock.
      'lock_type = "file"',
      `tmp_dir = ${JSON.stringify(join(this.dir, "tmp"))}`,
      `static_dir = ${JSON.stringify(join(this.dir, "graphroot", "libpod"))}`,
      `volume_path = ${JSON.stringify(join(this.dir, "graphroot", "volumes"))}`,
      "",
    ].join("\n");
  }

  private storageConf(): string {
    return [
      "[storage]",
      'driver = "vfs"',
      `graphroot = ${JSON.stringify(join(this.dir, "graphroot"))}`,
      `runroot = ${JSON.stringify(join(this.dir, "runroot"))}`,
      "",
    ].join("\n");
  }

  /**
   * Runs podman inside the node namespace. nsenter switches only the network namespace: podman
   * bind-mounts its pod netns under /run/netns, and `ip netns exec` would hide that mount in a
   * private mount namespace from the runtime's later `rm`.
   */
  podman(...args: string[]): PodmanCommandResult {
    const run = spawnSync("nsenter", [`--net=${this.opts.node.path}`, PODMAN, ...args], {
      env: this.env,
      cwd: this.dir,
      encoding: "utf8",
      timeout: 120_000,
    });
    return { status: run.status, stdout: run.stdout ?? "", stderr: run.stderr ?? (run.error ? String(run.error) : "") };
  }

  private mustPodman(...args: string[]): string {
    const run = this.podman(...args);
    if (run.status !== 0) throw new Error(`podman ${args.join(" ")} exited ${run.status}: ${run.stderr.trim() || run.stdout.trim()}`);
    return run.stdout;
  }

  /** Starts a detached busybox container on the sandbox's network; returns its ID. */
  run(opts: RunOptions): string {
    const args = ["run", "-d", "--name", opts.name, "--network", this.network];
    if (opts.ip) args.push("--ip", opts.ip);
    if (opts.mac) args.push("--mac-address", opts.mac);
    // --rootfs takes the place of the image, so it comes last before the command.
    args.push("--rootfs", this.rootfs, ...(opts.command ?? ["sleep", "600"]));
    return this.mustPodman(...args).trim();
  }

  exec(name: string, ...command: string[]): string {
    return this.mustPodman("exec", name, ...command);
  }

  tryExec(name: string, ...command: string[]): PodmanCommandResult {
    return this.podman("exec", name, ...command);
  }

  /** What podman recorded from the CNI result. */
  networkOf(name: string): ContainerNetwork {
    const [inspected] = JSON.parse(this.mustPodman("inspect", "--type", "container", name)) as {
      NetworkSettings: { SandboxKey: string; Networks: Record<string, { IPAddress: string; MacAddress: string; Gateway: string }> };
    }[];
    const settings = inspected?.NetworkSettings;
    const net = settings?.Networks[this.network];
    if (!settings || !net) throw new Error(`container ${name} is not on network ${this.network}`);
    return { ip: net.IPAddress, mac: net.MacAddress, gateway: net.Gateway, sandboxKey: settings.SandboxKey };
  }

  /** Removes containers the way an operator does: podman stops them and runs CNI DEL. */
  rm(...names: string[]): void {
    this.mustPodman("rm", "-f", "-t", "0", ...names);
  }

  /** IDs of every container podman knows in this sandbox. */
  containerIds(): string[] {
    return this.mustPodman("ps", "-a", "-q", "--no-trunc").split("\n").filter((l) => l !== "");
  }

  /** libcni's cached results for this sandbox's network; podman deletes each on rm. */
  cachedResults(): string[] {
    const dir = join(LIBCNI_CACHE, "results");
    if (!existsSync(dir)) return [];
    return readdirSync(dir).filter((f) => f.startsWith(`${this.network}-`));
  }

  /** Removes every container podman knows here, so one failed test does not leak into the next. */
  removeAll(): void {
    this.podman("rm", "-a", "-f", "-t", "0");
  }

  /** Removes every container still here (running CNI DEL for each), then the cache dirs podman made. */
  destroy(): void {
    this.removeAll();
    if (this.createdCacheDir) {
      for (const dir of [join(LIBCNI_CACHE, "results"), LIBCNI_CACHE]) {
        try {
          rmdirSync(dir);
        } catch {
          // Not empty (someone else's entries) or already gone: leave it.
        }
      }
    }
  }
}
