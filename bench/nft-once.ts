// One short-lived process that applies one tiny transaction, as the CNI plugin with ipMasq does per
// ADD: `none` (start-up only), `libnftables` (in-process) or `nft` (spawned). bench/nft.ts compiles
// it with Bun, as the plugin is built, and times whole runs.
import { nftBackend, runNft } from "../src/kernel/nft.ts";

const way = process.argv[2];
const script = "add table inet pnt-bench-once\nadd set inet pnt-bench-once s { type ipv4_addr; }\nadd element inet pnt-bench-once s { 10.0.0.1 }\ndelete element inet pnt-bench-once s { 10.0.0.1 }\n";
if (way !== "none") {
  if (nftBackend() !== way) throw new Error(`asked for ${way}, got ${nftBackend()}`);
  runNft(script);
}
