// Reconciler: nftables masquerading of pod traffic leaving the cluster CIDR. Needs only the cluster
// config. Checked on its own timer: `nft` is a process start (10-20 ms here), and it runs asynchronously,
// so a slow or failing nft never delays the routes.

import type { AgentInputs } from "./inputs.ts";
import type { Masquerade } from "./masquerade.ts";
import type { Reconciler } from "./reconciler.ts";

export class MasqueradeReconciler implements Reconciler<AgentInputs, "config"> {
  readonly name = "masquerade";
  readonly inputs = ["config"] as const;
  readonly gatesReadiness = true;
  readonly backoff = { initialMs: 200, maxMs: 5000 };

  constructor(
    private readonly masquerade: Masquerade,
    readonly resyncIntervalMs: number,
    private readonly log: (message: string) => void,
  ) {}

  async sync({ config }: { readonly config: AgentInputs["config"] }): Promise<void> {
    if (await this.masquerade.ensure(config.clusterCidr)) this.log(`masquerade for ${config.clusterCidr} installed (nftables table ip podnet)`);
  }
}
