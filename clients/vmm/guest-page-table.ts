/**
 * DOC: the guest's first-stage page table (vtd_s1)
 *
 * What a guest kernel keeps for one address space behind a PASID (or its
 * RID): an x86-64 style radix table in its own RAM, the `vtd_s1` format of
 * docs/protocol.md (translation model): 512 little-endian 8-byte entries per 4 KiB table, 4 levels
 * for a 48-bit address width, 5 for 57; bit 0 present, bit 1 writable, bit 2
 * user, bit 7 page size, bits 12-51 the next table's or the page's guest
 * physical address, bit 63 execute-disable. The guest maps 4 KiB pages only.
 *
 * The table is read from and written to guest memory (GuestMemory), never
 * cached: what the IOMMU walks is what the guest reads. Intermediate tables
 * get present|writable|user, so that a leaf alone decides the permissions.
 */
import { GUEST_PAGE, type GuestMemory } from './guest-memory.js';

/** PTE - the bits of a vtd_s1 entry. */
export const PTE = Object.freeze({
  P: 1n,
  RW: 2n,
  US: 4n,
  PS: 0x80n,
  XD: 1n << 63n,
  ADDR_MASK: 0x000f_ffff_ffff_f000n,
} as const);

/** AddrWidth - 48 (4 levels) or 57 (5 levels). */
export type AddrWidth = 48 | 57;

/**
 * struct LeafSlot - where the leaf entry of a VA lives, as a walk found it.
 * @slot: the entry's guest physical address.
 * @pte: its current value (0 when the walk just created its table).
 * @writes: intermediate entries the walk created, not yet in memory.
 */
export interface LeafSlot {
  slot: bigint;
  pte: bigint;
  writes: Array<[bigint, bigint]>;
}

/** GuestPageTable - one vtd_s1 address space in guest memory. */
export class GuestPageTable {
  /** The root table's guest physical address (the hwpt's `pgtbl_addr`). */
  readonly root: bigint;
  readonly #levels: number;

  /**
   * @mem: the guest RAM the tables live in.
   * @addrWidth: 48 or 57.
   *
   * Takes the (zeroed) root page from @mem at once. Throws GuestOutOfMemory.
   */
  constructor(
    readonly mem: GuestMemory,
    readonly addrWidth: AddrWidth = 48,
  ) {
    this.#levels = addrWidth === 48 ? 4 : 5;
    this.root = mem.allocPage();
  }

  /**
   * walk() - find the leaf entry of @va (a 4 KiB page address), reading
   * each level from guest memory; with @create, missing intermediate tables
   * are allocated (their entries returned in `writes`, for the caller to
   * store with the leaf in one write).
   *
   * Return: the leaf slot, or undefined if a level is missing and not
   * created. A large leaf (PS) found on the way is returned as the leaf.
   * Throws: GuestOutOfMemory (with @create).
   */
  async walk(va: bigint, create: boolean): Promise<LeafSlot | undefined> {
    const writes: Array<[bigint, bigint]> = [];
    let table = this.root;
    let fresh = false; // a table created by this walk: its entries are all 0
    for (let level = this.#levels; level >= 1; level--) {
      const slot = table + ((va >> (12n + 9n * BigInt(level - 1))) & 511n) * 8n;
      const pte = fresh ? 0n : await this.mem.readU64(slot);
      if (level === 1 || (pte & (PTE.P | PTE.PS)) === (PTE.P | PTE.PS)) return { slot, pte, writes };
      if ((pte & PTE.P) !== 0n) {
        table = pte & PTE.ADDR_MASK;
        continue;
      }
      if (!create) return undefined;
      const next = this.mem.allocPage();
      writes.push([slot, next | PTE.P | PTE.RW | PTE.US]);
      table = next;
      fresh = true;
    }
    return undefined;
  }

  /**
   * leafOf() - the leaf entry value for a 4 KiB page at @gpa: present, user,
   * execute-disabled, writable if @write.
   */
  static leafOf(gpa: bigint, write: boolean): bigint {
    if (gpa % GUEST_PAGE !== 0n) throw new RangeError(`gpa 0x${gpa.toString(16)} is not page aligned`);
    return gpa | PTE.P | PTE.US | PTE.XD | (write ? PTE.RW : 0n);
  }
}
