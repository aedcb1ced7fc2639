// nftables through the `nft` command. A script is applied with `nft -f FILE`, which nft
// runs as one atomic transaction. The script goes through a temporary file rather than
// stdin because nft cannot always open /dev/stdin when it is a Node child-process pipe.
// spawnSync works the same under Node and Bun. child_process is loaded on first use, and the
// temp name needs no crypto: both would otherwise add to every start of the plugin, which
// calls nft only for ipMasq.
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type NftFamily = "ip" | "ip6" | "inet" | "arp" | "bridge" | "netdev";

export class NftError extends Error {
  readonly stderr: string;
  readonly exitCode: number | null;
  constructor(what: string, exitCode: number | null, stderr: string) {
    super(`${what} failed (exit ${exitCode ?? "signal"}): ${stderr.trim() || "no output"}`);
    this.name = "NftError";
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

/** The command line for `nft ARGS`, entered into `netnsPath` through nsenter when given. */
function nftCommand(args: string[], netnsPath?: string): [string, string[]] {
  if (netnsPath === undefined) return ["nft", args];
  return ["nsenter", [`--net=${netnsPath}`, "nft", ...args]];
}

function runCommand(args: string[], netnsPath?: string): NftRun {
  const [command, argv] = nftCommand(args, netnsPath);
  const run = process.getBuiltinModule("node:child_process").spawnSync(command, argv, { encoding: "utf8" });
  if (run.error) throw new NftError(`${command} ${argv.join(" ")}`, null, run.error.message);
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

interface NftRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

let nftFileCounter = 0;

/** A private temp file holding the script; the caller removes it. */
function writeScriptFile(script: string): string {
  const file = join(tmpdir(), `podnet-nft-${process.pid}-${Date.now().toString(36)}-${(nftFileCounter++).toString(36)}.nft`);
  writeFileSync(file, script, { mode: 0o600, flag: "wx" });
  return file;
}

function checkApplied(run: NftRun, netnsPath?: string): void {
  if (run.status !== 0) throw new NftError(`nft -f${netnsPath ? ` (in ${netnsPath})` : ""}`, run.status, run.stderr);
}

function tableListing(run: NftRun, family: NftFamily, name: string): string | undefined {
  if (run.status === 0) return run.stdout;
  if (/No such file or directory/.test(run.stderr)) return undefined;
  throw new NftError(`nft list table ${family} ${name}`, run.status, run.stderr);
}

/** Applies an nft script atomically; throws NftError carrying nft's stderr. */
export function runNft(script: string, netnsPath?: string): void {
  const file = writeScriptFile(script);
  try {
    checkApplied(runCommand(["-f", file], netnsPath), netnsPath);
  } finally {
    rmSync(file, { force: true });
  }
}

/** The text of `nft list table FAMILY NAME`, or undefined if the table does not exist. */
export function nftListTable(family: NftFamily, name: string, netnsPath?: string): string | undefined {
  return tableListing(runCommand(["list", "table", family, name], netnsPath), family, name);
}

/** The async twin of runCommand, for long-lived callers (the agent) whose event loop must not stall. */
function runCommandAsync(args: string[], netnsPath?: string): Promise<NftRun> {
  const [command, argv] = nftCommand(args, netnsPath);
  return new Promise((resolve, reject) => {
    process.getBuiltinModule("node:child_process").execFile(command, argv, { encoding: "utf8" }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") {
        reject(new NftError(`${command} ${argv.join(" ")}`, null, error.message));
        return;
      }
      resolve({ status: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** nftListTable without blocking: `nft` is a process start, 10-20 ms on the machines we measured. */
export async function nftListTableAsync(family: NftFamily, name: string, netnsPath?: string): Promise<string | undefined> {
  return tableListing(await runCommandAsync(["list", "table", family, name], netnsPath), family, name);
}

/** runNft without blocking. */
export async function runNftAsync(script: string, netnsPath?: string): Promise<void> {
  const file = writeScriptFile(script);
  try {
    checkApplied(await runCommandAsync(["-f", file], netnsPath), netnsPath);
  } finally {
    rmSync(file, { force: true });
  }
}
