// Entry point of the podnet CNI executable (dist/cni/podnet). One file serves both plugins and
// picks by the name it was run under, as busybox does: `podnet-ipam` (a hard link or copy of the
// same file) answers as the IPAM plugin, any other name as the bridge plugin. One executable
// halves the install: each copy of a Bun-compiled program carries the whole runtime.
import { flushTrace, mark } from "../cni/trace.ts"; // first, so its mark is the bundle's first statement
import { runPlugin } from "../cni/skel.ts";
import { ipamPlugin } from "../ipam/plugin.ts";
import { bridgePlugin } from "./bridge.ts";
import { pluginForName } from "./dispatch.ts";

mark("modules loaded");
const which = pluginForName(process.argv0);
void runPlugin(which === "ipam" ? ipamPlugin : bridgePlugin, which === "ipam" ? "podnet-ipam" : "podnet bridge plugin").then((code) => {
  mark("answer written");
  flushTrace();
  process.exit(code);
});
