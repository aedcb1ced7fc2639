// Entry point of the `podnet` CNI plugin binary (dist/cni/podnet).
import { runPlugin } from "../cni/skel.ts";
import { bridgePlugin } from "./bridge.ts";

process.exit(await runPlugin(bridgePlugin, "podnet bridge plugin"));
