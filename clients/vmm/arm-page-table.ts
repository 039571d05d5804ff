/**
 * DOC: the arm guest's stage-1 tables (AArch64, 4 KiB granule)
 *
 * What an arm guest kernel's io-pgtable-arm keeps behind one context
 * descriptor: VMSAv8-64 translation tables with the 4 KiB granule in its own
 * RAM, 512 little-endian 8-byte descriptors per table, the walk starting at
 * level 0 for 40..48 input bits (T0SZ 16..24), level 1 for 31..39 and level 2
 * below (levels numbered as the Arm ARM does: 3 maps 4 KiB pages). Table and
 * page descriptors are `0b11`; a leaf carries AF (bit 10: without it the
 * access faults), AP[2] (bit 7, read-only), AP[1] (bit 6, unprivileged
 * access), PXN (53) and UXN (54); output addresses are bits 47:12. The guest
 * maps 4 KiB pages only, with AF set, AP[1] set, and never executable.
 *
 * The tables are read from and written to guest memory, never cached, as
 * GuestPageTable does for vtd_s1.
 */
import { GUEST_PAGE, type GuestRam } from './guest-memory.js';
import type { LeafSlot } from './guest-page-table.js';

/** DESC - the bits of a VMSAv8-64 descriptor the guest writes. */
export const DESC = Object.freeze({
  VALID: 1n,
  TABLE: 2n,
  AP_EL0: 1n << 6n,
  AP_RO: 1n << 7n,
  AF: 1n << 10n,
  PXN: 1n << 53n,
  UXN: 1n << 54n,
  OA_MASK: 0x0000_ffff_ffff_f000n,
} as const);

/** The T0SZ range of the 4 KiB granule (48 down to 25 input bits). */
export const T0SZ_MIN = 16;
export const T0SZ_MAX = 39;

/** startLevel() - the first level of a walk over 64 - @t0sz input bits. RangeError outside 16..39. */
export function startLevel(t0sz: number): number {
  if (!Number.isInteger(t0sz) || t0sz < T0SZ_MIN || t0sz > T0SZ_MAX) throw new RangeError(`T0SZ ${t0sz} outside ${T0SZ_MIN}..${T0SZ_MAX}`);
  return 4 - Math.ceil((64 - t0sz - 12) / 9);
}

/** GuestArmPageTable - one AArch64 address space (a CD's TTB0) in guest memory. */
export class GuestArmPageTable {
  /** The root table's guest physical address (the CD's TTB0). */
  readonly root: bigint;
  readonly #start: number;
  readonly #inputBits: bigint;

  /**
   * @mem: the guest RAM the tables live in.
   * @t0sz: the CD's T0SZ (default 16: 48-bit VAs, 4 levels).
   *
   * Takes the (zeroed) root page from @mem at once. Throws GuestOutOfMemory.
   */
  constructor(
    readonly mem: GuestRam,
    readonly t0sz = 16,
  ) {
    this.#start = startLevel(t0sz);
    this.#inputBits = BigInt(64 - t0sz);
    this.root = mem.allocPage();
  }

  /** Whether @va is inside the input range. */
  covers(va: bigint): boolean {
    return va >= 0n && va >> this.#inputBits === 0n;
  }

  /**
   * walk() - find the level-3 descriptor of @va (a 4 KiB page address),
   * reading each level from guest memory; with @create, missing tables are
   * allocated (their descriptors returned in `writes`, to be stored with the
   * leaf in one write).
   *
   * Return: the leaf slot, or undefined if a level is missing and not
   * created, or @va is outside the input range. A block found on the way is
   * returned as the leaf.
   * Throws: GuestOutOfMemory (with @create).
   */
  async walk(va: bigint, create: boolean): Promise<LeafSlot | undefined> {
    if (!this.covers(va)) return undefined;
    const writes: Array<[bigint, bigint]> = [];
    let table = this.root;
    let fresh = false; // a table created by this walk: its descriptors are all 0
    for (let level = this.#start; level <= 3; level++) {
      const slot = table + ((va >> BigInt(12 + 9 * (3 - level))) & 511n) * 8n;
      const desc = fresh ? 0n : await this.mem.readU64(slot);
      const valid = (desc & DESC.VALID) !== 0n;
      if (level === 3 || (valid && (desc & DESC.TABLE) === 0n)) return { slot, pte: desc, writes };
      if (valid) {
        table = desc & DESC.OA_MASK;
        continue;
      }
      if (!create) return undefined;
      const next = this.mem.allocPage();
      writes.push([slot, next | DESC.VALID | DESC.TABLE]);
      table = next;
      fresh = true;
    }
    return undefined;
  }

  /**
   * leafOf() - the page descriptor for a 4 KiB page at @gpa: valid, page,
   * AF, unprivileged access, never executable, read-only unless @write.
   */
  static leafOf(gpa: bigint, write: boolean): bigint {
    if (gpa % GUEST_PAGE !== 0n || (gpa & ~DESC.OA_MASK) !== 0n) throw new RangeError(`gpa 0x${gpa.toString(16)} is not a page address`);
    return gpa | DESC.VALID | DESC.TABLE | DESC.AF | DESC.AP_EL0 | DESC.PXN | DESC.UXN | (write ? 0n : DESC.AP_RO);
  }

  /** isValid() - whether descriptor @desc maps something. */
  static isValid(desc: bigint): boolean {
    return (desc & DESC.VALID) !== 0n;
  }

  /** isWritable() - whether a valid leaf @desc lets writes through. */
  static isWritable(desc: bigint): boolean {
    return (desc & DESC.AP_RO) === 0n;
  }
}
