// Takes one address from one range set, round-robin, over an IpamStore.
//
// The cursor (the store's lastReserved) makes allocation start just after the address handed
// out last time, so an address freed by DEL is not given to the next pod at once: stale ARP
// entries and conntrack state for it have time to fade. Callers hold the store's lock.
import { CniError, ErrorCode } from "../cni/types.ts";
import { addToIp, compareIp, formatIp, ipEquals, tryParseIp, type IpAddress } from "../net/address.ts";
import {
  allocatableCount,
  describeRangeSet,
  isAllocatable,
  rangeContains,
  rangeFor,
  whyNotAllocatable,
  type Range,
  type RangeSet,
} from "./range.ts";
import type { IpamStore } from "./store.ts";

export interface Attachment {
  containerId: string;
  ifname: string;
}

export interface Allocation {
  ip: IpAddress;
  range: Range;
  rangeSetId: number;
  /** False when the attachment already held this address (a retried ADD). */
  fresh: boolean;
}

export class Allocator {
  constructor(
    private readonly set: RangeSet,
    private readonly rangeSetId: number,
    private readonly store: IpamStore,
  ) {}

  /** The address the attachment already holds in this set, if any. */
  existing(attachment: Attachment): Allocation | undefined {
    for (const reservation of this.store.findByAttachment(attachment.containerId, attachment.ifname)) {
      const ip = tryParseIp(reservation.ip);
      const range = ip && rangeFor(this.set, ip);
      if (ip && range) return { ip, range, rangeSetId: this.rangeSetId, fresh: false };
    }
    return undefined;
  }

  /**
   * One address for the attachment: the one it already holds in this set, else `requested`
   * if given, else the next free one after the cursor.
   */
  allocate(attachment: Attachment, requested?: IpAddress): Allocation {
    const held = this.existing(attachment);
    if (held) {
      if (requested && !ipEquals(requested, held.ip)) {
        throw new CniError(
          ErrorCode.AddressInUse,
          `ipam: ${attachment.containerId}/${attachment.ifname} already holds ${formatIp(held.ip)} in range set ${describeRangeSet(this.set)}; cannot also take requested ${formatIp(requested)}`,
        );
      }
      return held;
    }
    return requested ? this.allocateRequested(attachment, requested) : this.allocateNext(attachment);
  }

  private allocateRequested(attachment: Attachment, requested: IpAddress): Allocation {
    const range = rangeFor(this.set, requested);
    if (!range) {
      throw new CniError(
        ErrorCode.InvalidConfig,
        `ipam: requested IP ${formatIp(requested)} is not in range set ${describeRangeSet(this.set)}`,
      );
    }
    const reason = whyNotAllocatable(range, requested);
    if (reason) throw new CniError(ErrorCode.InvalidConfig, `ipam: requested IP cannot be allocated: ${reason}`);
    const ip = formatIp(requested);
    if (!this.store.reserve({ ip, ...attachment, rangeSetId: this.rangeSetId })) {
      const holder = this.store.list().find((r) => r.ip === ip);
      const who = holder ? ` to ${holder.containerId}/${holder.ifname}` : "";
      throw new CniError(ErrorCode.AddressInUse, `ipam: requested IP ${ip} is already allocated${who}`);
    }
    // The cursor is left alone: it tracks round-robin picks only, so a requested address
    // does not pull it backwards and bring recently freed addresses forward.
    return { ip: requested, range, rangeSetId: this.rangeSetId, fresh: true };
  }

  private allocateNext(attachment: Attachment): Allocation {
    for (const { ip, range } of this.candidates()) {
      if (!isAllocatable(range, ip)) continue;
      const text = formatIp(ip);
      if (this.store.reserve({ ip: text, ...attachment, rangeSetId: this.rangeSetId })) {
        this.store.setLastReserved(this.rangeSetId, text);
        return { ip, range, rangeSetId: this.rangeSetId, fresh: true };
      }
    }
    throw new CniError(
      ErrorCode.RangeExhausted,
      `no free address in range set ${describeRangeSet(this.set)} (all ${allocatableCount(this.set)} allocatable addresses are taken)`,
    );
  }

  /** Every address of the set's windows once, starting just after the cursor and wrapping around. */
  private *candidates(): Generator<{ ip: IpAddress; range: Range }> {
    const ranges = this.set.ranges;
    let rangeIndex = 0;
    let ip = ranges[0]!.rangeStart;
    const cursor = tryParseIp(this.store.lastReserved(this.rangeSetId) ?? "");
    const cursorRange = cursor ? ranges.findIndex((r) => rangeContains(r, cursor)) : -1;
    if (cursor && cursorRange >= 0) {
      rangeIndex = cursorRange;
      ip = cursor;
      [rangeIndex, ip] = this.step(rangeIndex, ip);
    }
    const startRange = rangeIndex;
    const start = ip;
    do {
      yield { ip, range: ranges[rangeIndex]! };
      [rangeIndex, ip] = this.step(rangeIndex, ip);
    } while (!(rangeIndex === startRange && ipEquals(ip, start)));
  }

  private step(rangeIndex: number, ip: IpAddress): [number, IpAddress] {
    const ranges = this.set.ranges;
    if (compareIp(ip, ranges[rangeIndex]!.rangeEnd) >= 0) {
      const next = (rangeIndex + 1) % ranges.length;
      return [next, ranges[next]!.rangeStart];
    }
    return [rangeIndex, addToIp(ip, 1n)];
  }
}
