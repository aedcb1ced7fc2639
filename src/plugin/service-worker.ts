// A worker thread of `podnet serve` (service.ts). Each thread has its own module instances, FFI
// bindings, netlink sockets and network-namespace switches, so nothing here is shared with the
// other workers. Two roles, by message:
//   - request workers answer one CNI request at a time with the bridge plugin's handlers; a DEL
//     hands its filter removal to the main thread (bridge.ts, removeFiltersElsewhere) and deletes
//     its veth meanwhile;
//   - the filter worker removes the filter elements of a batch of veths in one transaction.
import { mapHandlerErrors } from "../cni/skel.ts";
import { bridgePlugin, removeFiltersElsewhere } from "./bridge.ts";
import { asCniError } from "./errors.ts";
import { CniError } from "../cni/types.ts";
import { listLinks } from "../kernel/link.ts";
import { NetlinkSocket } from "../kernel/netlink/socket.ts";
import { readTable } from "../kernel/nft.ts";
import { ANTISPOOF_FAMILY, ANTISPOOF_TABLE, removePodFilters } from "./podfilter.ts";
import { answer } from "./service.ts";
import type { ToWorker } from "./service.ts";

declare const self: Worker;

// The same handlers as the full plugin's (main.ts), so errors read the same whichever thread ran them.
const handlers = mapHandlerErrors(bridgePlugin, asCniError);

const removals = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
let nextRemoval = 0;
removeFiltersElsewhere(
  (veth) =>
    new Promise<void>((resolve, reject) => {
      const id = nextRemoval++;
      removals.set(id, { resolve, reject });
      postMessage({ kind: "removeFilters", id, veth });
    }),
);

// Warm up before the first pod: bun:ffi's bindings and trampolines, libnftables' loading and the
// first netlink socket cost the first request on a fresh thread several milliseconds otherwise.
try {
  const nl = NetlinkSocket.open();
  try {
    listLinks(nl);
  } finally {
    nl.close();
  }
  readTable(ANTISPOOF_FAMILY, ANTISPOOF_TABLE);
} catch {
  // Only a warm-up: the first request meets and reports whatever failed here.
}
postMessage({ kind: "ready" });

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.kind === "request") {
    postMessage({ kind: "reply", reply: await answer(message.request, handlers, message.own) });
  } else if (message.kind === "filtersRemoved") {
    const waiting = removals.get(message.id);
    removals.delete(message.id);
    if (message.error === undefined) waiting?.resolve();
    else waiting?.reject(new CniError(message.error.code, message.error.msg, message.error.details));
  } else {
    const veths = new Set(message.veths);
    let error: { code: number; msg: string; details: string } | undefined;
    try {
      removePodFilters((veth) => veths.has(veth));
    } catch (e) {
      // The error the plugin on its own would have reported, carried across as its fields.
      const mapped = asCniError(e);
      error = mapped instanceof CniError ? { code: mapped.code, msg: mapped.message, details: mapped.details } : { code: 999, msg: String((e as Error).message ?? e), details: "" };
    }
    postMessage({ kind: "batchRemoved", error });
  }
};
