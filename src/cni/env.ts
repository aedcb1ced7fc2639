// The CNI_* environment, validated per verb with libcni's rules.
//
// Which variables each verb requires:
//   ADD, CHECK       CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME
//   DEL              CNI_CONTAINERID, CNI_IFNAME (CNI_NETNS may be empty: containerd's
//                    second DEL after the sandbox is gone)
//   STATUS, GC,      only CNI_COMMAND
//   VERSION
// libcni additionally insists on CNI_PATH for every verb but VERSION. podnet does not:
// a plugin that delegates finds out soon enough, with a message naming the plugin.
import { parseCniArgs, rejectUnknownArgs } from "./args.ts";
import { CniError, ErrorCode, type CniArgs, type CniCommand, type CniEnv } from "./types.ts";

const COMMANDS: readonly CniCommand[] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"];

const REQUIRED: Record<CniCommand, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
  STATUS: [],
  GC: [],
  VERSION: [],
};

/** Starts with a letter or digit, then letters, digits, "_", "." or "-": libcni's rule for IDs and network names. */
export const CNI_NAME_SYNTAX = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** The kernel's IFNAMSIZ is 16 bytes including the terminating NUL. */
const MAX_IFNAME_BYTES = 15;
const UTF8 = new TextEncoder();

export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND ?? "";
  if (command === "") throw new CniError(ErrorCode.InvalidEnv, "required env variables [CNI_COMMAND] missing");
  if (!isCommand(command)) {
    throw new CniError(ErrorCode.InvalidEnv, `unknown CNI_COMMAND: ${command}`, `CNI_COMMAND must be one of ${COMMANDS.join(", ")}`);
  }

  const required = REQUIRED[command];
  const missing = required.filter((name) => (env[name] ?? "") === "");
  if (missing.length > 0) throw new CniError(ErrorCode.InvalidEnv, `required env variables [${missing.join(",")}] missing`);

  const containerId = env.CNI_CONTAINERID ?? "";
  const ifname = env.CNI_IFNAME ?? "";
  if (required.includes("CNI_CONTAINERID")) validateContainerId(containerId);
  if (required.includes("CNI_IFNAME")) validateInterfaceName(ifname);

  // Only attachment verbs read CNI_ARGS; a stray value must not break STATUS or GC.
  const args: CniArgs = required.length > 0 ? parseCniArgs(env.CNI_ARGS) : { ignoreUnknown: false, raw: {} };
  if (command === "ADD" || command === "CHECK") rejectUnknownArgs(args);
  return {
    command,
    containerId,
    netns: env.CNI_NETNS ?? "",
    ifname,
    args,
    path: (env.CNI_PATH ?? "").split(":").filter((dir) => dir !== ""),
  };
}

function isCommand(value: string): value is CniCommand {
  return (COMMANDS as readonly string[]).includes(value);
}

export function validateContainerId(containerId: string): void {
  if (!CNI_NAME_SYNTAX.test(containerId)) {
    throw new CniError(
      ErrorCode.InvalidEnv,
      "CNI_CONTAINERID has invalid characters",
      `${JSON.stringify(containerId)}: must start with a letter or digit, followed by letters, digits, "_", "." or "-"`,
    );
  }
}

export function validateInterfaceName(ifname: string): void {
  const problem = interfaceNameProblem(ifname);
  if (problem !== undefined) throw new CniError(ErrorCode.InvalidEnv, `CNI_IFNAME ${problem}`, JSON.stringify(ifname));
}

/** Why the kernel (and libcni) would refuse `ifname`, or undefined if it is acceptable. */
export function interfaceNameProblem(ifname: string): string | undefined {
  if (ifname === "") return "is empty";
  if (UTF8.encode(ifname).length > MAX_IFNAME_BYTES) return `is longer than ${MAX_IFNAME_BYTES} bytes`;
  if (ifname === "." || ifname === "..") return 'must not be "." or ".."';
  if (/[/:\s]/u.test(ifname)) return 'must not contain "/", ":" or whitespace';
  return undefined;
}
