// Where named network namespaces live and which names are valid. Pure: no FFI, no processes.

export const NAMED_NETNS_DIR = "/run/netns";

/** Names `ip netns` accepts: one path component, no slashes or whitespace, not . or .. */
export function validateNetnsName(name: string): string | undefined {
  if (name === "" || name === "." || name === "..") return `namespace name "${name}" is not allowed`;
  if (/[/\s]/.test(name)) return `namespace name "${name}" must not contain "/" or whitespace`;
  if (Buffer.byteLength(name) > 255) return `namespace name "${name.slice(0, 20)}…" is longer than 255 bytes`;
  return undefined;
}

function checkedName(name: string): string {
  const problem = validateNetnsName(name);
  if (problem) throw new Error(problem);
  return name;
}

/** /run/netns/NAME. */
export function namedNetnsPath(name: string): string {
  return `${NAMED_NETNS_DIR}/${checkedName(name)}`;
}
