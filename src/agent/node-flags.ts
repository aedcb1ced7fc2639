// V8 flags for a node agent process, chosen from bench/agent.ts with 1,000 nodes:
//   --max-semi-space-size=1  the agent allocates in bursts (a snapshot and a route dump per change);
//                            V8's default 16 MiB semi-spaces grew the young generation alone to 32 MiB.
//   --lite-mode              no optimising compiler: about 15 MiB less resident memory (compiled code
//                            and feedback of etcd3, grpc-js and prom-client), while the change latency
//                            stays far under its target (p50 ~22 ms against 100 ms).
// Node reads these only at start, so whoever starts the agent passes them: the lab, the tests and the
// bench import this list. bin/podnet.js's first line carries only the semi-space flag: --lite-mode
// makes V8 warn on stderr at every start ("disabling flag --expose_wasm"), which is noise for the
// other subcommands. Start a hand-run agent as src/agent/README.md shows.
export const AGENT_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=1", "--lite-mode"];
