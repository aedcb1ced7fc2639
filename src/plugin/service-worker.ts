// A worker thread of `podnet serve` (service.ts): answers one request at a time with the bridge
// plugin's handlers. Each thread has its own module instances, FFI bindings, netlink sockets and
// network-namespace switches, so nothing here is shared with the other workers.
import { mapHandlerErrors } from "../cni/skel.ts";
import { bridgePlugin } from "./bridge.ts";
import { asCniError } from "./errors.ts";
import { answer, type ServiceIdentity } from "./service.ts";
import type { ServiceRequest } from "./service-protocol.ts";

declare const self: Worker;

// The same handlers as the full plugin's (main.ts), so errors read the same whichever thread ran them.
const handlers = mapHandlerErrors(bridgePlugin, asCniError);

self.onmessage = async (event: MessageEvent<{ request: ServiceRequest; own: ServiceIdentity }>) => {
  postMessage(await answer(event.data.request, handlers, event.data.own));
};
