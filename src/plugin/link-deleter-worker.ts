// The deleter thread of a service worker (service-worker.ts): deletes one link per message, by name,
// in the service's namespace, and reports through the message's shared status so the worker, which
// waits synchronously (bridge.ts, deleteHostVeth), can read it without an event loop of its own.
//
// Status layout (Int32Array over the SharedArrayBuffer): [0] state, [1] errno; bytes from
// STATUS_TEXT_OFFSET: a failure's message (UTF-8, NUL-padded). The deleter moves a pending status to
// running before it deletes, and skips one its worker has cancelled (compare-and-swap, so exactly
// one of them acts): a late deleter never deletes a link of the same name made since.
import { deleteLink, listLinks } from "../kernel/link.ts";
import { KernelError, NetlinkSocket } from "../kernel/netlink/socket.ts";

export const DELETION_PENDING = 0;
export const DELETION_DONE = 1;
export const DELETION_NONE = 2;
export const DELETION_KERNEL_ERROR = 3;
export const DELETION_OTHER_ERROR = 4;
export const DELETION_RUNNING = 5;
export const DELETION_CANCELLED = 6;
export const STATUS_TEXT_OFFSET = 8;
export const STATUS_BYTES = 1024;

export interface DeleteLinkMessage {
  name: string;
  status: SharedArrayBuffer;
}

declare const self: Worker;

let nl: NetlinkSocket | undefined;

function settle(status: SharedArrayBuffer, state: number, errno = 0, text = ""): void {
  const words = new Int32Array(status);
  new TextEncoder().encodeInto(text, new Uint8Array(status, STATUS_TEXT_OFFSET, STATUS_BYTES - STATUS_TEXT_OFFSET - 1));
  Atomics.store(words, 1, errno);
  Atomics.store(words, 0, state);
  Atomics.notify(words, 0);
}

// Warm up before the first pod (bun:ffi bindings, the first socket), as service-worker.ts does.
try {
  nl = NetlinkSocket.open();
  listLinks(nl);
} catch {
  nl = undefined;
}
postMessage({ kind: "ready" });

self.onmessage = (event: MessageEvent<DeleteLinkMessage>) => {
  const { name, status } = event.data;
  if (Atomics.compareExchange(new Int32Array(status), 0, DELETION_PENDING, DELETION_RUNNING) !== DELETION_PENDING) return;
  try {
    nl ??= NetlinkSocket.open();
    settle(status, deleteLink(nl, name) ? DELETION_DONE : DELETION_NONE);
  } catch (error) {
    if (error instanceof KernelError) {
      settle(status, DELETION_KERNEL_ERROR, error.errno, error.op);
    } else {
      // The socket may be in any state: start afresh on the next message.
      try {
        nl?.close();
      } catch {
        /* already reported */
      }
      nl = undefined;
      settle(status, DELETION_OTHER_ERROR, 0, (error as Error).message ?? String(error));
    }
  }
};
