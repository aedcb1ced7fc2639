// The trace for people: one numbered line per hop, with the namespace it happened in and how it is known;
// with --explain, the commands that show each object by hand.

import type { Evidence, TraceResult } from "./model.ts";

const EVIDENCE_WORDS: Record<Evidence, string> = {
  "route-lookup": "kernel route lookup",
  "nft-trace": "nft trace",
  "kernel-state": "kernel table",
  inferred: "INFERRED",
};

export function formatTrace(result: TraceResult, opts: { explain?: boolean } = {}): string {
  const lines: string[] = [];
  const port = result.probe.dport !== undefined ? `:${result.probe.dport}` : "";
  lines.push(`trace ${result.proto} ${result.src.name} (${result.src.ip}) → ${result.dst.name} (${result.dst.ip}${port}), lab ${result.lab}, probe ${result.probe.size} bytes ${result.probe.sport !== undefined ? `from port ${result.probe.sport}` : `icmp id ${result.probe.icmpId}`}${result.probe.via === "raw" ? " (the port is a client's: written as a packet of its flow)" : ""}: ${result.probe.outcome}`);
  const width = Math.max(...result.hops.map((h) => h.where.length), 4);
  result.hops.forEach((hop, i) => {
    const marker = hop.kind === "drop" ? "✗" : hop.kind === "arrival" ? "✓" : " ";
    lines.push(`${String(i + 1).padStart(3)} ${marker} ${hop.where.padEnd(width)}  ${hop.kind.padEnd(9)} ${hop.summary}  [${EVIDENCE_WORDS[hop.evidence]}]`);
    if (hop.note) lines.push(`${" ".repeat(width + 8)}note: ${hop.note}`);
    if (opts.explain) for (const cmd of hop.explain) lines.push(`${" ".repeat(width + 8)}$ ${cmd}`);
  });
  const end = result.hops.at(-1);
  lines.push(result.delivered ? `delivered${end?.kind === "arrival" ? ` to ${end.where} ${end.dev}, source seen as ${end.saddr}${end.nat ? " (NAT)" : ""}` : ""}` : `NOT delivered: ${end?.kind === "drop" ? `${end.reason} at ${end.where}` : "lost"}`);
  lines.push(`trace tables were added to and removed from: ${result.tracedNamespaces.join(" ")}`);
  return lines.join("\n") + "\n";
}
