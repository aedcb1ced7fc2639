// The podnet command: thin subcommands, each loaded only when asked for so that
// `podnet lab` does not pay for the agent's etcd client and the other way round.

const USAGE = `usage: podnet <command> [options]

commands:
  agent             run the node agent (subnet lease, routes, conflist)
  node remove NAME  remove a node from the cluster and free its subnet
  lab up|status|run|exec|check|down
                    a multi-node cluster of network namespaces on this machine
  dns               cluster DNS: service and pod names from the datastore, the rest forwarded
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "agent": {
      const { runAgentCommand } = await import("../agent/cli.ts");
      return runAgentCommand(rest);
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
      const { runLabCommand } = await import("../lab/cli.ts");
      return runLabCommand(rest);
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
