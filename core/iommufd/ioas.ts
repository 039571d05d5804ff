/**
 * IOAS: an IO address space (drivers/iommu/iommufd/ioas.c + io_pagetable.c).
 * Each map backs its range with zeroed host pages, allocated on first touch;
 * every paging domain built on the IOAS (a paging hwpt) sees the same
 * mappings. The guest's RAM lives here.
 */
import { IommuError } from '../iommu/errors.js';
import type { IommuDomain } from '../iommu/iommu.js';
import { LIMITS } from './limits.js';
import { IommufdObject, type IommufdCtx } from './main.js';

const PAGE = 4096n;
/**
 * Pages one map call may map (256 MiB): the contract's bound, kept although a
 * map now costs the same whatever its length (see IommufdIoas).
 */
export const MAX_MAP_PAGES = LIMITS.mapPagesPerCall;
const PAGE_MASK = PAGE - 1n;
/** Touched pages a destroy frees before the rest goes on in later turns. */
const FREE_SLICE = 4096;

export interface IoasPage {
  hpa: bigint;
  read: boolean;
  write: boolean;
}

/** One IOMMU_IOAS_MAP call's range, by page numbers: [first, first + n). */
interface IoasArea {
  first: number;
  n: number;
  read: boolean;
  write: boolean;
}

/**
 * struct iommufd_ioas.
 *
 * A map records its range (an area) and charges the memory budget for every
 * page at once, so it costs the same for 4 KiB and 256 MiB; the zeroed host
 * page behind an iova is allocated on first touch, by a DMA or a walk through
 * a domain (Stage2Table's fill), or by a guest write. An untouched page reads
 * as zeros. Unmap and destroy cost the areas plus the pages touched.
 */
export class IommufdIoas extends IommufdObject {
  readonly type = 'ioas' as const;
  /** Areas, sorted by first page, never overlapping. */
  private readonly areas: IoasArea[] = [];
  /** iova page number → backing page, for the pages touched so far. */
  readonly pages = new Map<number, IoasPage>();
  /** Paging domains that mirror this IOAS. */
  readonly domains = new Set<IommuDomain>();
  /** Pages mapped (touched or not). */
  mapped = 0;
  private readonly fill = (iova: bigint): IoasPage | undefined => this.touch(Number(iova / PAGE));

  constructor(ictx: IommufdCtx) {
    super(ictx);
  }

  describe(): Record<string, unknown> {
    return { mapped_pages: this.mapped };
  }

  /**
   * IOMMU_IOAS_MAP: map [iova, iova+length) to zeroed pages (allocated on
   * first touch). EINVAL unless both are 4 KiB aligned and length > 0 and it
   * does not wrap; E2BIG beyond MAX_MAP_PAGES in one call; EEXIST if any page
   * is already mapped; ENOSPC beyond the context's mapped-page limit; ENOMEM
   * beyond the daemon's memory budget. Nothing is mapped when it fails.
   */
  map(iova: bigint, length: bigint, read: boolean, write: boolean): void {
    checkRange(iova, length);
    if (!read && !write) throw new IommuError('EINVAL', 'a mapping needs read or write permission');
    const n = Number(length / PAGE);
    if (n > MAX_MAP_PAGES) throw new IommuError('E2BIG', `one map call maps at most ${MAX_MAP_PAGES} pages (256 MiB); split the range`);
    const limit = this.ictx.env.limits.maxMappedPages;
    if (limit > 0 && this.ictx.mappedPages + n > limit) {
      this.ictx.env.observer.refused?.('mapped_pages');
      throw new IommuError('ENOSPC', `mapping ${n} pages would exceed the context's limit of ${limit} mapped pages`);
    }
    const first = Number(iova / PAGE);
    const at = this.lowerBound(first);
    const prev = this.areas[at - 1];
    const next = this.areas[at];
    if (prev && prev.first + prev.n > first) throw new IommuError('EEXIST', `iova 0x${(BigInt(first) * PAGE).toString(16)} is already mapped`);
    if (next && next.first < first + n) throw new IommuError('EEXIST', `iova 0x${(BigInt(next.first) * PAGE).toString(16)} is already mapped`);
    this.ictx.mayFail('frame');
    this.ictx.env.mem.budget.charge(n * LIMITS.pageCost, `mapping ${n} pages`);
    this.areas.splice(at, 0, { first, n, read, write });
    this.mapped += n;
    this.ictx.mappedPages += n;
  }

  /** Index of the first area starting at or after page @first. */
  private lowerBound(first: number): number {
    let lo = 0;
    let hi = this.areas.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.areas[mid]!.first < first) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The area holding page @pfn, or undefined. */
  private areaOf(pfn: number): IoasArea | undefined {
    const a = this.areas[this.lowerBound(pfn + 1) - 1];
    return a && pfn < a.first + a.n ? a : undefined;
  }

  /**
   * touch() - the page behind iova page @pfn, allocated (zeroed) on its first
   * touch; undefined when @pfn is not mapped, or no host frame is left (the
   * budget charged at map time makes that the frame window's limit only).
   */
  private touch(pfn: number): IoasPage | undefined {
    const have = this.pages.get(pfn);
    if (have) return have;
    const area = this.areaOf(pfn);
    if (!area) return undefined;
    let hpa: bigint;
    try {
      hpa = this.ictx.env.mem.allocFrame();
    } catch (e) {
      if (e instanceof IommuError) return undefined;
      throw e;
    }
    const page = { hpa, read: area.read, write: area.write };
    this.pages.set(pfn, page);
    return page;
  }

  /**
   * IOMMU_IOAS_UNMAP: remove every mapped page in [iova, iova+length), flushing
   * every domain's translations of the pages touched (stage 2 invalidates
   * itself). Returns bytes unmapped; ENOENT if nothing was mapped there.
   */
  unmap(iova: bigint, length: bigint): bigint {
    checkRange(iova, length);
    const lenPages = length / PAGE;
    const first = Number(iova / PAGE);
    const end = first + Number(lenPages);
    let count = 0;
    let i = this.lowerBound(first);
    const before = this.areas[i - 1];
    if (before && before.first + before.n > first) i--;
    const keep: IoasArea[] = [];
    let j = i;
    for (; j < this.areas.length && this.areas[j]!.first < end; j++) {
      const a = this.areas[j]!;
      const lo = Math.max(a.first, first);
      const hi = Math.min(a.first + a.n, end);
      count += hi - lo;
      if (a.first < lo) keep.push({ ...a, n: lo - a.first });
      if (hi < a.first + a.n) keep.push({ ...a, first: hi, n: a.first + a.n - hi });
    }
    if (count === 0) throw new IommuError('ENOENT', `nothing is mapped in [0x${iova.toString(16)}, 0x${(iova + length).toString(16)})`);
    this.areas.splice(i, j - i, ...keep);
    if (end - first <= this.pages.size) {
      for (let pfn = first; pfn < end; pfn++) this.unmapPage(pfn);
    } else {
      for (const pfn of [...this.pages.keys()]) if (pfn >= first && pfn < end) this.unmapPage(pfn);
    }
    this.mapped -= count;
    this.ictx.mappedPages -= count;
    this.ictx.env.mem.budget.uncharge(count * LIMITS.pageCost);
    return BigInt(count) * PAGE;
  }

  private unmapPage(pfn: number): void {
    const page = this.pages.get(pfn);
    if (!page) return;
    for (const d of this.domains) d.ops.domainUnmapPage(d, BigInt(pfn) * PAGE);
    this.pages.delete(pfn);
    this.ictx.env.mem.freeFrame(page.hpa);
  }

  /** Mirror into a new paging domain (iopt_table_add_domain): it fills its pages from here on touch. */
  addDomain(domain: IommuDomain): void {
    domain.ops.domainSetFill(domain, this.fill);
    this.domains.add(domain);
  }

  /** Stop mirroring into `domain` (iopt_table_remove_domain). */
  removeDomain(domain: IommuDomain): void {
    if (this.domains.delete(domain)) domain.ops.domainSetFill(domain, undefined);
  }

  /** Host address behind `iova` (the page is touched), or undefined when unmapped. */
  translate(iova: bigint): bigint | undefined {
    const p = this.touch(Number(iova / PAGE));
    return p ? p.hpa + (iova & PAGE_MASK) : undefined;
  }

  /** The guest reading its RAM; an untouched page reads as zeros and stays untouched. EFAULT if any byte is unmapped. */
  readMemory(iova: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    const mem = this.ictx.env.mem;
    this.forEachChunk(iova, length, (pfn, pageOff, off, len) => {
      const p = this.pages.get(pfn);
      if (p) out.set(mem.read(p.hpa + BigInt(pageOff), len), off);
    });
    return out;
  }

  /**
   * The guest writing its RAM: all writes are checked first; EFAULT if any
   * byte of any write is unmapped, and then nothing is written.
   */
  writeMemory(writes: Array<{ iova: bigint; data: Uint8Array }>): void {
    for (const w of writes) this.forEachChunk(w.iova, w.data.length, () => {});
    const mem = this.ictx.env.mem;
    for (const w of writes) {
      this.forEachChunk(w.iova, w.data.length, (pfn, pageOff, off, len) => {
        const p = this.touch(pfn);
        if (!p) throw new IommuError('ENOMEM', 'host memory exhausted');
        mem.write(p.hpa + BigInt(pageOff), w.data.subarray(off, off + len));
      });
    }
  }

  /** Calls @fn for each page's piece of [iova, iova+length); EFAULT (before any call) for an unmapped byte. */
  private forEachChunk(iova: bigint, length: number, fn: (pfn: number, pageOff: number, off: number, len: number) => void): void {
    const pieces: Array<[number, number, number, number]> = [];
    let off = 0;
    while (off < length) {
      const a = iova + BigInt(off);
      const pfn = Number(a / PAGE);
      if (!this.areaOf(pfn)) throw new IommuError('EFAULT', `iova 0x${a.toString(16)} is not mapped`);
      const pageOff = Number(a & PAGE_MASK);
      const len = Math.min(length - off, 4096 - pageOff);
      pieces.push([pfn, pageOff, off, len]);
      off += len;
    }
    for (const [pfn, pageOff, o, len] of pieces) fn(pfn, pageOff, o, len);
  }

  /**
   * Gone from the table: the mapping is over at once; the touched pages go
   * back to the frame allocator FREE_SLICE at a time, the rest in later
   * turns, so that releasing a big context never holds the event loop long.
   */
  destroy(): void {
    this.ictx.mappedPages -= this.mapped;
    const charged = this.mapped * LIMITS.pageCost;
    this.mapped = 0;
    this.areas.length = 0;
    const mem = this.ictx.env.mem;
    const hpas = [...this.pages.values()].map((p) => p.hpa);
    this.pages.clear();
    for (const d of this.domains) d.ops.domainSetFill(d, undefined);
    mem.budget.uncharge(charged - hpas.length * LIMITS.pageCost);
    let at = 0;
    const slice = (): void => {
      const stop = Math.min(hpas.length, at + FREE_SLICE);
      mem.budget.uncharge((stop - at) * LIMITS.pageCost);
      for (; at < stop; at++) mem.freeFrame(hpas[at]!);
      if (at < hpas.length) this.ictx.env.sched.defer(slice);
    };
    slice();
  }
}

function checkRange(iova: bigint, length: bigint): void {
  if ((iova & PAGE_MASK) !== 0n || (length & PAGE_MASK) !== 0n) {
    throw new IommuError('EINVAL', 'iova and length must be 4 KiB aligned');
  }
  if (length === 0n) throw new IommuError('EINVAL', 'length must not be 0');
  if (iova + length > 1n << 64n) throw new IommuError('EOVERFLOW', 'iova + length overflows 64 bits');
}

/** IOMMU_IOAS_ALLOC: a new, empty IO address space. */
export function iommufdIoasAlloc(ictx: IommufdCtx): IommufdIoas {
  return ictx.create(new IommufdIoas(ictx), () => {});
}
