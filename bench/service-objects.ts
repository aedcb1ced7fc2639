// What the agent benchmarks share: the namespace they run a node in, and the Services and
// EndpointSlices they write: service s<i> with one ClusterIP port
// (80 → 8080) and five ready endpoints, all on the node "bench-node". Shared so that the restart
// and memory benchmarks load the same objects.
import { execFileSync, spawnSync } from "node:child_process";
import { withDefaults } from "../src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "../src/k8s/types.ts";

export function benchService(i: number): Service {
  const clusterIP = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  return withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name: `s${i}`, namespace: "default" }, spec: { clusterIP, selector: { app: `s${i}` }, ports: [{ port: 80, targetPort: 8080 }] } });
}

export function benchSlice(i: number): EndpointSlice {
  return {
    apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
    metadata: { name: `s${i}-x`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } },
    addressType: "IPv4", ports: [{ name: "", protocol: "TCP", port: 8080 }],
    endpoints: [0, 1, 2, 3, 4].map((k) => {
      const n = i * 5 + k;
      return { addresses: [`10.${200 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`], nodeName: "bench-node", conditions: { ready: true, serving: true, terminating: false } };
    }),
  };
}

/**
 * Runs `argv` inside a fresh namespace named `name` (loopback up, an "uplink" veth holding `nodeIp`/24:
 * the agent needs an interface with its node IP) and deletes the namespace afterwards, whatever
 * happened. Returns the command's exit status.
 */
export function runInBenchNode(name: string, nodeIp: string, argv: readonly string[], env: NodeJS.ProcessEnv): number {
  const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "ignore", env });
  ip("netns", "add", name);
  try {
    ip("-n", name, "link", "set", "lo", "up");
    ip("-n", name, "link", "add", "uplink", "type", "veth", "peer", "name", "uplinkp");
    ip("-n", name, "addr", "add", `${nodeIp}/24`, "dev", "uplink");
    ip("-n", name, "link", "set", "uplink", "up");
    ip("-n", name, "link", "set", "uplinkp", "up");
    return spawnSync("ip", ["netns", "exec", name, ...argv], { stdio: "inherit", env }).status ?? 1;
  } finally {
    spawnSync("ip", ["netns", "del", name]);
  }
}
