// The syscall surface of podnet: the few libc functions the kernel module needs, called
// synchronously through FFI. Two backends are chosen at run time:
//   - Bun (the compiled CNI plugin): bun:ffi, built into the runtime;
//   - Node (the agent, the lab, tests): koffi, a native addon.
// Each backend is loaded lazily on first use. A static `import "bun:ffi"` would fail under
// Node, and a static import of koffi would pull a native addon into the Bun binary.
import { createRequire } from "node:module";
import { realpathSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { join } from "node:path";

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_NETLINK = 16;
export const AF_INET6 = 10;
export const AF_BRIDGE = 7;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;

/** A failed system call; `errno` is the raw positive errno value. */
export class SysError extends Error {
  readonly errno: number;
  readonly syscall: string;
  constructor(syscall: string, errno: number, detail?: string) {
    super(`${syscall}${detail ? ` ${detail}` : ""}: ${describeErrno(errno)}`);
    this.name = "SysError";
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** The raw calls each backend provides. Every function returns the C return value; -1 means "read errno". */
interface LibcBackend {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  send(fd: number, data: Uint8Array, len: number, flags: number): number;
  recv(fd: number, buf: Uint8Array, len: number, flags: number): number;
  close(fd: number): number;
  open(path: Uint8Array, flags: number): number;
  setns(fd: number, nstype: number): number;
  flock(fd: number, operation: number): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  strerror(errnum: number): string;
  errno(): number;
}

const LIBC_PATH = "libc.so.6";

/**
 * Places to resolve "koffi" from: this module's own file first, then the main script, then
 * the working directory. The module's location is read from a stack trace rather than from
 * `import.meta.url`: Bun 1.3.0 emits `--bytecode` bundles as CommonJS, and an `import.meta`
 * anywhere in the bundle, even on a branch Bun never takes, makes the binary fail to start.
 */
function koffiSearchBases(): string[] {
  const bases: string[] = [];
  // The first frame is this function: "at koffiSearchBases (file:///…/libc.ts:70:20)", or a
  // plain path when the module was loaded as CommonJS.
  const ownFile = /\s\(?((?:file:\/\/)?\/[^\s()]+?):\d+:\d+\)?\s*$/m.exec(new Error().stack ?? "")?.[1];
  if (ownFile) bases.push(ownFile);
  const mainScript = process.argv[1];
  if (mainScript) {
    try {
      bases.push(realpathSync(mainScript));
    } catch {
      // The main script may be gone or virtual; the other bases remain.
    }
  }
  bases.push(join(process.cwd(), "noop.js"));
  return bases;
}

/** The koffi module (Node only), found as described in koffiSearchBases; other kernel modules' FFI uses it too. */
export function loadKoffi(): typeof import("koffi") {
  type Koffi = typeof import("koffi");
  for (const base of koffiSearchBases()) {
    try {
      return createRequire(base)("koffi") as Koffi;
    } catch {
      // Try the next base.
    }
  }
  throw new Error("podnet kernel: cannot load koffi, the FFI addon that the Node backend needs (npm ci)");
}

function loadKoffiBackend(): LibcBackend {
  const koffi = loadKoffi();
  const lib = koffi.load(LIBC_PATH);
  // `void *` parameters receive typed arrays in place, so recv() fills the caller's buffer directly.
  const socket = lib.func("int socket(int domain, int type, int protocol)");
  const bind = lib.func("int bind(int fd, const void *addr, uint32_t len)");
  const send = lib.func("intptr_t send(int fd, const void *buf, size_t len, int flags)");
  const recv = lib.func("intptr_t recv(int fd, void *buf, size_t len, int flags)");
  const close = lib.func("int close(int fd)");
  const open = lib.func("int open(const void *path, int flags)");
  const setns = lib.func("int setns(int fd, int nstype)");
  const flock = lib.func("int flock(int fd, int operation)");
  const setsockopt = lib.func("int setsockopt(int fd, int level, int name, const void *value, uint32_t len)");
  const strerror = lib.func("const char *strerror(int errnum)");
  return {
    socket: (d, t, p) => socket(d, t, p) as number,
    bind: (fd, addr, len) => bind(fd, addr, len) as number,
    send: (fd, data, len, flags) => Number(send(fd, data, len, flags)),
    recv: (fd, buf, len, flags) => Number(recv(fd, buf, len, flags)),
    close: (fd) => close(fd) as number,
    open: (path, flags) => open(path, flags) as number,
    setns: (fd, nstype) => setns(fd, nstype) as number,
    flock: (fd, op) => flock(fd, op) as number,
    setsockopt: (fd, level, name, value, len) => setsockopt(fd, level, name, value, len) as number,
    strerror: (errnum) => String(strerror(errnum)),
    errno: () => koffi.errno(),
  };
}

function loadBunBackend(): LibcBackend {
  type BunFfi = typeof import("bun:ffi");
  // `require` exists inside ESM under Bun; Node never reaches this function.
  const ffi = require("bun:ffi") as BunFfi;
  const { FFIType } = ffi;
  const { symbols } = ffi.dlopen(LIBC_PATH, {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    open: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    setns: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  // errno is thread-local; Bun runs JavaScript on one thread, so its address never changes.
  const errnoAddress = symbols.__errno_location();
  if (errnoAddress === null) throw new Error("bun:ffi: __errno_location() returned NULL");
  return {
    socket: (d, t, p) => symbols.socket(d, t, p),
    bind: (fd, addr, len) => symbols.bind(fd, addr, len),
    send: (fd, data, len, flags) => Number(symbols.send(fd, data, len, flags)),
    recv: (fd, buf, len, flags) => Number(symbols.recv(fd, buf, len, flags)),
    close: (fd) => symbols.close(fd),
    open: (path, flags) => symbols.open(path, flags),
    setns: (fd, nstype) => symbols.setns(fd, nstype),
    flock: (fd, op) => symbols.flock(fd, op),
    setsockopt: (fd, level, name, value, len) => symbols.setsockopt(fd, level, name, value, len),
    strerror: (errnum) => String(symbols.strerror(errnum)),
    errno: () => ffi.read.i32(errnoAddress, 0),
  };
}

let backend: LibcBackend | undefined;

function libc(): LibcBackend {
  backend ??= typeof Bun !== "undefined" ? loadBunBackend() : loadKoffiBackend();
  return backend;
}

/** Which FFI backend serves this process; for diagnostics and tests. */
export function backendName(): "bun:ffi" | "koffi" {
  return typeof Bun !== "undefined" ? "bun:ffi" : "koffi";
}

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name] as const),
);
// Linux gives EAGAIN and EWOULDBLOCK the same number; prefer the name flock(2) documents.
errnoNames.set(osConstants.errno.EWOULDBLOCK, "EWOULDBLOCK");
errnoNames.set(osConstants.errno.EAGAIN, "EAGAIN");

/** "File exists (EEXIST)" for 17: libc's message plus the symbolic name. */
export function describeErrno(errno: number): string {
  const name = errnoNames.get(errno) ?? `errno ${errno}`;
  let message: string;
  try {
    message = libc().strerror(errno);
  } catch {
    message = "";
  }
  return message ? `${message} (${name})` : name;
}

/** The symbolic name of an errno value, e.g. "EEXIST". */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

const EINTR = osConstants.errno.EINTR;

/** Runs a raw call, retrying on EINTR, and throws SysError on -1. */
function check(syscall: string, call: () => number, detail?: string): number {
  const lib = libc();
  for (;;) {
    const result = call();
    if (result !== -1) return result;
    const errno = lib.errno();
    if (errno !== EINTR) throw new SysError(syscall, errno, detail);
  }
}

export function socket(domain: number, type: number, protocol: number): number {
  return check("socket", () => libc().socket(domain, type, protocol));
}

export function bind(fd: number, addr: Uint8Array): void {
  check("bind", () => libc().bind(fd, addr, addr.byteLength));
}

export function send(fd: number, data: Uint8Array): number {
  return check("send", () => libc().send(fd, data, data.byteLength, 0));
}

/** Blocking receive into `buf`; returns the number of bytes received. */
export function recv(fd: number, buf: Uint8Array): number {
  return check("recv", () => libc().recv(fd, buf, buf.byteLength, 0));
}

/** Receive with flags (e.g. MSG_PEEK | MSG_TRUNC to learn a datagram's size). */
export function recvWithFlags(fd: number, buf: Uint8Array, flags: number): number {
  return check("recv", () => libc().recv(fd, buf, buf.byteLength, flags));
}

export function close(fd: number): void {
  // close(2) must not be retried on EINTR: the descriptor is already released on Linux.
  const result = libc().close(fd);
  if (result === -1) throw new SysError("close", libc().errno());
}

/** open(2) with O_CLOEXEC added; returns the descriptor. */
export function openPath(path: string, flags: number): number {
  const cPath = new TextEncoder().encode(`${path}\0`);
  return check("open", () => libc().open(cPath, flags | O_CLOEXEC), path);
}

export function setns(fd: number, nstype: number): void {
  check("setns", () => libc().setns(fd, nstype));
}

/** flock(2); with LOCK_NB a held lock throws SysError with errno EWOULDBLOCK. */
export function flock(fd: number, operation: number): void {
  check("flock", () => libc().flock(fd, operation));
}

export function setsockopt(fd: number, level: number, name: number, value: Uint8Array): void {
  check("setsockopt", () => libc().setsockopt(fd, level, name, value, value.byteLength));
}

/** setsockopt with a 32-bit integer option value. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const buf = new Uint8Array(4);
  new DataView(buf.buffer).setInt32(0, value, true);
  setsockopt(fd, level, name, buf);
}
