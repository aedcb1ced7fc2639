// V8 flags for a node agent process. The agent is long-lived and allocates in bursts (a snapshot
// and a route dump per change); with V8's default 16 MiB semi-spaces the young generation alone
// grew to 32 MiB of resident memory, more than the live heap of a 1,000-node cluster. A 1 MiB
// semi-space costs more frequent, sub-millisecond scavenges. Node reads these flags only at start,
// so whoever starts the agent passes them: the lab, the tests and the bench import this list, and
// bin/podnet.js's shebang carries the same flag for a hand-started `podnet agent`.
export const AGENT_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=1", "--lite-mode"];
