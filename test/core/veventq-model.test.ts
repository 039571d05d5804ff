/**
 * Model-based test of the vEVENTQ (fast-check): random interleavings of
 * reported events (through the SMMUv3 driver's arm_smmu_handle_event path),
 * reads of random sizes, depth and a sequence counter started near the wrap,
 * against a reference of the kernel's rules. Checked after every step: every
 * event is read at most once and in report order; every sequence number
 * skipped by the reader belongs to a dropped event and the skip ends at a
 * LOST_EVENTS header or at the next kept event, so no event is lost without
 * a LOST_EVENTS header standing for it; queued/lost counters agree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { iommufdDeviceAttach, iommufdHwptAlloc, iommufdVdeviceAlloc, iommufdVeventqAlloc, iommufdViommuAlloc } from '../../core/index.js';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { EVT_ID, STE_CFG_S1_TRANS, decodeEvent, encodeEvent, encodeSte } from '../../core/hw/smmuv3.js';
import { World } from './harness.js';

type Cmd = { kind: 'report'; n: number } | { kind: 'read'; max: number };

const SEQ_MOD = 0x8000_0000;

function setup(depth: number, startSeq: number) {
  const w = new World({ model: 'smmuv3' });
  const d = w.bind();
  const p = w.parent(d);
  const v = iommufdViommuAlloc(w.ctx, { type: 'arm_smmuv3', dev_id: d.id, hwpt_id: p.id });
  iommufdVdeviceAlloc(w.ctx, { viommu_id: v.id, dev_id: d.id, virt_id: 0x5n });
  const h = iommufdHwptAlloc(w.ctx, { dev_id: d.id, pt_id: v.id, data_type: 'arm_smmuv3', data: { ste: encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: 0x1000n }) } });
  iommufdDeviceAttach(d, h.id);
  const q = iommufdVeventqAlloc(w.ctx, { viommu_id: v.id, type: 'arm_smmuv3', depth });
  q.sequence = startSeq;
  const driver = w.platform.iommuDevice('d0').ops as SimIommu;
  const sid = w.platform.function('d0').rid;
  return { q, report: (tag: number) => driver.handleEvent(encodeEvent({ id: EVT_ID.F_TRANSLATION, sid, ssid: undefined, stag: 0, stall: false, priv: false, exec: false, read: true, s2: false, class: 2, addr: BigInt(tag) << 12n, ipa: 0n })) };
}

test('vEVENTQ model: no event lost without a LOST_EVENTS header; every event read at most once, in order', () => {
  const cmd: fc.Arbitrary<Cmd> = fc.oneof(
    fc.record({ kind: fc.constant('report' as const), n: fc.integer({ min: 1, max: 6 }) }),
    fc.record({ kind: fc.constant('read' as const), max: fc.integer({ min: 1, max: 8 }) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.constantFrom(0, SEQ_MOD - 3), fc.array(cmd, { maxLength: 60 }), (depth, startSeq, cmds) => {
      const { q, report } = setup(depth, startSeq);
      // Reference: the tag (report index) each sequence number was given, and whether it was kept.
      const seqOf: number[] = [];
      const kept = new Set<number>();
      let queuedKept = 0;
      let lostTotal = 0;
      let nextTag = 0;
      let lastReadTag = -1;
      let expectSeq: number | undefined;
      const readTags = new Set<number>();
      for (const c of cmds) {
        if (c.kind === 'report') {
          for (let i = 0; i < c.n; i++) {
            const tag = nextTag++;
            seqOf.push((startSeq + tag) % SEQ_MOD);
            assert.equal(report(tag), 0);
            if (queuedKept < depth) {
              kept.add(tag);
              queuedKept++;
            } else lostTotal++;
          }
        } else {
          const got = q.read(c.max);
          assert.ok(got.length <= c.max);
          for (const e of got) {
            if (e.data === undefined) {
              // LOST_EVENTS: its sequence is a dropped event's, after the last one read.
              assert.equal(e.flags, 1);
              const tag = seqOf.indexOf(e.sequence, lastReadTag + 1);
              assert.ok(tag > lastReadTag && !kept.has(tag), `header ${e.sequence} names a dropped event`);
              // Everything between the last read and it was dropped.
              for (let t = lastReadTag + 1; t <= tag; t++) assert.ok(!kept.has(t), `event ${t} kept but skipped`);
              lastReadTag = tag;
              expectSeq = (e.sequence + 1) % SEQ_MOD;
              continue;
            }
            const tag = Number(decodeEvent(e.data).addr >> 12n);
            assert.equal(decodeEvent(e.data).sid, 5);
            assert.ok(!readTags.has(tag), `event ${tag} read twice`);
            readTags.add(tag);
            assert.ok(kept.has(tag), `event ${tag} was dropped but read`);
            assert.ok(tag > lastReadTag, 'in order');
            assert.equal(e.sequence, seqOf[tag]);
            // A gap before a kept event: every skipped one was dropped (the header was taken out by this event).
            for (let t = lastReadTag + 1; t < tag; t++) assert.ok(!kept.has(t), `event ${t} kept but skipped`);
            if (expectSeq !== undefined && e.sequence !== expectSeq) assert.ok(tag - lastReadTag > 1, 'a sequence gap means dropped events');
            lastReadTag = tag;
            expectSeq = (e.sequence + 1) % SEQ_MOD;
            queuedKept--;
          }
        }
        assert.equal(q.numEvents, queuedKept);
        assert.equal(q.counters.lost, lostTotal);
        assert.equal(q.sequence, (startSeq + nextTag) % SEQ_MOD);
      }
      // Drain: every kept event not yet read comes now, and nothing kept is left unread.
      for (const e of q.read()) if (e.data) readTags.add(Number(decodeEvent(e.data).addr >> 12n));
      for (const t of kept) assert.ok(readTags.has(t), `kept event ${t} never read`);
      assert.equal(q.queued, 0);
    }),
    { numRuns: 200 },
  );
});
