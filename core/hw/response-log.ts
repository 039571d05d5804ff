/**
 * The response log of a PCIe function: every PRG response it received, in
 * order, packed into fixed chunks so a long-running device costs 8 bytes a
 * response and nothing per read until an entry is asked for.
 */
import { PRG_INVALID, PRG_SUCCESS } from './iommu-unit.js';

export type ResponseCodeName = 'success' | 'invalid' | 'failure';

export interface ResponseLogEntry {
  pasid: number | undefined;
  grpid: number;
  code: ResponseCodeName;
  seq: number;
}

const CODE_NAMES: readonly ResponseCodeName[] = ['success', 'invalid', 'failure'];

/** The PRG_* code's index in CODE_NAMES (anything but Success/Invalid is a failure). */
function codeIndex(code: number): number {
  return code === PRG_SUCCESS ? 0 : code === PRG_INVALID ? 1 : 2;
}

/** Entries per chunk of a ResponseLog (a power of two). */
const LOG_CHUNK = 1 << 14;

/**
 * ResponseLog - every PRG response a function received, in order: one
 * number per response (pasid × 2^19 + PRG index × 8 + code × 2 + "has a
 * pasid", exact in a double) in fixed Float64Array chunks, 8 bytes an entry,
 * no object per response and no copying as it grows; entries are built only
 * when read. Entry i has seq i + 1. With a limit, only the newest entries
 * are held (memory stays bounded on a long-running device); seqs go on.
 */
export class ResponseLog {
  private n = 0;
  private readonly chunks: Float64Array[] = [];
  /** The chunk being filled. */
  private tail = new Float64Array(0);
  /** Entries dropped from the front (whole chunks), so entry i lives in chunk (i - dropped) / LOG_CHUNK. */
  private dropped = 0;
  /**
   * The fewest newest entries kept (0 = keep every one): the oldest chunk of
   * LOG_CHUNK entries goes once the rest still hold @limit, so a
   * long-running device holds between limit and limit + 2 × LOG_CHUNK
   * entries. seq stays dense: a reader that sees a first seq above since + 1
   * knows it missed entries.
   */
  limit = 0;

  /** Entries logged (the seq of the newest one), dropped ones included. */
  get length(): number {
    return this.n;
  }

  /** Entries held (the newest ones). */
  get retained(): number {
    return this.n - this.dropped;
  }

  /** Log one response (@pasid a u32 or undefined, @grpid < 2^16, @code a PRG_* code). */
  push(pasid: number | undefined, grpid: number, code: number): void {
    const i = this.n++ & (LOG_CHUNK - 1);
    if (i === 0) {
      if (this.limit > 0 && this.n - 1 - this.dropped - LOG_CHUNK >= this.limit) {
        this.chunks.shift();
        this.dropped += LOG_CHUNK;
      }
      this.chunks.push((this.tail = new Float64Array(LOG_CHUNK)));
    }
    this.tail[i] = (pasid === undefined ? 0 : pasid * 0x80000 + 1) + grpid * 8 + codeIndex(code) * 2;
  }

  /** The entry at index @i (0-based, retained: dropped ≤ @i < length). */
  at(i: number): ResponseLogEntry {
    const o = i & (LOG_CHUNK - 1);
    const v = this.chunks[(i - o - this.dropped) / LOG_CHUNK]![o]!;
    const low = v % 0x80000;
    return { pasid: low & 1 ? (v - low) / 0x80000 : undefined, grpid: low >>> 3, code: CODE_NAMES[(low >>> 1) & 3]!, seq: i + 1 };
  }

  /** Retained entries with seq > @since, in order. */
  since(since: number): ResponseLogEntry[] {
    const out: ResponseLogEntry[] = [];
    for (let i = Math.max(this.dropped, since); i < this.n; i++) out.push(this.at(i));
    return out;
  }

  /** Every retained entry through @fn, like Array.prototype.map. */
  map<T>(fn: (e: ResponseLogEntry, i: number) => T): T[] {
    const out: T[] = [];
    for (let i = this.dropped; i < this.n; i++) out.push(fn(this.at(i), i - this.dropped));
    return out;
  }

  *[Symbol.iterator](): IterableIterator<ResponseLogEntry> {
    for (let i = this.dropped; i < this.n; i++) yield this.at(i);
  }
}
