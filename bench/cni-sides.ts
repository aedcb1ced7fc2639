// The two plugins under comparison, described the same way so the benchmark can treat them alike.
// Both get the same bridge name, subnet and gateway settings; only the plugin types and the
// cniVersion differ (Debian's reference plugins stop at 1.0.0, podnet speaks 1.1.0).
import { join } from "node:path";
import type { NetworkConfigList } from "../src/runtime/cni-driver.ts";

export const BENCH_NETWORK = "bench";
export const BENCH_BRIDGE = "cni0";
export const BENCH_SUBNET = "10.244.1.0/24";

export interface BenchSide {
  name: "podnet" | "reference";
  /** CNI_PATH for the run: where the main plugin and its IPAM are found. */
  cniPath: string[];
  cniVersion: string;
  /** The main plugin and the IPAM plugin as separate executables (for start-up and IPAM timing). */
  mainBinary: string;
  ipamBinary: string;
  /** podnet only: run each scenario's node with a resident `podnet serve`, which the forwarder sends every call to. */
  service?: boolean;
  /** With a service: its `--workers` (the service's default when unset). */
  serviceWorkers?: number;
  /** Every file the side installs (for the install size). */
  installFiles: string[];
  /** The conflist of a node whose IPAM state lives in dataDir, naming the service's socket if one runs. */
  confList(dataDir: string, serviceSocket?: string): NetworkConfigList;
}

function bridgeConfList(cniVersion: string, pluginType: string, ipamType: string, dataDir: string, serviceSocket?: string): NetworkConfigList {
  return {
    cniVersion,
    name: BENCH_NETWORK,
    plugins: [
      {
        type: pluginType,
        bridge: BENCH_BRIDGE,
        isGateway: true,
        isDefaultGateway: true,
        ipam: { type: ipamType, ranges: [[{ subnet: BENCH_SUBNET }]], dataDir },
        ...(serviceSocket ? { serviceSocket } : {}),
      },
    ],
  };
}

export function podnetSide(binDir: string, service = false, serviceWorkers?: number): BenchSide {
  return {
    name: "podnet",
    service,
    ...(serviceWorkers === undefined ? {} : { serviceWorkers }),
    // The forwarder a runtime execs, and the one Bun executable (podnet-ipam is a hard link to it).
    installFiles: [join(binDir, "podnet"), join(binDir, "podnet-plugin"), join(binDir, "podnet-ipam")],
    cniPath: [binDir],
    cniVersion: "1.1.0",
    mainBinary: join(binDir, "podnet"),
    ipamBinary: join(binDir, "podnet-ipam"),
    confList: (dataDir, serviceSocket) => bridgeConfList("1.1.0", "podnet", "podnet-ipam", dataDir, serviceSocket),
  };
}

export function referenceSide(binDir: string): BenchSide {
  return {
    name: "reference",
    cniPath: [binDir],
    cniVersion: "1.0.0",
    installFiles: [join(binDir, "bridge"), join(binDir, "host-local")],
    mainBinary: join(binDir, "bridge"),
    ipamBinary: join(binDir, "host-local"),
    confList: (dataDir) => bridgeConfList("1.0.0", "bridge", "host-local", dataDir),
  };
}
