// What `lab status` says about a node (pure). A node is Ready only when its network is Ready as a
// runtime sees it (conflist present, CNI STATUS succeeds) *and*, on the podnet network, its agent is
// alive. The agent check matters: an agent killed with SIGKILL leaves its ready file behind, so STATUS
// alone would still say Ready while nobody keeps the node's routes.

import type { NetworkMode } from "./lab-state.ts";
import type { NodeNetworkState } from "./pods.ts";

export interface NodeVerdict {
  status: "Ready" | "NotReady";
  /** The AGENT column: "pid N", "NOT running" or "(static)". */
  agent: string;
  /** Why NotReady, in words; empty when Ready. */
  reasons: string[];
}

export function judgeNode(input: {
  mode: NetworkMode;
  /** The recorded agent process and whether that very process (PID and start time) still runs. */
  agent: { pid: number | undefined; alive: boolean } | undefined;
  network: Pick<NodeNetworkState, "ready"> & { reason?: string };
}): NodeVerdict {
  const reasons: string[] = [];
  let agent = "(static)";
  if (input.mode === "podnet") {
    if (input.agent?.alive) {
      agent = `pid ${input.agent.pid ?? "?"}`;
    } else {
      agent = "NOT running";
      reasons.push(input.agent?.pid === undefined ? "agent not running (never started)" : `agent not running (pid ${input.agent.pid} is gone)`);
    }
  }
  if (!input.network.ready) reasons.push(input.network.reason ?? "network not ready");
  return { status: reasons.length === 0 ? "Ready" : "NotReady", agent, reasons };
}
