/**
 * DOC: the guest's RAM
 *
 * The guest's physical memory is an IOVA range of the VMM's IOAS (guest
 * physical address = IOVA), mapped with IOMMU_IOAS_MAP. The guest reads and
 * writes it through `/ioas/:id/memory/read|write` and hands out its 4 KiB
 * pages with a bump allocator (pages are never freed, so every page handed
 * out is still the zeroed memory the map created).
 */
import { bytesOfHex, formatU64, hexOf } from '../../protocol/index.js';
import type { IopfdContext } from '../sdk/index.js';

/** GUEST_PAGE - the guest's page size (4 KiB). */
export const GUEST_PAGE = 0x1000n;

/** GuestOutOfMemory - the guest has no free page left. */
export class GuestOutOfMemory extends Error {
  override readonly name = 'GuestOutOfMemory';
}

/** u64le() - the 8 little-endian bytes of @v as wire data. */
function u64le(v: bigint): string {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return hexOf(b);
}

/**
 * GuestRam - what the guest's own structures (page tables, queues) need of
 * its RAM: pages, reads and all-or-nothing u64 stores. GuestMemory is one;
 * unit tests use a plain in-process one.
 */
export interface GuestRam {
  allocPage(): bigint;
  read(gpa: bigint, length: number): Promise<Uint8Array>;
  readU64(gpa: bigint): Promise<bigint>;
  writeU64s(entries: ReadonlyArray<readonly [gpa: bigint, value: bigint]>): Promise<void>;
}

/**
 * GuestMemory - guest RAM at [@base, @base + @size) of IOAS @ioas.
 * @base and @size must be 4 KiB aligned.
 */
export class GuestMemory implements GuestRam {
  #next: bigint;
  readonly #end: bigint;

  constructor(
    readonly ctx: IopfdContext,
    readonly ioas: number,
    readonly base: bigint,
    readonly size: bigint,
  ) {
    if (base % GUEST_PAGE !== 0n || size % GUEST_PAGE !== 0n || size === 0n) throw new RangeError('guest RAM must be whole 4 KiB pages');
    this.#next = base;
    this.#end = base + size;
  }

  /** map() - back the RAM with fresh zeroed memory (IOMMU_IOAS_MAP). */
  async map(): Promise<void> {
    await this.ctx.map(this.ioas, { iova: formatU64(this.base), length: formatU64(this.size) });
  }

  /**
   * allocPage() - a zeroed 4 KiB page.
   * Return: its guest physical address.
   * Throws: GuestOutOfMemory when none is left.
   */
  allocPage(): bigint {
    if (this.#next >= this.#end) throw new GuestOutOfMemory(`guest RAM of ${this.size / GUEST_PAGE} pages is exhausted`);
    const gpa = this.#next;
    this.#next += GUEST_PAGE;
    return gpa;
  }

  /** read() - @length bytes at @gpa. */
  async read(gpa: bigint, length: number): Promise<Uint8Array> {
    const { data } = await this.ctx.readMemory(this.ioas, { iova: formatU64(gpa), length: formatU64(BigInt(length)) });
    return bytesOfHex(data);
  }

  /** readU64() - the little-endian u64 at @gpa (a page-table entry). */
  async readU64(gpa: bigint): Promise<bigint> {
    const b = await this.read(gpa, 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }

  /** writeU64s() - store each value at its address, all in one write (all or nothing). */
  async writeU64s(entries: ReadonlyArray<readonly [gpa: bigint, value: bigint]>): Promise<void> {
    if (entries.length === 0) return;
    await this.ctx.writeMemory(
      this.ioas,
      entries.map(([gpa, v]) => ({ iova: formatU64(gpa), data: u64le(v) })),
    );
  }
}
