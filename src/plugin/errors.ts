// What the runtime learns when something below the plugin fails. Every error that reaches the
// plugin's main becomes CNI error JSON with a code that says whose failure it was; only a podnet
// bug stays Internal (999). Codes under 100 are the spec's; 100 and up are podnet's (src/cni/types.ts).
//
// - a request the kernel refused over netlink (KernelError) or a failed system call (SysError, such as
//   setns into a CNI_NETNS that is not a network namespace): Kernel (101), errno in the details;
// - nft failing to apply or to start (NftError): Nftables (104), nft's exit status in the details;
// - a failed file operation on the IPAM store and the like: handled for every plugin in cni/error.ts (Io, 5).
import { CniError, ErrorCode } from "../cni/types.ts";
import { errnoName, SysError } from "../kernel/libc.ts";
import { KernelError } from "../kernel/netlink/socket.ts";
import { NftError } from "../kernel/nft.ts";

/** The CniError a failure of the layers below maps to; anything else unchanged. */
export function asCniError(err: unknown): unknown {
  if (err instanceof CniError) return err;
  if (err instanceof KernelError) return new CniError(ErrorCode.Kernel, err.message, `errno ${err.code}`);
  if (err instanceof SysError) return new CniError(ErrorCode.Kernel, err.message, `errno ${errnoName(err.errno)} from ${err.syscall}`);
  if (err instanceof NftError) {
    return new CniError(ErrorCode.Nftables, err.message, err.exitCode === null ? "nft could not be run" : `nft exited with status ${err.exitCode}`);
  }
  return err;
}
