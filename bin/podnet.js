#!/usr/bin/env node
// The podnet command runs the TypeScript sources through tsx, so a checkout needs no separate compile step
// for the CLI; only the CNI plugins are compiled (npm run build) because a runtime execs them per pod.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/podnet.ts");
process.exitCode = await main(process.argv.slice(2));
