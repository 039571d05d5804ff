/**
 * The DMA engine of a PCIe function with ATS and PRI: translate each page
 * through the IOMMU, ask for the faulting ones with one Page Request Group per
 * attempt, wait for the group response and retry.
 */
import type { Scheduler, TimerHandle } from '../sched.js';
import { PRG_INVALID, PRG_SUCCESS, type IommuUnit } from './iommu-unit.js';
import type { SparseMemory } from './memory.js';
import type { PrgSender } from './pri.js';

export type DmaStatus = 'ok' | 'invalid' | 'failure' | 'pri_disabled' | 'stage2_fault' | 'timeout';

export interface DmaRequest {
  pasid: number | undefined;
  iova: bigint;
  length: number;
  write: boolean;
  /** Bytes to write (length bytes) for a write. */
  data: Uint8Array | undefined;
  priv: boolean;
  exec: boolean;
  timeoutMs: number;
}

export interface DmaResult {
  status: DmaStatus;
  pageRequests: number;
  retries: number;
  data: Uint8Array | undefined;
}

/** What a DMA needs of its function: where it sits, its memory and clock, its PRI. */
export interface DmaPort {
  readonly rid: number;
  readonly unit: IommuUnit;
  readonly mem: SparseMemory;
  readonly sched: Scheduler;
  readonly pri: PrgSender;
}

/** Rounds of page requests without fewer faulting pages before a DMA gives up. */
const MAX_FRUITLESS = 3;
/** Resumed stalls one DMA may see (a guest that answers RETRY without fixing its tables would loop). */
const MAX_STALL_ROUNDS = 4096;

/**
 * DmaRun - one DMA in progress. Every round translates every page (a success
 * may have been invalidated since); faulting pages are requested in one group
 * (at most the PRI budget); after Success the round repeats, after 3 rounds
 * without progress the DMA ends `invalid`. `done` is called exactly once:
 * with the outcome, or `timeout` when the timer fires first.
 */
export class DmaRun {
  private readonly pages: bigint[] = [];
  private readonly hpa: Array<bigint | undefined>;
  private pageRequests = 0;
  private retries = 0;
  private fruitless = 0;
  private stallRounds = 0;
  private lastFaulting = Infinity;
  private finished = false;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly port: DmaPort,
    private readonly req: DmaRequest,
    private readonly done: (r: DmaResult) => void,
  ) {
    const first = req.iova & ~0xfffn;
    const end = req.iova + BigInt(Math.max(1, req.length));
    for (let a = first; a < end; a += 0x1000n) this.pages.push(a);
    this.hpa = new Array(this.pages.length).fill(undefined);
  }

  /** Arm the timeout and run the first round. */
  start(): void {
    this.timer = this.port.sched.timer(this.req.timeoutMs, () => this.finish('timeout'));
    this.step();
  }

  private finish(status: DmaStatus): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) this.port.sched.cancel(this.timer);
    let data: Uint8Array | undefined;
    if (status === 'ok') data = this.transfer();
    else if (this.req.write) data = this.req.data;
    this.done({ status, pageRequests: this.pageRequests, retries: this.retries, data });
  }

  private step(): void {
    if (this.finished) return;
    const { pasid, write, exec, priv } = this.req;
    const faulting: bigint[] = [];
    for (let i = 0; i < this.pages.length; i++) {
      // Translate every page each round: a success may have been invalidated since.
      const r = this.port.unit.translate(this.port.rid, pasid ?? 0, this.pages[i]!, write, exec, priv);
      if (r.kind === 's2') return this.finish('stage2_fault');
      // SMMUv3: a terminated transaction ends the DMA; a stalled one waits for CMD_RESUME.
      if (r.kind === 'abort') return this.finish('invalid');
      if (r.kind === 'stall') return r.wait((retry) => this.resumed(retry));
      if (r.kind === 'ok') this.hpa[i] = r.hpa;
      else {
        this.hpa[i] = undefined;
        faulting.push(this.pages[i]!);
      }
    }
    if (faulting.length === 0) return this.finish('ok');
    if (!this.port.pri.enabled) return this.finish('pri_disabled');
    if (this.retries > 0) {
      if (faulting.length >= this.lastFaulting) {
        if (++this.fruitless >= MAX_FRUITLESS) return this.finish('invalid');
      } else this.fruitless = 0;
    }
    this.lastFaulting = faulting.length;
    const batch = faulting.slice(0, this.port.pri.maxRequests);
    this.send(batch);
  }

  /** CMD_RESUME of a stalled transaction: retry every page (the guest fixed its tables), or abort. */
  private resumed(retry: boolean): void {
    if (this.finished) return;
    if (!retry) return this.finish('invalid');
    this.retries++;
    if (++this.stallRounds > MAX_STALL_ROUNDS) return this.finish('invalid');
    this.step();
  }

  private send(batch: bigint[]): void {
    if (this.finished) return;
    const pri = this.port.pri;
    if (!pri.enabled) return this.finish('pri_disabled');
    const perm = { read: !this.req.write, write: this.req.write, exec: this.req.exec, priv: this.req.priv };
    const sent = pri.trySend(this.req.pasid, batch, perm, (code) => {
      if (this.finished) return;
      if (code === PRG_SUCCESS) {
        this.retries++;
        this.step();
      } else if (code === PRG_INVALID) this.finish('invalid');
      else this.finish('failure');
    });
    if (sent) this.pageRequests += batch.length;
    else pri.waitBudget(() => this.send(batch));
  }

  /** Move the bytes: the translations are all present now. */
  private transfer(): Uint8Array | undefined {
    const { iova, length, write, data } = this.req;
    const out = write ? data : new Uint8Array(length);
    let off = 0;
    const mem = this.port.mem;
    for (let i = 0; i < this.pages.length && off < length; i++) {
      const pageStart = this.pages[i]!;
      const from = i === 0 ? iova : pageStart;
      const inPage = Number(from - pageStart);
      const len = Math.min(length - off, 4096 - inPage);
      const hpa = this.hpa[i]! - (this.hpa[i]! & 0xfffn) + BigInt(inPage);
      if (write) mem.write(hpa, data!.subarray(off, off + len));
      else out!.set(mem.read(hpa, len), off);
      off += len;
    }
    return out;
  }
}
