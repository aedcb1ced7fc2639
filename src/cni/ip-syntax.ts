// The address syntax check the protocol layer needs, written here instead of importing
// node:net's isIP: in the compiled plugin, loading node:net costs about 10 ms of start-up,
// which is most of what a runtime waits for on a VERSION or DEL. Same rules as Go's
// net.ParseIP, which is what libcni applies: no leading zeros in IPv4 octets, no zones.

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function groupsValid(text: string): number {
  if (text === "") return 0;
  const groups = text.split(":");
  return groups.every((g) => HEX_GROUP.test(g)) ? groups.length : -1;
}

function isIpv6(text: string): boolean {
  let body = text;
  let tailGroups = 0;
  const lastColon = body.lastIndexOf(":");
  if (lastColon < 0) return false;
  const last = body.slice(lastColon + 1);
  if (last.includes(".")) {
    if (!IPV4.test(last)) return false;
    // "::1.2.3.4" keeps its "::"; "a:b:c:d:e:f:1.2.3.4" drops only the tail.
    body = body.slice(0, lastColon + 1) + "0";
    tailGroups = 1;
  }
  const halves = body.split("::");
  if (halves.length > 2) return false;
  if (halves.length === 2) {
    const head = groupsValid(halves[0]!);
    const tail = groupsValid(halves[1]!);
    return head >= 0 && tail >= 0 && head + tail + tailGroups <= 7;
  }
  return groupsValid(body) + tailGroups === 8;
}

/** 4 or 6 for a textual IPv4 or IPv6 address, 0 for anything else. */
export function ipFamily(text: string): 0 | 4 | 6 {
  if (typeof text !== "string") return 0;
  if (IPV4.test(text)) return 4;
  return text.includes(":") && isIpv6(text) ? 6 : 0;
}
