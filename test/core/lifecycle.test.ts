/**
 * IOPF follows the fault-capable attachments (the protocol reference's IOPF
 * lifecycle): PRI at probe, the iopf queue from the first fault-capable
 * attach to the last, an SVA bind counting as one, and the kernel profiles
 * that did it differently.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iommufdDeviceAttach, iommufdDeviceDetach, iommufdDeviceReplace } from '../../core/index.js';
import { iopfPartialCount } from '../../core/iopf/io-pgfault.js';
import { World, HWPT_PASID, errnoOf } from './harness.js';

function onQueue(w: World, name = 'd0'): boolean {
  return w.platform.iommus.get('iommu0')!.driver.queue.devices.has(devOf(w, name));
}

function devOf(w: World, name = 'd0') {
  for (const d of w.platform.iommus.get('iommu0')!.driver.queue.devices) if (d.name === name) return d;
  return undefined as never;
}

test('iopf_queue_remove_device: a partial request does not survive the last fault-capable detach + re-attach', () => {
  const w = new World();
  const { d, f, h } = w.standard();
  const fd = w.fd(f);
  w.T(undefined, 9, false, 1, 0x1000n);
  iommufdDeviceDetach(d);
  assert.equal(onQueue(w), false);
  iommufdDeviceAttach(d, h.id);
  w.T(undefined, 9, true, 1, 0x2000n);
  const recs = fd.records();
  assert.deepEqual(
    recs.map((r) => r.addr),
    [0x2000n],
  );
  assert.deepEqual(w.audit(), { outstandingGroups: 1, unexpectedResponses: 0, iopfPending: 1, partials: 0, prq: 0, stalls: 0 });
});

test('intel_iommu_enable_iopf: on the iopf queue from the first fault-capable attach (RID or PASID) to the last; a plain attach does not count', () => {
  const w = new World();
  const d = w.bind();
  const f = w.fault();
  const p = w.parent(d);
  assert.equal(onQueue(w), false);
  const plain = w.nested(d, p, undefined, HWPT_PASID);
  iommufdDeviceAttach(d, plain.id);
  assert.equal(onQueue(w), false);
  const h = w.nested(d, p, f, HWPT_PASID);
  iommufdDeviceReplace(d, h.id);
  assert.equal(onQueue(w), true);
  iommufdDeviceAttach(d, h.id, 3);
  iommufdDeviceReplace(d, plain.id);
  assert.equal(onQueue(w), true, 'the PASID attachment still holds it');
  iommufdDeviceDetach(d, 3);
  assert.equal(onQueue(w), false);
  // Off the queue, a request meets no handler: INVALID (last), nothing stored (non-last).
  w.T(undefined, 4, false);
  w.T(undefined, 5, true);
  assert.deepEqual(w.log(), [{ pasid: undefined, grpid: 5, code: 'invalid' }]);
});

test('intel_iommu_enable_iopf: ENODEV when PRI could not be enabled at probe (no ATS), and nothing changes', () => {
  const w = new World({ devices: [{ name: 'd0', bdf: '00:02.0', caps: { ats: false } }] });
  const { d, p, h } = w.unattached();
  assert.equal(
    errnoOf(() => iommufdDeviceAttach(d, h.id)),
    'ENODEV',
  );
  assert.equal(d.attachments.size, 0);
  assert.equal(w.platform.deviceInfo('d0').pri_enabled, false);
  iommufdDeviceAttach(d, w.nested(d, p, undefined).id);
  assert.equal(d.attachments.size, 1);
  // The mock IOMMU has no such condition.
  const g = new World({ model: 'generic', devices: [{ name: 'd0', bdf: '00:02.0', caps: { ats: false } }] });
  const gd = g.bind();
  iommufdDeviceAttach(gd, g.nested(gd, g.parent(gd), g.fault()).id);
  assert.equal(gd.attachments.size, 1);
});

test('iommu_sva_bind_device: an SVA bind counts as a fault-capable attachment', () => {
  const w = new World();
  const vma = [{ start: 0x4000_0000n, length: 0x1000n, read: true, write: true, exec: false }];
  w.platform.bindSva('d0', 3, vma);
  assert.equal(onQueue(w), true);
  const { d } = w.standard();
  w.platform.unbindSva('d0', 3);
  assert.equal(onQueue(w), true, 'the RID attachment still holds it');
  iommufdDeviceDetach(d);
  assert.equal(onQueue(w), false);
  // Without PRI at probe, a bind is refused.
  const w2 = new World({ devices: [{ name: 'd0', bdf: '00:02.0', caps: { ats: false } }] });
  assert.equal(
    errnoOf(() => w2.platform.bindSva('d0', 3, vma)),
    'ENODEV',
  );
});

test('iommu_report_device_fault: the no-handler path answers the last request and leaves the stored partials alone', () => {
  const w = new World();
  const { f } = w.standard();
  const fd = w.fd(f);
  w.T(undefined, 9, false, 1, 0x1000n);
  // A PASID with no attachment (VT-d: no RID fallback): no handler.
  w.T(7, 9, true, 1, 0x3000n);
  assert.deepEqual(w.log(), [{ pasid: 7, grpid: 9, code: 'invalid' }]);
  assert.equal(iopfPartialCount(devOf(w)), 1);
  w.T(undefined, 9, true, 1, 0x2000n);
  assert.deepEqual(
    fd.records().map((r) => r.addr),
    [0x1000n, 0x2000n],
  );
});

test('iommufd_fault_iopf_enable (v6.11–v6.14): PRI itself follows the first and last fault-capable attach; EINVAL without "PRG Response PASID Required"', () => {
  const w = new World({ kernel: 'v6.14' });
  const d = w.bind();
  assert.equal(w.platform.deviceInfo('d0').pri_enabled, false);
  const f = w.fault();
  const p = w.parent(d);
  const h = w.nested(d, p, f);
  iommufdDeviceAttach(d, h.id);
  assert.equal(w.platform.deviceInfo('d0').pri_enabled, true);
  iommufdDeviceDetach(d);
  assert.equal(w.platform.deviceInfo('d0').pri_enabled, false);
  const w2 = new World({ kernel: 'v6.14', devices: [{ name: 'd0', bdf: '00:02.0', caps: { prg_response_needs_pasid: false } }] });
  const d2 = w2.bind();
  assert.equal(
    errnoOf(() => iommufdDeviceAttach(d2, w2.nested(d2, w2.parent(d2), w2.fault()).id)),
    'EINVAL',
  );
  // The latest kernel refuses the same device with ENODEV (PRI was not enabled at probe).
  const w3 = new World({ devices: [{ name: 'd0', bdf: '00:02.0', caps: { prg_response_needs_pasid: false } }] });
  const d3 = w3.bind();
  assert.equal(
    errnoOf(() => iommufdDeviceAttach(d3, w3.nested(d3, w3.parent(d3), w3.fault()).id)),
    'ENODEV',
  );
});

test('prq_event_thread (v6.11, intel/svm.c): every request without a PASID is a bad request', () => {
  for (const kernel of ['v6.11', 'v6.13']) {
    const w = new World({ kernel });
    const { f } = w.standard();
    const fd = w.fd(f);
    w.T(undefined, 2, true, 1);
    if (kernel === 'v6.11') {
      assert.deepEqual(w.log(), [{ pasid: undefined, grpid: 2, code: 'invalid' }]);
      assert.deepEqual(fd.records(), []);
    } else {
      assert.deepEqual(w.log(), []);
      assert.equal(fd.records().length, 1);
    }
  }
});

test('arm_smmu_page_response: INVALID and FAILURE both become CMD_RESUME abort; a stall has no PRI state to stop', () => {
  const w = new World({ model: 'smmuv3' });
  w.standard();
  w.platform.iommus.get('iommu0')!.driver.queue.inject.handler = () => true; // the core answers FAILURE
  w.T(undefined, 1, true);
  assert.deepEqual(w.log(), [{ pasid: undefined, grpid: 1, code: 'invalid' }]);
  const info = w.platform.deviceInfo('d0');
  assert.equal(info.pri_status.response_failure, false);
  assert.equal(info.pri_enabled, true);
  // The same FAILURE on VT-d is a Response Failure that stops PRI.
  const v = new World();
  v.standard();
  v.platform.iommus.get('iommu0')!.driver.queue.inject.handler = () => true;
  v.T(undefined, 1, true);
  assert.deepEqual(v.log(), [{ pasid: undefined, grpid: 1, code: 'failure' }]);
  assert.equal(v.platform.deviceInfo('d0').pri_status.response_failure, true);
});
