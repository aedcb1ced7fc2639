// Fault injection for tests: PODNET_AGENT_FAULTS="masquerade=throw" makes the masquerade reconciler's every
// sync fail, "masquerade=hang" makes it never finish, so a root test can show that the other reconcilers
// carry on. The agent logs every fault it injects; with the variable unset nothing is wrapped.

import type { Reconciler } from "./reconciler.ts";

export type FaultMode = "throw" | "hang";

export function parseFaults(text: string | undefined): Map<string, FaultMode> {
  const faults = new Map<string, FaultMode>();
  for (const item of (text ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
    const [name, mode] = item.split("=");
    if (!name || (mode !== "throw" && mode !== "hang")) throw new Error(`PODNET_AGENT_FAULTS: want NAME=throw or NAME=hang, got ${JSON.stringify(item)}`);
    faults.set(name, mode);
  }
  return faults;
}

export function injectFaults<M extends object>(
  reconcilers: readonly Reconciler<M, keyof M>[],
  faults: ReadonlyMap<string, FaultMode>,
  log: (message: string) => void,
): Reconciler<M, keyof M>[] {
  const unknown = [...faults.keys()].filter((name) => !reconcilers.some((r) => r.name === name));
  if (unknown.length > 0) throw new Error(`PODNET_AGENT_FAULTS names no reconciler: ${unknown.join(", ")}`);
  return reconcilers.map((reconciler) => {
    const mode = faults.get(reconciler.name);
    if (!mode) return reconciler;
    log(`PODNET_AGENT_FAULTS: every sync of ${reconciler.name} will ${mode === "throw" ? "fail" : "hang"}`);
    // A wrapper that keeps the reconciler's own fields (name, inputs, timers, describe) and replaces sync.
    return Object.assign(Object.create(reconciler) as Reconciler<M, keyof M>, {
      sync: (): Promise<void> =>
        mode === "throw" ? Promise.reject(new Error(`injected failure (PODNET_AGENT_FAULTS)`)) : new Promise<void>(() => undefined),
    });
  });
}
