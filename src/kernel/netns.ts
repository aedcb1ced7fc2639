// Running code inside another network namespace. setns(2) moves only the calling thread,
// and every call in this module is synchronous FFI, so the switch, the work and the
// restore happen on the JavaScript thread with nothing else interleaved. That is why `fn`
// must be synchronous: an `await` inside it would resume after the restore, in the wrong
// namespace.
import { statSync } from "node:fs";
import { CLONE_NEWNET, O_RDONLY, close, openPath, setns } from "./libc.ts";

const THREAD_NETNS = "/proc/thread-self/ns/net";

/** Exit code when the thread cannot return to its own namespace (EX_SOFTWARE). */
const EXIT_NETNS_RESTORE_FAILED = 70;

/**
 * Runs `fn` with the calling thread inside the network namespace at `nsPath`
 * (/run/netns/NAME or /proc/PID/ns/net) and switches back afterwards, even if `fn` throws.
 * If switching back fails the process exits: any later kernel call would silently act on
 * the wrong namespace.
 */
export function withNetns<T>(nsPath: string, fn: () => T): T {
  const original = openPath(THREAD_NETNS, O_RDONLY);
  let target: number;
  try {
    target = openPath(nsPath, O_RDONLY);
  } catch (error) {
    close(original);
    throw error;
  }
  try {
    setns(target, CLONE_NEWNET);
  } catch (error) {
    close(original);
    throw error;
  } finally {
    close(target);
  }
  let result: T;
  try {
    result = fn();
  } finally {
    try {
      setns(original, CLONE_NEWNET);
    } catch (error) {
      process.stderr.write(`podnet: cannot return to the original network namespace after entering ${nsPath}: ${String(error)}\n`);
      process.exit(EXIT_NETNS_RESTORE_FAILED);
    }
    close(original);
  }
  if (isThenable(result)) {
    throw new Error("withNetns: the callback returned a promise; its asynchronous part would run outside the namespace");
  }
  return result;
}

function isThenable(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

/**
 * True if `nsPath` names a live network namespace: a path on nsfs, not a stale leftover
 * file under /run/netns whose bind mount is gone.
 */
export function netnsExists(nsPath: string): boolean {
  try {
    const nsfsDevice = statSync(THREAD_NETNS).dev;
    return statSync(nsPath).dev === nsfsDevice;
  } catch {
    return false;
  }
}

/** Opens a namespace for IFLA_NET_NS_FD and the like; the caller closes the descriptor. */
export function openNetns(nsPath: string): number {
  return openPath(nsPath, O_RDONLY);
}
