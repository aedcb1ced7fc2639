// Entry point of the `podnet` CNI plugin binary (dist/cni/podnet).
import { mapHandlerErrors, runPlugin } from "../cni/skel.ts";
import { bridgePlugin } from "./bridge.ts";
import { asCniError } from "./errors.ts";

void runPlugin(mapHandlerErrors(bridgePlugin, asCniError), "podnet bridge plugin").then((code) => process.exit(code));
