// Compiles the CNI plugins into one self-contained executable, dist/cni/podnet-plugin, and
// hard-links it as dist/cni/podnet-ipam: the program picks the plugin by the name it runs under
// (src/plugin/main.ts), so the install carries one Bun runtime instead of two. In front of it,
// dist/cni/podnet is the forwarder (src/plugin/forwarder.c, built with gcc): what a runtime execs
// for `"type": "podnet"`. It hands the call to the resident service when the config names one and
// otherwise execs podnet-plugin, so it starts in well under a millisecond (README, "Design").
// A runtime execs a CNI plugin once per pod operation, so start-up time is most of an ADD;
// `bun build --compile --bytecode` gives a single file that starts in about a third of Node's time
// (see README, "Design"). The podnet CLI (agent, lab, node) runs on Node; it is bundled into
// dist/cli/podnet.mjs so that a long-lived agent does not carry tsx's loader thread, a second V8
// isolate that cost it about 65 MiB of resident memory with 1,000 nodes. npm packages stay external.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, existsSync, linkSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bun = join(root, "node_modules/@oven/bun-linux-x64/bin/bun");
const out = join(root, "dist/cni");

// The service's worker thread is a second entry point, compiled into the same file.
const plugins = [{ entry: "src/plugin/main.ts", workers: ["src/plugin/service-worker.ts", "src/plugin/link-deleter-worker.ts"], name: "podnet-plugin", links: ["podnet-ipam"] }];

if (!existsSync(bun)) {
  console.error(`build: ${bun} is missing; run npm ci first`);
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
rmSync(join(root, "dist/cli"), { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const { entry, workers, name, links } of plugins) {
  // A plugin must not read .env or bunfig.toml from whatever directory the runtime runs it in.
  // --bytecode ships JavaScriptCore bytecode instead of source: no parsing or compiling at start,
  // which measured 5-8 ms less per invocation (README, "Design").
  // --format=esm --splitting: modules the entry loads with import() go into chunks of their own,
  // which a call that never needs them (one forwarded to the resident service) never loads.
  const args = ["build", "--compile", "--bytecode", "--minify", "--format=esm", "--splitting", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", "--target=bun-linux-x64", join(root, entry), ...workers.map((w) => join(root, w)), "--outfile", join(out, name)];
  const run = spawnSync(bun, args, { cwd: root, encoding: "utf8" });
  if (run.status !== 0) {
    console.error(`build: ${name} failed\n${run.stdout}${run.stderr}`);
    process.exit(1);
  }
  console.log(`build: dist/cni/${name}`);
  // A hard link, not a symbolic one: `cp -a dist/cni/* /opt/cni/bin` keeps it one file, and a
  // copy made by a tool that does not preserve links still works, only bigger.
  for (const link of links) {
    linkSync(join(out, name), join(out, link));
    console.log(`build: dist/cni/${link} (hard link to ${name})`);
  }
}

// Static: no dynamic loader or libc to map at each start (about 0.3 ms less per call), and the
// file runs on any x86-64 Linux node, as the Bun executable does.
const forwarder = spawnSync("gcc", ["-O2", "-static", "-s", "-Wall", "-Wextra", "-Werror", "-o", join(out, "podnet"), join(root, "src/plugin/forwarder.c")], { cwd: root, encoding: "utf8" });
if (forwarder.status !== 0) {
  console.error(`build: the forwarder failed (needs gcc and libc6-dev)\n${forwarder.error?.message ?? ""}${forwarder.stdout ?? ""}${forwarder.stderr ?? ""}`);
  process.exit(1);
}
console.log("build: dist/cni/podnet (forwarder)");

const cli = spawnSync(
  bun,
  // --splitting: each subcommand's modules (src/cli/podnet.ts loads them with import()) go into
  // chunks that only that subcommand loads, with the npm packages they import. As one module, every
  // command loaded etcd3 and gRPC first (~0.2 s), and `podnet agent` could start its services
  // startup child (src/agent/services-startup.ts) only after that.
  ["build", "--target=node", "--format=esm", "--packages=external", "--splitting", join(root, "src/cli/podnet.ts"), "--outdir", join(root, "dist/cli"), "--entry-naming", "[name].mjs", "--chunk-naming", "chunk-[hash].mjs"],
  { cwd: root, encoding: "utf8" },
);
if (cli.status !== 0) {
  console.error(`build: the podnet CLI bundle failed\n${cli.stdout}${cli.stderr}`);
  process.exit(1);
}
console.log("build: dist/cli/podnet.mjs");
