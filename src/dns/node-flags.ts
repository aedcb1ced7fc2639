// V8 flags for a `podnet dns` process, chosen with bench/dns-memory.ts (10,000 Services + 10,000
// EndpointSlices, bench/RESULTS.md "Cluster DNS"):
//   --max-semi-space-size=1  the young generation stays at 1 MiB semi-spaces (the hot path allocates
//                            almost nothing; V8's default grows them to 16 MiB);
//   --v8-pool-size=1         one V8 platform worker instead of one per CPU; with DNS_ENV's
//                            UV_THREADPOOL_SIZE=1, 5 threads instead of 11 and about 4 MiB less PSS
//                            (each idle thread's stack and malloc arena), with no measured cost in CPU
//                            per query or p99 under dnsperf. libuv's pool serves only file reads here
//                            (at start, on certificate rotation): upstreams are addresses, no dns.lookup.
//                            It is sized when first used, which is before the CLI's code runs, so it
//                            must come from the environment.
// Node reads V8 flags only at start, so whoever starts the server passes them (the lab's kubelet, the
// bench); bin/podnet.js's first line carries only the semi-space flag, shared by every subcommand.
// Measured and not used: --lite-mode (RssAnon -17 to -23 MiB, but twice the CPU per query),
// --optimize-for-size and --max-old-space-size (no gain), MALLOC_ARENA_MAX=2 (-2 MiB).
export const DNS_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=1", "--v8-pool-size=1"];

/** Environment for a `podnet dns` process, beside DNS_NODE_FLAGS. */
export const DNS_ENV: Readonly<Record<string, string>> = { UV_THREADPOOL_SIZE: "1" };
