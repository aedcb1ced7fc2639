// Where an ADD or DEL spends its time, measured piece by piece rather than guessed:
//   - /bin/cat (which, unlike /bin/true, reads the driver's stdin) with and without
//     `nsenter --net=`: the driver's own cost, equal for both sides;
//   - VERSION of each plugin binary: exec plus runtime start, since VERSION does no work;
//   - the IPAM plugin alone, ADD and DEL: for the reference that is exactly the host-local exec
//     bridge pays; for podnet, minus its own VERSION, the IPAM work done in-process;
//   - optionally an empty `bun build --compile` binary: the floor for any Bun-built plugin;
//   - with podnet's resident service: VERSION through the forwarder and the service, which is
//     what a served call pays to be exec'd and answered (the Bun executable never starts).
// Whatever is left of a full ADD or DEL after start-up and IPAM is kernel work plus parsing and
// result encoding; the report computes that by difference.
import { spawnSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { invoke, type DriverOptions, type InvokeResult } from "../src/runtime/cni-driver.ts";
import { startService, type RunningService } from "../test/helpers/cni-service.ts";
import { Netns, tempDir } from "../test/helpers/netns.ts";
import { median } from "./cni-stats.ts";
import type { BenchSide } from "./cni-sides.ts";

export interface SideBreakdown {
  mainVersionMs: number;
  /** With a resident service: VERSION sent by the forwarder to the service and answered there. */
  servedVersionMs?: number;
  ipamVersionMs: number;
  ipamAddMs: number;
  ipamDelMs: number;
}

export interface Breakdown {
  samples: number;
  spawnMs: number;
  nsenterSpawnMs: number;
  /** An empty program compiled with `bun build --compile`, run through nsenter; absent without Bun. */
  bunFloorMs?: number;
  sides: Partial<Record<BenchSide["name"], SideBreakdown>>;
}

const BASE_ENV = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" };

function mustSucceed(what: string, run: InvokeResult): number {
  if (run.exitCode !== 0) throw new Error(`${what} exited ${run.exitCode}: ${run.stdout}${run.stderr}`);
  return run.durationMs;
}

function cniEnv(side: BenchSide, command: string, containerId = "", netns = ""): Record<string, string> {
  return {
    ...BASE_ENV,
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1",
    CNI_PATH: side.cniPath.join(":"),
  };
}

function pluginStdin(side: BenchSide, dataDir: string): string {
  const list = side.confList(dataDir);
  return JSON.stringify({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion });
}

/** Compiles an empty program with Bun into dir; returns its path, or undefined when Bun is missing or fails. */
function compileEmptyBun(bun: string, dir: string): string | undefined {
  if (!existsSync(bun)) return undefined;
  const source = join(dir, "empty.ts");
  const binary = join(dir, "empty");
  // It reads stdin as a plugin does; a program that exits without reading makes the driver's write fail.
  writeFileSync(source, 'import { readFileSync } from "node:fs";\nreadFileSync(0);\nprocess.exit(0);\n');
  const run = spawnSync(bun, ["build", "--compile", "--minify", "--bytecode", "--target=bun-linux-x64", source, "--outfile", binary], {
    encoding: "utf8",
    cwd: dir,
  });
  return run.status === 0 && existsSync(binary) ? binary : undefined;
}

export async function measureBreakdown(sides: readonly BenchSide[], podNetns: string, samples: number, bun: string): Promise<Breakdown> {
  const node = Netns.create("bn");
  const scratch = tempDir("bench-breakdown");
  const dataDirs = new Map(sides.map((side) => [side.name, tempDir(`bench-ipam-${side.name}`)]));
  const services = new Map<string, RunningService>();
  try {
    for (const side of sides) {
      if (side.service) services.set(side.name, await startService(side.mainBinary, node.path, side.serviceWorkers === undefined ? {} : { workers: side.serviceWorkers }));
    }
    const inNode: DriverOptions = { cniPath: [], nodeNetns: node.path };
    const direct: DriverOptions = { cniPath: [] };
    const bunFloor = compileEmptyBun(bun, scratch);

    const spawnMs: number[] = [];
    const nsenterSpawnMs: number[] = [];
    const bunFloorMs: number[] = [];
    const perSide = new Map(sides.map((side) => [side.name, { mainVersion: [] as number[], servedVersion: [] as number[], ipamVersion: [] as number[], ipamAdd: [] as number[], ipamDel: [] as number[] }]));

    for (let i = 0; i < samples; i++) {
      spawnMs.push(mustSucceed("/bin/cat", await invoke("/bin/cat", BASE_ENV, "", direct)));
      nsenterSpawnMs.push(mustSucceed("nsenter /bin/cat", await invoke("/bin/cat", BASE_ENV, "", inNode)));
      if (bunFloor) bunFloorMs.push(mustSucceed("empty bun binary", await invoke(bunFloor, BASE_ENV, "", inNode)));
      // Alternate which side goes first, so neither always runs on a cache the other just warmed.
      const ordered = i % 2 === 0 ? sides : [...sides].reverse();
      for (const side of ordered) {
        const times = perSide.get(side.name)!;
        const dataDir = dataDirs.get(side.name)!;
        // VERSION gets no stdin: Go's skel answers without reading it, and the driver's write to a
        // pipe whose reader already exited fails with EPIPE (an unhandled error in the driver).
        const version = "";
        times.mainVersion.push(mustSucceed(`${side.name} VERSION`, await invoke(side.mainBinary, cniEnv(side, "VERSION"), version, inNode)));
        const service = services.get(side.name);
        if (service) {
          const served = JSON.stringify({ cniVersion: side.cniVersion, serviceSocket: service.socket });
          times.servedVersion.push(mustSucceed(`${side.name} VERSION through the service`, await invoke(side.mainBinary, cniEnv(side, "VERSION"), served, inNode)));
        }
        times.ipamVersion.push(mustSucceed(`${side.name} IPAM VERSION`, await invoke(side.ipamBinary, cniEnv(side, "VERSION"), version, inNode)));
        const containerId = `breakdown-${i}`;
        const stdin = pluginStdin(side, dataDir);
        times.ipamAdd.push(mustSucceed(`${side.name} IPAM ADD`, await invoke(side.ipamBinary, cniEnv(side, "ADD", containerId, podNetns), stdin, inNode)));
        times.ipamDel.push(mustSucceed(`${side.name} IPAM DEL`, await invoke(side.ipamBinary, cniEnv(side, "DEL", containerId, podNetns), stdin, inNode)));
      }
    }

    const result: Breakdown = { samples, spawnMs: median(spawnMs), nsenterSpawnMs: median(nsenterSpawnMs), sides: {} };
    if (bunFloorMs.length > 0) result.bunFloorMs = median(bunFloorMs);
    for (const [name, times] of perSide) {
      result.sides[name] = {
        mainVersionMs: median(times.mainVersion),
        ...(times.servedVersion.length > 0 ? { servedVersionMs: median(times.servedVersion) } : {}),
        ipamVersionMs: median(times.ipamVersion),
        ipamAddMs: median(times.ipamAdd),
        ipamDelMs: median(times.ipamDel),
      };
    }
    return result;
  } finally {
    for (const service of services.values()) await service.kill();
    node.delete();
    rmSync(scratch, { recursive: true, force: true });
    for (const dir of dataDirs.values()) rmSync(dir, { recursive: true, force: true });
  }
}
