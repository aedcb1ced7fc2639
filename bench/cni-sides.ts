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
  /** The conflist of a node whose IPAM state lives in dataDir, optionally with another CNI_PATH. */
  confList(dataDir: string): NetworkConfigList;
}

function bridgeConfList(cniVersion: string, pluginType: string, ipamType: string, dataDir: string): NetworkConfigList {
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
      },
    ],
  };
}

export function podnetSide(binDir: string): BenchSide {
  return {
    name: "podnet",
    cniPath: [binDir],
    cniVersion: "1.1.0",
    mainBinary: join(binDir, "podnet"),
    ipamBinary: join(binDir, "podnet-ipam"),
    confList: (dataDir) => bridgeConfList("1.1.0", "podnet", "podnet-ipam", dataDir),
  };
}

export function referenceSide(binDir: string): BenchSide {
  return {
    name: "reference",
    cniPath: [binDir],
    cniVersion: "1.0.0",
    mainBinary: join(binDir, "bridge"),
    ipamBinary: join(binDir, "host-local"),
    confList: (dataDir) => bridgeConfList("1.0.0", "bridge", "host-local", dataDir),
  };
}
