// The first-stage page-table format `vtd_s1`: an x86-64 style radix table in
// guest memory (4 levels for a 48-bit address width, 5 for 57), its walker,
// and a builder that writes such tables the way a guest kernel would.
//
// Levels are numbered as in the SDM: 1 is the last (4 KiB PTE) level, 4 or 5
// the root. A leaf at level 2 maps 2 MiB, at level 3 1 GiB.

/**
 * PTE - bits of a `vtd_s1` table entry: present, writable, user, accessed,
 * dirty (leaf), page size (large leaf at levels 2 and 3), extended-accessed
 * (bit 10, written only with EAFE), PAT of a large leaf (bit 12, which is
 * therefore no address bit there), execute-disable, and the address field
 * (bits 12-51: the next table's or the page's guest physical address).
 */
export const PTE = {
  P: 1n,
  RW: 2n,
  US: 4n,
  A: 0x20n,
  D: 0x40n,
  PS: 0x80n,
  EA: 0x400n,
  PAT_LARGE: 0x1000n,
  XD: 1n << 63n,
  ADDR_MASK: 0x000f_ffff_ffff_f000n,
} as const;

/**
 * VTD_S1_* - `struct iommu_hwpt_vtd_s1` flags, which the kernel's
 * intel_pasid_setup_nested() copies into the PASID entry: SRE (supervisor
 * requests allowed), EAFE (the walker sets the extended-accessed bit), WPE
 * (supervisor writes honour read-only entries, as CR0.WP).
 */
export const VTD_S1_SRE = 1;
export const VTD_S1_EAFE = 2;
export const VTD_S1_WPE = 4;
/** Every flag a `vtd_s1` stage 1 accepts; others are EOPNOTSUPP. */
export const VTD_S1_FLAGS = VTD_S1_SRE | VTD_S1_EAFE | VTD_S1_WPE;

/**
 * S1Access - the access being translated: a write (else a read), an
 * instruction fetch, and a privileged (supervisor) request. A user request
 * (priv=false) needs the user bit at every level; a supervisor one does not.
 */
export interface S1Access {
  /** A write (else a read). */
  write: boolean;
  exec: boolean;
  priv: boolean;
}

/**
 * S1Result - the outcome of a first-stage walk.
 * - ok: @gpa is the guest physical address of the VA (page base + offset in
 *   the possibly large page of @pageSize bytes); @writable/@executable/@user
 *   are the effective permissions of the whole walk.
 * - s1-fault: the walk failed at @level (for permission faults, the leaf's
 *   level; for a non-canonical VA or a supervisor request without SRE, the
 *   root level).
 * - s2-fault: reading the table entry at @gpa, which belongs to the table at
 *   @level, missed in stage 2.
 */
export type S1Result =
  | { kind: 'ok'; gpa: bigint; writable: boolean; executable: boolean; user: boolean; pageSize: bigint }
  | { kind: 's1-fault'; reason: 'not-present' | 'write' | 'exec' | 'user' | 'supervisor' | 'reserved' | 'non-canonical'; level: number }
  | { kind: 's2-fault'; gpa: bigint; level: number };

const U64_LIMIT = 1n << 64n;
/** Shift of the VA bits a level indexes; SHIFT[level], level 1..5. */
const SHIFT: readonly bigint[] = [0n, 12n, 21n, 30n, 39n, 48n];

function levelsOf(addrWidth: 48 | 57): number {
  if (addrWidth === 48) return 4;
  if (addrWidth === 57) return 5;
  throw new RangeError(`unsupported vtd_s1 address width ${String(addrWidth)}`);
}

/** Whether the u64 @va is canonical for @addrWidth (upper bits sign-extend bit addrWidth-1). */
function isCanonical(va: bigint, addrWidth: number): boolean {
  if (va < 0n || va >= U64_LIMIT) return false;
  const upper = va >> BigInt(addrWidth - 1);
  return upper === 0n || upper === (1n << BigInt(65 - addrWidth)) - 1n;
}

/**
 * walkVtdS1() - translate @va through the `vtd_s1` table rooted at @root.
 * @readTableEntry: reads the 8-byte entry at a guest physical address through
 *   stage 2, or returns undefined if stage 2 does not map it readable (the
 *   walk then ends with an s2-fault naming that address).
 * @root: guest physical address of the root table (bits below 4 KiB and
 *   above bit 51 are ignored, as the address field of an entry).
 * @addrWidth: 48 (4 levels) or 57 (5 levels).
 * @va: a u64 virtual address; a non-canonical one faults without any read.
 * @access: the kind of access, checked against the accumulated permissions
 *   (writable only if RW at every level, user only if US at every level,
 *   executable only if XD at no level).
 * @flags: VTD_S1_* of the PASID entry. Without SRE a supervisor request
 *   faults before any read; a supervisor request needs no US bit, and its
 *   writes honour RW only with WPE.
 * @writeTableEntry: when given, the walker updates the entries as hardware
 *   does: Accessed (and with EAFE Extended-Accessed) in every entry it used,
 *   Dirty in the leaf of a successful write, each bit only where it is not
 *   set yet and only once the walk succeeded. It returns false when stage 2
 *   does not map the entry writable: the walk then ends with an s2-fault.
 *
 * Stops at the first non-present entry, at a PS bit at level 1 or at the
 * root/level 4, and at a large leaf whose address bits below its page size
 * (bit 12 excepted: PAT) are not zero ('reserved'). The caller translates
 * the returned gpa through stage 2 itself. Never throws for bad tables.
 */
export function walkVtdS1(
  readTableEntry: (gpa: bigint) => bigint | undefined,
  root: bigint,
  addrWidth: 48 | 57,
  va: bigint,
  access: S1Access,
  flags = 0,
  writeTableEntry?: (gpa: bigint, value: bigint) => boolean,
): S1Result {
  const levels = levelsOf(addrWidth);
  if (!isCanonical(va, addrWidth)) return { kind: 's1-fault', reason: 'non-canonical', level: levels };
  if (access.priv && (flags & VTD_S1_SRE) === 0) return { kind: 's1-fault', reason: 'supervisor', level: levels };
  let table = root & PTE.ADDR_MASK;
  let writable = true;
  let user = true;
  let executable = true;
  for (let level = levels; level >= 1; level--) {
    const shift = SHIFT[level]!;
    const entryGpa = table + ((va >> shift) & 511n) * 8n;
    const pte = readTableEntry(entryGpa);
    if (pte === undefined) return { kind: 's2-fault', gpa: entryGpa, level };
    if ((pte & PTE.P) === 0n) return { kind: 's1-fault', reason: 'not-present', level };
    const large = (pte & PTE.PS) !== 0n;
    const pageSize = 1n << shift;
    if (large) {
      if (level === 1 || level >= 4) return { kind: 's1-fault', reason: 'reserved', level };
      if ((pte & PTE.ADDR_MASK & (pageSize - 1n) & ~PTE.PAT_LARGE) !== 0n) return { kind: 's1-fault', reason: 'reserved', level };
    }
    writable &&= (pte & PTE.RW) !== 0n;
    user &&= (pte & PTE.US) !== 0n;
    executable &&= (pte & PTE.XD) === 0n;
    if (large || level === 1) {
      if (!access.priv && !user) return { kind: 's1-fault', reason: 'user', level };
      if (access.write && !writable && (!access.priv || (flags & VTD_S1_WPE) !== 0)) return { kind: 's1-fault', reason: 'write', level };
      if (access.exec && !executable) return { kind: 's1-fault', reason: 'exec', level };
      if (writeTableEntry) {
        const s2 = setAccessed(readTableEntry, writeTableEntry, root & PTE.ADDR_MASK, levels, level, va, flags, access.write);
        if (s2 !== undefined) return s2;
      }
      const gpa = (pte & PTE.ADDR_MASK & ~(pageSize - 1n)) | (va & (pageSize - 1n));
      return { kind: 'ok', gpa, writable, executable, user, pageSize };
    }
    table = pte & PTE.ADDR_MASK;
  }
  // Unreachable: level 1 always ends the walk above.
  throw new Error('vtd_s1 walk fell through');
}

/**
 * setAccessed() - after a successful walk, set A (and EA with EAFE) in every
 * entry from the root down to the leaf at @leafLevel, and D in the leaf of a
 * @write. The entries are read again (the walk used them a moment ago, so
 * they are present and stage 2 maps them readable). Returns an s2-fault if
 * stage 2 refuses the write of an entry, else undefined. Off the IOTLB-hit
 * path: only walks get here.
 */
function setAccessed(
  read: (gpa: bigint) => bigint | undefined,
  write: (gpa: bigint, value: bigint) => boolean,
  root: bigint,
  levels: number,
  leafLevel: number,
  va: bigint,
  flags: number,
  dirty: boolean,
): S1Result | undefined {
  const a = (flags & VTD_S1_EAFE) !== 0 ? PTE.A | PTE.EA : PTE.A;
  let table = root;
  for (let level = levels; level >= leafLevel; level--) {
    const gpa = table + ((va >> SHIFT[level]!) & 511n) * 8n;
    const pte = read(gpa)!;
    const want = level === leafLevel && dirty ? a | PTE.D : a;
    if ((pte & want) !== want && !write(gpa, pte | want)) return { kind: 's2-fault', gpa, level };
    table = pte & PTE.ADDR_MASK;
  }
  return undefined;
}

/** Page sizes a `vtd_s1` leaf can map. */
export type VtdS1PageSize = 4096n | 0x200000n | 0x40000000n;

const LEAF_LEVEL: ReadonlyMap<bigint, number> = new Map([
  [4096n, 1],
  [0x200000n, 2],
  [0x40000000n, 3],
]);

/**
 * VtdS1Builder - writes a `vtd_s1` table into guest memory as a guest kernel
 * would: used by tests and by the guest model of the VMM.
 *
 * The caller supplies guest-physical accessors: @alloc returns the GPA of a
 * fresh zeroed 4 KiB page (called once for the root, in the constructor, and
 * once per intermediate table created), @read/@write access one aligned
 * 8-byte entry. The builder never frees table pages. Changing or removing a
 * present leaf requires an IOTLB invalidation, which is the caller's job.
 */
export class VtdS1Builder {
  readonly #alloc: () => bigint;
  readonly #read: (gpa: bigint) => bigint;
  readonly #write: (gpa: bigint, v: bigint) => void;
  readonly #addrWidth: 48 | 57;
  readonly #levels: number;
  readonly #root: bigint;

  constructor(alloc: () => bigint, read: (gpa: bigint) => bigint, write: (gpa: bigint, v: bigint) => void, addrWidth: 48 | 57) {
    this.#levels = levelsOf(addrWidth);
    this.#alloc = alloc;
    this.#read = read;
    this.#write = write;
    this.#addrWidth = addrWidth;
    this.#root = this.#newTable();
  }

  /** GPA of the root table (the `pgtbl_addr` of a nested hwpt). */
  get root(): bigint {
    return this.#root;
  }

  /**
   * map() - map the page of @pageSize (default 4 KiB) at @va to @gpa.
   * Intermediate tables are created as needed with P|RW|US. The leaf gets P,
   * RW if @perms.write, US unless @perms.user === false, and XD unless
   * @perms.exec. @va must be canonical and both addresses aligned to
   * @pageSize (RangeError). Throws Error if any part of the range is already
   * mapped (a present leaf on the path or a table where the leaf goes);
   * nothing is written then, apart from intermediate tables already created.
   */
  map(va: bigint, gpa: bigint, perms: { write: boolean; user?: boolean; exec?: boolean }, pageSize: VtdS1PageSize = 4096n): void {
    const leafLevel = LEAF_LEVEL.get(pageSize);
    if (leafLevel === undefined) throw new RangeError(`unsupported page size ${String(pageSize)}`);
    if (!isCanonical(va, this.#addrWidth)) throw new RangeError(`va 0x${va.toString(16)} is not canonical`);
    const mask = pageSize - 1n;
    if ((va & mask) !== 0n) throw new RangeError(`va 0x${va.toString(16)} not aligned to 0x${pageSize.toString(16)}`);
    if (gpa < 0n || (gpa & mask) !== 0n || (gpa & ~PTE.ADDR_MASK) !== 0n) {
      throw new RangeError(`gpa 0x${gpa.toString(16)} not a 0x${pageSize.toString(16)}-aligned address`);
    }
    let table = this.#root;
    for (let level = this.#levels; level > leafLevel; level--) {
      const slot = table + ((va >> SHIFT[level]!) & 511n) * 8n;
      const pte = this.#read(slot);
      if ((pte & PTE.P) === 0n) {
        const next = this.#newTable();
        this.#write(slot, next | PTE.P | PTE.RW | PTE.US);
        table = next;
      } else if ((pte & PTE.PS) !== 0n) {
        throw new Error(`va 0x${va.toString(16)} lies in a large page already mapped at level ${level}`);
      } else {
        table = pte & PTE.ADDR_MASK;
      }
    }
    const slot = table + ((va >> SHIFT[leafLevel]!) & 511n) * 8n;
    if ((this.#read(slot) & PTE.P) !== 0n) throw new Error(`va 0x${va.toString(16)} already mapped at level ${leafLevel}`);
    let leaf = gpa | PTE.P;
    if (perms.write) leaf |= PTE.RW;
    if (perms.user !== false) leaf |= PTE.US;
    if (perms.exec !== true) leaf |= PTE.XD;
    if (leafLevel > 1) leaf |= PTE.PS;
    this.#write(slot, leaf);
  }

  /**
   * unmap() - clear the leaf entry that maps @va (any address inside the
   * page, of any size). Returns false if @va was not mapped. Tables are kept.
   */
  unmap(va: bigint): boolean {
    const leaf = this.entryAddress(va);
    if (leaf === undefined) return false;
    this.#write(leaf.gpa, 0n);
    return true;
  }

  /** lookupPte() - the present leaf entry that maps @va, or undefined. */
  lookupPte(va: bigint): bigint | undefined {
    const leaf = this.entryAddress(va);
    return leaf === undefined ? undefined : this.#read(leaf.gpa);
  }

  /**
   * entryAddress() - GPA and level of the present leaf entry that maps @va,
   * or undefined. For a guest that edits its entries in place (downgrades,
   * tests that plant reserved bits); the caller then owes the invalidation.
   */
  entryAddress(va: bigint): { gpa: bigint; level: number } | undefined {
    if (!isCanonical(va, this.#addrWidth)) return undefined;
    let table = this.#root;
    for (let level = this.#levels; level >= 1; level--) {
      const slot = table + ((va >> SHIFT[level]!) & 511n) * 8n;
      const pte = this.#read(slot);
      if ((pte & PTE.P) === 0n) return undefined;
      if (level === 1 || (pte & PTE.PS) !== 0n) return { gpa: slot, level };
      table = pte & PTE.ADDR_MASK;
    }
    return undefined;
  }

  #newTable(): bigint {
    const t = this.#alloc();
    if (t < 0n || (t & 0xfffn) !== 0n || (t & ~PTE.ADDR_MASK) !== 0n) {
      throw new RangeError(`table allocator returned 0x${t.toString(16)}, not a page address`);
    }
    return t;
  }
}
