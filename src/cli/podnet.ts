// The podnet command: thin subcommands, each loaded only when asked for so that
// `podnet lab` does not pay for the agent's etcd client and the other way round.

const USAGE = `usage: podnet <command> [options]

commands:
  agent             run the node agent (subnet lease, routes, conflist)
  node remove NAME  remove a node from the cluster and free its subnet
  lab up|status|run|exec|check|down
                    a multi-node cluster of network namespaces on this machine
  lab graph [-o FILE.svg|FILE.html]
                    draw the lab: underlay, nodes, bridges, pods
  lab up --explain  also print the ip/nft commands that recreate what up built
  trace SRC DST[:PORT]
                    a real probe's path through the lab, hop by hop, from live kernel state
  dns               cluster DNS: service and pod names from the datastore, the rest forwarded
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "agent": {
      // The child that makes a large first full sync of the services lists etcd itself: started
      // before the agent's modules load (services-startup.ts), its own start-up overlaps theirs.
      const { StartupFullSync } = await import("../agent/services-startup.ts");
      const early = StartupFullSync.startForAgentArgs(rest);
      const { runAgentCommand } = await import("../agent/cli.ts");
      return runAgentCommand(rest, early);
    }
    case "node": {
      const { runNodeCommand } = await import("../agent/cli.ts");
      return runNodeCommand(rest);
    }
    case "dns": {
      const { runDnsCommand } = await import("../dns/cli.ts");
      return runDnsCommand(rest);
    }
    case "lab": {
      // graph and up --explain read a lab's live state; they live in src/trace, which may import the lab (not the other way round).
      if (rest[0] === "graph") {
        const { runLabGraphCommand } = await import("../trace/graph-cli.ts");
        return runLabGraphCommand(rest.slice(1));
      }
      const explain = rest.includes("--explain") && rest[0] === "up";
      const { runLabCommand } = await import("../lab/cli.ts");
      const code = await runLabCommand(explain ? rest.filter((a) => a !== "--explain") : rest);
      if (code !== 0 || !explain) return code;
      const { runLabExplainCommand } = await import("../trace/graph-cli.ts");
      return runLabExplainCommand(rest.filter((a) => a !== "--explain"));
    }
    case "internal-nft-netlink-apply": {
      // Not for people: the agent's services reconciler hands a large nf_tables transaction to this (src/kernel/nft/netlink-child.ts).
      const { runNftApplyChild } = await import("../kernel/nft/netlink-child.ts");
      return runNftApplyChild();
    }
    case "internal-services-apply": {
      // Not for people: the agent's services reconciler hands a full sync (its objects, or a planned transaction) to this (src/agent/services-child.ts).
      const { runServicesApplyChild } = await import("../agent/services-child.ts");
      return runServicesApplyChild();
    }
    case "internal-services-startup-sync": {
      // Not for people: the agent's first full sync of its services, listed from etcd by this child (src/agent/services-child.ts).
      const { runServicesStartupChild } = await import("../agent/services-child.ts");
      return runServicesStartupChild();
    }
    case "trace": {
      const { runTraceCommand } = await import("../trace/cli.ts");
      return runTraceCommand(rest);
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`podnet: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}
