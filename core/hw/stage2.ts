// The second-stage table: IOVA page -> host page, as the IOMMU sees an
// address space's mappings. A flat map, one entry per 4 KiB page.

import { PAGE_SHIFT, PAGE_SIZE_N } from './memory.js';

const PAGE_MASK_N = PAGE_SIZE_N - 1n;
const U64_LIMIT = 1n << 64n;

/**
 * Stage2Entry - one 4 KiB stage-2 mapping: the host page address and the
 * access it allows. Entries handed out by Stage2Table are frozen.
 */
export interface Stage2Entry {
  hpa: bigint;
  read: boolean;
  write: boolean;
}

/**
 * Stage2MapConflict - thrown by Stage2Table.map() when the page is already
 * mapped (the table is left unchanged).
 */
export class Stage2MapConflict extends Error {
  override readonly name = 'Stage2MapConflict';
  constructor(message: string) {
    super(message);
  }
}

function pfnOf(iova: bigint): number {
  if (iova < 0n || iova >= U64_LIMIT) throw new RangeError(`iova 0x${iova.toString(16)} outside the 64-bit space`);
  return Number(iova >> PAGE_SHIFT);
}

/**
 * Stage2Table - the stage-2 translation table of one address space.
 *
 * It holds 4 KiB mappings only; callers map larger ranges page by page. It
 * keeps no IOTLB: whoever changes a mapping that may be cached invalidates
 * the IOTLB itself.
 */
export class Stage2Table {
  readonly #map = new Map<number, Stage2Entry>();
  /**
   * fill - asked by lookup() for a page the table does not hold (lazy
   * backing: the page is allocated on its first touch); its answer is kept
   * as if map() had been called. Undefined: a miss is a miss.
   */
  fill: ((iova: bigint) => Stage2Entry | undefined) | undefined;

  /**
   * map() - map the 4 KiB page at @iova to the host page @hpa.
   * Both addresses must be page aligned (RangeError otherwise). Throws
   * Stage2MapConflict if the page is already mapped.
   */
  map(iova: bigint, hpa: bigint, read: boolean, write: boolean): void {
    if ((iova & PAGE_MASK_N) !== 0n) throw new RangeError(`iova 0x${iova.toString(16)} not page aligned`);
    if (hpa < 0n || hpa >= U64_LIMIT || (hpa & PAGE_MASK_N) !== 0n) {
      throw new RangeError(`hpa 0x${hpa.toString(16)} not a page address`);
    }
    const pfn = pfnOf(iova);
    if (this.#map.has(pfn)) throw new Stage2MapConflict(`iova 0x${iova.toString(16)} already mapped`);
    this.#map.set(pfn, Object.freeze({ hpa, read, write }));
  }

  /**
   * unmap() - remove the mapping of the page containing @iova.
   * Returns the removed entry, or undefined if the page was not mapped.
   */
  unmap(iova: bigint): Stage2Entry | undefined {
    const pfn = pfnOf(iova);
    const e = this.#map.get(pfn);
    if (e !== undefined) this.#map.delete(pfn);
    return e;
  }

  /**
   * lookup() - the entry of the page containing @iova (any address inside
   * the page), or undefined. The host address of @iova itself is
   * entry.hpa + (iova & 0xfff).
   */
  lookup(iova: bigint): Stage2Entry | undefined {
    const pfn = pfnOf(iova);
    const e = this.#map.get(pfn);
    if (e !== undefined || this.fill === undefined) return e;
    const f = this.fill(iova & ~PAGE_MASK_N);
    if (f === undefined) return undefined;
    const entry = Object.freeze({ hpa: f.hpa, read: f.read, write: f.write });
    this.#map.set(pfn, entry);
    return entry;
  }

  /** has() - whether the table holds the page containing @iova (fill is not asked). */
  has(iova: bigint): boolean {
    return this.#map.has(pfnOf(iova));
  }

  /** Number of mapped 4 KiB pages. */
  get size(): number {
    return this.#map.size;
  }

  /**
   * entries() - every mapping as [iova page address, entry], in mapping
   * order. The caller must not map or unmap while iterating.
   */
  *entries(): IterableIterator<[bigint, Stage2Entry]> {
    for (const [pfn, e] of this.#map) yield [BigInt(pfn) << PAGE_SHIFT, e];
  }
}
