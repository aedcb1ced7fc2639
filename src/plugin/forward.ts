// The exec'd plugin's side of the resident service (service-protocol.ts): send the invocation to
// the service and hand back its reply, or undefined whenever the plugin must do the work itself
// (no service listening, a connection that breaks, a reply cut short). Bun only: the plugin
// executable is built with Bun, and Bun.connect costs nothing to load, unlike node:net.
import { statSync } from "node:fs";
import { parseReply, type ServiceReply, type ServiceRequest } from "./service-protocol.ts";

/** "dev:ino" of this thread's network namespace, the identity the service compares with its own. */
export function netnsIdentity(): string {
  const st = statSync("/proc/thread-self/ns/net");
  return `${st.dev}:${st.ino}`;
}

export function forward(socketPath: string, request: ServiceRequest): Promise<ServiceReply | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (reply: ServiceReply | undefined): void => {
      if (settled) return;
      settled = true;
      resolve(reply);
    };
    let pending = new TextEncoder().encode(`${JSON.stringify(request)}\n`);
    let received = "";
    const decoder = new TextDecoder();
    const flush = (socket: { write(data: Uint8Array): number }): void => {
      const written = socket.write(pending);
      if (written > 0) pending = pending.subarray(written);
    };
    Bun.connect({
      unix: socketPath,
      socket: {
        open: flush,
        drain: flush,
        data(_socket, chunk) {
          received += decoder.decode(chunk, { stream: true });
        },
        close() {
          settle(parseReply(received + decoder.decode()));
        },
        error() {
          settle(undefined);
        },
        connectError() {
          settle(undefined);
        },
      },
    }).catch(() => settle(undefined));
  });
}
