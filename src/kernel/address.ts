// IP addresses on interfaces over rtnetlink.
import { ipToBytes } from "../net/address.ts";
import { broadcastOf } from "../net/cidr.ts";
import { AF_INET, AF_INET6, AF_UNSPEC } from "./libc.ts";
import {
  IFADDRMSG_LEN,
  NLM_F_CREATE,
  NLM_F_EXCL,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
  attr,
  attrMap,
  bytesToIp,
  decodeIfAddrMsg,
  encodeIfAddrMsg,
  cidrToBytes,
  u32,
  type AttrSpec,
} from "./netlink/codec.ts";
import type { NetlinkSocket } from "./netlink/socket.ts";

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;
const IFA_FLAGS = 8;
const IFA_F_NODAD = 0x02;

export interface AddressInfo {
  index: number;
  /** The address with its prefix length, e.g. 10.244.1.1/24. */
  cidr: string;
  family: 4 | 6;
}

function addressAttrs(cidr: string): { family: number; prefix: number; attrs: AttrSpec[] } {
  const { bytes, prefix, family, cidr: parsed } = cidrToBytes(cidr);
  if (family === 4) {
    const broadcast = broadcastOf(parsed)!;
    const attrs = [attr(IFA_LOCAL, bytes), attr(IFA_ADDRESS, bytes)];
    // /31 and /32 have no broadcast address (RFC 3021).
    if (prefix < 31) attrs.push(attr(IFA_BROADCAST, ipToBytes(broadcast)));
    return { family: AF_INET, prefix, attrs };
  }
  return { family: AF_INET6, prefix, attrs: [attr(IFA_ADDRESS, bytes)] };
}

/**
 * Adds `cidr` to link `index`. IPv4 gets its broadcast address as `ip addr add … brd +`
 * would; IPv6 with `noDad` skips duplicate address detection, so the address is usable at
 * once instead of "tentative" for about a second. Fails with EEXIST if already present.
 */
export function addAddress(nl: NetlinkSocket, index: number, cidr: string, opts: { noDad?: boolean } = {}): void {
  const { family, prefix, attrs } = addressAttrs(cidr);
  const flags = family === AF_INET6 && opts.noDad ? IFA_F_NODAD : 0;
  if (flags) attrs.push(attr(IFA_FLAGS, u32(flags)));
  nl.request(
    { type: RTM_NEWADDR, flags: NLM_F_CREATE | NLM_F_EXCL, header: encodeIfAddrMsg({ family, prefixlen: prefix, flags, index }), attrs },
    `add address ${cidr} to link #${index}`,
  );
}

export function deleteAddress(nl: NetlinkSocket, index: number, cidr: string): void {
  const { family, prefix, attrs } = addressAttrs(cidr);
  nl.request({ type: RTM_DELADDR, flags: 0, header: encodeIfAddrMsg({ family, prefixlen: prefix, index }), attrs }, `delete address ${cidr} from link #${index}`);
}

/** Every IPv4 and IPv6 address, or those of link `index`. */
export function listAddresses(nl: NetlinkSocket, index?: number): AddressInfo[] {
  const messages = nl.dump({ type: RTM_GETADDR, flags: 0, header: encodeIfAddrMsg({ family: AF_UNSPEC }) }, "list addresses");
  const result: AddressInfo[] = [];
  for (const msg of messages) {
    if (msg.type !== RTM_NEWADDR) continue;
    const header = decodeIfAddrMsg(msg.payload);
    if (index !== undefined && header.index !== index) continue;
    if (header.family !== AF_INET && header.family !== AF_INET6) continue;
    const attrs = attrMap(msg.payload.subarray(IFADDRMSG_LEN));
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS differs from it only on point-to-point links.
    const address = attrs.get(IFA_LOCAL) ?? attrs.get(IFA_ADDRESS);
    if (!address) continue;
    result.push({ index: header.index, cidr: `${bytesToIp(address)}/${header.prefixlen}`, family: header.family === AF_INET ? 4 : 6 });
  }
  return result;
}
