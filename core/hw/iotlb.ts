// The IOTLB: a cache of successful translations, one entry per
// (tag, pasid, 4 KiB page). It never caches a miss.

import { PAGE_SHIFT } from './memory.js';

/**
 * IotlbEntry - a cached translation of one 4 KiB page: the host page address
 * and the effective permissions of the full (stage-1 and stage-2) walk.
 */
export interface IotlbEntry {
  hpa: bigint;
  write: boolean;
  exec: boolean;
  user: boolean;
}

interface Slot {
  readonly tag: number;
  readonly pasid: number;
  readonly page: number;
  entry: IotlbEntry;
}

type PageMap = Map<number, Slot>;

const U64_LIMIT = 1n << 64n;
/** One past the last 4 KiB page number of the 64-bit space. */
const PAGE_LIMIT = Number(U64_LIMIT >> PAGE_SHIFT);

function pageOf(iova: bigint): number {
  if (iova < 0n || iova >= U64_LIMIT) throw new RangeError(`iova 0x${iova.toString(16)} outside the 64-bit space`);
  return Number(iova >> PAGE_SHIFT);
}

/**
 * Iotlb - the IOMMU's translation cache.
 *
 * @tag names a translation context (the caller's choice, e.g. one per
 * domain); @pasid the address space within it (the caller picks a value for
 * requests without PASID). Addresses are any address inside the 4 KiB page.
 * When full, insert() evicts the oldest inserted entry. The caller inserts
 * only successful translations and invalidates whenever a mapping it may hold
 * is cleared or downgraded. Entries are stored as given: the caller must not
 * mutate an IotlbEntry after inserting it.
 */
export class Iotlb {
  readonly #capacity: number;
  /** tag -> pasid -> page number -> slot. */
  readonly #tags = new Map<number, Map<number, PageMap>>();
  /** Every live slot, in insertion order (the eviction order). */
  readonly #order = new Set<Slot>();
  #hits = 0;
  #misses = 0;

  /** @capacity: maximum number of entries, a positive integer (RangeError). */
  constructor(capacity = 65536) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError(`bad IOTLB capacity ${capacity}`);
    this.#capacity = capacity;
  }

  /** lookup() - the cached translation of @iova's page, or undefined; counts a hit or a miss. */
  lookup(tag: number, pasid: number, iova: bigint): IotlbEntry | undefined {
    const slot = this.#tags.get(tag)?.get(pasid)?.get(pageOf(iova));
    if (slot === undefined) {
      this.#misses += 1;
      return undefined;
    }
    this.#hits += 1;
    return slot.entry;
  }

  /**
   * insert() - cache @e for @iova's page, replacing (and refreshing the age
   * of) any entry already there; evicts the oldest entry when full.
   */
  insert(tag: number, pasid: number, iova: bigint, e: IotlbEntry): void {
    const page = pageOf(iova);
    const old = this.#tags.get(tag)?.get(pasid)?.get(page);
    if (old !== undefined) {
      old.entry = e;
      this.#order.delete(old);
      this.#order.add(old);
      return;
    }
    if (this.#order.size >= this.#capacity) {
      const oldest = this.#order.values().next().value;
      if (oldest !== undefined) this.#remove(oldest);
    }
    const slot: Slot = { tag, pasid, page, entry: e };
    this.#pagesFor(tag, pasid).set(page, slot);
    this.#order.add(slot);
  }

  /**
   * invalidateRange() - drop the entries of @npages pages from @iova's page
   * for @tag and @pasid (undefined: every pasid of @tag). The range is
   * clipped to the 64-bit space. Returns the number of entries dropped.
   * Costs min(npages, entries held) per pasid: it never scans other tags.
   */
  invalidateRange(tag: number, pasid: number | undefined, iova: bigint, npages: number | bigint): number {
    const n = typeof npages === 'bigint' ? npages : BigInt(npages);
    if (n < 0n) throw new RangeError(`negative page count ${String(npages)}`);
    const start = pageOf(iova);
    const endBig = BigInt(start) + n;
    const end = endBig > BigInt(PAGE_LIMIT) ? PAGE_LIMIT : Number(endBig);
    const pasids = this.#tags.get(tag);
    if (pasids === undefined || start >= end) return 0;
    let dropped = 0;
    const pageMaps: PageMap[] = [];
    if (pasid === undefined) pageMaps.push(...pasids.values());
    else {
      const pages = pasids.get(pasid);
      if (pages !== undefined) pageMaps.push(pages);
    }
    for (const pages of pageMaps) {
      const victims: Slot[] = [];
      if (end - start <= pages.size) {
        for (let p = start; p < end; p++) {
          const s = pages.get(p);
          if (s !== undefined) victims.push(s);
        }
      } else {
        for (const s of pages.values()) if (s.page >= start && s.page < end) victims.push(s);
      }
      for (const s of victims) this.#remove(s);
      dropped += victims.length;
    }
    return dropped;
  }

  /** invalidateTag() - drop every entry of @tag, all pasids. Returns the number dropped. */
  invalidateTag(tag: number): number {
    const pasids = this.#tags.get(tag);
    if (pasids === undefined) return 0;
    let dropped = 0;
    for (const pages of pasids.values()) {
      for (const s of pages.values()) this.#order.delete(s);
      dropped += pages.size;
    }
    this.#tags.delete(tag);
    return dropped;
  }

  /** invalidateAll() - drop every entry. Returns the number dropped. */
  invalidateAll(): number {
    const n = this.#order.size;
    this.#order.clear();
    this.#tags.clear();
    return n;
  }

  /** Number of cached entries. */
  get size(): number {
    return this.#order.size;
  }

  /** Maximum number of entries. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Lookups that found an entry, since construction. */
  get hits(): number {
    return this.#hits;
  }

  /** Lookups that found nothing, since construction. */
  get misses(): number {
    return this.#misses;
  }

  #pagesFor(tag: number, pasid: number): PageMap {
    let pasids = this.#tags.get(tag);
    if (pasids === undefined) {
      pasids = new Map();
      this.#tags.set(tag, pasids);
    }
    let pages = pasids.get(pasid);
    if (pages === undefined) {
      pages = new Map();
      pasids.set(pasid, pages);
    }
    return pages;
  }

  #remove(s: Slot): void {
    this.#order.delete(s);
    const pasids = this.#tags.get(s.tag);
    const pages = pasids?.get(s.pasid);
    if (pasids === undefined || pages === undefined) return;
    pages.delete(s.page);
    if (pages.size === 0) {
      pasids.delete(s.pasid);
      if (pasids.size === 0) this.#tags.delete(s.tag);
    }
  }
}
