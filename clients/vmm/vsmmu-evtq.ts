/**
 * DOC: the virtual SMMUv3's event queue
 *
 * The event queue a virtual SMMUv3 gives its guest, as the architecture
 * defines it: a ring of 2^log2size 32-byte records in guest RAM
 * (SMMU_EVENTQ_BASE), written by the SMMU (here the VMM) and read by the
 * guest's driver, with two index registers:
 *
 * - PROD (SMMU_EVENTQ_PROD, the SMMU's): bits [log2size-1:0] the index of the
 *   next record to write, bit log2size the wrap bit (it flips each time the
 *   index goes round), bit 31 OVFLG;
 * - CONS (SMMU_EVENTQ_CONS, the driver's): the index and wrap bit of the
 *   next record to read, bit 31 OVACKFLG.
 *
 * Equal index and wrap: empty; equal index, different wrap: full. A record
 * that finds the queue full is dropped and, unless an overflow is already
 * pending (OVFLG differs from OVACKFLG), OVFLG is toggled: the driver sees
 * the flags differ, knows records were lost, and acknowledges by copying
 * OVFLG into OVACKFLG when it next writes CONS (arm_smmu_evtq_thread,
 * queue_sync_prod_in's -EOVERFLOW). A new overflow can only be signalled
 * once the previous one was acknowledged.
 *
 * VirtualEventQueue is the SMMU's side (writes are serialized: each record
 * is in guest RAM before PROD moves past it); EventQueueReader is the
 * guest driver's.
 */
import type { GuestRam } from './guest-memory.js';
import { EVT_BYTES, type EventRecord } from './smmuv3-guest.js';

/** Q_OVF - the overflow flag bit of PROD (OVFLG) and CONS (OVACKFLG). */
export const Q_OVF = 0x8000_0000;
/** The largest log2size modelled (an SMMU's EVENTQS may be up to 19; the guest RAM is the limit). */
export const EVTQ_MAX_LOG2 = 16;

/** VirtualEventQueue - the SMMU's side: the ring in guest RAM and the two registers. */
export class VirtualEventQueue {
  /** SMMU_EVENTQ_PROD. */
  #prod = 0;
  /** SMMU_EVENTQ_CONS (written by the driver). */
  #cons = 0;
  #chain: Promise<unknown> = Promise.resolve();
  /** Records written. */
  written = 0;
  /** Records dropped on a full queue. */
  dropped = 0;
  /** Times OVFLG was toggled. */
  overflows = 0;
  /** Called after PROD moved (the event queue interrupt). */
  onInterrupt: (() => void) | undefined;

  /**
   * @mem: the guest's RAM. @base: the ring's GPA (32-byte aligned).
   * @log2size: log2 of the number of records (0..EVTQ_MAX_LOG2).
   */
  constructor(
    readonly mem: GuestRam,
    readonly base: bigint,
    readonly log2size: number,
  ) {
    if (!Number.isInteger(log2size) || log2size < 0 || log2size > EVTQ_MAX_LOG2)
      throw new RangeError(`event queue log2size ${log2size} outside 0..${EVTQ_MAX_LOG2}`);
    if (base % BigInt(EVT_BYTES) !== 0n) throw new RangeError(`event queue base 0x${base.toString(16)} is not 32-byte aligned`);
  }

  /** Records the ring holds. */
  get entries(): number {
    return 1 << this.log2size;
  }

  /** The PROD register (an MMIO read by the driver). */
  get prod(): number {
    return this.#prod;
  }

  /** The CONS register. */
  get cons(): number {
    return this.#cons;
  }

  /**
   * writeCons() - the driver writes CONS: index and wrap of the next record
   * it will read, OVACKFLG. A value that would move CONS past PROD is
   * ignored (CONSTRAINED UNPREDICTABLE in the architecture).
   */
  writeCons(v: number): void {
    const wi = this.#wrapIdx(v);
    if (this.#distance(this.#wrapIdx(this.#cons), wi) > this.#distance(this.#wrapIdx(this.#cons), this.#wrapIdx(this.#prod))) return;
    this.#cons = (wi | (v & Q_OVF)) >>> 0;
  }

  /** full() - no free slot: same index, different wrap. */
  full(): boolean {
    const p = this.#wrapIdx(this.#prod);
    const c = this.#wrapIdx(this.#cons);
    return p !== c && (p & (this.entries - 1)) === (c & (this.entries - 1));
  }

  /**
   * push() - the SMMU writes record @evt: into the slot at PROD, then PROD
   * moves on (and the interrupt fires). On a full queue the record is
   * dropped and the overflow signalled (see signalOverflow()).
   *
   * Return: whether the record was written. Rejects when guest memory
   * cannot be written (the record is not published then).
   */
  push(evt: EventRecord): Promise<boolean> {
    const run = this.#chain.then(() => this.#push(evt));
    this.#chain = run.catch(() => {});
    return run;
  }

  /**
   * signalOverflow() - records were lost before they reached the queue (the
   * host's vEVENTQ dropped them): toggle OVFLG unless an overflow is
   * already pending, as the SMMU does for a record dropped on a full queue.
   * Ordered after the pushes before it.
   */
  signalOverflow(): Promise<void> {
    const run = this.#chain.then(() => {
      this.#toggleOverflow();
      this.onInterrupt?.();
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  async #push(evt: EventRecord): Promise<boolean> {
    if (this.full()) {
      this.dropped++;
      this.#toggleOverflow();
      this.onInterrupt?.();
      return false;
    }
    const idx = this.#prod & (this.entries - 1);
    const slot = this.base + BigInt(idx * EVT_BYTES);
    await this.mem.writeU64s(evt.map((w, i) => [slot + BigInt(8 * i), w] as const));
    const next = (this.#wrapIdx(this.#prod) + 1) & ((this.entries << 1) - 1);
    this.#prod = (next | (this.#prod & Q_OVF)) >>> 0;
    this.written++;
    this.onInterrupt?.();
    return true;
  }

  #toggleOverflow(): void {
    if ((this.#prod & Q_OVF) !== (this.#cons & Q_OVF)) return; // one still unacknowledged
    this.#prod = (this.#prod ^ Q_OVF) >>> 0;
    this.overflows++;
  }

  /** Wrap bit and index of a register value. */
  #wrapIdx(v: number): number {
    return v & ((this.entries << 1) - 1);
  }

  /** Records from wrap-index @from to @to, going forward. */
  #distance(from: number, to: number): number {
    return (to - from + (this.entries << 1)) & ((this.entries << 1) - 1);
  }
}

/** struct EventBatch - what one read of the queue found. */
export interface EventBatch {
  records: EventRecord[];
  /** OVFLG differed from OVACKFLG: records were lost since the last read. */
  overflow: boolean;
}

/**
 * EventQueueReader - the guest driver's side (arm_smmu_evtq_thread): read
 * PROD, copy the records between CONS and PROD out of guest RAM, then write
 * CONS past them with OVACKFLG = OVFLG (acknowledging an overflow).
 */
export class EventQueueReader {
  constructor(readonly q: VirtualEventQueue) {}

  /** read() - every record now in the queue, oldest first, and whether an overflow was signalled. */
  async read(): Promise<EventBatch> {
    const q = this.q;
    const n = q.entries;
    const prod = q.prod;
    const cons = q.cons;
    const overflow = (prod & Q_OVF) !== (cons & Q_OVF);
    const mod = n << 1;
    const count = ((prod & (mod - 1)) - (cons & (mod - 1)) + mod) & (mod - 1);
    const records: EventRecord[] = [];
    let idx = cons & (n - 1);
    let left = count;
    while (left > 0) {
      const run = Math.min(left, n - idx); // up to the end of the ring, then from slot 0
      const bytes = await q.mem.read(q.base + BigInt(idx * EVT_BYTES), run * EVT_BYTES);
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < run; i++) {
        const o = i * EVT_BYTES;
        records.push([dv.getBigUint64(o, true), dv.getBigUint64(o + 8, true), dv.getBigUint64(o + 16, true), dv.getBigUint64(o + 24, true)]);
      }
      left -= run;
      idx = (idx + run) & (n - 1);
    }
    q.writeCons((((cons & (mod - 1)) + count) & (mod - 1)) | (prod & Q_OVF));
    return { records, overflow };
  }
}
