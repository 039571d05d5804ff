/**
 * A PCIe function with ATS, PRI and PASID: the DMA engine that translates each
 * page through the IOMMU, asks for faulting pages with Page Request Groups,
 * waits for the group response and retries; the PRI state machine (Outstanding
 * Page Request Allocation, 9-bit PRG indexes never reused while outstanding,
 * Response Failure stops PRI until reset); a log of every response received;
 * and a built-in traffic generator.
 */
import type { Scheduler, TimerHandle } from '../sched.js';
import { PageRequest, PRG_FAILURE, PRG_INVALID, PRG_SUCCESS, type IommuUnit, type PageRequestFields } from './iommu-unit.js';
import type { SparseMemory } from './memory.js';

export interface PcieCaps {
  /** 0 = no PASID. */
  pasidBits: number;
  pri: boolean;
  /** Outstanding Page Request Allocation (1..512). */
  priOutstanding: number;
  ats: boolean;
  isVf: boolean;
  /** PRI status "PRG Response PASID Required". */
  prgResponseNeedsPasid: boolean;
}

export type ResponseCodeName = 'success' | 'invalid' | 'failure';

export interface ResponseLogEntry {
  pasid: number | undefined;
  grpid: number;
  code: ResponseCodeName;
  seq: number;
}

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

export interface TrafficRequest {
  count: number;
  pagesPerGroup: number;
  inFlight: number;
  pasid: number | undefined;
  base: bigint;
  perm: { read: boolean; write: boolean; exec: boolean; priv: boolean };
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
 * What a group's sender hears when its response arrives: the PRG response
 * code (PRG_SUCCESS, PRG_INVALID or PRG_FAILURE) and when the group was
 * sent (scheduler clock, ms).
 */
type PrgCallback = (code: number, sentAt: number) => void;

/**
 * An outstanding Page Request Group, by PRG index. One object per index,
 * reused by every group that takes the index (nothing allocated per group).
 */
interface Prg {
  pasid: number | undefined;
  requests: number;
  /** How many groups use this index (raw injection may reuse one); 0 = free. */
  count: number;
  onResponse: PrgCallback | undefined;
  sentAt: number;
}

const PRGI_COUNT = 512;
const MAX_FRUITLESS = 3;

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

export class PcieFunction {
  /** PRI Response Failure status bit. */
  responseFailure = false;
  /** PRI Stopped: no page requests until reset. */
  stopped = false;
  /** Responses whose PRG index was not outstanding (PCIe "Unexpected PRG Index"). */
  unexpectedResponses = 0;
  /** Every response received, in order (seq = index + 1). */
  readonly responses = new ResponseLog();
  private readonly prgs: Array<Prg | undefined> = new Array(PRGI_COUNT).fill(undefined);
  /** The Prg object of each index, made on first use and reused. */
  private readonly prgObjects: Array<Prg | undefined> = new Array(PRGI_COUNT).fill(undefined);
  private nextPrgi = 0;
  /** PRG indexes not outstanding. */
  private freePrgis = PRGI_COUNT;
  /** Requests in flight (bounded by caps.priOutstanding). */
  outstandingRequests = 0;
  private readonly budgetWaiters: Array<() => void> = [];
  private traffic: TrafficRun | undefined;
  /** Set when the function is hot-unplugged. */
  removed = false;
  /**
   * dev->iommu: the IOMMU driver's per-device data, set when the driver
   * probes the function and cleared when it releases it (opaque here).
   */
  iommu: unknown = undefined;

  constructor(
    readonly name: string,
    readonly rid: number,
    readonly caps: PcieCaps,
    readonly unit: IommuUnit,
    readonly mem: SparseMemory,
    readonly sched: Scheduler,
  ) {}

  get priEnabled(): boolean {
    return this.caps.pri && !this.stopped && !this.removed;
  }

  /** PRG indexes currently outstanding. */
  get outstandingGroups(): number {
    let n = 0;
    for (const p of this.prgs) if (p) n += p.count;
    return n;
  }

  /** Clear Response Failure and re-enable PRI (PRI control Reset + Enable). */
  priReset(): void {
    this.responseFailure = false;
    this.stopped = false;
  }

  /** The next free PRG index after the last one handed out; the caller checked freePrgis > 0. */
  private allocPrgi(): number {
    for (let i = 0; i < PRGI_COUNT; i++) {
      const p = (this.nextPrgi + i) & (PRGI_COUNT - 1);
      if (!this.prgs[p]) {
        this.nextPrgi = (p + 1) & (PRGI_COUNT - 1);
        return p;
      }
    }
    return -1;
  }

  private setPrg(prgi: number, prg: Prg | undefined): void {
    if (!this.prgs[prgi] !== !prg) this.freePrgis += prg ? -1 : 1;
    this.prgs[prgi] = prg;
  }

  /** Make PRG index @prgi outstanding with one group; its (reused) Prg. */
  private takePrg(prgi: number, pasid: number | undefined, requests: number, onResponse: PrgCallback | undefined): Prg {
    let p = this.prgObjects[prgi];
    if (!p) this.prgObjects[prgi] = p = { pasid, requests, count: 1, onResponse, sentAt: 0 };
    p.pasid = pasid;
    p.requests = requests;
    p.count = 1;
    p.onResponse = onResponse;
    p.sentAt = this.sched.now();
    this.setPrg(prgi, p);
    return p;
  }

  private canSend(requests: number): boolean {
    return this.outstandingRequests + requests <= this.caps.priOutstanding && this.freePrgis > 0;
  }

  private whenBudget(fn: () => void): void {
    this.budgetWaiters.push(fn);
  }

  /**
   * Send one Page Request Group for `pages`, LAST on the final request.
   * The caller checked {@link canSend}. Returns the PRG index.
   */
  private sendGroup(pasid: number | undefined, pages: readonly bigint[], perm: TrafficRequest['perm'], onResponse: PrgCallback): number {
    const prgi = this.allocPrgi();
    this.takePrg(prgi, pasid, pages.length, onResponse);
    this.outstandingRequests += pages.length;
    for (let i = 0; i < pages.length; i++) {
      this.unit.pageRequest(new PageRequest(this, pasid, prgi, pages[i]!, perm.read, perm.write, perm.exec, perm.priv, i === pages.length - 1));
    }
    return prgi;
  }

  /**
   * Inject one raw page request as the function would send it (the kernel
   * selftest's TRIGGER_IOPF). A last request (not a Stop Marker) makes its PRG
   * index outstanding until answered. Returns false when PRI is off or
   * stopped (the function sends nothing).
   */
  injectPageRequest(req: PageRequestFields): boolean {
    if (!this.priEnabled) return false;
    const stopMarker = req.last && !req.read && !req.write && req.pasid !== undefined;
    if (req.last && !stopMarker) {
      const p = this.prgs[req.prgi & (PRGI_COUNT - 1)];
      if (p) p.count++;
      else this.takePrg(req.prgi & (PRGI_COUNT - 1), req.pasid, 0, undefined);
    }
    this.unit.pageRequest(new PageRequest(this, req.pasid, req.prgi & (PRGI_COUNT - 1), req.addr, req.read, req.write, req.exec, req.priv, req.last));
    return true;
  }

  /**
   * A PRG response arrives. Logged always; matched to the outstanding group by
   * PRG index. Any code but Success/Invalid is Response Failure: PRI stops.
   */
  receiveResponse(pasid: number | undefined, prgi: number, code: number): void {
    this.responses.push(pasid, prgi, code);
    if (code !== PRG_SUCCESS && code !== PRG_INVALID) {
      this.responseFailure = true;
      this.stopped = true;
    }
    const p = this.prgs[prgi];
    if (!p) {
      this.unexpectedResponses++;
      return;
    }
    // Read the Prg before freeing it: the callback may send a group that reuses the index.
    const onResponse = p.onResponse;
    const sentAt = p.sentAt;
    this.outstandingRequests -= p.requests;
    if (--p.count === 0) this.setPrg(prgi, undefined);
    onResponse?.(code === PRG_SUCCESS ? PRG_SUCCESS : code === PRG_INVALID ? PRG_INVALID : PRG_FAILURE, sentAt);
    if (this.budgetWaiters.length > 0) {
      const waiters = this.budgetWaiters.splice(0);
      for (const w of waiters) w();
    }
  }

  /** Responses with seq > since. */
  responsesSince(since: number): ResponseLogEntry[] {
    return this.responses.since(since);
  }

  /**
   * Perform a DMA through the IOMMU; `done` is called once with the outcome.
   * Faulting pages are requested with one PRG per attempt; after Success the
   * translation is retried, and after 3 rounds without progress the DMA ends
   * `invalid`.
   */
  dma(req: DmaRequest, done: (r: DmaResult) => void): void {
    new DmaRun(this, req, done).start();
  }

  /** @internal used by DmaRun and TrafficRun. */
  trySend(pasid: number | undefined, pages: readonly bigint[], perm: TrafficRequest['perm'], onResponse: PrgCallback): boolean {
    if (!this.canSend(pages.length)) return false;
    this.sendGroup(pasid, pages, perm, onResponse);
    return true;
  }

  /** @internal */
  waitBudget(fn: () => void): void {
    this.whenBudget(fn);
  }

  /** Start the traffic generator. Throws Error('busy') if one runs. */
  startTraffic(req: TrafficRequest): void {
    if (this.traffic?.busy) throw new Error('busy');
    this.traffic = new TrafficRun(this, req);
    this.traffic.issue();
  }

  /** The running or last traffic run's status (undefined before the first run). */
  trafficStatus(): TrafficStatus | undefined {
    return this.traffic?.status();
  }

  /** Stop the traffic generator (outstanding groups still get their responses). */
  stopTraffic(): void {
    this.traffic?.stop();
  }
}

class DmaRun {
  private readonly pages: bigint[] = [];
  private readonly hpa: Array<bigint | undefined>;
  private pageRequests = 0;
  private retries = 0;
  private fruitless = 0;
  private lastFaulting = Infinity;
  private finished = false;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly fn: PcieFunction,
    private readonly req: DmaRequest,
    private readonly done: (r: DmaResult) => void,
  ) {
    const first = req.iova & ~0xfffn;
    const end = req.iova + BigInt(Math.max(1, req.length));
    for (let a = first; a < end; a += 0x1000n) this.pages.push(a);
    this.hpa = new Array(this.pages.length).fill(undefined);
  }

  start(): void {
    this.timer = this.fn.sched.timer(this.req.timeoutMs, () => this.finish('timeout'));
    this.step();
  }

  private finish(status: DmaStatus): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) this.fn.sched.cancel(this.timer);
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
      const r = this.fn.unit.translate(this.fn.rid, pasid ?? 0, this.pages[i]!, write, exec, priv);
      if (r.kind === 's2') return this.finish('stage2_fault');
      if (r.kind === 'ok') this.hpa[i] = r.hpa;
      else {
        this.hpa[i] = undefined;
        faulting.push(this.pages[i]!);
      }
    }
    if (faulting.length === 0) return this.finish('ok');
    if (!this.fn.priEnabled) return this.finish('pri_disabled');
    if (this.retries > 0) {
      if (faulting.length >= this.lastFaulting) {
        if (++this.fruitless >= MAX_FRUITLESS) return this.finish('invalid');
      } else this.fruitless = 0;
    }
    this.lastFaulting = faulting.length;
    const batch = faulting.slice(0, this.fn.caps.priOutstanding);
    this.send(batch);
  }

  private send(batch: bigint[]): void {
    if (this.finished) return;
    if (!this.fn.priEnabled) return this.finish('pri_disabled');
    const perm = { read: !this.req.write, write: this.req.write, exec: this.req.exec, priv: this.req.priv };
    const sent = this.fn.trySend(this.req.pasid, batch, perm, (code) => {
      if (this.finished) return;
      if (code === PRG_SUCCESS) {
        this.retries++;
        this.step();
      } else if (code === PRG_INVALID) this.finish('invalid');
      else this.finish('failure');
    });
    if (sent) this.pageRequests += batch.length;
    else this.fn.waitBudget(() => this.send(batch));
  }

  /** Move the bytes: the translations are all present now. */
  private transfer(): Uint8Array | undefined {
    const { iova, length, write, data } = this.req;
    const out = write ? data : new Uint8Array(length);
    let off = 0;
    for (let i = 0; i < this.pages.length && off < length; i++) {
      const pageStart = this.pages[i]!;
      const from = i === 0 ? iova : pageStart;
      const inPage = Number(from - pageStart);
      const len = Math.min(length - off, 4096 - inPage);
      const hpa = this.hpa[i]! - (this.hpa[i]! & 0xfffn) + BigInt(inPage);
      if (write) this.fn.mem.write(hpa, data!.subarray(off, off + len));
      else out!.set(this.fn.mem.read(hpa, len), off);
      off += len;
    }
    return out;
  }
}

/**
 * The traffic generator: `count` groups of `pagesPerGroup` requests at
 * consecutive pages, at most `inFlight` outstanding, the next one sent as
 * soon as one is answered. Per group it allocates nothing of its own: one
 * callback for every group, the send time kept by the PRG, latencies in a
 * fixed histogram.
 */
class TrafficRun {
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
    private readonly fn: PcieFunction,
    private readonly req: TrafficRequest,
  ) {
    this.startedAt = fn.sched.now();
    this.pages = new Array<bigint>(req.pagesPerGroup);
    this.step = BigInt(req.pagesPerGroup) * 0x1000n;
    this.next = req.base;
  }

  issue(): void {
    const fn = this.fn;
    const req = this.req;
    while (this.running && this.sent < req.count && this.inFlight < req.inFlight) {
      if (!fn.priEnabled) {
        this.stop();
        return;
      }
      const base = this.next;
      if (req.pagesPerGroup === 1) this.pages[0] = base;
      else for (let i = 0; i < req.pagesPerGroup; i++) this.pages[i] = base + BigInt(i) * 0x1000n;
      if (!fn.trySend(req.pasid, this.pages, req.perm, this.onAnswer)) {
        fn.waitBudget(() => this.issue());
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
    this.latency.record((this.fn.sched.now() - sentAt) * 1000);
    if (this.running) this.issue();
    else if (this.inFlight === 0 && this.endedAt < 0) this.endedAt = this.fn.sched.now();
  }

  /** Issuing, or waiting for the answers of groups in flight (status().running). */
  get busy(): boolean {
    return this.running || this.inFlight > 0;
  }

  /** Issue no more groups; those in flight still count when answered. */
  stop(): void {
    this.running = false;
    if (this.inFlight === 0 && this.endedAt < 0) this.endedAt = this.fn.sched.now();
  }

  status(): TrafficStatus {
    const end = this.endedAt >= 0 ? this.endedAt : this.fn.sched.now();
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
