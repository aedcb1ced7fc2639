// Removing the set elements that belong to one network interface, straight over nf_tables netlink:
// the sets' keys are dumped raw (NFT_MSG_GETSETELEM), the elements whose key starts with a chosen
// interface name are picked, and exactly those keys are sent back in one batch of deletes. Nothing
// is decoded beyond that leading ifname, so the same code serves `ifname` and `ifname . ipv4_addr` /
// `ifname . ipv6_addr` keys. It replaces, for the CNI plugin's DEL, reading whole tables through
// libnftables and running an nft script: 14 ms in the resident service (bench/RESULTS.md, CNI), most
// of it libnftables, while the kernel's part is ~0.1 ms.
//
// The deletes are NFT_MSG_DESTROYSETELEM (kernel 6.3 and later), which skips an element already gone,
// so two removals for the same interface at once (a runtime's repeated DEL) both succeed. An older
// kernel refuses that message type (EINVAL, nfnetlink knows no such callback); then the batch is
// repeated with NFT_MSG_DELSETELEM, which fails with ENOENT only if the element went in between.
//
// Messages are built with the netlink codec (attributes, framing) and sent with NetlinkSocket.nfBatch,
// as netlink-encode.ts's batches are.

import { KernelError, NETLINK_NETFILTER, NetlinkSocket } from "../netlink/socket.ts";
import { NLM_F_ACK, NLM_F_REQUEST, attr, cstring, encodeMessageInto, messageLength, nested, parseAttrs, readCString, type AttrSpec, type NlRequest } from "../netlink/codec.ts";
import type { NftFamily } from "./model.ts";
import { NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES } from "./netlink-encode.ts";

// linux/netfilter/nf_tables.h
const NFT_MSG_GETCHAIN = 4, NFT_MSG_GETSETELEM = 13, NFT_MSG_DELSETELEM = 14, NFT_MSG_DESTROYSETELEM = 30;
const NFTA_CHAIN_TABLE = 1, NFTA_CHAIN_NAME = 3;
const NFTA_SET_ELEM_LIST_TABLE = 1, NFTA_SET_ELEM_LIST_SET = 2, NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_DATA_VALUE = 1;
const IFNAMSIZ = 16;
const ENOENT = 2, EINVAL = 22;
/** linux/netfilter.h NFPROTO_* */
const FAMILIES: Record<NftFamily, number> = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 };

/** Element keys per message: far below netlink's 64 KiB attribute limit (a key here is at most 32 bytes). */
const KEYS_PER_MESSAGE = 500;

function msgType(msg: number): number {
  return (NFNL_SUBSYS_NFTABLES << 8) | msg;
}

/** struct nfgenmsg: family, version (NFNETLINK_V0), resource id (big-endian). */
function nfgenmsg(family: number, resId = 0): Uint8Array {
  return Uint8Array.of(family, 0, resId >> 8, resId & 0xff);
}

/** The interface name a key starts with: IFNAMSIZ bytes, NUL-padded. */
function leadingIfname(key: Uint8Array): string {
  return readCString(key.subarray(0, IFNAMSIZ));
}

function isErrno(error: unknown, errno: number): boolean {
  return error instanceof KernelError && error.errno === errno;
}

/** The raw keys of a set's elements; undefined when the table or the set does not exist. */
function dumpKeys(nl: NetlinkSocket, family: number, table: string, set: string): Uint8Array[] | undefined {
  let messages;
  try {
    messages = nl.dump(
      { type: msgType(NFT_MSG_GETSETELEM), flags: 0, header: nfgenmsg(family), attrs: [attr(NFTA_SET_ELEM_LIST_TABLE, cstring(table)), attr(NFTA_SET_ELEM_LIST_SET, cstring(set))] },
      `list set ${table} ${set}`,
    );
  } catch (error) {
    if (isErrno(error, ENOENT)) return undefined;
    throw error;
  }
  const keys: Uint8Array[] = [];
  for (const msg of messages) {
    for (const a of parseAttrs(msg.payload.subarray(4))) {
      if (a.type !== NFTA_SET_ELEM_LIST_ELEMENTS) continue;
      for (const element of parseAttrs(a.data)) {
        if (element.type !== NFTA_LIST_ELEM) continue;
        const key = parseAttrs(element.data).find((e) => e.type === NFTA_SET_ELEM_KEY);
        const value = key && parseAttrs(key.data).find((v) => v.type === NFTA_DATA_VALUE);
        if (value) keys.push(value.data.slice());
      }
    }
  }
  return keys;
}

/** The batch deleting `removals` (set → raw keys), ready for NetlinkSocket.nfBatch. */
function deleteBatch(msg: number, family: number, table: string, removals: readonly { set: string; keys: readonly Uint8Array[] }[]): { batch: Uint8Array; ops: string[] } {
  const requests: NlRequest[] = [];
  const ops: string[] = [];
  for (const { set, keys } of removals) {
    for (let i = 0; i < keys.length; i += KEYS_PER_MESSAGE) {
      const elements: AttrSpec[] = keys.slice(i, i + KEYS_PER_MESSAGE).map((key) => nested(NFTA_LIST_ELEM, [nested(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, key)])]));
      requests.push({
        type: msgType(msg),
        flags: NLM_F_REQUEST,
        header: nfgenmsg(family),
        attrs: [attr(NFTA_SET_ELEM_LIST_TABLE, cstring(table)), attr(NFTA_SET_ELEM_LIST_SET, cstring(set)), nested(NFTA_SET_ELEM_LIST_ELEMENTS, elements)],
      });
      ops.push(`delete element ${table} ${set}`);
    }
  }
  // Only the last message asks for an ACK (see NetlinkSocket.nfBatch); sequence numbers are indexes.
  requests[requests.length - 1]!.flags |= NLM_F_ACK;
  const begin: NlRequest = { type: NFNL_MSG_BATCH_BEGIN, flags: NLM_F_REQUEST, header: nfgenmsg(0, NFNL_SUBSYS_NFTABLES) };
  const end: NlRequest = { type: NFNL_MSG_BATCH_END, flags: NLM_F_REQUEST, header: nfgenmsg(0, NFNL_SUBSYS_NFTABLES) };
  const all = [begin, ...requests, end];
  const batch = new Uint8Array(all.reduce((n, r) => n + messageLength(r), 0));
  let offset = 0;
  all.forEach((r, seq) => {
    offset = encodeMessageInto(batch, offset, r, seq);
  });
  return { batch, ops };
}

/**
 * The socket for the thread's own namespace, kept open for the life of the thread. Closing an
 * nfnetlink socket runs nf_tables' NETLINK_URELEASE handler, which takes the namespace's commit mutex
 * and waits there for the release of every deleted object still queued, after an RCU grace period:
 * 13-16 ms right after a delete (measured in a scratch namespace: a one-element delete batch and the
 * close took 13 ms, the same batch on a kept socket 0.3-0.6 ms). While it waits, nothing else in the
 * namespace can commit nor unregister a device (nf_tables' netdev notifier takes the same mutex),
 * which is how the libnftables removal, on a socket of its own per call, slowed the veth deletion it
 * ran beside. A socket for another namespace (tests) is opened and closed per call.
 */
let ownSocket: NetlinkSocket | undefined;

function withSocket<T>(netnsPath: string | undefined, use: (nl: NetlinkSocket) => T): T {
  if (netnsPath !== undefined) {
    const nl = NetlinkSocket.open(netnsPath, NETLINK_NETFILTER);
    try {
      return use(nl);
    } finally {
      nl.close();
    }
  }
  const nl = (ownSocket ??= NetlinkSocket.open(undefined, NETLINK_NETFILTER));
  try {
    return use(nl);
  } catch (error) {
    // A refusal leaves the socket usable; anything else (a lost reply, a short send) may not have.
    if (!(error instanceof KernelError)) {
      ownSocket = undefined;
      nl.close();
    }
    throw error;
  }
}

/** False once this kernel has refused NFT_MSG_DESTROYSETELEM (before 6.3). */
let destroySupported = true;

/**
 * Deletes, in one atomic batch, every element of `sets` (in table `family table`) whose key starts
 * with an interface name `gone` selects. A missing table or set holds nothing to delete. Returns the
 * number of elements deleted.
 */
export function removeInterfaceElements(family: NftFamily, table: string, sets: readonly string[], gone: (ifname: string) => boolean, netnsPath?: string): number {
  const familyNumber = FAMILIES[family];
  return withSocket(netnsPath, (nl) => {
    const removals: { set: string; keys: Uint8Array[] }[] = [];
    for (const set of sets) {
      const keys = (dumpKeys(nl, familyNumber, table, set) ?? []).filter((key) => gone(leadingIfname(key)));
      if (keys.length > 0) removals.push({ set, keys });
    }
    if (removals.length === 0) return 0;
    const send = (msg: number): void => {
      const { batch, ops } = deleteBatch(msg, familyNumber, table, removals);
      nl.nfBatch(batch, (i) => `${ops[i] ?? "batch"} (${family})`);
    };
    if (destroySupported) {
      try {
        send(NFT_MSG_DESTROYSETELEM);
      } catch (error) {
        if (!isErrno(error, EINVAL)) throw error;
        destroySupported = false;
        send(NFT_MSG_DELSETELEM);
      }
    } else {
      send(NFT_MSG_DELSETELEM);
    }
    return removals.reduce((n, r) => n + r.keys.length, 0);
  });
}

/** The names of a table's chains (none when the table does not exist). */
export function listChainNames(family: NftFamily, table: string, netnsPath?: string): string[] {
  return withSocket(netnsPath, (nl) => {
    // The kernel dumps every chain of the family; the table is picked here.
    const messages = nl.dump({ type: msgType(NFT_MSG_GETCHAIN), flags: 0, header: nfgenmsg(FAMILIES[family]) }, `list chains ${family}`);
    const names: string[] = [];
    for (const msg of messages) {
      let chainTable: string | undefined;
      let name: string | undefined;
      for (const a of parseAttrs(msg.payload.subarray(4))) {
        if (a.type === NFTA_CHAIN_TABLE) chainTable = readCString(a.data);
        else if (a.type === NFTA_CHAIN_NAME) name = readCString(a.data);
      }
      if (chainTable === table && name !== undefined) names.push(name);
    }
    return names;
  });
}
