/**
 * IOAS: an IO address space (drivers/iommu/iommufd/ioas.c + io_pagetable.c).
 * Each map pins fresh zeroed host pages; every paging domain built on the IOAS
 * (a paging hwpt) gets the same mappings. The guest's RAM lives here.
 */
import { IommuError } from '../iommu/errors.js';
import type { IommuDomain } from '../iommu/iommu.js';
import { IommufdObject, type IommufdCtx } from './main.js';

const PAGE = 4096n;
/**
 * Pages one map call may pin (256 MiB). Mapping is synchronous, so one call
 * holds the event loop for its whole length; larger ranges take several calls.
 */
export const MAX_MAP_PAGES = 1 << 16;
const PAGE_MASK = PAGE - 1n;

export interface IoasPage {
  hpa: bigint;
  read: boolean;
  write: boolean;
}

/** struct iommufd_ioas. */
export class IommufdIoas extends IommufdObject {
  readonly type = 'ioas' as const;
  /** iova page number → backing page. */
  readonly pages = new Map<bigint, IoasPage>();
  /** Paging domains that mirror this IOAS. */
  readonly domains = new Set<IommuDomain>();

  constructor(ictx: IommufdCtx) {
    super(ictx);
  }

  describe(): Record<string, unknown> {
    return { mapped_pages: this.pages.size };
  }

  /**
   * IOMMU_IOAS_MAP: back [iova, iova+length) with fresh zeroed pages.
   * EINVAL unless both are 4 KiB aligned and length > 0 and it does not wrap;
   * E2BIG beyond MAX_MAP_PAGES in one call;
   * EEXIST if any page is already mapped (nothing is mapped then);
   * ENOSPC beyond the context's mapped-page limit.
   */
  map(iova: bigint, length: bigint, read: boolean, write: boolean): void {
    checkRange(iova, length);
    if (!read && !write) throw new IommuError('EINVAL', 'a mapping needs read or write permission');
    const n = Number(length / PAGE);
    if (n > MAX_MAP_PAGES) throw new IommuError('E2BIG', `one map call pins at most ${MAX_MAP_PAGES} pages (256 MiB); split the range`);
    const limit = this.ictx.env.limits.maxMappedPages;
    if (limit > 0 && this.ictx.mappedPages + n > limit) {
      throw new IommuError('ENOSPC', `mapping ${n} pages would exceed the context's limit of ${limit} mapped pages`);
    }
    const first = iova / PAGE;
    for (let i = 0n; i < BigInt(n); i++) {
      if (this.pages.has(first + i)) throw new IommuError('EEXIST', `iova 0x${((first + i) * PAGE).toString(16)} is already mapped`);
    }
    const mem = this.ictx.env.mem;
    const done: bigint[] = [];
    try {
      for (let i = 0n; i < BigInt(n); i++) {
        const pfn = first + i;
        this.ictx.mayFail('frame');
        const page = { hpa: mem.allocFrame(), read, write };
        this.pages.set(pfn, page);
        done.push(pfn);
        for (const d of this.domains) d.ops.domainMapPage(d, pfn * PAGE, page.hpa, read, write);
      }
    } catch (e) {
      for (const pfn of done) this.unmapPage(pfn);
      throw e;
    }
    this.ictx.mappedPages += n;
  }

  /**
   * IOMMU_IOAS_UNMAP: remove every mapped page in [iova, iova+length), flushing
   * every domain's translations (stage 2 invalidates itself). Returns bytes
   * unmapped; ENOENT if nothing was mapped there.
   */
  unmap(iova: bigint, length: bigint): bigint {
    checkRange(iova, length);
    const first = iova / PAGE;
    const n = length / PAGE;
    let count = 0n;
    if (n <= BigInt(this.pages.size)) {
      for (let i = 0n; i < n; i++) if (this.unmapPage(first + i)) count++;
    } else {
      for (const pfn of [...this.pages.keys()]) if (pfn >= first && pfn < first + n && this.unmapPage(pfn)) count++;
    }
    if (count === 0n) throw new IommuError('ENOENT', `nothing is mapped in [0x${iova.toString(16)}, 0x${(iova + length).toString(16)})`);
    this.ictx.mappedPages -= Number(count);
    return count * PAGE;
  }

  private unmapPage(pfn: bigint): boolean {
    const page = this.pages.get(pfn);
    if (!page) return false;
    for (const d of this.domains) d.ops.domainUnmapPage(d, pfn * PAGE);
    this.pages.delete(pfn);
    this.ictx.env.mem.freeFrame(page.hpa);
    return true;
  }

  /** Fill a new paging domain with every current mapping (iopt_table_add_domain). */
  addDomain(domain: IommuDomain): void {
    for (const [pfn, p] of this.pages) domain.ops.domainMapPage(domain, pfn * PAGE, p.hpa, p.read, p.write);
    this.domains.add(domain);
  }

  /** Stop mirroring into `domain` (iopt_table_remove_domain). */
  removeDomain(domain: IommuDomain): void {
    this.domains.delete(domain);
  }

  /** Host address behind `iova`, or undefined when unmapped. */
  translate(iova: bigint): bigint | undefined {
    const p = this.pages.get(iova / PAGE);
    return p ? p.hpa + (iova & PAGE_MASK) : undefined;
  }

  /** The guest reading its RAM. EFAULT if any byte is unmapped. */
  readMemory(iova: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.forEachChunk(iova, length, (hpa, off, len) => out.set(this.ictx.env.mem.read(hpa, len), off));
    return out;
  }

  /**
   * The guest writing its RAM: all writes are checked first; EFAULT if any
   * byte of any write is unmapped, and then nothing is written.
   */
  writeMemory(writes: Array<{ iova: bigint; data: Uint8Array }>): void {
    for (const w of writes) this.forEachChunk(w.iova, w.data.length, () => {});
    for (const w of writes) {
      this.forEachChunk(w.iova, w.data.length, (hpa, off, len) => this.ictx.env.mem.write(hpa, w.data.subarray(off, off + len)));
    }
  }

  private forEachChunk(iova: bigint, length: number, fn: (hpa: bigint, off: number, len: number) => void): void {
    let off = 0;
    while (off < length) {
      const a = iova + BigInt(off);
      const hpa = this.translate(a);
      if (hpa === undefined) throw new IommuError('EFAULT', `iova 0x${a.toString(16)} is not mapped`);
      const len = Math.min(length - off, 4096 - Number(a & PAGE_MASK));
      fn(hpa, off, len);
      off += len;
    }
  }

  destroy(): void {
    this.ictx.mappedPages -= this.pages.size;
    for (const pfn of [...this.pages.keys()]) this.unmapPage(pfn);
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
