/**
 * DOC: walk trace
 *
 * A diagnostic re-run of the translation walk of one (requester, PASID,
 * address, access) as the tables are now, recording each step: every
 * stage-1 level's entry with the stage-2 translation of the address it was
 * read from, then the stage-2 translation of the result. It is run only
 * when asked (the observation feed's walk route) and has no side effect:
 * it never consults or fills the IOTLB, never writes an entry (no Accessed
 * or Dirty bit: the walker is given no writer), reads memory without
 * allocating it, and sends nothing.
 */
import type { SparseMemory } from './memory.js';
import type { Stage2Entry } from './stage2.js';
import type { ContextEntry } from './iommu-unit.js';
import { walkVtdS1, type S1Access, type S1Result } from './vtd-s1.js';

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
 * @level: the SDM level (4 or 5 the root, 1 the 4 KiB level).
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
 * struct WalkTrace - the recorded walk.
 * @context: which stages the (requester, PASID) context entry has, or
 *   `none` when there is no context entry (the walk faults at once).
 * @s1Root: the stage-1 root table address; @addrWidth its address width.
 * @s1: the stage-1 levels read, root first.
 * @s1Result: the stage-1 walker's outcome (absent without stage 1).
 * @s2: the stage-2 translation of the final address (of the stage-1
 *   result, or of the address itself without stage 1).
 * @result: `ok` with the host address, or the stage that faulted and why.
 */
export interface WalkTrace {
  context: 'none' | 's1' | 's2' | 'nested';
  s1Root?: bigint;
  addrWidth?: 48 | 57;
  s1: WalkS1Level[];
  s1Result?: S1Result;
  s2?: WalkS2Step;
  result: { kind: 'ok'; hpa: bigint } | { kind: 'fault'; stage: 0 | 1 | 2; reason: string; level?: number };
}

/** s2Step() - the stage-2 translation of @gpa, as a record. */
function s2Step(entry: Stage2Entry | undefined, gpa: bigint): WalkS2Step {
  return entry
    ? { gpa, hpa: entry.hpa + (gpa & 0xfffn), read: entry.read, write: entry.write }
    : { gpa, hpa: undefined, read: false, write: false };
}

/**
 * traceWalk() - re-run the walk of @iova through @e and record it.
 * @e: the context entry of (requester, PASID), or undefined when none.
 * @mem: host memory, read only.
 * @iova: the address (a stage-1 VA, or an IOVA without stage 1).
 * @access: the access (write, exec, priv) whose permissions are checked.
 *
 * Return: the trace. Reads tables only; see the DOC above.
 */
export function traceWalk(e: ContextEntry | undefined, mem: SparseMemory, iova: bigint, access: S1Access): WalkTrace {
  if (!e) return { context: 'none', s1: [], result: { kind: 'fault', stage: 0, reason: 'no context entry' } };
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
  const trace: WalkTrace = { context: s2 ? 'nested' : 's1', s1Root: s1.root, addrWidth: s1.addrWidth, s1: levels, s1Result: r, result: { kind: 'ok', hpa: 0n } };
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
