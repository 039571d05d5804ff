// The SMMUv3 unit's stage 1 in hardware terms: the guest's Stream Table Entry
// (words 0 and 1), its linear table of 64-byte Context Descriptors indexed by
// SubstreamID, the AArch64 walk of the CD's TTB0 (arm-lpae.ts), and the
// 32-byte event records the unit writes to its event queue. Field positions
// are the architecture's (as arm-smmu-v3.h names them: STRTAB_STE_*,
// CTXDESC_CD_*, EVTQ_*). Every CD and descriptor read goes through the
// caller's stage-2 reader.

import { walkArmLpae, LPAE_T0SZ_MAX, LPAE_T0SZ_MIN, type LpaeAccess, type LpaeFaultKind } from './arm-lpae.js';

const bit = (n: number): bigint => 1n << BigInt(n);
const mask = (hi: number, lo: number): bigint => ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
const get = (w: bigint, hi: number, lo: number): number => Number((w & mask(hi, lo)) >> BigInt(lo));

/** STE word 0/1 fields (STRTAB_STE_0_*, STRTAB_STE_1_*). */
export const STE = {
  V: bit(0),
  CFG: mask(3, 1),
  S1FMT: mask(5, 4),
  S1CTXPTR: mask(51, 6),
  S1CDMAX: mask(63, 59),
  S1DSS: mask(1, 0),
  S1CIR: mask(3, 2),
  S1COR: mask(5, 4),
  S1CSH: mask(7, 6),
  S1STALLD: bit(27),
  EATS: mask(29, 28),
} as const;

/** STE.Config values. */
export const STE_CFG_ABORT = 0;
export const STE_CFG_BYPASS = 4;
export const STE_CFG_S1_TRANS = 5;
export const STE_CFG_S2_TRANS = 6;
export const STE_CFG_NESTED = 7;
/** STE.S1DSS: what a transaction without a SubstreamID does when S1CDMax > 0. */
export const STE_S1DSS_TERMINATE = 0;
export const STE_S1DSS_BYPASS = 1;
export const STE_S1DSS_SSID0 = 2;
/** STE.EATS: ATS aborted, or full ATS translation. */
export const STE_EATS_ABT = 0;
export const STE_EATS_TRANS = 1;

/** The STE bits a guest may set in a nested STE (STRTAB_STE_{0,1}_NESTING_ALLOWED). */
export const STE_0_NESTING_ALLOWED = STE.V | STE.CFG | STE.S1FMT | STE.S1CTXPTR | STE.S1CDMAX;
export const STE_1_NESTING_ALLOWED = STE.S1DSS | STE.S1CIR | STE.S1COR | STE.S1CSH | STE.S1STALLD | STE.EATS;

/** The largest S1CDMax (log2 of CDs) the unit supports: 20 SubstreamID bits. */
export const SMMU_SSID_BITS = 20;

/** Decoded STE words 0-1. */
export interface SmmuSte {
  valid: boolean;
  cfg: number;
  s1fmt: number;
  /** GPA of the CD table (S1ContextPtr, bits 51:6). */
  s1ContextPtr: bigint;
  /** log2 of the number of CDs (0: one CD, no SubstreamIDs). */
  s1CdMax: number;
  s1dss: number;
  s1StallD: boolean;
  eats: number;
}

/** decodeSte() - the fields of STE words @w0, @w1. */
export function decodeSte(w0: bigint, w1: bigint): SmmuSte {
  return {
    valid: (w0 & STE.V) !== 0n,
    cfg: get(w0, 3, 1),
    s1fmt: get(w0, 5, 4),
    s1ContextPtr: w0 & STE.S1CTXPTR,
    s1CdMax: get(w0, 63, 59),
    s1dss: get(w1, 1, 0),
    s1StallD: (w1 & STE.S1STALLD) !== 0n,
    eats: get(w1, 29, 28),
  };
}

/** encodeSte() - STE words 0-1 of an S1_TRANS (or other @cfg) entry, as a guest writes them. */
export function encodeSte(f: {
  cfg: number;
  s1ContextPtr?: bigint;
  s1CdMax?: number;
  s1dss?: number;
  s1StallD?: boolean;
  eats?: number;
  valid?: boolean;
}): [bigint, bigint] {
  let w0 = f.valid === false ? 0n : STE.V;
  w0 |= BigInt(f.cfg & 7) << 1n;
  w0 |= (f.s1ContextPtr ?? 0n) & STE.S1CTXPTR;
  w0 |= BigInt((f.s1CdMax ?? 0) & 31) << 59n;
  let w1 = BigInt((f.s1dss ?? 0) & 3);
  if (f.s1StallD) w1 |= STE.S1STALLD;
  w1 |= BigInt((f.eats ?? 0) & 3) << 28n;
  return [w0, w1];
}

/** Context descriptor fields (CTXDESC_CD_0_*, CTXDESC_CD_1_TTB0_MASK). 64 bytes, 8 words. */
export const CD = {
  T0SZ: mask(5, 0),
  TG0: mask(7, 6),
  EPD0: bit(14),
  ENDI: bit(15),
  EPD1: bit(30),
  V: bit(31),
  IPS: mask(34, 32),
  AA64: bit(41),
  HD: bit(42),
  HA: bit(43),
  S: bit(44),
  R: bit(45),
  A: bit(46),
  ASET: bit(47),
  ASID: mask(63, 48),
  TTB0: mask(51, 4),
} as const;
/** Bytes per context descriptor. */
export const CD_SIZE = 64n;
/** CD.TG0 value of the 4 KiB granule (the only one modelled). */
export const CD_TG0_4K = 0;

/** Decoded CD words 0-1 (the rest: TTB1, MAIR, unused by this model). */
export interface SmmuCd {
  valid: boolean;
  t0sz: number;
  tg0: number;
  epd0: boolean;
  aa64: boolean;
  /** Stall on a translation/access/permission fault (CD.S). */
  stall: boolean;
  /** Record faults (CD.R). */
  record: boolean;
  /** Abort terminated transactions (CD.A). */
  abort: boolean;
  asid: number;
  ttb0: bigint;
}

/** decodeCd() - the fields of CD words @w0, @w1. */
export function decodeCd(w0: bigint, w1: bigint): SmmuCd {
  return {
    valid: (w0 & CD.V) !== 0n,
    t0sz: get(w0, 5, 0),
    tg0: get(w0, 7, 6),
    epd0: (w0 & CD.EPD0) !== 0n,
    aa64: (w0 & CD.AA64) !== 0n,
    stall: (w0 & CD.S) !== 0n,
    record: (w0 & CD.R) !== 0n,
    abort: (w0 & CD.A) !== 0n,
    asid: get(w0, 63, 48),
    ttb0: w1 & CD.TTB0 & ~0xfffn,
  };
}

/** encodeCd() - CD words 0 and 1 as a guest writes them (V, AA64, R, A set unless told otherwise; EPD1 always). */
export function encodeCd(f: {
  ttb0: bigint;
  t0sz: number;
  asid?: number;
  stall?: boolean;
  record?: boolean;
  abort?: boolean;
  tg0?: number;
  valid?: boolean;
  epd0?: boolean;
}): [bigint, bigint] {
  let w0 = BigInt(f.t0sz & 63) | (BigInt((f.tg0 ?? CD_TG0_4K) & 3) << 6n) | CD.EPD1 | CD.AA64;
  if (f.valid !== false) w0 |= CD.V;
  if (f.epd0) w0 |= CD.EPD0;
  if (f.stall) w0 |= CD.S;
  if (f.record !== false) w0 |= CD.R;
  if (f.abort !== false) w0 |= CD.A;
  w0 |= BigInt((f.asid ?? 0) & 0xffff) << 48n;
  return [w0, f.ttb0 & CD.TTB0];
}

/** Event record ids (EVT_ID_*): the configuration errors and faults this model produces. */
export const EVT_ID = {
  C_BAD_STE: 0x04,
  F_STREAM_DISABLED: 0x06,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
} as const;
/** EVTQ_1_CLASS: what was being accessed when a stage-2 fault hit (CD fetch, table walk, the input address). */
export const EVT_CLASS_CD = 0;
export const EVT_CLASS_TT = 1;
export const EVT_CLASS_IN = 2;
/** Bytes per event record. */
export const EVT_SIZE = 32;

/** SmmuEvent - the fields of one event record that the kernel reads. */
export interface SmmuEvent {
  id: number;
  sid: number;
  /** SubstreamID, when the transaction carried one (SSV). */
  ssid: number | undefined;
  stag: number;
  stall: boolean;
  /** PnU: privileged. */
  priv: boolean;
  /** InD: instruction fetch. */
  exec: boolean;
  /** RnW: read. */
  read: boolean;
  s2: boolean;
  class: number;
  /** The input address (EVTQ_2_ADDR). */
  addr: bigint;
  /** The faulting IPA of a stage-2 fault (EVTQ_3_IPA, bits 51:12). */
  ipa: bigint;
}

const IPA_MASK = mask(51, 12);

/** encodeEvent() - the four little-endian words of the event record of @e (EVTQ_0_*, EVTQ_1_*, EVTQ_2_ADDR, EVTQ_3_IPA). */
export function encodeEvent(e: SmmuEvent): [bigint, bigint, bigint, bigint] {
  let w0 = BigInt(e.id & 0xff) | (BigInt(e.sid >>> 0) << 32n);
  if (e.ssid !== undefined) w0 |= bit(11) | (BigInt(e.ssid & 0xfffff) << 12n);
  let w1 = BigInt(e.stag & 0xffff);
  if (e.stall) w1 |= bit(31);
  if (e.priv) w1 |= bit(33);
  if (e.exec) w1 |= bit(34);
  if (e.read) w1 |= bit(35);
  if (e.s2) w1 |= bit(39);
  w1 |= BigInt(e.class & 3) << 40n;
  return [w0, w1, e.addr & mask(63, 0), e.ipa & IPA_MASK];
}

/** decodeEvent() - the fields of event record words @evt (arm_smmu_decode_event). */
export function decodeEvent(evt: readonly bigint[]): SmmuEvent {
  const [w0 = 0n, w1 = 0n, w2 = 0n, w3 = 0n] = evt;
  return {
    id: get(w0, 7, 0),
    sid: get(w0, 63, 32),
    ssid: (w0 & bit(11)) !== 0n ? get(w0, 31, 12) : undefined,
    stag: get(w1, 15, 0),
    stall: (w1 & bit(31)) !== 0n,
    priv: (w1 & bit(33)) !== 0n,
    exec: (w1 & bit(34)) !== 0n,
    read: (w1 & bit(35)) !== 0n,
    s2: (w1 & bit(39)) !== 0n,
    class: get(w1, 41, 40),
    addr: w2,
    ipa: w3 & IPA_MASK,
  };
}

/** withEventSid() - @evt with its SID field (EVTQ_0_SID) replaced by @sid, as arm_vmaster_report_event does with the vSID. */
export function withEventSid(evt: readonly bigint[], sid: number): [bigint, bigint, bigint, bigint] {
  const [w0 = 0n, w1 = 0n, w2 = 0n, w3 = 0n] = evt;
  return [(w0 & ~mask(63, 32)) | (BigInt(sid >>> 0) << 32n), w1, w2, w3];
}

const FAULT_ID: Readonly<Record<LpaeFaultKind, number>> = {
  translation: EVT_ID.F_TRANSLATION,
  'addr-size': EVT_ID.F_ADDR_SIZE,
  access: EVT_ID.F_ACCESS,
  permission: EVT_ID.F_PERMISSION,
};

/** An access as the SMMU sees it: the LpaeAccess plus the SubstreamID, if any. */
export interface SmmuAccess extends LpaeAccess {
  ssid: number | undefined;
}

/**
 * SmmuS1Result - the outcome of the stage-1 part of a transaction.
 * - ok: @gpa is the stage-1 output (to translate through stage 2); @asid
 *   tags the TLB entry; @pageSize is the bytes of the leaf (page or block)
 *   that mapped it; bypass (no stage 1) gives full permissions and 4 KiB.
 * - abort: terminated without an event (STE.Config abort).
 * - event: terminated or stalled with an event record: @event.s2 set means a
 *   stage-2 fault on a CD or descriptor fetch (the host's, never the guest's);
 *   @stallable when the fault may stall (a translation, access, permission
 *   or address size fault of a CD with S=1); @record is false for such a
 *   fault of a CD with R=0 that does not stall (no record is written).
 */
export type SmmuS1Result =
  | { kind: 'ok'; gpa: bigint; writable: boolean; executable: boolean; user: boolean; asid: number; bypass: boolean; pageSize: bigint }
  | { kind: 'abort' }
  | { kind: 'event'; event: SmmuEvent; stallable: boolean; record: boolean };

/**
 * smmuStage1() - the stage-1 part of one transaction of stream @sid through
 * the guest STE @ste.
 * @readU64: reads 8 bytes at a stage-1 output (guest physical) address
 *   through stage 2, or undefined when stage 2 does not map it readable.
 * @va: the input address. @access: the request's kind and SubstreamID.
 *
 * Checks, in the architecture's order: STE validity and config (abort: no
 * event; bypass: @va is the output; S1_TRANS only linear CD tables with
 * S1CDMax ≤ 20, else C_BAD_STE), the SubstreamID (C_BAD_SUBSTREAMID, or
 * F_STREAM_DISABLED / bypass / CD 0 per S1DSS for a transaction without one
 * when S1CDMax > 0), the CD fetch (a stage-2 miss: F_TRANSLATION with S2,
 * CLASS CD), the CD (C_BAD_CD unless V, AA64, the 4 KiB granule, T0SZ 16..39,
 * and not S with STE.S1STALLD), then the walk (stage-2 miss: F_TRANSLATION
 * with S2, CLASS TT; stage-1 faults: F_TRANSLATION, F_ADDR_SIZE, F_ACCESS,
 * F_PERMISSION, CLASS IN). The final output address's stage-2 check is the
 * caller's.
 */
export function smmuStage1(readU64: (gpa: bigint) => bigint | undefined, ste: SmmuSte, sid: number, va: bigint, access: SmmuAccess): SmmuS1Result {
  const base: SmmuEvent = {
    id: 0,
    sid,
    ssid: access.ssid,
    stag: 0,
    stall: false,
    priv: access.priv,
    exec: access.exec,
    read: !access.write,
    s2: false,
    class: EVT_CLASS_IN,
    addr: va,
    ipa: 0n,
  };
  const event = (id: number, extra: Partial<SmmuEvent> = {}): SmmuS1Result => ({
    kind: 'event',
    event: { ...base, id, ...extra },
    stallable: false,
    record: true,
  });
  const bypass = (): SmmuS1Result => ({ kind: 'ok', gpa: va, writable: true, executable: true, user: true, asid: 0, bypass: true, pageSize: 4096n });

  if (!ste.valid || ste.cfg === STE_CFG_ABORT) return { kind: 'abort' };
  if (ste.cfg === STE_CFG_BYPASS) return bypass();
  if (ste.cfg !== STE_CFG_S1_TRANS || ste.s1fmt !== 0 || ste.s1CdMax > SMMU_SSID_BITS) return event(EVT_ID.C_BAD_STE);

  let index: number;
  if (access.ssid === undefined) {
    if (ste.s1CdMax === 0) index = 0;
    else if (ste.s1dss === STE_S1DSS_BYPASS) return bypass();
    else if (ste.s1dss === STE_S1DSS_SSID0) index = 0;
    else if (ste.s1dss === STE_S1DSS_TERMINATE) return event(EVT_ID.F_STREAM_DISABLED);
    else return event(EVT_ID.C_BAD_STE);
  } else {
    if (ste.s1CdMax === 0 || access.ssid >= 2 ** ste.s1CdMax) return event(EVT_ID.C_BAD_SUBSTREAMID);
    if (access.ssid === 0 && ste.s1dss === STE_S1DSS_SSID0) return event(EVT_ID.C_BAD_SUBSTREAMID);
    index = access.ssid;
  }

  const cdGpa = ste.s1ContextPtr + BigInt(index) * CD_SIZE;
  const w0 = readU64(cdGpa);
  const w1 = w0 === undefined ? undefined : readU64(cdGpa + 8n);
  if (w0 === undefined || w1 === undefined) {
    return event(EVT_ID.F_TRANSLATION, { s2: true, class: EVT_CLASS_CD, ipa: w0 === undefined ? cdGpa : cdGpa + 8n });
  }
  const cd = decodeCd(w0, w1);
  if (!cd.valid || !cd.aa64 || cd.tg0 !== CD_TG0_4K || cd.t0sz < LPAE_T0SZ_MIN || cd.t0sz > LPAE_T0SZ_MAX || (cd.stall && ste.s1StallD)) {
    return event(EVT_ID.C_BAD_CD);
  }
  const s1Fault = (id: number): SmmuS1Result => ({ kind: 'event', event: { ...base, id }, stallable: cd.stall, record: cd.record || cd.stall });
  if (cd.epd0) return s1Fault(EVT_ID.F_TRANSLATION);
  const r = walkArmLpae(readU64, cd.ttb0, cd.t0sz, va, access);
  if (r.kind === 's2-fault') return event(EVT_ID.F_TRANSLATION, { s2: true, class: EVT_CLASS_TT, ipa: r.gpa });
  if (r.kind === 'fault') return s1Fault(FAULT_ID[r.fault]);
  return { kind: 'ok', gpa: r.pa, writable: r.writable, executable: r.executable, user: r.user, asid: cd.asid, bypass: false, pageSize: r.pageSize };
}

/**
 * SmmuEventQueue - the unit's event queue (a ring of 32-byte records in
 * memory, with the overflow flag the hardware toggles when a record finds it
 * full). The driver pops records in order.
 */
export class SmmuEventQueue {
  private readonly ring: Array<readonly bigint[] | undefined>;
  private head = 0;
  private count = 0;
  /** GERROR/EVTQ overflow: set when a record was dropped for want of space. */
  overflow = false;
  /** Records dropped because the queue was full. */
  dropped = 0;

  constructor(readonly depth: number) {
    if (!Number.isInteger(depth) || depth < 1) throw new RangeError(`event queue depth ${depth}`);
    this.ring = new Array<readonly bigint[] | undefined>(depth);
  }

  get length(): number {
    return this.count;
  }

  /** Write one record; false (and the overflow flag) when the queue is full. */
  push(evt: readonly bigint[]): boolean {
    if (this.count >= this.depth) {
      this.overflow = true;
      this.dropped++;
      return false;
    }
    this.ring[(this.head + this.count) % this.depth] = evt;
    this.count++;
    return true;
  }

  /** The oldest record, or undefined when empty. */
  pop(): readonly bigint[] | undefined {
    if (this.count === 0) return undefined;
    const e = this.ring[this.head];
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.depth;
    this.count--;
    return e;
  }
}
