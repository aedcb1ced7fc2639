// V8 flags for a `podnet dns` process, chosen with bench/dns-memory.ts (10,000 Services + 10,000
// EndpointSlices, bench/RESULTS.md "Cluster DNS"):
//   --max-semi-space-size=1  the young generation stays at 1 MiB semi-spaces (V8's default grows them
//                            to 16 MiB). A cached UDP answer allocates nothing, so under dnsperf at
//                            ~90,000 q/s a scavenge comes every few seconds whatever the size. On the
//                            uncached path (bench/dns-tail.ts --uncached, ~22,000 q/s, every query a
//                            new spelling) 1 / 2 / 4 / 16 MiB gave 547 / 275 / 153 / 71 scavenges in 5 s,
//                            median pause 0.48 / 0.83 / 0.94 / 1.23 ms, 408 / 297 / 197 / 298 ms in all,
//                            and no p99 difference that the machine's noise (load 9-11) let through;
//                            larger spaces cost PSS (+3.5 MiB at 4 MiB in the cached runs), so 1 stays;
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
