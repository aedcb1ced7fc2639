// podnet's layering, checked by dependency-cruiser in `npm run lint:layers` (and so in `npm test`).
// It encodes README.md, "Design": imports point down the layers, and only src/kernel touches the kernel.
//
// Each folder under src/ lists the folders it may import. Anything under src/ that is not on its list
// is an error, so a new folder is refused everywhere until it is given a line here.

/** folder → the folders (or single files) of podnet it may import, and why. */
const LAYERS = {
  // Leaves: nothing above them.
  net: [], // addresses and CIDRs; imports nothing of podnet (and no Node module: rule net-imports-no-node-module)
  cni: ["net"], // the CNI protocol; address syntax only
  kernel: ["net"], // the only code that touches the kernel
  k8s: ["net"], // Kubernetes object shapes and pure helpers over them

  // The plugin binary's layers.
  ipam: ["cni", "net", "kernel/libc.ts"], // libc for flock(2) on the store
  plugin: ["cni", "ipam", "kernel", "net"],

  // Cluster state and what is computed from it (pure logic; the kernel only through the agent).
  datastore: ["net", "k8s"],
  // Compiles Services to the typed nft model and plans changes with the nft layer's pure modules
  // (model, diff, render: no I/O); applying them is the agent reconciler's job.
  services: ["datastore", "k8s", "net", "kernel/nft/model.ts", "kernel/nft/diff.ts", "kernel/nft/render.ts"],
  controlplane: ["datastore", "k8s", "net", "services"],
  // udp-reuseport.ts makes the SO_REUSEPORT socket that lets several threads answer on one port.
  // udp-batch.ts moves datagrams in batches (recvmmsg/sendmmsg) on that socket.
  dns: ["datastore", "k8s", "net", "kernel/udp-reuseport.ts", "kernel/udp-batch.ts", "kernel/malloc-trim.ts"],

  // The node agent: the reconcilers that make the kernel match the datastore.
  agent: ["datastore", "kernel", "net", "k8s", "services"],

  // The runtime side of CNI (what libcni does); the lab, tests and bench drive plugins through it.
  // netns-exec.ts only builds the argv that runs a plugin inside a namespace (pure, no FFI).
  runtime: ["cni", "net", "kernel/netns-exec.ts"],
  // Spawns and watches long-lived processes (etcd, agents), inside namespaces.
  supervise: ["kernel", "net"],

  // A cluster of namespaces on one machine. It runs the plugin as a separate process, through runtime/,
  // never by importing plugin/ or ipam/.
  lab: ["runtime", "cni/types.ts", "datastore", "agent/node-flags.ts", "dns/node-flags.ts", "kernel", "net", "k8s", "controlplane", "supervise"],

  // `podnet trace`, `lab graph`, `lab up --explain`: read a lab's state, its Services over the lab API (api-client), and its live kernel state (through src/kernel
  // only), send a probe and trace it. Nothing imports trace but the CLI.
  trace: ["lab/lab-state.ts", "lab/topology.ts", "lab/api-client.ts", "k8s/types.ts", "kernel", "net"],

  // The `podnet` command wires everything.
  cli: ["*"],
};

/**
 * Who may spawn processes or reach the kernel through FFI. The rule "only src/kernel touches the kernel"
 * is checked as: node:child_process, koffi and bun:ffi are imported only by src/kernel and these.
 */
const MAY_SPAWN = [
  // A runtime execs plugins; that is the job (CNI spec, "Execution protocol").
  "^src/runtime/",
  // A plugin execs its delegated IPAM plugin from CNI_PATH (CNI spec, "Delegated plugins").
  "^src/cni/delegate\\.ts$",
  // Supervision starts and stops etcd and agents: processes, not kernel tools.
  "^src/supervise/",
  // Benchmarks run the reference plugins and tools side by side with podnet.
  "^bench/",
  // Tests verify against real tools (ip, nft, etcd, podman) and run the built binaries.
  "^test/",
  "\\.test\\.ts$",
  // The build runs bun; the test runner runs node.
  "^scripts/",
];

/** The modules that spawn processes or reach FFI. koffi resolves into node_modules, so its path is matched as a folder. */
const SPAWN_OR_FFI = "^(node:)?(child_process|module)$|^bun:ffi$|(^|/)node_modules/koffi/|^koffi$";

/** Modules the CNI plugin binary must not load: each costs ~10 ms of CPU per start (README, "The plugin binary"). */
const SLOW_TO_LOAD = "^(node:)?(net|crypto|dgram|http|https|tls|zlib)$";

const dir = (name) => (name.endsWith(".ts") ? `^src/${name.replace(/\./g, "\\.")}$` : `^src/${name}/`);

const layerRules = Object.entries(LAYERS)
  .filter(([, allowed]) => !allowed.includes("*"))
  .map(([layer, allowed]) => ({
    name: `layer-${layer}`,
    severity: "error",
    comment: `src/${layer} may import ${allowed.length ? allowed.join(", ") : "nothing of podnet"} (README, "Design").`,
    from: { path: `^src/${layer}/` },
    to: { path: "^src/", pathNot: [`^src/${layer}/`, ...allowed.map(dir)] },
  }));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: "layer-unplaced",
      severity: "error",
      comment: "A folder of src/ that LAYERS does not list may import nothing of podnet until it is given a line there.",
      from: { path: "^src/", pathNot: `^src/(${Object.keys(LAYERS).join("|")})/` },
      to: { path: "^src/" },
    },
    {
      name: "plugin-and-agent-apart",
      severity: "error",
      comment: "The plugin and the agent never import each other: one runs per pod operation, the other per node.",
      from: { path: "^src/(plugin|agent)/" },
      to: { path: "^src/(plugin|agent)/", pathNot: "^src/$1/" },
    },
    {
      name: "only-kernel-spawns-or-ffi",
      severity: "error",
      comment: "Only src/kernel spawns kernel tools or opens netlink (README, \"Design\"); the others are listed in MAY_SPAWN with a reason.",
      // scripts/check-dynamic-loads.mjs applies this rule's pathNot to the loads an import graph cannot see.
      from: { pathNot: ["^src/kernel/", ...MAY_SPAWN] },
      // node:module too: createRequire is how src/kernel/libc.ts loads koffi where a static import cannot be used.
      to: { path: SPAWN_OR_FFI },
    },
    {
      name: "net-imports-no-node-module",
      severity: "error",
      comment: "src/net is a leaf every layer may import, the plugin included, so it loads no Node module at all.",
      from: { path: "^src/net/", pathNot: "\\.test\\.ts$" },
      to: { dependencyTypes: ["core"] },
    },
    {
      name: "plugin-binary-starts-fast",
      severity: "error",
      comment: "The CNI plugin binaries must not load node:net, node:crypto and the like (README, \"The plugin binary\").",
      from: { path: "^src/(plugin|ipam)/main\\.ts$" },
      to: { path: SLOW_TO_LOAD, reachable: true },
    },
    {
      name: "no-circular",
      severity: "error",
      comment: "A cycle makes layers meaningless and start-up order fragile.",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "no-orphan-dependency",
      severity: "error",
      comment: "An import that does not resolve.",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(node_modules|dist)/" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: [".ts", ".mjs", ".js", ".json"], conditionNames: ["import", "require", "node", "default"], exportsFields: ["exports"] },
  },
};
