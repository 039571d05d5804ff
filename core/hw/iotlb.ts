// The IOTLB: a cache of successful translations, one entry per
// (tag, pasid, 4 KiB page), each remembering the leaf (page, block or
// superpage) of the walk it came from, so that an invalidation touching any
// page of a leaf drops every entry of that leaf, as hardware that caches the
// leaf itself does. It never caches a miss.

import { PAGE_SHIFT, PAGE_SIZE_N } from './memory.js';

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
  /** The larger-than-4 KiB leaf this entry was cut from; undefined for a 4 KiB leaf. */
  leaf: Leaf | undefined;
}

/** Leaf - one cached leaf of @pages 4 KiB pages from page @base, and its entries. */
interface Leaf {
  readonly base: number;
  readonly pages: number;
  readonly slots: Set<Slot>;
}

type PageMap = Map<number, Slot>;
/** Cached leaves larger than 4 KiB of one (tag, pasid): pages per leaf -> base page -> leaf. */
type LeafMap = Map<number, Map<number, Leaf>>;

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
 * Entries are 4 KiB (a nested walk's stage 2 may be 4 KiB under a larger
 * stage-1 leaf), but each records the size of the leaf its translation came
 * from: an invalidation that overlaps any page of a larger leaf drops every
 * cached entry of that leaf (a TLBI by VA or a page-selective invalidation
 * names one address of a block or superpage and the whole of it goes). The
 * lookup never looks at leaves.
 * When full, insert() evicts the oldest inserted entry. The caller inserts
 * only successful translations and invalidates whenever a mapping it may hold
 * is cleared or downgraded. Entries are stored as given: the caller must not
 * mutate an IotlbEntry after inserting it.
 */
export class Iotlb {
  readonly #capacity: number;
  /** tag -> pasid -> page number -> slot. */
  readonly #tags = new Map<number, Map<number, PageMap>>();
  /** tag -> pasid -> the larger-than-4 KiB leaves cached (only (tag, pasid)s that have some). */
  readonly #leaves = new Map<number, Map<number, LeafMap>>();
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
   * @leafSize: bytes mapped by the leaf the translation came from, a power of
   * two of at least 4 KiB (RangeError), 4 KiB by default; the leaf is the
   * @leafSize-aligned range holding @iova.
   */
  insert(tag: number, pasid: number, iova: bigint, e: IotlbEntry, leafSize: bigint = PAGE_SIZE_N): void {
    const page = pageOf(iova);
    const leafPages = leafPagesOf(leafSize);
    const old = this.#tags.get(tag)?.get(pasid)?.get(page);
    if (old !== undefined) {
      old.entry = e;
      this.#order.delete(old);
      this.#order.add(old);
      if (old.leaf?.pages !== (leafPages > 1 ? leafPages : undefined)) {
        this.#unleaf(old);
        if (leafPages > 1) this.#leafOf(old, leafPages);
      }
      return;
    }
    if (this.#order.size >= this.#capacity) {
      const oldest = this.#order.values().next().value;
      if (oldest !== undefined) this.#remove(oldest);
    }
    const slot: Slot = { tag, pasid, page, entry: e, leaf: undefined };
    this.#pagesFor(tag, pasid).set(page, slot);
    this.#order.add(slot);
    if (leafPages > 1) this.#leafOf(slot, leafPages);
  }

  /**
   * invalidateRange() - drop the entries of @npages pages from @iova's page
   * for @tag and @pasid (undefined: every pasid of @tag), and every entry of
   * a cached leaf that overlaps them. The range is clipped to the 64-bit
   * space. Returns the number of entries dropped. Costs min(npages, entries
   * held) per pasid, and as much per leaf size held: it never scans other
   * tags.
   */
  invalidateRange(tag: number, pasid: number | undefined, iova: bigint, npages: number | bigint): number {
    const n = typeof npages === 'bigint' ? npages : BigInt(npages);
    if (n < 0n) throw new RangeError(`negative page count ${String(npages)}`);
    const start = pageOf(iova);
    const endBig = BigInt(start) + n;
    const end = endBig > BigInt(PAGE_LIMIT) ? PAGE_LIMIT : Number(endBig);
    const pasids = this.#tags.get(tag);
    if (pasids === undefined || start >= end) return 0;
    const leaves = this.#leaves.get(tag);
    const victims = new Set<Slot>();
    for (const [id, pages] of pasid === undefined ? pasids : [[pasid, pasids.get(pasid)] as const]) {
      if (pages === undefined) continue;
      if (end - start <= pages.size) {
        for (let p = start; p < end; p++) {
          const s = pages.get(p);
          if (s !== undefined) victims.add(s);
        }
      } else {
        for (const s of pages.values()) if (s.page >= start && s.page < end) victims.add(s);
      }
      const bySize = leaves?.get(id);
      if (bySize !== undefined) for (const [size, byBase] of bySize) overlapping(byBase, size, start, end, victims);
    }
    for (const s of victims) this.#remove(s);
    return victims.size;
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
    this.#leaves.delete(tag);
    return dropped;
  }

  /** invalidateAll() - drop every entry. Returns the number dropped. */
  invalidateAll(): number {
    const n = this.#order.size;
    this.#order.clear();
    this.#tags.clear();
    this.#leaves.clear();
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

  /** #leafOf() - add @s to its cached leaf of @leafPages pages, creating the leaf if needed. */
  #leafOf(s: Slot, leafPages: number): void {
    let pasids = this.#leaves.get(s.tag);
    if (pasids === undefined) {
      pasids = new Map();
      this.#leaves.set(s.tag, pasids);
    }
    let bySize = pasids.get(s.pasid);
    if (bySize === undefined) {
      bySize = new Map();
      pasids.set(s.pasid, bySize);
    }
    let byBase = bySize.get(leafPages);
    if (byBase === undefined) {
      byBase = new Map();
      bySize.set(leafPages, byBase);
    }
    const base = s.page - (s.page % leafPages);
    let leaf = byBase.get(base);
    if (leaf === undefined) {
      leaf = { base, pages: leafPages, slots: new Set() };
      byBase.set(base, leaf);
    }
    leaf.slots.add(s);
    s.leaf = leaf;
  }

  /** #unleaf() - take @s out of its cached leaf, forgetting the leaf once it has no entry left. */
  #unleaf(s: Slot): void {
    const leaf = s.leaf;
    if (leaf === undefined) return;
    s.leaf = undefined;
    leaf.slots.delete(s);
    if (leaf.slots.size > 0) return;
    const pasids = this.#leaves.get(s.tag);
    const bySize = pasids?.get(s.pasid);
    const byBase = bySize?.get(leaf.pages);
    if (pasids === undefined || bySize === undefined || byBase === undefined) return;
    byBase.delete(leaf.base);
    if (byBase.size > 0) return;
    bySize.delete(leaf.pages);
    if (bySize.size > 0) return;
    pasids.delete(s.pasid);
    if (pasids.size === 0) this.#leaves.delete(s.tag);
  }

  #remove(s: Slot): void {
    this.#order.delete(s);
    this.#unleaf(s);
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

/** leafPagesOf() - the 4 KiB pages of a leaf of @leafSize bytes (a power of two, 4 KiB .. 2^64; RangeError). */
function leafPagesOf(leafSize: bigint): number {
  if (leafSize === PAGE_SIZE_N) return 1;
  if (leafSize < PAGE_SIZE_N || leafSize > U64_LIMIT || (leafSize & (leafSize - 1n)) !== 0n) {
    throw new RangeError(`leaf size 0x${leafSize.toString(16)} is not a power of two from 4 KiB to 2^64`);
  }
  return Number(leafSize >> PAGE_SHIFT);
}

/**
 * overlapping() - add to @victims the entries of every leaf of @byBase (leaves
 * of @size pages, by base page) that overlaps pages [@start, @end): probes
 * each leaf base of the range, or scans the leaves when they are fewer.
 */
function overlapping(byBase: Map<number, Leaf>, size: number, start: number, end: number, victims: Set<Slot>): void {
  const first = start - (start % size);
  if (Math.ceil((end - first) / size) <= byBase.size) {
    for (let b = first; b < end; b += size) {
      const leaf = byBase.get(b);
      if (leaf !== undefined) for (const s of leaf.slots) victims.add(s);
    }
  } else {
    for (const leaf of byBase.values()) if (leaf.base < end && leaf.base + size > start) for (const s of leaf.slots) victims.add(s);
  }
}
