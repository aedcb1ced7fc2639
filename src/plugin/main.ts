// Entry point of the `podnet` CNI plugin binary (dist/cni/podnet).
import { runPlugin } from "../cni/skel.ts";
import { bridgePlugin } from "./bridge.ts";

void runPlugin(bridgePlugin, "podnet bridge plugin").then((code) => process.exit(code));
