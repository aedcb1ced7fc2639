// podnet-ipam on its own: an entry that serves only the IPAM verbs. The shipped executable is
// dist/cni/podnet-plugin, which serves these same verbs when run as `podnet-ipam` (src/plugin/main.ts);
// this entry remains for building the IPAM plugin alone. Do not import it: it runs and exits.
import { runPlugin } from "../cni/skel.ts";
import { ipamPlugin } from "./plugin.ts";

void runPlugin(ipamPlugin, "podnet-ipam").then((code) => process.exit(code));
