/**
 * DOC: the guest
 *
 * The guest side of nested translation: its RAM, one vtd_s1 address space
 * per PASID (and one for requests without PASID), and the page request
 * handler its IOMMU driver runs. The handler drains the virtual PRQ one
 * descriptor at a time, as a guest's PRQ thread does:
 *
 * - a request inside an allowed VA range, with a permission the range
 *   grants, is served: a missing page gets a fresh page of guest RAM mapped
 *   with the permission asked for (read-only for a read); a write to a page
 *   mapped read-only upgrades the entry, which changes a present entry and
 *   so is followed by an IOTLB invalidation;
 * - a request outside the ranges, a write to a read-only range, or an
 *   execute request is answered Invalid Request;
 * - a request the guest cannot serve for lack of memory (or because its
 *   memory accesses fail) gets Response Failure.
 *
 * The group's response (the worst code among its requests) is posted when
 * the request flagged last has been handled.
 */
import { PERM } from '../../protocol/index.js';
import { GUEST_PAGE, type GuestMemory } from './guest-memory.js';
import { GuestPageTable, PTE, type AddrWidth } from './guest-page-table.js';
import { VirtualPrq } from './vprq.js';

/** GuestCode - a Page Group Response code as the guest writes it (VT-d: 0, 1, 0xF). */
export type GuestCode = 'success' | 'invalid' | 'failure';

/**
 * struct PageRequestDescriptor - one page request in the virtual PRQ.
 * @source: who injected it (the VMM's binding), returned with the response.
 * @pasid: the request's PASID, undefined for a request without one.
 * @grpid: the Page Request Group index.
 * @addr: the page address.
 * @perm: PERM bits.
 * @last: the last request of its group.
 */
export interface PageRequestDescriptor<S> {
  source: S;
  pasid: number | undefined;
  grpid: number;
  addr: bigint;
  perm: number;
  last: boolean;
}

/** struct PageGroupResponse - the guest's answer to one group. */
export interface PageGroupResponse<S> {
  source: S;
  pasid: number | undefined;
  grpid: number;
  code: GuestCode;
}

/**
 * struct AllowedRange - VAs the guest serves faults in.
 * @start: first VA (4 KiB aligned).
 * @length: bytes (4 KiB multiple).
 * @write: writes allowed too (else read-only).
 */
export interface AllowedRange {
  start: bigint;
  length: bigint;
  write: boolean;
}

/**
 * struct GuestOptions - the guest's configuration.
 * @mem: its RAM.
 * @allow: the VA ranges it serves.
 * @prqDepth: descriptors in its virtual PRQ.
 * @addrWidth: of its page tables.
 * @invalidate: flush the IOTLB for one page of the address space of @pasid
 *   (the virtual IOMMU's invalidation, which the VMM forwards).
 * @respond: post a Page Group Response.
 */
export interface GuestOptions<S> {
  mem: GuestMemory;
  allow: readonly AllowedRange[];
  prqDepth: number;
  addrWidth: AddrWidth;
  invalidate(pasid: number | undefined, va: bigint): Promise<void>;
  respond(response: PageGroupResponse<S>): void;
}

/**
 * struct GuestStats - what the guest's handler did.
 * @requests: page requests handled.
 * @pagesMapped: pages newly mapped.
 * @upgrades: read-only entries made writable (each followed by an invalidation).
 * @invalidRequests: requests answered Invalid Request.
 * @failedRequests: requests answered Response Failure.
 */
export interface GuestStats {
  requests: number;
  pagesMapped: number;
  upgrades: number;
  invalidRequests: number;
  failedRequests: number;
}

const SEVERITY: Readonly<Record<GuestCode, number>> = { success: 0, invalid: 1, failure: 2 };

/** Guest - a guest OS with nested translation and PRI enabled in its virtual IOMMU. */
export class Guest<S> {
  /** The virtual page request queue. */
  readonly prq: VirtualPrq<PageRequestDescriptor<S>>;
  readonly stats: GuestStats = { requests: 0, pagesMapped: 0, upgrades: 0, invalidRequests: 0, failedRequests: 0 };
  readonly #opts: GuestOptions<S>;
  readonly #spaces = new Map<number | undefined, GuestPageTable>();
  /** Worst code so far of each group being handled, by source and grpid. */
  readonly #groups = new Map<S, Map<number, GuestCode>>();
  #running = false;
  #idleWaiters: Array<() => void> = [];

  constructor(opts: GuestOptions<S>) {
    this.#opts = opts;
    this.prq = new VirtualPrq(opts.prqDepth);
  }

  /**
   * addressSpace() - the page table of @pasid (undefined: requests without
   * PASID), created empty on first use. Throws GuestOutOfMemory.
   */
  addressSpace(pasid: number | undefined): GuestPageTable {
    let s = this.#spaces.get(pasid);
    if (!s) {
      s = new GuestPageTable(this.#opts.mem, this.#opts.addrWidth);
      this.#spaces.set(pasid, s);
    }
    return s;
  }

  /**
   * inject() - the virtual IOMMU received a page request group: queue its
   * descriptors for the handler.
   * Return: false if the queue cannot take them all (nothing was queued).
   */
  inject(requests: readonly PageRequestDescriptor<S>[]): boolean {
    if (!this.prq.inject(requests)) return false;
    if (!this.#running) {
      this.#running = true;
      void this.#drain();
    }
    return true;
  }

  /** idle() - resolves once the PRQ is empty and the handler has stopped. */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async #drain(): Promise<void> {
    for (let d = this.prq.head(); d; d = this.prq.head()) {
      const code = await this.#serve(d);
      this.prq.advance();
      let groups = this.#groups.get(d.source);
      if (!groups) {
        groups = new Map();
        this.#groups.set(d.source, groups);
      }
      const worst = groups.get(d.grpid);
      const groupCode = worst !== undefined && SEVERITY[worst] > SEVERITY[code] ? worst : code;
      if (d.last) {
        groups.delete(d.grpid);
        this.#opts.respond({ source: d.source, pasid: d.pasid, grpid: d.grpid, code: groupCode });
      } else {
        groups.set(d.grpid, groupCode);
      }
    }
    this.#running = false;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  /** The guest's fault handler for one page request. */
  async #serve(d: PageRequestDescriptor<S>): Promise<GuestCode> {
    this.stats.requests++;
    const va = d.addr & ~(GUEST_PAGE - 1n);
    const write = (d.perm & PERM.WRITE) !== 0;
    const range = this.#opts.allow.find((r) => va >= r.start && va < r.start + r.length);
    if ((d.perm & PERM.EXEC) !== 0 || !range || (write && !range.write)) {
      this.stats.invalidRequests++;
      return 'invalid';
    }
    try {
      const space = this.addressSpace(d.pasid);
      const leaf = (await space.walk(va, true))!;
      if ((leaf.pte & PTE.P) !== 0n) {
        if (write && (leaf.pte & PTE.RW) === 0n) {
          // A present entry changes: the IOTLB may hold the read-only translation.
          await this.#opts.mem.writeU64s([[leaf.slot, leaf.pte | PTE.RW]]);
          await this.#opts.invalidate(d.pasid, va);
          this.stats.upgrades++;
        }
        return 'success';
      }
      const page = this.#opts.mem.allocPage();
      await this.#opts.mem.writeU64s([...leaf.writes, [leaf.slot, GuestPageTable.leafOf(page, write)]]);
      this.stats.pagesMapped++;
      return 'success';
    } catch {
      this.stats.failedRequests++;
      return 'failure';
    }
  }
}
