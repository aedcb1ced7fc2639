// A worker thread of `podnet serve` (service.ts). Each thread has its own module instances, FFI
// bindings, netlink sockets and network-namespace switches, so nothing here is shared with the
// other workers. It answers one CNI request at a time with the bridge plugin's handlers; a DEL's
// veth is deleted by this worker's own deleter thread (link-deleter-worker.ts) while this one waits
// for the kernel to announce it gone (bridge.ts, deleteLinksElsewhere).
import { mapHandlerErrors } from "../cni/skel.ts";
import { bridgePlugin, deleteLinksElsewhere, type LinkDeletion } from "./bridge.ts";
import { asCniError } from "./errors.ts";
import { deleteLink, listLinks } from "../kernel/link.ts";
import { KernelError, NetlinkSocket } from "../kernel/netlink/socket.ts";
import { readTable } from "../kernel/nft.ts";
import { removeInterfaceElements } from "../kernel/nft/interface-elements.ts";
import { ANTISPOOF_FAMILY, ANTISPOOF_TABLE } from "./podfilter.ts";
import {
  DELETION_CANCELLED, DELETION_DONE, DELETION_KERNEL_ERROR, DELETION_NONE, DELETION_PENDING, DELETION_RUNNING, STATUS_BYTES, STATUS_TEXT_OFFSET,
  type DeleteLinkMessage,
} from "./link-deleter-worker.ts";
import { answer } from "./service.ts";
import type { ToWorker } from "./service.ts";

declare const self: Worker;

// The same handlers as the full plugin's (main.ts), so errors read the same whichever thread ran them.
const handlers = mapHandlerErrors(bridgePlugin, asCniError);

const deleter = new Worker(new URL("./link-deleter-worker.ts", import.meta.url).href);
const deleterReady = new Promise<void>((resolve) => {
  deleter.addEventListener("message", () => resolve(), { once: true });
  deleter.addEventListener("error", () => resolve(), { once: true });
});

function statusText(status: SharedArrayBuffer): string {
  const bytes = new Uint8Array(status, STATUS_TEXT_OFFSET, STATUS_BYTES - STATUS_TEXT_OFFSET);
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end === -1 ? bytes : bytes.subarray(0, end));
}

/**
 * How long a DEL waits for the deleter thread to start its deletion before cancelling it and deleting
 * the veth itself. The deleter catches every error of its own, so only a thread that stopped taking
 * messages (which this thread, waiting synchronously, cannot otherwise learn) gets here; the
 * deletions after that are done here too.
 */
const DELETER_TIMEOUT_MS = 10_000;
let deleterStuck = false;

function deleteHere(name: string): LinkDeletion {
  const nl = NetlinkSocket.open();
  try {
    const deleted = deleteLink(nl, name);
    return { settled: () => true, result: () => deleted };
  } finally {
    nl.close();
  }
}

deleteLinksElsewhere((name): LinkDeletion => {
  if (deleterStuck) return deleteHere(name);
  const status = new SharedArrayBuffer(STATUS_BYTES);
  const words = new Int32Array(status);
  const deadline = performance.now() + DELETER_TIMEOUT_MS;
  deleter.postMessage({ name, status } satisfies DeleteLinkMessage);
  const state = (): number => Atomics.load(words, 0);
  return {
    settled: () => (state() !== DELETION_PENDING && state() !== DELETION_RUNNING) || (state() === DELETION_PENDING && performance.now() > deadline),
    result: () => {
      for (;;) {
        const now = state();
        if (now === DELETION_RUNNING) {
          // The deleter is in the kernel call, which returns: wait for it, however long.
          Atomics.wait(words, 0, DELETION_RUNNING);
          continue;
        }
        if (now !== DELETION_PENDING) break;
        const left = deadline - performance.now();
        if (left > 0) {
          Atomics.wait(words, 0, DELETION_PENDING, left);
          continue;
        }
        if (Atomics.compareExchange(words, 0, DELETION_PENDING, DELETION_CANCELLED) === DELETION_PENDING) {
          deleterStuck = true;
          return deleteHere(name).result();
        }
      }
      const end = state();
      if (end === DELETION_DONE) return true;
      if (end === DELETION_NONE) return false;
      // The failure the plugin on its own would have met, as the same error.
      if (end === DELETION_KERNEL_ERROR) throw new KernelError(statusText(status), Atomics.load(words, 1));
      throw new Error(`deleting link ${name}: ${statusText(status)}`);
    },
  };
});

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
  // DEL's filter removal: its kept nf_tables socket, and a dump of the sets that deletes nothing.
  removeInterfaceElements(ANTISPOOF_FAMILY, ANTISPOOF_TABLE, [], () => false);
} catch {
  // Only a warm-up: the first request meets and reports whatever failed here.
}
await deleterReady;
postMessage({ kind: "ready" });

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  postMessage({ kind: "reply", reply: await answer(event.data.request, handlers, event.data.own) });
};
