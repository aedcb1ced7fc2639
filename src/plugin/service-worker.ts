// A worker thread of `podnet serve` (service.ts): answers one request at a time with the bridge
// plugin's handlers. Each thread has its own module instances, FFI bindings, netlink sockets and
// network-namespace switches, so nothing here is shared with the other workers.
import { bridgePlugin } from "./bridge.ts";
import { answer } from "./service.ts";

declare const self: Worker;

self.onmessage = async (event: MessageEvent<{ line: string; ownNetns: string }>) => {
  postMessage(await answer(event.data.line, bridgePlugin, event.data.ownNetns));
};
