/**
 * PCIe PRI on the SMMUv3 model, as upstream: the driver has no PRI support.
 * A function without the `stall` cap sends PCIe PRI page requests; each is
 * a PRI queue entry that arm_smmu_handle_ppr logs as unexpected and, when
 * last, answers CMD_PRI_RESP DENY (Invalid Request on the wire). Nothing
 * reaches the IOPF core. A function with `stall` presents the same request
 * as a stalled transaction (acceptance case 48).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iommufdDeviceAttach, iommufdHwptAlloc, type DmaResult } from '../../core/index.js';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { World, errnoOf, FAULT_ID_VALID } from './harness.js';

function driverOf(w: World): SimIommu {
  return w.platform.iommus.get('iommu0')!.driver;
}

/** A SMMUv3 world whose d0 has PRI (and PASID) but not the stall cap; d1 keeps the default (stall). */
function priWorld(): World {
  return new World({
    model: 'smmuv3',
    devices: [
      { name: 'd0', bdf: '00:02.0', caps: { stall: false } },
      { name: 'd1', bdf: '00:03.0' },
    ],
  });
}

test('arm_smmu_handle_ppr: a fault-capable attach of a PRI-only function is refused (ENODEV); its PRI requests are unexpected, each last one answered INVALID once, none delivered', () => {
  const w = priWorld();
  const { d, f, p, h } = w.unattached();
  assert.equal(
    errnoOf(() => iommufdDeviceAttach(d, h.id)),
    'ENODEV',
  );
  iommufdDeviceAttach(d, p.id);
  const fd = w.fd(f);

  w.T(undefined, 5, false, 1, 0x10000n);
  w.T(undefined, 5, false, 2, 0x11000n);
  assert.deepEqual(w.log(), [], 'a non-last request is never answered');
  w.T(undefined, 5, true, 3, 0x12000n);
  w.T(7, 6, true, 1, 0x13000n);
  w.T(7, 8, true, 0); // a Stop Marker: no response asked, none given
  w.T(undefined, 9, true, 1, 0x14000n);

  assert.deepEqual(w.log(), [
    { pasid: undefined, grpid: 5, code: 'invalid' },
    { pasid: 7, grpid: 6, code: 'invalid' },
    { pasid: undefined, grpid: 9, code: 'invalid' },
  ]);
  const { stats } = driverOf(w);
  assert.equal(stats.unexpectedPri, 6);
  assert.equal(stats.reported, 0, 'never fed to IOPF');
  assert.equal(f.queued, 0);
  assert.deepEqual(fd.records(), []);
  assert.deepEqual(w.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
  // DENY is Invalid Request, not Response Failure: PRI keeps running.
  assert.equal(w.platform.deviceInfo('d0').pri_status.response_failure, false);
});

test('arm_smmu_handle_ppr: a PRI request is answered whatever the function is attached to, bound or not', () => {
  const w = priWorld();
  w.T(undefined, 3, true, 1, 0x10000n);
  assert.deepEqual(w.log(), [{ pasid: undefined, grpid: 3, code: 'invalid' }]);
  assert.equal(driverOf(w).stats.unexpectedPri, 1);
  assert.equal(w.audit().outstandingGroups, 0);
});

test('arm_smmu_handle_ppr: a DMA of a PRI-only function that misses asks once and ends invalid; a stall-capable one stalls into IOPF instead', () => {
  const w = priWorld();
  const d0 = w.bind('d0');
  const ioas = w.ioas();
  const p0 = iommufdHwptAlloc(w.ctx, { dev_id: d0.id, pt_id: ioas.id });
  iommufdDeviceAttach(d0, p0.id);
  let result: DmaResult | undefined;
  w.platform.dma('d0', { pasid: undefined, iova: 0x40000n, length: 16, write: false, data: undefined, priv: false, exec: false, timeoutMs: 60_000 }, (r) => {
    assert.equal(result, undefined, 'done called once');
    result = r;
  });
  w.sched.run();
  assert.equal(result?.status, 'invalid');
  assert.equal(result?.pageRequests, 1);
  assert.equal(w.log().length, 1);
  assert.equal(w.log()[0]!.code, 'invalid');
  assert.equal(driverOf(w).stats.reported, 0);

  // d1 has the stall cap: the same miss, on a fault-capable hwpt, is a stall reported to the fault queue.
  const d1 = w.bind('d1');
  const f = w.fault();
  const h = iommufdHwptAlloc(w.ctx, { dev_id: d1.id, pt_id: w.ioas().id, flags: FAULT_ID_VALID, fault_id: f.id });
  iommufdDeviceAttach(d1, h.id);
  w.T(undefined, 4, true, 1, 0x10000n, 'd1');
  assert.equal(f.queued, 1);
  assert.deepEqual(w.log('d1'), []);
  assert.equal(driverOf(w).stats.unexpectedPri, 1, 'only the PRI-only function went through arm_smmu_handle_ppr');
});

test('the stall model needs no PRI: a stall-capable function without PRI stalls its missed DMA into the fault queue; its PRI stays off', () => {
  const w = new World({ model: 'smmuv3', devices: [{ name: 'd0', bdf: '00:02.0', caps: { pri: false } }] });
  const d = w.bind();
  const f = w.fault();
  const h = iommufdHwptAlloc(w.ctx, { dev_id: d.id, pt_id: w.ioas().id, flags: FAULT_ID_VALID, fault_id: f.id });
  iommufdDeviceAttach(d, h.id);
  assert.equal(w.platform.deviceInfo('d0').pri_enabled, false);
  const fd = w.fd(f);
  let result: DmaResult | undefined;
  w.platform.dma('d0', { pasid: undefined, iova: 0x40000n, length: 16, write: false, data: undefined, priv: false, exec: false, timeoutMs: 60_000 }, (r) => {
    result = r;
  });
  w.sched.run();
  assert.equal(result, undefined, 'stalled, waiting for CMD_RESUME');
  const [rec] = fd.records();
  assert.equal(rec?.addr, 0x40000n);
  fd.write([[rec!.cookie, 1]]);
  w.sched.run();
  assert.equal((result as DmaResult | undefined)?.status, 'invalid', 'aborted by CMD_RESUME, not pri_disabled');
  assert.equal(driverOf(w).stats.unexpectedPri, 0);
  assert.equal(w.audit().stalls, 0);
});
