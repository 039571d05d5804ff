/**
 * The VT-d model against the kernel functions it follows: prq_event_thread()'s
 * filter order and intel_prq_report()'s flags, the host CPU's canonical check,
 * intel_pasid_setup_nested()'s stage-1 flags as the walker honours them, and
 * intel_nested_cache_invalidate_user()'s rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iommufdDeviceAttach, iommufdHwptAlloc, iommufdHwptInvalidate, IommuError, type IommufdHwpt } from '../../core/index.js';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { World, FAULT_ID_VALID, HWPT_PASID, errnoOf } from './harness.js';

const NEEDS_PASID = 4;
const PASID_VALID = 1;

function driverOf(w: World): SimIommu {
  return w.platform.iommus.get('iommu0')!.driver;
}

test('prq_event_thread: a Stop Marker without a PASID is dropped too (no response, not reported)', () => {
  const w = new World();
  const { f } = w.standard();
  const fd = w.fd(f);
  w.T(undefined, 5, true, 0);
  assert.deepEqual(fd.records(), []);
  assert.deepEqual(w.log(), []);
  assert.equal(driverOf(w).stats.stopMarkersDropped, 1);
  assert.equal(driverOf(w).stats.reported, 0);
});

test('prq_event_thread: the canonical check comes before the Stop Marker drop', () => {
  const w = new World();
  w.standard();
  // Last, R=W=0, PASID: a Stop Marker, but its address is not canonical: a bad request, answered.
  w.T(1, 6, true, 0, 0x0000_8000_0000_0000n);
  assert.deepEqual(w.log(), [{ pasid: 1, grpid: 6, code: 'invalid' }]);
  assert.equal(driverOf(w).stats.stopMarkersDropped, 0);
  // Privileged with Read, then Exec with Read: bad requests (answered when last, dropped when not).
  w.T(1, 7, true, 1 | 8);
  w.T(1, 8, true, 1 | 4);
  w.T(1, 9, false, 1 | 4);
  assert.deepEqual(w.log().slice(1), [
    { pasid: 1, grpid: 7, code: 'invalid' },
    { pasid: 1, grpid: 8, code: 'invalid' },
  ]);
  assert.equal(driverOf(w).stats.malformedAnswered, 3);
  assert.equal(driverOf(w).stats.malformedDropped, 1);
});

test('prq_event_thread: the canonical check follows the host CPU (host_va_bits 57: addresses above 2^47 are reported)', () => {
  for (const hostVaBits of [48, 57] as const) {
    const w = new World({ hostVaBits });
    const { f } = w.standard();
    const fd = w.fd(f);
    const addr = 0x00ab_cdef_1234_5000n; // canonical for 57 bits only
    w.T(undefined, 3, true, 1, addr);
    const recs = fd.records();
    if (hostVaBits === 48) {
      assert.deepEqual(recs, []);
      assert.deepEqual(w.log(), [{ pasid: undefined, grpid: 3, code: 'invalid' }]);
    } else {
      assert.equal(recs.length, 1);
      assert.equal(recs[0]!.addr, addr);
      assert.deepEqual(w.log(), []);
    }
    // Beyond 57 bits: refused by both.
    w.T(undefined, 4, true, 1, 0x0100_0000_0000_0000n);
    assert.deepEqual(w.log().at(-1), { pasid: undefined, grpid: 4, code: 'invalid' });
  }
  assert.throws(() => new World({ hostVaBits: 39 as 48 }), (e: unknown) => e instanceof IommuError && e.errno === 'EINVAL');
});

test('intel_prq_report: NEEDS_PASID with every PASID request; intel_iommu_enable_iopf: ENODEV without "PRG Response PASID Required"', () => {
  // Such a PASID-capable function gets no PRI at probe (iommu_enable_pci_pri), so no fault-capable attach.
  const w0 = new World({ devices: [{ name: 'd0', bdf: '00:02.0', caps: { prg_response_needs_pasid: false } }] });
  const d0 = w0.bind();
  const h0 = w0.nested(d0, w0.parent(d0), w0.fault(), HWPT_PASID);
  assert.equal(errnoOf(() => iommufdDeviceAttach(d0, h0.id, 5)), 'ENODEV');
  assert.equal(d0.attachments.size, 0);
  const w = new World();
  const d = w.bind();
  const f = w.fault();
  const p = w.parent(d);
  const h = w.nested(d, p, f, HWPT_PASID);
  iommufdDeviceAttach(d, h.id, 5);
  const fd = w.fd(f);
  w.T(5, 1, true, 1);
  const [r] = fd.records();
  assert.equal(r!.flags & (PASID_VALID | NEEDS_PASID), PASID_VALID | NEEDS_PASID);
});

/** A nested hwpt with a guest table, a translation cached in the IOTLB for @va. */
function nestedWithCachedVa(w: World): { h: IommufdHwpt; iotlbSize: () => number } {
  const d = w.bind();
  const p = w.parent(d);
  const h = w.nested(d, p, undefined);
  iommufdDeviceAttach(d, h.id);
  const unit = w.platform.iommus.get('iommu0')!.unit;
  // Plant two IOTLB entries of the nested domain directly: the invalidation, not a walk, is under test.
  const tag = (h as unknown as { domain: { id: number } }).domain.id;
  unit.iotlb.insert(tag, 0, 0x1000n, { hpa: 0x9000n, write: true, exec: false, user: true });
  unit.iotlb.insert(tag, 0, 0x7fff_ffff_f000n, { hpa: 0xa000n, write: true, exec: false, user: true });
  return { h, iotlbSize: () => unit.iotlb.size };
}

test('intel_nested_cache_invalidate_user: npages all-ones with addr 0 flushes all', () => {
  const w = new World();
  const { h, iotlbSize } = nestedWithCachedVa(w);
  assert.equal(iotlbSize(), 2);
  assert.equal(iommufdHwptInvalidate(w.ctx, h.id, [{ addr: 0x1000n, npages: 1 }]), 1);
  assert.equal(iotlbSize(), 1);
  assert.equal(iommufdHwptInvalidate(w.ctx, h.id, [{ addr: 0n, npages: 0xffff_ffff_ffff_ffffn }]), 1);
  assert.equal(iotlbSize(), 0);
});

test('intel_nested_cache_invalidate_user: LEAF accepted, other flags EOPNOTSUPP; unaligned addr and all-ones with addr ≠ 0 EINVAL; errors carry done', () => {
  const w = new World();
  const { h, iotlbSize } = nestedWithCachedVa(w);
  assert.equal(iommufdHwptInvalidate(w.ctx, h.id, [{ addr: 0x1000n, npages: 1, flags: 1 }]), 1);
  assert.equal(iotlbSize(), 1);
  // npages 0: the kernel does not refuse it; nothing is flushed.
  assert.equal(iommufdHwptInvalidate(w.ctx, h.id, [{ addr: 0x7fff_ffff_f000n, npages: 0 }]), 1);
  assert.equal(iotlbSize(), 1);
  const cases: Array<[Array<{ addr: bigint; npages: number | bigint; flags?: number }>, string, number]> = [
    [[{ addr: 0n, npages: 1 }, { addr: 0n, npages: 1, flags: 2 }], 'EOPNOTSUPP', 1],
    [[{ addr: 0n, npages: 1 }, { addr: 0n, npages: 1 }, { addr: 0x1800n, npages: 1 }], 'EINVAL', 2],
    [[{ addr: 0x1000n, npages: 0xffff_ffff_ffff_ffffn }], 'EINVAL', 0],
  ];
  for (const [entries, errno, done] of cases) {
    try {
      iommufdHwptInvalidate(w.ctx, h.id, entries);
      assert.fail('no error');
    } catch (e) {
      assert.ok(e instanceof IommuError);
      assert.equal(e.errno, errno);
      assert.equal(e.done, done);
    }
  }
});

test('intel_pasid_setup_nested: vtd_s1 flags SRE|EAFE|WPE accepted, other bits EOPNOTSUPP', () => {
  const w = new World();
  const d = w.bind();
  const p = w.parent(d);
  const alloc = (flags: number) =>
    iommufdHwptAlloc(w.ctx, { dev_id: d.id, pt_id: p.id, flags: 0, data_type: 'vtd_s1', data: { flags, pgtbl_addr: 0x1000n, addr_width: 48 } });
  const h = alloc(7);
  assert.equal(h.describe()['s1_flags'], 7);
  assert.equal(errnoOf(() => alloc(8)), 'EOPNOTSUPP');
  assert.equal(FAULT_ID_VALID, 4); // the hwpt flag, not a vtd_s1 flag
});
