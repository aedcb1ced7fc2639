// What the lab's test server (test-server.mjs) listens on for a pod: every containerPort of
// every container, TCP and UDP (SCTP is not served), and TCP 8080 when the pod declares none, as
// agnhost netexec's default --http-port.

import { fileURLToPath } from "node:url";
import type { Pod } from "../k8s/types.ts";

export const TEST_SERVER_SCRIPT = fileURLToPath(new URL("./test-server.mjs", import.meta.url));
export const DEFAULT_TEST_SERVER_PORT = 8080;

export interface ListenPort {
  protocol: "TCP" | "UDP";
  port: number;
}

export function testServerPorts(pod: Pod): ListenPort[] {
  const seen = new Set<string>();
  const ports: ListenPort[] = [];
  for (const container of pod.spec.containers ?? []) {
    for (const port of container.ports ?? []) {
      const protocol = port.protocol ?? "TCP";
      if (protocol !== "TCP" && protocol !== "UDP") continue;
      const key = `${protocol}:${port.containerPort}`;
      if (seen.has(key)) continue;
      seen.add(key);
      ports.push({ protocol, port: port.containerPort });
    }
  }
  return ports.length > 0 ? ports : [{ protocol: "TCP", port: DEFAULT_TEST_SERVER_PORT }];
}

/** The command line that starts the test server for a pod (run inside the pod's namespace). */
export function testServerArgs(pod: Pod, readyFile: string): string[] {
  const listen = testServerPorts(pod).map((p) => `${p.protocol}:${p.port}`).join(",");
  return [TEST_SERVER_SCRIPT, "--name", pod.metadata.name, "--listen", listen, "--ready-file", readyFile];
}
