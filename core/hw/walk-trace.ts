/**
 * DOC: walk trace
 *
 * A diagnostic re-run of the translation walk of one (requester, PASID,
 * address, access) as the tables are now, recording each step: every
 * stage-1 level's entry with the stage-2 translation of the address it was
 * read from, then the stage-2 translation of the result. For an SMMUv3
 * nested context the stage-1 steps are the guest STE (held by the context),
 * the context descriptor of the SubstreamID and the AArch64 levels from
 * the CD's TTB0, each read through stage 2. It is run only
 * when asked (the observation feed's walk route) and has no side effect:
 * it never consults or fills the IOTLB, never writes an entry (no Accessed
 * or Dirty bit: the walker is given no writer), reads memory without
 * allocating it, and sends nothing.
 */
import type { SparseMemory } from './memory.js';
import type { Stage2Entry } from './stage2.js';
import type { ContextEntry } from './iommu-unit.js';
import { walkVtdS1, type S1Access, type S1Result } from './vtd-s1.js';
import { CD_SIZE, EVT_ID, STE_CFG_ABORT, decodeCd, smmuStage1, type SmmuSte } from './smmuv3.js';
import { lpaeStartLevel } from './arm-lpae.js';

/**
 * struct WalkS2Step - one stage-2 translation.
 * @gpa: the address translated (a table entry's, or the stage-1 result).
 * @hpa: the host address it maps to; undefined when stage 2 maps nothing there.
 * @read: stage 2 allows reads there.
 * @write: stage 2 allows writes there.
 */
export interface WalkS2Step {
  gpa: bigint;
  hpa: bigint | undefined;
  read: boolean;
  write: boolean;
}

/**
 * struct WalkS1Level - one stage-1 level of the walk.
 * @level: the SDM level (4 or 5 the root, 1 the 4 KiB level); SMMUv3: the
 *   Arm level (0, 1 or 2 the start level from T0SZ, 3 the 4 KiB level).
 * @entryGpa: where the entry was read (guest physical).
 * @s2: the stage-2 translation of @entryGpa (nested walks only).
 * @entry: the entry's value; undefined when stage 2 did not let it be read.
 */
export interface WalkS1Level {
  level: number;
  entryGpa: bigint;
  s2: WalkS2Step | undefined;
  entry: bigint | undefined;
}

/**
 * struct WalkSmmuCd - the SMMUv3 context descriptor fetch of a walk.
 * @index: the CD's index in the STE's table (the SubstreamID, or 0).
 * @entryGpa: where the CD was read (S1ContextPtr + index × 64).
 * @s2: the stage-2 translation of @entryGpa (both words sit in its page).
 * @words: CD words 0 and 1 (the rest is unused by the model); undefined
 *   when stage 2 did not let them be read.
 */
export interface WalkSmmuCd {
  index: number;
  entryGpa: bigint;
  s2: WalkS2Step | undefined;
  words: [bigint, bigint] | undefined;
}

/**
 * struct WalkTrace - the recorded walk.
 * @context: which stages the (requester, PASID) context entry has, or
 *   `none` when there is no context entry (the walk faults at once);
 *   `smmuv3`: a guest STE (SMMUv3 stage 1) over stage 2.
 * @ste: smmuv3: the guest STE's fields the walk uses.
 * @cd: smmuv3: the context descriptor read, when the walk got that far.
 * @t0sz: smmuv3: the CD's T0SZ (the input size is 64 - T0SZ bits).
 * @s1Root: the stage-1 root table address (smmuv3: the CD's TTB0); @addrWidth its address width (VT-d).
 * @s1: the stage-1 levels read, root first.
 * @s1Result: the stage-1 walker's outcome (absent without stage 1).
 * @s2: the stage-2 translation of the final address (of the stage-1
 *   result, or of the address itself without stage 1).
 * @result: `ok` with the host address, or the stage that faulted and why.
 */
export interface WalkTrace {
  context: 'none' | 's1' | 's2' | 'nested' | 'smmuv3';
  ste?: { config: number; s1ContextPtr: bigint; s1CdMax: number; s1dss: number };
  cd?: WalkSmmuCd;
  t0sz?: number;
  s1Root?: bigint;
  addrWidth?: 48 | 57;
  s1: WalkS1Level[];
  s1Result?: S1Result;
  s2?: WalkS2Step;
  result: { kind: 'ok'; hpa: bigint } | { kind: 'fault'; stage: 0 | 1 | 2; reason: string; level?: number };
}

/** s2Step() - the stage-2 translation of @gpa, as a record. */
function s2Step(entry: Stage2Entry | undefined, gpa: bigint): WalkS2Step {
  return entry ? { gpa, hpa: entry.hpa + (gpa & 0xfffn), read: entry.read, write: entry.write } : { gpa, hpa: undefined, read: false, write: false };
}

/**
 * traceWalk() - re-run the walk of @iova through @e and record it.
 * @e: the context entry of (requester, PASID), or undefined when none.
 * @mem: host memory, read only.
 * @iova: the address (a stage-1 VA, or an IOVA without stage 1).
 * @access: the access (write, exec, priv) whose permissions are checked.
 * @pasid: the request's PASID (SMMUv3: its SubstreamID), 0 or undefined for none.
 *
 * Return: the trace. Reads tables only; see the DOC above.
 */
export function traceWalk(e: ContextEntry | undefined, mem: SparseMemory, iova: bigint, access: S1Access, pasid?: number): WalkTrace {
  if (!e) return { context: 'none', s1: [], result: { kind: 'fault', stage: 0, reason: 'no context entry' } };
  if (e.smmu) return traceSmmu(e, e.smmu.ste, e.smmu.sid, mem, iova, access, pasid ? pasid : undefined);
  const s2 = e.s2;
  if (!e.s1) {
    if (!s2) return { context: 'none', s1: [], result: { kind: 'fault', stage: 0, reason: 'context entry without a stage' } };
    const step = s2Step(s2.lookup(iova), iova);
    return { context: 's2', s1: [], s2: step, result: finalResult(step, access.write) };
  }
  const s1 = e.s1;
  const levels: WalkS1Level[] = [];
  let level = s1.addrWidth === 57 ? 5 : 4;
  // The walker reads one entry per level, root first: record each read.
  const read = (gpa: bigint): bigint | undefined => {
    const step = s2 ? s2Step(s2.lookup(gpa), gpa) : undefined;
    const readable = step === undefined || (step.hpa !== undefined && step.read);
    const entry = readable ? mem.readU64(step?.hpa ?? gpa) : undefined;
    levels.push({ level: level--, entryGpa: gpa, s2: step, entry });
    return entry;
  };
  // The PASID entry's flags (SRE, WPE, EAFE) as the hardware walk uses them; no writer: no Accessed/Dirty bit.
  const r = walkVtdS1(read, s1.root, s1.addrWidth, iova, access, s1.flags);
  const trace: WalkTrace = {
    context: s2 ? 'nested' : 's1',
    s1Root: s1.root,
    addrWidth: s1.addrWidth,
    s1: levels,
    s1Result: r,
    result: { kind: 'ok', hpa: 0n },
  };
  if (r.kind === 's1-fault') trace.result = { kind: 'fault', stage: 1, reason: r.reason, level: r.level };
  else if (r.kind === 's2-fault') trace.result = { kind: 'fault', stage: 2, reason: 'table entry not readable in stage 2', level: r.level };
  else if (!s2) trace.result = { kind: 'ok', hpa: r.gpa };
  else {
    trace.s2 = s2Step(s2.lookup(r.gpa), r.gpa);
    trace.result = finalResult(trace.s2, access.write);
  }
  return trace;
}

/** finalResult() - ok, or the stage-2 fault of the last translation @step. */
function finalResult(step: WalkS2Step, write: boolean): WalkTrace['result'] {
  const stage = 2;
  if (step.hpa === undefined) return { kind: 'fault', stage, reason: 'not mapped' };
  if (!step.read) return { kind: 'fault', stage, reason: 'not readable' };
  if (write && !step.write) return { kind: 'fault', stage, reason: 'not writable' };
  return { kind: 'ok', hpa: step.hpa };
}

/** EVT_ID names by value, for the fault reasons of an SMMUv3 walk. */
const EVT_NAME: ReadonlyMap<number, string> = new Map(Object.entries(EVT_ID).map(([name, id]) => [id, name]));

/**
 * traceSmmu() - the SMMUv3 nested walk of @iova for stream @sid with
 * SubstreamID @ssid through the guest STE @ste, recorded. smmuStage1()
 * reads, in order, CD words 0 and 1 and then one descriptor per AArch64
 * level from the start level of the CD's T0SZ; each read is translated
 * through the context's stage 2 and recorded as such. A stage-1 fault's
 * reason is the event the unit would record (C_BAD_STE, C_BAD_CD,
 * F_TRANSLATION, …; a stage-2 miss on the CD or a descriptor is stage 2);
 * an abort STE ends the walk without an event.
 */
function traceSmmu(e: ContextEntry, ste: SmmuSte, sid: number, mem: SparseMemory, iova: bigint, access: S1Access, ssid: number | undefined): WalkTrace {
  const s2 = e.s2;
  const trace: WalkTrace = {
    context: 'smmuv3',
    ste: { config: ste.valid ? ste.cfg : STE_CFG_ABORT, s1ContextPtr: ste.s1ContextPtr, s1CdMax: ste.s1CdMax, s1dss: ste.s1dss },
    s1: [],
    result: { kind: 'ok', hpa: 0n },
  };
  const reads: Array<{ gpa: bigint; s2: WalkS2Step | undefined; value: bigint | undefined }> = [];
  const read = (gpa: bigint): bigint | undefined => {
    const step = s2 ? s2Step(s2.lookup(gpa), gpa) : undefined;
    const readable = step === undefined || (step.hpa !== undefined && step.read);
    const value = readable ? mem.readU64(step?.hpa ?? gpa) : undefined;
    reads.push({ gpa, s2: step, value });
    return value;
  };
  const r = smmuStage1(read, ste, sid, iova, { ...access, ssid });
  // The first reads (if any) are the CD's two words; the rest the table levels.
  const [w0, w1] = reads;
  if (w0) {
    const index = Number((w0.gpa - ste.s1ContextPtr) / CD_SIZE);
    trace.cd = { index, entryGpa: w0.gpa, s2: w0.s2, words: w0.value !== undefined && w1?.value !== undefined ? [w0.value, w1.value] : undefined };
    if (trace.cd.words) {
      const cd = decodeCd(trace.cd.words[0], trace.cd.words[1]);
      trace.t0sz = cd.t0sz;
      trace.s1Root = cd.ttb0;
      if (reads.length > 2) {
        let level = lpaeStartLevel(cd.t0sz);
        for (const d of reads.slice(2)) trace.s1.push({ level: level++, entryGpa: d.gpa, s2: d.s2, entry: d.value });
      }
    }
  }
  if (r.kind === 'abort') {
    trace.result = { kind: 'fault', stage: 1, reason: 'STE.Config abort: terminated without an event' };
    return trace;
  }
  if (r.kind === 'event') {
    const name = EVT_NAME.get(r.event.id) ?? `event 0x${r.event.id.toString(16)}`;
    const last = trace.s1.at(-1)?.level;
    if (r.event.s2) {
      const what = trace.s1.length > 0 ? 'table entry' : 'context descriptor';
      trace.result = { kind: 'fault', stage: 2, reason: `${name} (S2): ${what} not readable in stage 2`, ...(last !== undefined ? { level: last } : {}) };
    } else {
      const stalls = r.stallable && e.smmu?.stall === true ? ', stalls (CD.S)' : '';
      trace.result = { kind: 'fault', stage: 1, reason: `${name}${stalls}`, ...(last !== undefined ? { level: last } : {}) };
    }
    return trace;
  }
  if (!s2) {
    trace.result = { kind: 'ok', hpa: r.gpa };
    return trace;
  }
  trace.s2 = s2Step(s2.lookup(r.gpa), r.gpa);
  trace.result = finalResult(trace.s2, access.write);
  return trace;
}
