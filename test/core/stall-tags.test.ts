/**
 * SMMUv3 stall tags run out: a tag is not reused before its CMD_RESUME, so
 * with every tag in use a request of a stall-capable function is terminated
 * (answered INVALID by the unit) instead of stalled, and every request that
 * needs a response still gets exactly one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iommufdDeviceAttach, iommufdHwptAlloc, type DmaResult } from '../../core/index.js';
import { STAG_SPACE, type IommuUnit } from '../../core/hw/iommu-unit.js';
import { World, FAULT_ID_VALID, type Fd } from './harness.js';

/** A stall-capable d0 on an SMMUv3 IOMMU, attached to a fault-capable paging hwpt on an empty IOAS. */
function stallWorld(): { w: World; fd: Fd; unit: IommuUnit } {
  const w = new World({ model: 'smmuv3', devices: [{ name: 'd0', bdf: '00:02.0' }] });
  const d = w.bind();
  const f = w.fault();
  iommufdDeviceAttach(d, iommufdHwptAlloc(w.ctx, { dev_id: d.id, pt_id: w.ioas().id, flags: FAULT_ID_VALID, fault_id: f.id }).id);
  return { w, fd: w.fd(f, 1 << 20), unit: w.platform.iommus.get('iommu0')!.unit };
}

/** Read every queued record and answer each group @code, in batches. */
function answerAll(w: World, fd: Fd, code = 0): number {
  let n = 0;
  for (let recs = fd.records(40 * 4096); recs.length > 0; recs = fd.records(40 * 4096)) {
    fd.write(recs.map((r) => [r.cookie, code]));
    w.sched.run();
    n += recs.length;
  }
  return n;
}

/** How many log entries each grpid has. */
function countByGrpid(log: ReadonlyArray<{ grpid: number }>): Map<number, number> {
  const m = new Map<number, number>();
  for (const e of log) m.set(e.grpid, (m.get(e.grpid) ?? 0) + 1);
  return m;
}

test('stall tags: with all 65,536 in use, further stalls are terminated INVALID at once; every request gets exactly one response', () => {
  const { w, fd, unit } = stallWorld();
  const extra = 300;
  const n = STAG_SPACE + extra;
  const sent = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const prgi = i % 512;
    sent.set(prgi, (sent.get(prgi) ?? 0) + 1);
    w.T(undefined, prgi, true, 1, BigInt(0x10_0000 + i * 4096));
    if (i % 64 === 63) w.sched.run();
  }
  w.sched.run();
  assert.equal(unit.stallCount, STAG_SPACE, 'every tag holds a stall');
  assert.equal(unit.stallsTerminated, extra);
  const early = w.log();
  assert.equal(early.length, extra, 'the terminated ones are answered before any resume');
  assert.ok(early.every((e) => e.code === 'invalid'));

  assert.equal(answerAll(w, fd), STAG_SPACE, 'only the stalled ones reach the fault queue');
  const log = w.log();
  assert.equal(log.length, n);
  assert.equal(log.filter((e) => e.code === 'success').length, STAG_SPACE);
  assert.deepEqual(countByGrpid(log), sent, 'one response per request, for its PRG index');
  assert.deepEqual(w.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
});

test('stall tags: a group with a terminated request is answered once, INVALID, when its last stall is resumed; tags are free again after the resume', () => {
  const { w, fd, unit } = stallWorld();
  unit.stagSpace = 2;
  // Group 7: two stalls take both tags; its last request finds none.
  w.T(undefined, 7, false, 1, 0x1000n);
  w.T(undefined, 7, false, 1, 0x2000n);
  w.T(undefined, 7, true, 1, 0x3000n);
  w.sched.run();
  assert.equal(unit.stallsTerminated, 1);
  assert.deepEqual(w.log(), [], 'not answered while two of its requests are stalled');
  assert.equal(answerAll(w, fd), 2);
  assert.deepEqual(w.log(), [{ pasid: undefined, grpid: 7, code: 'invalid' }]);

  // Group 8: its first request finds no tag (group 9 holds both); its last one stalls.
  w.T(undefined, 9, false, 1, 0x4000n);
  w.T(undefined, 9, true, 1, 0x5000n);
  w.T(undefined, 8, false, 1, 0x6000n);
  assert.equal(unit.stallsTerminated, 2);
  assert.equal(answerAll(w, fd), 2);
  w.T(undefined, 8, true, 1, 0x7000n);
  assert.equal(unit.stallsTerminated, 2, 'a tag was free again');
  assert.equal(answerAll(w, fd), 1);
  assert.deepEqual(
    w.log().slice(1),
    [
      { pasid: undefined, grpid: 9, code: 'success' },
      { pasid: undefined, grpid: 8, code: 'invalid' },
    ],
    'group 8 keeps its terminated request’s INVALID',
  );
  assert.deepEqual(w.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
});

test('stall tags: a DMA that faults while every tag is in use ends invalid after one page request; the held stall is answered later', () => {
  const { w, fd, unit } = stallWorld();
  unit.stagSpace = 1;
  w.T(undefined, 1, true, 1, 0x1000n);
  w.sched.run();
  let result: DmaResult | undefined;
  w.platform.dma('d0', { pasid: undefined, iova: 0x40000n, length: 16, write: false, data: undefined, priv: false, exec: false, timeoutMs: 60_000 }, (r) => {
    result = r;
  });
  w.sched.run();
  assert.equal(result?.status, 'invalid');
  assert.equal(result?.pageRequests, 1);
  assert.equal(answerAll(w, fd), 1);
  assert.deepEqual(
    w.log().map((e) => e.code),
    ['invalid', 'success'],
  );
  assert.deepEqual(w.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
});
