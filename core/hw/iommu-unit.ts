/**
 * One simulated IOMMU unit: per-(requester, PASID) context entries, the
 * translation walk (stage 1 then stage 2, or either alone), an IOTLB that
 * caches hits only, and a bounded page request queue (PRQ) with the overflow
 * behaviour of VT-d 7.4.1: while overflowed the hardware itself answers
 * Success to every request that needs a response, so the function retries.
 *
 * The SMMUv3 model: a request of a function with the `stall` cap is a stalled
 * transaction, its own stall with a 16-bit tag (the function's page request
 * group is answered once all its stalls were resumed); a request of a function
 * without it is a PCIe PRI page request, queued as a PRI queue entry
 * (arm_smmu_priq_thread's input) and answered by the driver alone. A tag is
 * not reused before its CMD_RESUME; with all 65,536 in use a fault that
 * would stall is terminated instead (an abort; its event, if any, has STALL
 * clear), as the architecture lets an implementation treat a stalling
 * configuration as a terminating one.
 */
import type { Scheduler } from '../sched.js';
import { Iotlb } from './iotlb.js';
import type { SparseMemory } from './memory.js';
import type { Stage2Table } from './stage2.js';
import { VTD_S1_SRE, walkVtdS1 } from './vtd-s1.js';
import { SmmuEventQueue, encodeEvent, smmuStage1, EVT_ID, EVT_CLASS_IN, type SmmuSte } from './smmuv3.js';
import type { PcieFunction } from './pcie-function.js';

export type HwModel = 'vtd' | 'smmuv3' | 'generic';

/** PCIe PRG response codes as the wire carries them. */
export const PRG_SUCCESS = 0;
export const PRG_INVALID = 1;
export const PRG_FAILURE = 0xf;

/** A hardware context entry: what (requester, PASID) translates through. */
export interface ContextEntry {
  /** Domain id, the IOTLB tag. */
  readonly tag: number;
  /** Stage 2 (IOVA/GPA → HPA); absent for a first-stage-only (SVA) context. */
  readonly s2: Stage2Table | undefined;
  /**
   * Stage 1 (a vtd_s1 table) with its PASID-entry flags (VTD_S1_*); its
   * table addresses go through s2 when present.
   */
  readonly s1: { root: bigint; addrWidth: 48 | 57; flags: number } | undefined;
  /**
   * smmuv3 nested: stage 1 is the guest's STE (CD table, AArch64 tables) of
   * stream @sid; @stall: the master can stall (its faults of a CD with S=1
   * stall instead of terminating).
   */
  readonly smmu?: { readonly ste: SmmuSte; readonly sid: number; readonly stall: boolean };
}

/**
 * One page request as it enters the PRQ (a PRQ descriptor). Every request,
 * from the DMA engine, the traffic generator or an injection, is made by
 * this constructor, so the driver's PRQ drain sees one object shape.
 */
export class PageRequest {
  /** Stall tag (stall model only; the unit sets it). */
  stag = 0;
  /**
   * smmuv3: the unit took this request as a stalled transaction (a function
   * with the `stall` cap); false for a PCIe PRI page request (a PRI queue
   * entry) and on every other model.
   */
  stalled = false;

  constructor(
    readonly fn: PcieFunction,
    /** undefined = no PASID prefix. */
    readonly pasid: number | undefined,
    readonly prgi: number,
    readonly addr: bigint,
    readonly read: boolean,
    readonly write: boolean,
    readonly exec: boolean,
    readonly priv: boolean,
    readonly last: boolean,
  ) {}
}

/** A page request as a function's user describes it (the function adds itself). */
export type PageRequestFields = Pick<PageRequest, 'pasid' | 'prgi' | 'addr' | 'read' | 'write' | 'exec' | 'priv' | 'last'>;

export type TranslateResult =
  | { kind: 'ok'; hpa: bigint }
  /** A translation fault the function may ask to resolve with a page request. */
  | { kind: 'fault' }
  /** A nested walk hit an unmapped or forbidden stage-2 address. */
  | { kind: 's2' }
  /** smmuv3: the transaction was terminated (an event without stall, or an abort STE). */
  | { kind: 'abort' }
  /** smmuv3: the transaction stalled; @wait registers what runs on CMD_RESUME (retry: true, or abort). */
  | { kind: 'stall'; stag: number; wait: (onResume: (retry: boolean) => void) => void };

/** SMMUv3 stall tags: the event record's STAG field is 16 bits. */
export const STAG_SPACE = 0x10000;

const FAULT: TranslateResult = { kind: 'fault' };
const S2: TranslateResult = { kind: 's2' };
const ABORT: TranslateResult = { kind: 'abort' };

interface StallPrg {
  outstanding: number;
  lastSeen: boolean;
  code: number;
}

export class IommuUnit {
  readonly iotlb = new Iotlb();
  /**
   * The functions behind this unit, found by requester id (a 16-bit BDF), as
   * responses are routed: fnSlot[rid] indexes fns (0 = none). Two loads, no
   * hashing, on every response.
   */
  private readonly fnSlot = new Uint16Array(0x10000);
  private readonly fns: Array<PcieFunction | undefined> = [undefined];
  private readonly contexts = new Map<number, Map<number, ContextEntry>>();
  // PRQ ring.
  private readonly prq: Array<PageRequest | undefined> = [];
  private prqHead = 0;
  private prqCount = 0;
  /** PRS.PRO: set when a request arrived to a full queue; cleared by the driver. */
  overflow = false;
  /** Requests the hardware answered itself while overflowed. */
  overflowAnswered = 0;
  private irqPending = false;
  /** The driver's interrupt handler. */
  onInterrupt: (() => void) | undefined;
  /** smmuv3/generic: a PASID with no context of its own uses a first-stage RID context (guest-owned PASID table). */
  readonly pasidFallback: boolean;
  private readonly stalls = new Map<number, { req: PageRequest; prg: StallPrg }>();
  /** Page request groups whose last request has not arrived yet, by requester:PRGI. */
  private readonly openPrgs = new Map<string, StallPrg>();
  /**
   * smmuv3: how many stall tags the unit hands out (0 .. stagSpace - 1; at
   * most STAG_SPACE, STAG being 16 bits). Tests lower it to reach
   * exhaustion quickly; tags in use at or above a lowered value still count
   * as in use until resumed, and are not handed out again.
   */
  stagSpace = STAG_SPACE;
  /** Stall tags in use (1) by a stall or a stalled transaction, until its CMD_RESUME. */
  private readonly stagUsed = new Uint8Array(STAG_SPACE);
  private stagsInUse = 0;
  private nextStag = 0;
  /**
   * smmuv3: faults of a stalling configuration terminated (abort, Stall == 0)
   * because every stall tag was in use.
   */
  stallsTerminated = 0;
  /** smmuv3: the event queue (32-byte records) and the driver's handler for its interrupt. */
  readonly evtq: SmmuEventQueue;
  onEventInterrupt: (() => void) | undefined;
  private evtIrqPending = false;
  /** smmuv3: stalled transactions waiting for CMD_RESUME, by stall tag. */
  private readonly txStalls = new Map<number, { sid: number; ssid: number | undefined; onResume: ((retry: boolean) => void) | undefined }>();

  constructor(
    readonly name: string,
    readonly model: HwModel,
    readonly prqDepth: number,
    readonly mem: SparseMemory,
    readonly sched: Scheduler,
  ) {
    this.pasidFallback = model !== 'vtd';
    this.prq.length = prqDepth;
    this.evtq = new SmmuEventQueue(Math.max(1, prqDepth));
  }

  /** Number of requests waiting in the PRQ. */
  get prqLength(): number {
    return this.prqCount;
  }

  /** Stalls waiting for a resume (stall model). */
  get stallCount(): number {
    return this.stalls.size + this.txStalls.size;
  }

  /** Program (or clear) the context entry of (rid, pasid); pasid 0 is the RID's own. */
  setContext(rid: number, pasid: number, entry: ContextEntry | undefined): void {
    let m = this.contexts.get(rid);
    if (!entry) {
      m?.delete(pasid);
      if (m && m.size === 0) this.contexts.delete(rid);
      return;
    }
    if (!m) {
      m = new Map();
      this.contexts.set(rid, m);
    }
    m.set(pasid, entry);
  }

  /** contextEntry() - the context entry a request of (@rid, @pasid) translates through (diagnostics: the walk trace). */
  contextEntry(rid: number, pasid: number): ContextEntry | undefined {
    return this.context(rid, pasid);
  }

  private context(rid: number, pasid: number): ContextEntry | undefined {
    const m = this.contexts.get(rid);
    if (!m) return undefined;
    const e = m.get(pasid);
    if (e || pasid === 0 || !this.pasidFallback) return e;
    const ridEntry = m.get(0);
    return ridEntry && (ridEntry.s1 || ridEntry.smmu) ? ridEntry : undefined;
  }

  /**
   * Translate one access. Hits come from the IOTLB; a walk's success is
   * cached; misses never are.
   */
  translate(rid: number, pasid: number, iova: bigint, write: boolean, exec: boolean, priv: boolean): TranslateResult {
    const e = this.context(rid, pasid);
    if (!e) return FAULT;
    // Without SRE a supervisor request is refused whatever the IOTLB holds.
    if (priv && e.s1 && (e.s1.flags & VTD_S1_SRE) === 0) return FAULT;
    const off = iova & 0xfffn;
    const hit = this.iotlb.lookup(e.tag, pasid, iova);
    if (hit && (!write || hit.write) && (!exec || hit.exec) && (priv || hit.user)) return { kind: 'ok', hpa: hit.hpa + off };
    if (e.smmu) return this.translateSmmu(e, e.smmu, pasid, iova, write, exec, priv);
    if (e.s1) {
      const s2 = e.s2;
      const mem = this.mem;
      const read = s2
        ? (gpa: bigint): bigint | undefined => {
            const s = s2.lookup(gpa);
            return s?.read ? mem.readU64(s.hpa + (gpa & 0xfffn)) : undefined;
          }
        : (pa: bigint): bigint | undefined => mem.readU64(pa);
      // Accessed/Dirty updates: a nested table entry is written through stage 2, which must allow it.
      const update = s2
        ? (gpa: bigint, v: bigint): boolean => {
            const s = s2.lookup(gpa);
            if (!s?.write) return false;
            mem.writeU64(s.hpa + (gpa & 0xfffn), v);
            return true;
          }
        : (pa: bigint, v: bigint): boolean => {
            mem.writeU64(pa, v);
            return true;
          };
      const r = walkVtdS1(read, e.s1.root, e.s1.addrWidth, iova, { write, exec, priv }, e.s1.flags, update);
      if (r.kind === 's2-fault') return S2;
      if (r.kind === 's1-fault') return FAULT;
      let hpaPage: bigint;
      let s2write = true;
      if (s2) {
        const s = s2.lookup(r.gpa);
        if (!s?.read || (write && !s.write)) return S2;
        hpaPage = s.hpa;
        s2write = s.write;
      } else {
        hpaPage = r.gpa & ~0xfffn;
      }
      // Write permission is cached only from a write walk, which set the leaf's
      // Dirty bit: a later write through an entry cached by a read walks again
      // and sets it, as the hardware's cached D state demands.
      this.iotlb.insert(e.tag, pasid, iova, { hpa: hpaPage, write: write && r.writable && s2write, exec: r.executable, user: r.user }, r.pageSize);
      return { kind: 'ok', hpa: hpaPage + off };
    }
    if (!e.s2) return FAULT;
    const s = e.s2.lookup(iova);
    if (!s?.read || (write && !s.write)) return FAULT;
    this.iotlb.insert(e.tag, pasid, iova, { hpa: s.hpa, write: s.write, exec: true, user: true });
    return { kind: 'ok', hpa: s.hpa + off };
  }

  /**
   * The SMMUv3 nested walk: the guest's STE, CD and AArch64 tables, every
   * read and the output through stage 2. A fault writes an event record to
   * the event queue (unless its CD has R=0 and it does not stall); a
   * stage-2 miss is the host's (S2 set) and ends the transaction as `s2`; a
   * fault of a CD with S=1 on a stall-capable master stalls (STALL, STAG)
   * until CMD_RESUME, unless every stall tag is in use (then it is
   * terminated, its record without STALL); anything else terminates it.
   */
  private translateSmmu(
    e: ContextEntry,
    smmu: NonNullable<ContextEntry['smmu']>,
    pasid: number,
    iova: bigint,
    write: boolean,
    exec: boolean,
    priv: boolean,
  ): TranslateResult {
    const s2 = e.s2;
    const mem = this.mem;
    const read = (gpa: bigint): bigint | undefined => {
      if (!s2) return mem.readU64(gpa);
      const s = s2.lookup(gpa);
      return s?.read ? mem.readU64(s.hpa + (gpa & 0xfffn)) : undefined;
    };
    const ssid = pasid === 0 ? undefined : pasid;
    const r = smmuStage1(read, smmu.ste, smmu.sid, iova, { write, exec, priv, ssid });
    if (r.kind === 'abort') return ABORT;
    if (r.kind === 'ok') {
      let hpaPage = r.gpa & ~0xfffn;
      let s2write = true;
      if (s2) {
        const s = s2.lookup(r.gpa);
        if (!s?.read || (write && !s.write)) {
          this.recordEvent(
            encodeEvent({
              id: EVT_ID.F_TRANSLATION,
              sid: smmu.sid,
              ssid,
              stag: 0,
              stall: false,
              priv,
              exec,
              read: !write,
              s2: true,
              class: EVT_CLASS_IN,
              addr: iova,
              ipa: r.gpa,
            }),
          );
          return S2;
        }
        hpaPage = s.hpa;
        s2write = s.write;
      }
      this.iotlb.insert(e.tag, pasid, iova, { hpa: hpaPage, write: r.writable && s2write, exec: r.executable, user: r.user }, r.pageSize);
      return { kind: 'ok', hpa: hpaPage + (iova & 0xfffn) };
    }
    if (r.event.s2) {
      this.recordEvent(encodeEvent(r.event));
      return S2;
    }
    const stag = r.stallable && smmu.stall ? this.allocStag() : -1;
    if (stag >= 0) {
      // Without room for the record the stall cannot be reported: terminate.
      if (!this.recordEvent(encodeEvent({ ...r.event, stall: true, stag }))) {
        this.freeStag(stag);
        return ABORT;
      }
      const stall = { sid: smmu.sid, ssid, onResume: undefined as ((retry: boolean) => void) | undefined };
      this.txStalls.set(stag, stall);
      return {
        kind: 'stall',
        stag,
        wait: (onResume) => {
          stall.onResume = onResume;
        },
      };
    }
    // No free stall tag: the transaction cannot stall; it is terminated
    // instead, its event recorded with STALL clear (r.record holds for a
    // stalling CD).
    if (r.stallable && smmu.stall) this.stallsTerminated++;
    if (r.record) this.recordEvent(encodeEvent(r.event));
    return ABORT;
  }

  /** Write one record to the event queue and interrupt the driver; false when the queue was full. */
  private recordEvent(evt: readonly bigint[]): boolean {
    const ok = this.evtq.push(evt);
    if (!this.evtIrqPending) {
      this.evtIrqPending = true;
      this.sched.defer(() => {
        this.evtIrqPending = false;
        this.onEventInterrupt?.();
      });
    }
    return ok;
  }

  /**
   * A function sends one page request. Queued in the PRQ (the driver is
   * interrupted once per batch); on a full queue the overflow bit is set and a
   * request that needs a response (last, not a Stop Marker) is answered
   * Success by the hardware itself.
   */
  pageRequest(req: PageRequest): void {
    if (this.overflow || this.prqCount >= this.prqDepth) {
      this.overflow = true;
      if (req.last && (req.read || req.write || req.pasid === undefined)) {
        this.overflowAnswered++;
        const { fn, pasid, prgi } = req;
        // Stall model: that group is over; its requests already queued must
        // not hold the PRG index open (their code would leak into the next
        // group with this index).
        if (this.model === 'smmuv3' && fn.caps.stall === true) this.openPrgs.delete(`${fn.rid}:${prgi}`);
        this.sched.defer(() => fn.receiveResponse(pasid, prgi, PRG_SUCCESS));
      }
      this.raise();
      return;
    }
    if (this.model === 'smmuv3' && req.fn.caps.stall === true) {
      const stag = this.allocStag();
      const key = `${req.fn.rid}:${req.prgi}`;
      let prg = this.openPrgs.get(key);
      if (!prg) {
        prg = { outstanding: 0, lastSeen: false, code: PRG_SUCCESS };
        this.openPrgs.set(key, prg);
      }
      if (req.last) {
        prg.lastSeen = true;
        this.openPrgs.delete(key);
      }
      if (stag < 0) {
        // No free stall tag: the transaction is terminated (abort) instead of
        // stalled, and never queued; its group is answered as if it had been
        // resumed with ABORT (at once when nothing else of it is stalled).
        this.stallsTerminated++;
        if (prg.code === PRG_SUCCESS) prg.code = PRG_INVALID;
        if (req.last && prg.outstanding === 0) {
          const { fn, pasid, prgi } = req;
          const code = prg.code;
          this.sched.defer(() => fn.receiveResponse(pasid, prgi, code));
        }
        return;
      }
      req.stalled = true;
      req.stag = stag;
      prg.outstanding++;
      this.stalls.set(stag, { req, prg });
    }
    this.prq[(this.prqHead + this.prqCount) % this.prqDepth] = req;
    this.prqCount++;
    this.raise();
  }

  private raise(): void {
    if (this.irqPending) return;
    this.irqPending = true;
    this.sched.defer(() => {
      this.irqPending = false;
      this.onInterrupt?.();
    });
  }

  /** The driver takes the request at the head of the PRQ, or undefined when empty. */
  prqPop(): PageRequest | undefined {
    if (this.prqCount === 0) return undefined;
    const r = this.prq[this.prqHead];
    this.prq[this.prqHead] = undefined;
    this.prqHead = (this.prqHead + 1) % this.prqDepth;
    this.prqCount--;
    return r;
  }

  /** The driver takes every queued request matching `pred`, keeping the others in order. */
  prqTake(pred: (r: PageRequest) => boolean): PageRequest[] {
    const keep: PageRequest[] = [];
    const taken: PageRequest[] = [];
    for (let r = this.prqPop(); r; r = this.prqPop()) (pred(r) ? taken : keep).push(r);
    for (const r of keep) {
      this.prq[(this.prqHead + this.prqCount) % this.prqDepth] = r;
      this.prqCount++;
    }
    return taken;
  }

  /** Page Group Response (VT-d invalidation-queue descriptor / PCIe PRG response). */
  pageGroupResponse(rid: number, pasid: number | undefined, prgi: number, code: number): void {
    const fn = this.fns[this.fnSlot[rid & 0xffff]!];
    if (fn) fn.receiveResponse(pasid, prgi, code);
  }

  /** smmuv3: whether the transaction stalled with @stag still waits for CMD_RESUME. */
  txStalled(stag: number): boolean {
    return this.txStalls.has(stag);
  }

  /** CMD_RESUME for a stall (stall model): retry (success) or abort (any other code); a stalled transaction's resume is logged by its function. */
  resume(stag: number, code: number): void {
    if (this.txStalls.has(stag)) {
      const stall = this.txStalls.get(stag)!;
      this.txStalls.delete(stag);
      this.freeStag(stag);
      this.fns[this.fnSlot[stall.sid & 0xffff]!]?.resumed(stall.ssid, stag, code === PRG_SUCCESS);
      stall.onResume?.(code === PRG_SUCCESS);
      return;
    }
    const stall = this.stalls.get(stag);
    if (!stall) return;
    this.stalls.delete(stag);
    this.freeStag(stag);
    const { req, prg } = stall;
    prg.outstanding--;
    if (code !== PRG_SUCCESS && prg.code === PRG_SUCCESS) prg.code = code === PRG_FAILURE ? PRG_FAILURE : PRG_INVALID;
    if (prg.outstanding === 0 && prg.lastSeen) req.fn.receiveResponse(req.pasid, req.prgi, prg.code);
  }

  /** A function now sits behind this unit (responses to its requester id reach it). */
  addFunction(fn: PcieFunction): void {
    let slot = this.fnSlot[fn.rid & 0xffff]!;
    if (slot === 0) {
      slot = this.fns.indexOf(undefined, 1);
      if (slot < 0) slot = this.fns.push(undefined) - 1;
      this.fnSlot[fn.rid & 0xffff] = slot;
    }
    this.fns[slot] = fn;
  }

  /** Drop every stall and stall group of `fn` (function removed). */
  forgetFunction(fn: PcieFunction): void {
    for (const [stag, s] of this.stalls) {
      if (s.req.fn !== fn) continue;
      this.stalls.delete(stag);
      this.freeStag(stag);
    }
    for (const [stag, s] of this.txStalls) {
      if (s.sid !== fn.rid) continue;
      this.txStalls.delete(stag);
      this.freeStag(stag);
    }
    for (const key of [...this.openPrgs.keys()]) if (key.startsWith(`${fn.rid}:`)) this.openPrgs.delete(key);
    this.contexts.delete(fn.rid);
    const slot = this.fnSlot[fn.rid & 0xffff]!;
    if (slot !== 0 && this.fns[slot] === fn) {
      this.fns[slot] = undefined;
      this.fnSlot[fn.rid & 0xffff] = 0;
    }
  }

  /**
   * A free stall tag, now in use; -1 when all {@link stagSpace} are in use.
   * A tag is not reused before its transaction was resumed or terminated
   * (the SMMUv3 architecture's rule for STAG), so with every tag taken the
   * caller terminates the transaction instead of stalling it. The search
   * starts after the tag handed out last: one step unless nearly every tag
   * is taken.
   */
  private allocStag(): number {
    const space = Math.min(this.stagSpace, STAG_SPACE);
    if (this.stagsInUse >= space) return -1;
    const used = this.stagUsed;
    let s = this.nextStag < space ? this.nextStag : 0;
    // Some tag below `space` is free: stagsInUse counts every tag in use.
    while (used[s] !== 0) s = s + 1 === space ? 0 : s + 1;
    used[s] = 1;
    this.stagsInUse++;
    this.nextStag = s + 1 === space ? 0 : s + 1;
    return s;
  }

  private freeStag(stag: number): void {
    if (this.stagUsed[stag] === 0) return;
    this.stagUsed[stag] = 0;
    this.stagsInUse--;
  }
}
