/**
 * The built-in traffic generator of a PCIe function: page request groups at
 * consecutive pages as fast as the PRI budget and the answers allow, with
 * request-to-response latencies in a fixed histogram.
 */
import type { Scheduler } from '../sched.js';
import { PRG_INVALID, PRG_SUCCESS } from './iommu-unit.js';
import type { PrgCallback, PrgPerm, PrgSender } from './pri.js';

export interface TrafficRequest {
  count: number;
  pagesPerGroup: number;
  inFlight: number;
  pasid: number | undefined;
  base: bigint;
  perm: PrgPerm;
}

export interface TrafficStatus {
  running: boolean;
  sent: number;
  answered: number;
  byCode: { success: number; invalid: number; failure: number };
  elapsedMs: number;
  latencyUs: { p50: number; p99: number; max: number };
}

/**
 * LatencyHistogram - request-to-response latencies in µs: exact to 0.1 µs
 * below 25.6 µs, then 128 buckets per power of two (within 0.4%), up to
 * ~214 s; recording is O(1), percentiles walk ~3,200 counters, whatever the
 * number of groups.
 */
class LatencyHistogram {
  private static readonly LINEAR = 256;
  private static readonly SUB = 128;
  private readonly counts = new Uint32Array(LatencyHistogram.LINEAR + 23 * LatencyHistogram.SUB);
  private n = 0;
  max = 0;

  /** Record one latency in µs. */
  record(us: number): void {
    if (us > this.max) this.max = us;
    const t = Math.min(0x7fff_ffff, Math.max(0, Math.round(us * 10)));
    let i: number;
    if (t < LatencyHistogram.LINEAR) i = t;
    else {
      const k = 31 - Math.clz32(t);
      i = LatencyHistogram.LINEAR + (k - 8) * LatencyHistogram.SUB + ((t >>> (k - 7)) & (LatencyHistogram.SUB - 1));
    }
    this.counts[i]!++;
    this.n++;
  }

  /** The latency (µs) at rank floor(@q × count): the midpoint of its bucket; 0 when empty. */
  percentile(q: number): number {
    if (this.n === 0) return 0;
    const rank = Math.min(this.n - 1, Math.floor(q * this.n));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen > rank) {
        if (i < LatencyHistogram.LINEAR) return i / 10;
        const j = i - LatencyHistogram.LINEAR;
        const k = 8 + Math.floor(j / LatencyHistogram.SUB);
        const lo = (LatencyHistogram.SUB + (j % LatencyHistogram.SUB)) * 2 ** (k - 7);
        return Math.min(this.max, (lo + 2 ** (k - 8)) / 10);
      }
    }
    return this.max;
  }
}

/**
 * TrafficRun - one run of the traffic generator: `count` groups of
 * `pagesPerGroup` requests at consecutive pages, at most `inFlight`
 * outstanding, the next one sent as soon as one is answered. Per group it
 * allocates nothing of its own: one callback for every group, the send time
 * kept by the PRG, latencies in a fixed histogram. Stops by itself when PRI
 * goes off.
 */
export class TrafficRun {
  running = true;
  sent = 0;
  answered = 0;
  inFlight = 0;
  readonly byCode = { success: 0, invalid: 0, failure: 0 };
  private readonly startedAt: number;
  private endedAt = -1;
  private readonly latency = new LatencyHistogram();
  private readonly pages: bigint[];
  private readonly step: bigint;
  /** Address of the next group's first page. */
  private next: bigint;
  /** The callback of every group this run sends. */
  private readonly onAnswer: PrgCallback = (code, sentAt) => this.answer(code, sentAt);

  constructor(
    private readonly pri: PrgSender,
    private readonly sched: Scheduler,
    private readonly req: TrafficRequest,
  ) {
    this.startedAt = sched.now();
    this.pages = new Array<bigint>(req.pagesPerGroup);
    this.step = BigInt(req.pagesPerGroup) * 0x1000n;
    this.next = req.base;
  }

  /** Send groups while the run, the window and the PRI budget allow. */
  issue(): void {
    const pri = this.pri;
    const req = this.req;
    while (this.running && this.sent < req.count && this.inFlight < req.inFlight) {
      if (!pri.enabled) {
        this.stop();
        return;
      }
      const base = this.next;
      if (req.pagesPerGroup === 1) this.pages[0] = base;
      else for (let i = 0; i < req.pagesPerGroup; i++) this.pages[i] = base + BigInt(i) * 0x1000n;
      if (!pri.trySend(req.pasid, this.pages, req.perm, this.onAnswer)) {
        pri.waitBudget(() => this.issue());
        return;
      }
      this.next = base + this.step;
      this.sent++;
      this.inFlight++;
    }
    if (this.sent >= req.count && this.inFlight === 0) this.stop();
  }

  private answer(code: number, sentAt: number): void {
    this.inFlight--;
    this.answered++;
    if (code === PRG_SUCCESS) this.byCode.success++;
    else if (code === PRG_INVALID) this.byCode.invalid++;
    else this.byCode.failure++;
    this.latency.record((this.sched.now() - sentAt) * 1000);
    if (this.running) this.issue();
    else if (this.inFlight === 0 && this.endedAt < 0) this.endedAt = this.sched.now();
  }

  /** Issuing, or waiting for the answers of groups in flight (status().running). */
  get busy(): boolean {
    return this.running || this.inFlight > 0;
  }

  /** Issue no more groups; those in flight still count when answered. */
  stop(): void {
    this.running = false;
    if (this.inFlight === 0 && this.endedAt < 0) this.endedAt = this.sched.now();
  }

  /** The run's counters and latency percentiles (µs, 0.1 µs resolution). */
  status(): TrafficStatus {
    const end = this.endedAt >= 0 ? this.endedAt : this.sched.now();
    const h = this.latency;
    return {
      running: this.busy,
      sent: this.sent,
      answered: this.answered,
      byCode: { ...this.byCode },
      elapsedMs: end - this.startedAt,
      latencyUs: { p50: round(h.percentile(0.5)), p99: round(h.percentile(0.99)), max: round(h.max) },
    };
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
