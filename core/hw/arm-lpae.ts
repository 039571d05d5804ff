// The AArch64 VMSAv8-64 translation table format with the 4 KiB granule, as
// an SMMUv3 walks it for stage 1 (TTB0 of a context descriptor): its walker
// and a builder that writes such tables the way a guest kernel would.
//
// Levels are numbered as in the Arm ARM: 3 is the last (4 KiB page) level,
// the walk starts at level 0 (4 levels, 40..48 input bits), 1 (3 levels,
// 31..39 bits) or 2 (22..30 bits), from T0SZ. Blocks map 1 GiB at level 1
// and 2 MiB at level 2.
//
// Modelled: descriptor types, AP[2:1], AF, PXN/UXN, output address bits 47:12
// (bits 51:48 set is an address size fault). Not modelled: the hierarchical
// APTable/XNTable/PXNTable bits, contiguous hints, memory attributes, hardware
// AF/dirty updates (CD.HA/HD), TTB1.

/**
 * LPAE - bits of a VMSAv8-64 descriptor: valid (bit 0), table/page (bit 1:
 * 0b11 is a table at levels 0-2 and a page at level 3, 0b01 a block at levels
 * 1-2), AP[1] (bit 6, EL0 access), AP[2] (bit 7, read-only), AF (bit 10),
 * PXN (53), UXN (54), and the output/next-table address (bits 47:12).
 */
export const LPAE = {
  VALID: 1n,
  TABLE: 2n,
  AP_EL0: 1n << 6n,
  AP_RO: 1n << 7n,
  AF: 1n << 10n,
  PXN: 1n << 53n,
  UXN: 1n << 54n,
  OA_MASK: 0x0000_ffff_ffff_f000n,
  /** Output address bits beyond a 48-bit output size (51:48). */
  OA_HIGH_MASK: 0x000f_0000_0000_0000n,
} as const;

/** The smallest and largest T0SZ the 4 KiB-granule walker accepts (48 down to 25 input bits). */
export const LPAE_T0SZ_MIN = 16;
export const LPAE_T0SZ_MAX = 39;

/** An access to translate: a write (else a read), an instruction fetch, a privileged request. */
export interface LpaeAccess {
  write: boolean;
  exec: boolean;
  priv: boolean;
}

/** The architectural fault kinds of a stage-1 walk (SMMUv3 F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION). */
export type LpaeFaultKind = 'translation' | 'addr-size' | 'access' | 'permission';

/**
 * LpaeResult - the outcome of a walk.
 * - ok: @pa is the output (guest physical) address of the VA; the
 *   permissions are those of the leaf.
 * - fault: a stage-1 fault of @fault kind at @level.
 * - s2-fault: reading the descriptor at @gpa (a table of @level) missed in
 *   stage 2.
 */
export type LpaeResult =
  | { kind: 'ok'; pa: bigint; pageSize: bigint; writable: boolean; executable: boolean; user: boolean }
  | { kind: 'fault'; fault: LpaeFaultKind; level: number }
  | { kind: 's2-fault'; gpa: bigint; level: number };

/** Shift of the VA bits indexed at @level (0..3) with the 4 KiB granule. */
function shiftOf(level: number): bigint {
  return BigInt(12 + 9 * (3 - level));
}

/** startLevel() - the first level of a walk over 64 - @t0sz input bits. RangeError outside 16..39. */
export function lpaeStartLevel(t0sz: number): number {
  if (!Number.isInteger(t0sz) || t0sz < LPAE_T0SZ_MIN || t0sz > LPAE_T0SZ_MAX) throw new RangeError(`T0SZ ${t0sz} outside ${LPAE_T0SZ_MIN}..${LPAE_T0SZ_MAX}`);
  const ia = 64 - t0sz;
  return 4 - Math.ceil((ia - 12) / 9);
}

/**
 * walkArmLpae() - translate @va through the table rooted at @ttb.
 * @readDesc: reads the 8-byte descriptor at an input-to-stage-2 address, or
 *   returns undefined if stage 2 does not map it readable (the walk then ends
 *   with an s2-fault naming that address).
 * @ttb: the root table address (bits below 4 KiB are ignored; bits above 47
 *   make an address size fault before any read).
 * @t0sz: 16..39 (RangeError otherwise; a CD check is the caller's job).
 * @va: the input address; one at or above 2^(64 - t0sz) is a translation
 *   fault at the start level without any read.
 * @access: checked against the leaf: a write needs AP[2] clear, an
 *   unprivileged access AP[1] set, an instruction fetch UXN (unprivileged)
 *   or PXN (privileged) clear.
 *
 * Fault priority as the architecture's: translation (invalid descriptor, a
 * block at level 0, a level-3 0b01), then address size, then access flag,
 * then permission. Never throws for bad tables.
 */
export function walkArmLpae(readDesc: (gpa: bigint) => bigint | undefined, ttb: bigint, t0sz: number, va: bigint, access: LpaeAccess): LpaeResult {
  const start = lpaeStartLevel(t0sz);
  const ia = BigInt(64 - t0sz);
  if (va < 0n || va >> ia !== 0n) return { kind: 'fault', fault: 'translation', level: start };
  if ((ttb & LPAE.OA_HIGH_MASK) !== 0n || ttb >> 52n !== 0n) return { kind: 'fault', fault: 'addr-size', level: start };
  let table = ttb & LPAE.OA_MASK;
  for (let level = start; level <= 3; level++) {
    const shift = shiftOf(level);
    const descGpa = table + ((va >> shift) & 511n) * 8n;
    const desc = readDesc(descGpa);
    if (desc === undefined) return { kind: 's2-fault', gpa: descGpa, level };
    if ((desc & LPAE.VALID) === 0n) return { kind: 'fault', fault: 'translation', level };
    const isTableOrPage = (desc & LPAE.TABLE) !== 0n;
    if (level === 0 && !isTableOrPage) return { kind: 'fault', fault: 'translation', level };
    if (level === 3 && !isTableOrPage) return { kind: 'fault', fault: 'translation', level };
    if ((desc & LPAE.OA_HIGH_MASK) !== 0n) return { kind: 'fault', fault: 'addr-size', level };
    if (level < 3 && isTableOrPage) {
      table = desc & LPAE.OA_MASK;
      continue;
    }
    // A leaf: a block at level 1/2 or a page at level 3.
    if ((desc & LPAE.AF) === 0n) return { kind: 'fault', fault: 'access', level };
    const writable = (desc & LPAE.AP_RO) === 0n;
    const user = (desc & LPAE.AP_EL0) !== 0n;
    const executable = (desc & (access.priv ? LPAE.PXN : LPAE.UXN)) === 0n;
    if (!access.priv && !user) return { kind: 'fault', fault: 'permission', level };
    if (access.write && !writable) return { kind: 'fault', fault: 'permission', level };
    if (access.exec && !executable) return { kind: 'fault', fault: 'permission', level };
    const pageSize = 1n << shift;
    const pa = (desc & LPAE.OA_MASK & ~(pageSize - 1n)) | (va & (pageSize - 1n));
    return { kind: 'ok', pa, pageSize, writable, executable, user };
  }
  // Unreachable: level 3 always ends the walk above.
  throw new Error('AArch64 walk fell through');
}

/** Page sizes an AArch64 4 KiB-granule leaf can map. */
export type LpaePageSize = 4096n | 0x200000n | 0x40000000n;

const LEAF_LEVEL: ReadonlyMap<bigint, number> = new Map([
  [4096n, 3],
  [0x200000n, 2],
  [0x40000000n, 1],
]);

/**
 * ArmLpaeBuilder - writes AArch64 4 KiB-granule tables into guest memory as a
 * guest kernel would, for the tests (the VMM's arm guest has its own client-side
 * builder, clients/vmm/arm-page-table.ts, which its tests check against this walker).
 *
 * @alloc returns the address of a fresh zeroed 4 KiB page (once for the root,
 * in the constructor, and once per table created); @read/@write access one
 * aligned 8-byte descriptor. Tables are never freed. Changing or removing a
 * valid leaf needs a TLB invalidation, which is the caller's job.
 */
export class ArmLpaeBuilder {
  readonly #alloc: () => bigint;
  readonly #read: (gpa: bigint) => bigint;
  readonly #write: (gpa: bigint, v: bigint) => void;
  readonly #start: number;
  readonly #ia: bigint;
  readonly #root: bigint;

  constructor(
    alloc: () => bigint,
    read: (gpa: bigint) => bigint,
    write: (gpa: bigint, v: bigint) => void,
    readonly t0sz: number,
  ) {
    this.#start = lpaeStartLevel(t0sz);
    this.#ia = BigInt(64 - t0sz);
    this.#alloc = alloc;
    this.#read = read;
    this.#write = write;
    this.#root = this.#newTable();
  }

  /** Address of the root table (the CD's TTB0). */
  get root(): bigint {
    return this.#root;
  }

  /**
   * map() - map @pageSize bytes (default 4 KiB) at @va to @pa. Tables are
   * created as needed. The leaf gets AF, AP[2] unless @perms.write, AP[1]
   * unless @perms.user === false, and PXN|UXN unless @perms.exec; a 2 MiB or
   * 1 GiB leaf is a block. RangeError for a @va outside the input range or
   * unaligned addresses; Error if any part of the range is already mapped.
   */
  map(va: bigint, pa: bigint, perms: { write: boolean; user?: boolean; exec?: boolean; af?: boolean }, pageSize: LpaePageSize = 4096n): void {
    const leafLevel = LEAF_LEVEL.get(pageSize);
    if (leafLevel === undefined || leafLevel < this.#start) throw new RangeError(`unsupported page size ${String(pageSize)}`);
    if (va < 0n || va >> this.#ia !== 0n) throw new RangeError(`va 0x${va.toString(16)} outside the ${this.#ia}-bit input range`);
    const mask = pageSize - 1n;
    if ((va & mask) !== 0n) throw new RangeError(`va 0x${va.toString(16)} not aligned to 0x${pageSize.toString(16)}`);
    if (pa < 0n || (pa & mask) !== 0n || (pa & ~LPAE.OA_MASK) !== 0n)
      throw new RangeError(`pa 0x${pa.toString(16)} not a 0x${pageSize.toString(16)}-aligned address`);
    let table = this.#root;
    for (let level = this.#start; level < leafLevel; level++) {
      const slot = table + ((va >> shiftOf(level)) & 511n) * 8n;
      const d = this.#read(slot);
      if ((d & LPAE.VALID) === 0n) {
        const next = this.#newTable();
        this.#write(slot, next | LPAE.VALID | LPAE.TABLE);
        table = next;
      } else if ((d & LPAE.TABLE) === 0n) {
        throw new Error(`va 0x${va.toString(16)} lies in a block already mapped at level ${level}`);
      } else {
        table = d & LPAE.OA_MASK;
      }
    }
    const slot = table + ((va >> shiftOf(leafLevel)) & 511n) * 8n;
    if ((this.#read(slot) & LPAE.VALID) !== 0n) throw new Error(`va 0x${va.toString(16)} already mapped at level ${leafLevel}`);
    this.#write(slot, lpaeLeaf(pa, leafLevel, perms));
  }

  /** unmap() - clear the leaf that maps @va. Returns false if @va was not mapped. */
  unmap(va: bigint): boolean {
    const leaf = this.entryAddress(va);
    if (leaf === undefined) return false;
    this.#write(leaf.gpa, 0n);
    return true;
  }

  /** entryAddress() - address and level of the valid leaf that maps @va, or undefined. */
  entryAddress(va: bigint): { gpa: bigint; level: number } | undefined {
    if (va < 0n || va >> this.#ia !== 0n) return undefined;
    let table = this.#root;
    for (let level = this.#start; level <= 3; level++) {
      const slot = table + ((va >> shiftOf(level)) & 511n) * 8n;
      const d = this.#read(slot);
      if ((d & LPAE.VALID) === 0n) return undefined;
      if (level === 3 || (d & LPAE.TABLE) === 0n) return { gpa: slot, level };
      table = d & LPAE.OA_MASK;
    }
    return undefined;
  }

  #newTable(): bigint {
    const t = this.#alloc();
    if (t < 0n || (t & ~LPAE.OA_MASK) !== 0n) throw new RangeError(`table allocator returned 0x${t.toString(16)}, not a page address`);
    return t;
  }
}

/** lpaeLeaf() - the leaf descriptor of @pa at @level (3: page, else block) with @perms (see ArmLpaeBuilder.map). */
export function lpaeLeaf(pa: bigint, level: number, perms: { write: boolean; user?: boolean; exec?: boolean; af?: boolean }): bigint {
  let d = pa | LPAE.VALID;
  if (level === 3) d |= LPAE.TABLE;
  if (perms.af !== false) d |= LPAE.AF;
  if (!perms.write) d |= LPAE.AP_RO;
  if (perms.user !== false) d |= LPAE.AP_EL0;
  if (perms.exec !== true) d |= LPAE.PXN | LPAE.UXN;
  return d;
}
