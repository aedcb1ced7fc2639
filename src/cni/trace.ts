// Timestamps through one plugin invocation, for profiling (bench/cni-profile.ts). Off unless the
// environment names a file in PODNET_TRACE; then each invocation appends one JSON line:
//   {"pid":…,"command":"ADD","originMs":<epoch ms of the runtime's time origin>,"marks":[["label",ms],…]}
// with every mark in ms since that origin (performance.now()), so a driver that notes the epoch at
// spawn and at exit can place process start and exit around the marks. When tracing is off a mark
// costs one comparison, so the calls stay in the production code paths they measure.
import { appendFileSync } from "node:fs";

const sink = process.env.PODNET_TRACE;
const marks: [string, number][] = [];

/** True when this invocation records marks. */
export const tracing = sink !== undefined && sink !== "";

export function mark(label: string): void {
  if (tracing) marks.push([label, performance.now()]);
}

/**
 * Appends the marks so far to the trace file as one line and starts afresh (a resident service
 * writes one line per request); never throws, since tracing must not change results.
 */
export function flushTrace(command = process.env.CNI_COMMAND ?? ""): void {
  if (!tracing) return;
  try {
    const line = { pid: process.pid, command, originMs: performance.timeOrigin, marks };
    appendFileSync(sink!, `${JSON.stringify(line)}\n`);
  } catch {
    // A trace that cannot be written is lost; the plugin's answer is not.
  }
  marks.length = 0;
}

mark("bundle start");
