// Which nftables tables a namespace has (`nft -j list tables`), for read-only views such as
// `podnet lab up --explain`. Decoded from JSON, never from the text listing.

import { spawnSync } from "node:child_process";
import { argvInNetnsPath } from "./netns-exec.ts";

export interface NftTableName {
  family: string;
  name: string;
}

export function listNftTables(netnsPath: string): NftTableName[] {
  const argv = argvInNetnsPath(netnsPath, ["nft", "-j", "list", "tables"]);
  const run = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`nft list tables in ${netnsPath}: ${run.stderr.trim()}`);
  const parsed = JSON.parse(run.stdout) as { nftables?: { table?: { family: string; name: string } }[] };
  return (parsed.nftables ?? []).flatMap((o) => (o.table ? [{ family: o.table.family, name: o.table.name }] : []));
}
