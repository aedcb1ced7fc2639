// What `lab status` and `lab check` show of each node's agent: its backend, pod MTU, and for vxlan the
// VTEP MAC and peers, plus any condition the backend reports (host-gw peers not on-link). Read from the
// agent's own /status over its unix socket (`--listen`), so nothing here guesses from kernel state.

import { request } from "node:http";

/** The part of the agent's /status (src/agent/agent.ts `health()`) the lab reads. */
export interface AgentStatusView {
  ready: boolean;
  backend: string | null;
  podMtu: number | null;
  notReadyReasons?: string[];
  reconcilers?: {
    routes?: {
      condition?: { reason: string; message: string; peers: { name: string; nodeIp: string }[] } | null;
      backendStatus?: {
        vtepMac?: string;
        device?: string;
        peers?: { name: string; nodeIp: string; via: string; vtepMac?: string }[];
      } | null;
    };
  };
}

export function fetchAgentStatus(socketPath: string, timeoutMs = 2000): Promise<AgentStatusView> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: "/status", timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => {
        try {
          resolve(JSON.parse(body) as AgentStatusView);
        } catch (error) {
          reject(new Error(`agent /status on ${socketPath} is not JSON: ${(error as Error).message}`));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`agent /status on ${socketPath}: no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** Lines for one node in `lab status`: backend, MTU, VTEP MAC, peers, condition. Pure. */
export function describeAgentNetwork(node: string, status: AgentStatusView): string[] {
  const routes = status.reconcilers?.routes;
  const vxlan = routes?.backendStatus;
  const head = [`${node}: backend ${status.backend ?? "none"}`, `MTU ${status.podMtu ?? "?"}`];
  if (vxlan?.vtepMac) head.push(`VTEP MAC ${vxlan.vtepMac}${vxlan.device ? ` on ${vxlan.device}` : ""}`);
  const lines = [head.join(", ")];
  for (const peer of vxlan?.peers ?? []) {
    lines.push(`  peer ${peer.name.padEnd(8)} ${peer.nodeIp.padEnd(14)} ${peer.via === "vxlan" ? `vxlan → ${peer.vtepMac ?? "?"}` : "direct route"}`);
  }
  if (routes?.condition) lines.push(`  condition ${routes.condition.reason}: ${routes.condition.message}`);
  if (!status.ready && status.notReadyReasons?.length) lines.push(`  NotReady: ${status.notReadyReasons.join("; ")}`);
  return lines;
}

/** Conditions that explain failed cross-node checks, one line per node that reports one. Pure. */
export function conditionLines(statuses: ReadonlyMap<string, AgentStatusView | undefined>): string[] {
  const lines: string[] = [];
  for (const [node, status] of statuses) {
    const condition = status?.reconcilers?.routes?.condition;
    if (condition) lines.push(`${node}: ${condition.reason}: ${condition.message}`);
  }
  return lines;
}
