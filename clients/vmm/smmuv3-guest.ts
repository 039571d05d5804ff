/**
 * DOC: the SMMUv3 structures an arm guest writes and reads
 *
 * The byte layouts a guest's arm-smmu-v3 driver uses, as arm-smmu-v3.h
 * names them, and as the translation model of the protocol reference
 * (docs/protocol.md, vIOMMU) describes them:
 *
 * - the 64-byte Stream Table Entry, words 0-1 (STRTAB_STE_0_*,
 *   STRTAB_STE_1_*; words 2-7 zero), in a linear stream table indexed by
 *   StreamID: what the VMM passes as a nested hwpt's `ste`;
 * - the 64-byte Context Descriptor (CTXDESC_CD_0_*, CTXDESC_CD_1_TTB0), in a
 *   linear table indexed by SubstreamID;
 * - the 32-byte event record (EVTQ_0_*, EVTQ_1_*, EVTQ_2_ADDR, EVTQ_3_IPA);
 * - the 16-byte commands (CMDQ_0_OP and the TLBI, CFGI and RESUME fields).
 *
 * Clients do not import core/, so this is the guest's own copy;
 * test/clients/arm-guest.test.ts checks it against the daemon's model on the
 * same bytes.
 */

const bit = (n: number): bigint => 1n << BigInt(n);
const mask = (hi: number, lo: number): bigint => ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
const field = (w: bigint, hi: number, lo: number): number => Number((w & mask(hi, lo)) >> BigInt(lo));

/** STE.Config: stage-1 translate, stage 2 bypassed (the host's nest parent supplies it). */
export const STE_CFG_S1_TRANS = 5;
/** STE.S1DSS: a transaction without a SubstreamID uses CD 0. */
export const STE_S1DSS_SSID0 = 2;
/** The largest S1CDMax (log2 of the CD count) an SMMUv3 with 20 SubstreamID bits takes. */
export const SMMU_SSID_BITS = 20;

/**
 * struct GuestSte - what the guest puts in a stage-1 STE.
 * @cdTable: GPA of its linear CD table (S1ContextPtr, 64-byte aligned).
 * @cdMax: log2 of the number of CDs (S1CDMax; 0: one CD, no SubstreamIDs).
 * @s1dss: what a transaction without a SubstreamID does when @cdMax > 0.
 */
export interface GuestSte {
  cdTable: bigint;
  cdMax: number;
  s1dss?: number;
}

/** steWords() - STE words 0 and 1 of a valid S1_TRANS entry (linear CD table: S1Fmt 0). */
export function steWords(s: GuestSte): [bigint, bigint] {
  if ((s.cdTable & 0x3fn) !== 0n || (s.cdTable & ~mask(51, 6)) !== 0n)
    throw new RangeError(`CD table 0x${s.cdTable.toString(16)} is not a 64-byte aligned address`);
  if (!Number.isInteger(s.cdMax) || s.cdMax < 0 || s.cdMax > SMMU_SSID_BITS) throw new RangeError(`S1CDMax ${s.cdMax} outside 0..${SMMU_SSID_BITS}`);
  const w0 = bit(0) | (BigInt(STE_CFG_S1_TRANS) << 1n) | s.cdTable | (BigInt(s.cdMax) << 59n);
  const w1 = BigInt((s.s1dss ?? 0) & 3);
  return [w0, w1];
}

/** Bytes per stream table entry (STRTAB_STE_DWORDS × 8). */
export const STE_BYTES = 64n;
/** The largest log2 of a linear stream table's STEs the guest allocates (4 MiB). */
export const STRTAB_MAX_LOG2 = 16;

/** Bytes per context descriptor. */
export const CD_BYTES = 64n;

/**
 * struct GuestCd - one context descriptor.
 * @ttb0: GPA of the AArch64 root table.
 * @t0sz: 64 - input address bits.
 * @asid: the address space's ASID.
 * @stall: CD.S: a translation, access or permission fault stalls (else it terminates).
 * @valid: CD.V (default true).
 */
export interface GuestCd {
  ttb0: bigint;
  t0sz: number;
  asid: number;
  stall: boolean;
  valid?: boolean;
}

/**
 * cdWords() - CD words 0 and 1 as arm_smmu_make_s1_cd writes them: T0SZ,
 * TG0 4 KiB (0), EPD1 (no TTB1), V, AA64, R and A (record and abort faults),
 * S as asked, ASID; word 1 TTB0. Words 2-7 (TTB1, MAIR) stay zero.
 */
export function cdWords(c: GuestCd): [bigint, bigint] {
  if ((c.ttb0 & 0xfffn) !== 0n || (c.ttb0 & ~mask(51, 4)) !== 0n) throw new RangeError(`TTB0 0x${c.ttb0.toString(16)} is not a page address`);
  let w0 = BigInt(c.t0sz & 63) | bit(30) | bit(41) | bit(45) | bit(46) | (BigInt(c.asid & 0xffff) << 48n);
  if (c.valid !== false) w0 |= bit(31);
  if (c.stall) w0 |= bit(44);
  return [w0, c.ttb0];
}

/** Event record ids (EVT_ID_*) a guest may see. */
export const EVT_ID = {
  C_BAD_STE: 0x04,
  F_STREAM_DISABLED: 0x06,
  C_BAD_SUBSTREAMID: 0x08,
  C_BAD_CD: 0x0a,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
} as const;
/** EVTQ_1_CLASS of a fault on the input address. */
export const EVT_CLASS_IN = 2;
/** Bytes per event record. */
export const EVT_BYTES = 32;

/** EventRecord - the four little-endian words of an event record. */
export type EventRecord = [bigint, bigint, bigint, bigint];

/**
 * struct GuestEvent - the event record fields the guest's driver reads.
 * @id: EVT_ID. @sid: the (virtual) StreamID. @ssid: the SubstreamID, if SSV.
 * @stag: the stall tag. @stall: STALL (the transaction waits for CMD_RESUME).
 * @priv: PnU. @exec: InD. @read: RnW. @s2: a stage-2 fault. @cls: CLASS.
 * @addr: the input address.
 */
export interface GuestEvent {
  id: number;
  sid: number;
  ssid: number | undefined;
  stag: number;
  stall: boolean;
  priv: boolean;
  exec: boolean;
  read: boolean;
  s2: boolean;
  cls: number;
  addr: bigint;
}

/** eventWords() - the record of @e (EVTQ_3_IPA left zero). */
export function eventWords(e: GuestEvent): EventRecord {
  let w0 = BigInt(e.id & 0xff) | (BigInt(e.sid >>> 0) << 32n);
  if (e.ssid !== undefined) w0 |= bit(11) | (BigInt(e.ssid & 0xfffff) << 12n);
  let w1 = BigInt(e.stag & 0xffff) | (BigInt(e.cls & 3) << 40n);
  if (e.stall) w1 |= bit(31);
  if (e.priv) w1 |= bit(33);
  if (e.exec) w1 |= bit(34);
  if (e.read) w1 |= bit(35);
  if (e.s2) w1 |= bit(39);
  return [w0, w1, e.addr & mask(63, 0), 0n];
}

/** parseEvent() - the fields of record @w (arm_smmu_decode_event). */
export function parseEvent(w: readonly bigint[]): GuestEvent {
  const [w0 = 0n, w1 = 0n, w2 = 0n] = w;
  return {
    id: field(w0, 7, 0),
    sid: field(w0, 63, 32),
    ssid: (w0 & bit(11)) !== 0n ? field(w0, 31, 12) : undefined,
    stag: field(w1, 15, 0),
    stall: (w1 & bit(31)) !== 0n,
    priv: (w1 & bit(33)) !== 0n,
    exec: (w1 & bit(34)) !== 0n,
    read: (w1 & bit(35)) !== 0n,
    s2: (w1 & bit(39)) !== 0n,
    cls: field(w1, 41, 40),
    addr: w2,
  };
}

/** Command opcodes (CMDQ_OP_*) the guest issues. */
export const CMD_OP = {
  CFGI_STE: 0x03,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  RESUME: 0x44,
  SYNC: 0x46,
} as const;
/** CMDQ_RESUME_0_RESP_*: terminate, retry, abort. */
export const RESUME_RESP = { TERM: 0, RETRY: 1, ABORT: 2 } as const;

/** Command - the two little-endian words of a command. */
export type Command = [bigint, bigint];

/** cmdCfgiSte() - CFGI_STE: the STE of stream @sid changed; @leaf: only that STE, not a level-1 descriptor. */
export function cmdCfgiSte(sid: number, leaf = true): Command {
  return [BigInt(CMD_OP.CFGI_STE) | (BigInt(sid >>> 0) << 32n), leaf ? 1n : 0n];
}

/** cmdCfgiCd() - CFGI_CD: the CD of (@sid, @ssid) changed; @leaf: only that CD, not its table descriptors. */
export function cmdCfgiCd(sid: number, ssid: number, leaf = true): Command {
  return [BigInt(CMD_OP.CFGI_CD) | (BigInt(ssid & 0xfffff) << 12n) | (BigInt(sid >>> 0) << 32n), leaf ? 1n : 0n];
}

/** cmdTlbiNhVa() - TLBI_NH_VA: one 4 KiB page @va of @asid; @leaf: only its leaf entry changed. */
export function cmdTlbiNhVa(asid: number, va: bigint, leaf = true): Command {
  return [BigInt(CMD_OP.TLBI_NH_VA) | (BigInt(asid & 0xffff) << 48n), (va & mask(63, 12)) | (leaf ? 1n : 0n)];
}

/** cmdResume() - CMD_RESUME of the stall @stag of stream @sid with @resp (RESUME_RESP). */
export function cmdResume(sid: number, stag: number, resp: number): Command {
  return [BigInt(CMD_OP.RESUME) | (BigInt(resp & 3) << 12n) | (BigInt(sid >>> 0) << 32n), BigInt(stag & 0xffff)];
}

/** cmdSync() - CMD_SYNC: completes once every command before it has. */
export function cmdSync(): Command {
  return [BigInt(CMD_OP.SYNC), 0n];
}

/** struct ParsedResume - a CMD_RESUME's fields. */
export interface ParsedResume {
  sid: number;
  stag: number;
  resp: number;
}

/** parseResume() - the fields of a CMD_RESUME @cmd. */
export function parseResume(cmd: Command): ParsedResume {
  return { sid: field(cmd[0], 63, 32), stag: field(cmd[1], 15, 0), resp: field(cmd[0], 13, 12) };
}

/** cmdSid() - the StreamID of a CFGI or RESUME command @cmd (CMDQ_CFGI_0_SID, CMDQ_RESUME_0_SID: 63:32). */
export function cmdSid(cmd: Command): number {
  return field(cmd[0], 63, 32);
}

/** cmdOpcode() - the opcode of @cmd. */
export function cmdOpcode(cmd: Command): number {
  return field(cmd[0], 7, 0);
}
