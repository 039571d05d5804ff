// Host physical memory of the simulated platform, and the frame allocator
// that backs stage-2 mappings with host pages.

/** log2 of the 4 KiB page size, as a bigint for address arithmetic. */
export const PAGE_SHIFT = 12n;
/** The 4 KiB page size as a number (byte counts, buffer sizes). */
export const PAGE_SIZE = 4096;
/** The 4 KiB page size as a bigint (address arithmetic). */
export const PAGE_SIZE_N = 4096n;

const PAGE_MASK_N = PAGE_SIZE_N - 1n;
const U64_LIMIT = 1n << 64n;

function checkAddr(addr: bigint, length: number): void {
  if (addr < 0n || addr + BigInt(length) > U64_LIMIT) {
    throw new RangeError(`physical address 0x${addr.toString(16)}+${length} outside the 64-bit space`);
  }
}

/**
 * SparseMemory - host physical memory, allocated a 4 KiB page at a time on
 * first write. Untouched pages read as zeros and are never allocated by a
 * read.
 *
 * Addresses are u64 bigints; anything outside [0, 2^64) throws RangeError.
 * Returned buffers are copies: the caller may keep or mutate them freely.
 */
export class SparseMemory {
  readonly #pages = new Map<number, Uint8Array>();

  /**
   * read() - copy @length bytes starting at @addr (may cross pages).
   * Throws RangeError for a negative or non-integer length or an address out
   * of range.
   */
  read(addr: bigint, length: number): Uint8Array {
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`bad read length ${length}`);
    checkAddr(addr, length);
    const out = new Uint8Array(length);
    let pfn = Number(addr >> PAGE_SHIFT);
    let off = Number(addr & PAGE_MASK_N);
    let done = 0;
    while (done < length) {
      const n = Math.min(PAGE_SIZE - off, length - done);
      const page = this.#pages.get(pfn);
      if (page !== undefined) out.set(page.subarray(off, off + n), done);
      done += n;
      pfn += 1;
      off = 0;
    }
    return out;
  }

  /**
   * write() - copy @data into memory at @addr (may cross pages), allocating
   * the pages it touches. Throws RangeError for an address out of range.
   */
  write(addr: bigint, data: Uint8Array): void {
    checkAddr(addr, data.length);
    let pfn = Number(addr >> PAGE_SHIFT);
    let off = Number(addr & PAGE_MASK_N);
    let done = 0;
    while (done < data.length) {
      const n = Math.min(PAGE_SIZE - off, data.length - done);
      this.#page(pfn).set(data.subarray(done, done + n), off);
      done += n;
      pfn += 1;
      off = 0;
    }
  }

  /**
   * readU64() - read the little-endian u64 at @addr.
   * The caller must pass an 8-byte aligned address; otherwise RangeError.
   */
  readU64(addr: bigint): bigint {
    if ((addr & 7n) !== 0n) throw new RangeError(`unaligned u64 read at 0x${addr.toString(16)}`);
    checkAddr(addr, 8);
    const page = this.#pages.get(Number(addr >> PAGE_SHIFT));
    if (page === undefined) return 0n;
    const o = Number(addr & PAGE_MASK_N);
    const lo = (page[o]! | (page[o + 1]! << 8) | (page[o + 2]! << 16) | (page[o + 3]! << 24)) >>> 0;
    const hi = (page[o + 4]! | (page[o + 5]! << 8) | (page[o + 6]! << 16) | (page[o + 7]! << 24)) >>> 0;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /**
   * writeU64() - store @v little-endian at @addr.
   * The caller must pass an 8-byte aligned address and 0 <= v < 2^64;
   * otherwise RangeError (nothing is written).
   */
  writeU64(addr: bigint, v: bigint): void {
    if ((addr & 7n) !== 0n) throw new RangeError(`unaligned u64 write at 0x${addr.toString(16)}`);
    if (v < 0n || v >= U64_LIMIT) throw new RangeError(`value 0x${v.toString(16)} is not a u64`);
    checkAddr(addr, 8);
    const page = this.#page(Number(addr >> PAGE_SHIFT));
    const o = Number(addr & PAGE_MASK_N);
    const lo = Number(v & 0xffff_ffffn);
    const hi = Number(v >> 32n);
    page[o] = lo & 0xff;
    page[o + 1] = (lo >>> 8) & 0xff;
    page[o + 2] = (lo >>> 16) & 0xff;
    page[o + 3] = lo >>> 24;
    page[o + 4] = hi & 0xff;
    page[o + 5] = (hi >>> 8) & 0xff;
    page[o + 6] = (hi >>> 16) & 0xff;
    page[o + 7] = hi >>> 24;
  }

  /**
   * zeroPage() - drop the page containing @pfnAddr (normally its page
   * address) so that it reads as zeros again and stops being resident.
   */
  zeroPage(pfnAddr: bigint): void {
    checkAddr(pfnAddr, 0);
    this.#pages.delete(Number(pfnAddr >> PAGE_SHIFT));
  }

  /** Number of 4 KiB pages currently allocated (written and not zeroed). */
  get pagesResident(): number {
    return this.#pages.size;
  }

  #page(pfn: number): Uint8Array {
    let page = this.#pages.get(pfn);
    if (page === undefined) {
      page = new Uint8Array(PAGE_SIZE);
      this.#pages.set(pfn, page);
    }
    return page;
  }
}

/**
 * HwOutOfFrames - thrown by FrameAllocator.alloc() when every frame of its
 * window is in use (the silicon's ENOMEM; a caller above maps it to an errno).
 */
export class HwOutOfFrames extends Error {
  override readonly name = 'HwOutOfFrames';
  constructor(message: string) {
    super(message);
  }
}

/**
 * FrameAllocator - hands out host physical pages in the window
 * [base, base + limitPages * 4 KiB) to back stage-2 mappings.
 *
 * Every page returned by alloc() reads as zeros. Freed frames are reused
 * (most recently freed first) before fresh ones. The caller owns a frame from
 * alloc() until it passes it to free() exactly once.
 */
export class FrameAllocator {
  readonly #mem: SparseMemory;
  readonly #base: bigint;
  readonly #limitPages: number;
  #next = 0;
  readonly #freeList: bigint[] = [];
  readonly #inUse = new Set<bigint>();

  /**
   * @mem: the memory the frames live in (zeroed through it).
   * @base: page-aligned first address of the window; RangeError otherwise.
   * @limitPages: size of the window in pages (a positive integer).
   */
  constructor(mem: SparseMemory, base = 0x1_0000_0000n, limitPages = 1 << 22) {
    if (base < 0n || (base & PAGE_MASK_N) !== 0n) throw new RangeError(`frame window base 0x${base.toString(16)} not page aligned`);
    if (!Number.isInteger(limitPages) || limitPages <= 0) throw new RangeError(`bad frame window size ${limitPages}`);
    if (base + BigInt(limitPages) * PAGE_SIZE_N > U64_LIMIT) throw new RangeError('frame window outside the 64-bit space');
    this.#mem = mem;
    this.#base = base;
    this.#limitPages = limitPages;
  }

  /**
   * alloc() - take one frame and return its page address; its contents are
   * zero. Throws HwOutOfFrames when the window is exhausted.
   */
  alloc(): bigint {
    let addr = this.#freeList.pop();
    if (addr === undefined) {
      if (this.#next >= this.#limitPages) {
        throw new HwOutOfFrames(`all ${this.#limitPages} frames at 0x${this.#base.toString(16)} are in use`);
      }
      addr = this.#base + BigInt(this.#next) * PAGE_SIZE_N;
      this.#next += 1;
    }
    this.#mem.zeroPage(addr);
    this.#inUse.add(addr);
    return addr;
  }

  /**
   * free() - give back a frame obtained from alloc(). Its contents are
   * dropped at once. Freeing an address that is not an allocated frame
   * (including a double free) throws RangeError and changes nothing.
   */
  free(addr: bigint): void {
    if (!this.#inUse.delete(addr)) throw new RangeError(`0x${addr.toString(16)} is not an allocated frame`);
    this.#mem.zeroPage(addr);
    this.#freeList.push(addr);
  }

  /** Number of frames currently allocated. */
  get inUse(): number {
    return this.#inUse.size;
  }
}
