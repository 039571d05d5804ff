/**
 * vIOMMU, vDEVICE and vEVENTQ as the kernel selftest (iommufd_viommu.*)
 * asserts them, plus the acceptance case for LOST_EVENTS (50), on the
 * manual scheduler: allocation rules and errnos, nested hwpts on a vIOMMU
 * with arm_smmu_validate_vste's rules, attach needing a vDEVICE, events read
 * with their virt_id, overflow with the LOST_EVENTS header and the sequence
 * gap, sequence wrap, the guest's invalidation commands, destroy order and
 * context release.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  iommufdDeviceAttach,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdHwptAlloc,
  iommufdVdeviceAlloc,
  iommufdVeventqAlloc,
  iommufdViommuAlloc,
  iommufdViommuInvalidate,
  type IommufdDevice,
  type IommufdHwpt,
  type IommufdVeventq,
  type IommufdViommu,
} from '../../core/index.js';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { EVT_ID, encodeSte, decodeEvent, STE_CFG_ABORT, STE_CFG_BYPASS, STE_CFG_S1_TRANS } from '../../core/hw/smmuv3.js';
import { CMDQ_OP } from '../../core/drivers/arm-vsmmu.js';
import { World, errnoOf, FAULT_ID_VALID, HWPT_PASID } from './harness.js';
import { smmuEvent } from './arm-events.js';

const S1_STE = encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: 0x10_0000n });

interface Arm {
  w: World;
  d: IommufdDevice;
  p: IommufdHwpt;
  v: IommufdViommu;
  driver: SimIommu;
  sid: number;
}

function arm(): Arm {
  const w = new World({ model: 'smmuv3' });
  const d = w.bind();
  const p = w.parent(d);
  const v = iommufdViommuAlloc(w.ctx, { type: 'arm_smmuv3', dev_id: d.id, hwpt_id: p.id });
  const driver = w.platform.iommuDevice('d0').ops as SimIommu;
  return { w, d, p, v, driver, sid: w.platform.function('d0').rid };
}

function nestedOn(a: Arm, ste: readonly [bigint, bigint] = S1_STE, flags = 0, faultId?: number): IommufdHwpt {
  return iommufdHwptAlloc(a.w.ctx, {
    dev_id: a.d.id,
    pt_id: a.v.id,
    flags,
    data_type: 'arm_smmuv3',
    data: { ste },
    ...(faultId !== undefined ? { fault_id: faultId } : {}),
  });
}

const event = smmuEvent;

/** D attached to a translating nested hwpt through vDEVICE 0x99, with a vEVENTQ of @depth. */
function attached(depth = 8): Arm & { q: IommufdVeventq; h: IommufdHwpt } {
  const a = arm();
  iommufdVdeviceAlloc(a.w.ctx, { viommu_id: a.v.id, dev_id: a.d.id, virt_id: 0x99n });
  const h = nestedOn(a);
  iommufdDeviceAttach(a.d, h.id);
  const q = iommufdVeventqAlloc(a.w.ctx, { viommu_id: a.v.id, type: 'arm_smmuv3', depth });
  return { ...a, q, h };
}

test('viommu alloc: arm_smmuv3 on a nest parent of an SMMUv3 device; ENOENT, EINVAL, EOPNOTSUPP otherwise', () => {
  const a = arm();
  assert.equal(a.v.type, 'viommu');
  assert.equal(a.p.users, 1);
  const ctx = a.w.ctx;
  assert.equal(
    errnoOf(() => iommufdViommuAlloc(ctx, { type: 'arm_smmuv3', dev_id: 999, hwpt_id: a.p.id })),
    'ENOENT',
  );
  assert.equal(
    errnoOf(() => iommufdViommuAlloc(ctx, { type: 'arm_smmuv3', dev_id: a.d.id, hwpt_id: 999 })),
    'ENOENT',
  );
  const plain = iommufdHwptAlloc(ctx, { dev_id: a.d.id, pt_id: a.w.ioas().id });
  assert.equal(
    errnoOf(() => iommufdViommuAlloc(ctx, { type: 'arm_smmuv3', dev_id: a.d.id, hwpt_id: plain.id })),
    'EINVAL',
  );
  assert.equal(
    errnoOf(() => iommufdViommuAlloc(ctx, { type: 'arm_smmuv3', dev_id: a.d.id, hwpt_id: a.p.id, flags: 1 })),
    'EOPNOTSUPP',
  );
  // A VT-d model IOMMU has no vIOMMU.
  const x = new World();
  const dx = x.bind();
  const px = x.parent(dx);
  assert.equal(
    errnoOf(() => iommufdViommuAlloc(x.ctx, { type: 'arm_smmuv3', dev_id: dx.id, hwpt_id: px.id })),
    'EOPNOTSUPP',
  );
  assert.equal(x.ctx.objects().length, 3);
});

test('vdevice alloc: EEXIST for a taken virt_id or a device that has one; ENOENT for bad ids; it may go while the device stays attached', () => {
  const a = arm();
  const ctx = a.w.ctx;
  const d1 = a.w.bind('d1');
  const vd = iommufdVdeviceAlloc(ctx, { viommu_id: a.v.id, dev_id: a.d.id, virt_id: 0x99n });
  assert.equal(
    errnoOf(() => iommufdVdeviceAlloc(ctx, { viommu_id: a.v.id, dev_id: d1.id, virt_id: 0x99n })),
    'EEXIST',
  );
  assert.equal(
    errnoOf(() => iommufdVdeviceAlloc(ctx, { viommu_id: a.v.id, dev_id: a.d.id, virt_id: 0x98n })),
    'EEXIST',
  );
  assert.equal(
    errnoOf(() => iommufdVdeviceAlloc(ctx, { viommu_id: 999, dev_id: d1.id, virt_id: 1n })),
    'ENOENT',
  );
  assert.equal(
    errnoOf(() => iommufdVdeviceAlloc(ctx, { viommu_id: a.v.id, dev_id: 999, virt_id: 1n })),
    'ENOENT',
  );
  iommufdVdeviceAlloc(ctx, { viommu_id: a.v.id, dev_id: d1.id, virt_id: 0x98n });
  const h = nestedOn(a);
  iommufdDeviceAttach(a.d, h.id);
  ctx.destroyObject(vd.id);
  assert.deepEqual(a.d.attachments.size, 1);
  // The virt_id is free again, the device may take a new one.
  iommufdVdeviceAlloc(ctx, { viommu_id: a.v.id, dev_id: a.d.id, virt_id: 0x99n });
});

test('nested hwpt on a vIOMMU: the STE as arm_smmu_validate_vste (EIO), flags (EOPNOTSUPP), data type (EINVAL), fault_id (ENOENT, nothing left)', () => {
  const a = arm();
  const ctx = a.w.ctx;
  const before = ctx.objects().length;
  const bad: Array<readonly [bigint, bigint]> = [
    [S1_STE[0] | (1n << 56n), S1_STE[1]],
    [S1_STE[0], S1_STE[1] | (1n << 8n)],
    encodeSte({ cfg: 6 }),
    encodeSte({ cfg: 7 }),
    encodeSte({ cfg: STE_CFG_S1_TRANS, eats: 2 }),
  ];
  for (const ste of bad)
    assert.equal(
      errnoOf(() => nestedOn(a, ste)),
      'EIO',
      `STE ${ste.map((x) => x.toString(16)).join(',')}`,
    );
  assert.equal(
    errnoOf(() => nestedOn(a, S1_STE, HWPT_PASID)),
    'EOPNOTSUPP',
  );
  assert.equal(
    errnoOf(() => nestedOn(a, S1_STE, FAULT_ID_VALID | (1 << 31), a.w.fault().id)),
    'EOPNOTSUPP',
  );
  assert.equal(
    errnoOf(() => nestedOn(a, S1_STE, FAULT_ID_VALID, 0xffff_ffff)),
    'ENOENT',
  );
  assert.equal(
    errnoOf(() => iommufdHwptAlloc(ctx, { dev_id: a.d.id, pt_id: a.v.id, data_type: 'vtd_s1', data: { flags: 0, pgtbl_addr: 0n, addr_width: 48 } })),
    'EINVAL',
  );
  assert.equal(ctx.objects().length, before + 1, 'only the fault queue was added');
  // V clear, abort, bypass and S1 with full ATS are all fine.
  for (const ste of [
    [0n, 0n] as const,
    encodeSte({ cfg: STE_CFG_ABORT }),
    encodeSte({ cfg: STE_CFG_BYPASS }),
    encodeSte({ cfg: STE_CFG_S1_TRANS, eats: 1, s1CdMax: 4, s1dss: 2, s1StallD: true }),
  ]) {
    assert.equal(nestedOn(a, ste).type, 'hwpt_nested');
  }
  // Each nested hwpt holds the vIOMMU.
  assert.equal(a.v.users, 4);
});

test('attach: a translating nested STE needs the vDEVICE (ENOENT, nothing changes); abort/bypass attach without one (selftest viommu_alloc_nested_iopf)', () => {
  const a = arm();
  const ctx = a.w.ctx;
  const f = a.w.fault();
  const h = nestedOn(a, S1_STE, FAULT_ID_VALID, f.id);
  const s2 = iommufdHwptAlloc(ctx, { dev_id: a.d.id, pt_id: a.w.ioas().id });
  iommufdDeviceAttach(a.d, s2.id);
  assert.equal(
    errnoOf(() => iommufdDeviceReplace(a.d, h.id)),
    'ENOENT',
  );
  assert.equal(a.d.attachments.get(0)!.hwpt, s2);
  iommufdVdeviceAlloc(ctx, { viommu_id: a.v.id, dev_id: a.d.id, virt_id: 0x99n });
  iommufdDeviceReplace(a.d, h.id);
  assert.equal(
    errnoOf(() => ctx.destroyObject(h.id)),
    'EBUSY',
  );
  // Trigger IOPF: a stall event of the device becomes a one-record group; read it and answer.
  assert.equal(a.driver.handleEvent(event(a.sid, EVT_ID.F_TRANSLATION, { stall: true, stag: 0x17, ssid: 3, read: false })), 0);
  const fd = a.w.fd(f);
  const [r, ...more] = fd.records();
  assert.equal(more.length, 0);
  assert.deepEqual(
    { flags: r!.flags, pasid: r!.pasid, grpid: r!.grpid, perm: r!.perm, addr: r!.addr },
    { flags: 3, pasid: 3, grpid: 0x17, perm: 2, addr: 0x1234_5000n },
  );
  assert.equal(fd.write([[r!.cookie, 0]]), 8);
  iommufdDeviceReplace(a.d, s2.id);
  ctx.destroyObject(h.id);
  fd.close();
  ctx.destroyObject(f.id);
  // Abort and bypass STEs attach with no vDEVICE.
  const b = arm();
  for (const cfg of [STE_CFG_ABORT, STE_CFG_BYPASS]) {
    const hb = nestedOn(b, encodeSte({ cfg }));
    iommufdDeviceAttach(b.d, hb.id);
    iommufdDeviceDetach(b.d);
  }
});

test('veventq alloc: depth ≥ 1 (EINVAL), one per type (EEXIST), ENOENT for a bad vIOMMU, EOPNOTSUPP for flags', () => {
  const a = arm();
  const ctx = a.w.ctx;
  assert.equal(
    errnoOf(() => iommufdVeventqAlloc(ctx, { viommu_id: a.v.id, type: 'arm_smmuv3', depth: 0 })),
    'EINVAL',
  );
  assert.equal(
    errnoOf(() => iommufdVeventqAlloc(ctx, { viommu_id: 999, type: 'arm_smmuv3', depth: 2 })),
    'ENOENT',
  );
  assert.equal(
    errnoOf(() => iommufdVeventqAlloc(ctx, { viommu_id: a.v.id, type: 'arm_smmuv3', depth: 2, flags: 1 })),
    'EOPNOTSUPP',
  );
  const q = iommufdVeventqAlloc(ctx, { viommu_id: a.v.id, type: 'arm_smmuv3', depth: 2 });
  assert.equal(
    errnoOf(() => iommufdVeventqAlloc(ctx, { viommu_id: a.v.id, type: 'arm_smmuv3', depth: 2 })),
    'EEXIST',
  );
  ctx.destroyObject(q.id);
  iommufdVeventqAlloc(ctx, { viommu_id: a.v.id, type: 'arm_smmuv3', depth: 2 });
});

test('vEVENTQ: a stage-1 event of an attached device is read once with its vSID in place of the SID, the rest of the record untouched', () => {
  const a = attached();
  const evt = event(a.sid, EVT_ID.F_PERMISSION, { ssid: 5, addr: 0xabc_d000n });
  assert.equal(a.driver.handleEvent(evt), 0);
  const [e, ...rest] = a.q.read();
  assert.equal(rest.length, 0);
  assert.equal(e!.flags, 0);
  assert.equal(e!.sequence, 0);
  const got = decodeEvent(e!.data!);
  assert.equal(got.sid, 0x99);
  assert.deepEqual({ ...got, sid: a.sid }, decodeEvent(evt));
  assert.deepEqual(a.q.read(), [], 'read consumes');
  assert.deepEqual(a.q.counters, { reported: 1, read: 1, lost: 0 });
});

test('vEVENTQ: only the events arm_smmu_handle_event forwards, with S2 clear, of a device with a vmaster', () => {
  const a = attached();
  for (const id of [
    EVT_ID.C_BAD_STE,
    EVT_ID.F_STREAM_DISABLED,
    EVT_ID.C_BAD_SUBSTREAMID,
    EVT_ID.C_BAD_CD,
    EVT_ID.F_TRANSLATION,
    EVT_ID.F_ADDR_SIZE,
    EVT_ID.F_ACCESS,
    EVT_ID.F_PERMISSION,
  ]) {
    assert.equal(a.driver.handleEvent(event(a.sid, id)), 0);
  }
  for (const id of [EVT_ID.F_CD_FETCH, EVT_ID.F_WALK_EABT, 0x20]) assert.notEqual(a.driver.handleEvent(event(a.sid, id)), 0);
  assert.notEqual(a.driver.handleEvent(event(a.sid, EVT_ID.F_TRANSLATION, { s2: true, class: 1 })), 0);
  assert.notEqual(a.driver.handleEvent(event(0x7777)), 0, 'unknown SID');
  const ids = a.q.read().map((e) => decodeEvent(e.data!).id);
  assert.deepEqual(ids, [0x04, 0x06, 0x08, 0x0a, 0x10, 0x11, 0x12, 0x13]);
  // A device on a plain stage-2 hwpt has no vmaster: its events stay the host's.
  iommufdDeviceReplace(a.d, a.p.id);
  assert.notEqual(a.driver.handleEvent(event(a.sid)), 0);
  assert.equal(a.q.queued, 0);
  assert.equal(a.driver.unhandledEvents.get(EVT_ID.F_TRANSLATION), 3);
});

test('vEVENTQ (case 50): depth 2, three events → 0, 1 and a LOST_EVENTS header with 2; the next event gets 3', () => {
  const a = attached(2);
  for (let i = 0; i < 3; i++) a.driver.handleEvent(event(a.sid));
  assert.equal(a.q.queued, 3);
  const got = a.q.read();
  assert.deepEqual(
    got.map((e) => [e.flags, e.sequence, e.data === undefined]),
    [
      [0, 0, false],
      [0, 1, false],
      [1, 2, true],
    ],
  );
  a.driver.handleEvent(event(a.sid));
  assert.deepEqual(
    a.q.read().map((e) => [e.flags, e.sequence]),
    [[0, 3]],
  );
  assert.deepEqual(a.q.counters, { reported: 4, read: 3, lost: 1 });
});

test('vEVENTQ (case 50): a fourth event before the read moves the header to 3, and the next kept event gets 4 (the gap shows the loss)', () => {
  const a = attached(2);
  for (let i = 0; i < 4; i++) a.driver.handleEvent(event(a.sid));
  assert.deepEqual(
    a.q.read().map((e) => [e.flags, e.sequence]),
    [
      [0, 0],
      [0, 1],
      [1, 3],
    ],
  );
  a.driver.handleEvent(event(a.sid));
  assert.deepEqual(
    a.q.read().map((e) => [e.flags, e.sequence]),
    [[0, 4]],
  );
  // Read one of two, then one more event: the header (if any) is gone, the event is kept.
  for (let i = 0; i < 3; i++) a.driver.handleEvent(event(a.sid));
  assert.deepEqual(
    a.q.read(1).map((e) => e.sequence),
    [5],
  );
  a.driver.handleEvent(event(a.sid));
  assert.deepEqual(
    a.q.read().map((e) => [e.flags, e.sequence]),
    [
      [0, 6],
      [0, 8],
    ],
  );
});

test('vEVENTQ: the sequence wraps from 2^31 - 1 to 0', () => {
  const a = attached();
  a.q.sequence = 0x7fff_fffe;
  for (let i = 0; i < 3; i++) a.driver.handleEvent(event(a.sid));
  assert.deepEqual(
    a.q.read().map((e) => e.sequence),
    [0x7fff_fffe, 0x7fff_ffff, 0],
  );
});

test('viommu invalidate: accepted commands run; an unknown vSID or another opcode is EIO, processing stops there and done counts the ones before', () => {
  const a = attached();
  const ctx = a.w.ctx;
  const cmd = (op: number, hi = 0n, w1 = 0n): [bigint, bigint] => [BigInt(op) | hi, w1];
  const good = [
    cmd(CMDQ_OP.TLBI_NSNH_ALL),
    cmd(CMDQ_OP.TLBI_NH_ALL),
    cmd(CMDQ_OP.TLBI_NH_ASID, 7n << 48n),
    cmd(CMDQ_OP.TLBI_NH_VA, 7n << 48n, 0x1000n),
    cmd(CMDQ_OP.TLBI_NH_VAA, 0n, 0x2000n | (1n << 10n)),
    cmd(CMDQ_OP.CFGI_CD, 0x99n << 32n),
    cmd(CMDQ_OP.CFGI_CD_ALL, 0x99n << 32n),
    cmd(CMDQ_OP.ATC_INV, 0x99n << 32n),
  ];
  assert.deepEqual(iommufdViommuInvalidate(ctx, a.v.id, 'arm_smmuv3', good), { done: 8 });
  const r1 = iommufdViommuInvalidate(ctx, a.v.id, 'arm_smmuv3', [good[0]!, cmd(CMDQ_OP.CFGI_CD, 0x98n << 32n), good[1]!]);
  assert.equal(r1.done, 1);
  assert.equal(r1.error?.errno, 'EIO');
  for (const op of [0x01, 0x03, 0x04, 0x20, 0x28, 0x44, 0x46]) {
    const r = iommufdViommuInvalidate(ctx, a.v.id, 'arm_smmuv3', [good[0]!, good[1]!, cmd(op, 0x99n << 32n)]);
    assert.deepEqual([r.done, r.error?.errno], [2, 'EIO'], `opcode 0x${op.toString(16)}`);
  }
  assert.deepEqual(iommufdViommuInvalidate(ctx, a.v.id, 'arm_smmuv3', []), { done: 0 });
  assert.equal(
    errnoOf(() => iommufdViommuInvalidate(ctx, 999, 'arm_smmuv3', good)),
    'ENOENT',
  );
});

test('destroy order: a vIOMMU with a vDEVICE, a vEVENTQ or a nested hwpt is EBUSY; leaves first it goes; release and unbind take everything', () => {
  const a = attached();
  const ctx = a.w.ctx;
  const vd = ctx.objects().find((o) => o.type === 'vdevice')!;
  assert.equal(
    errnoOf(() => ctx.destroyObject(a.v.id)),
    'EBUSY',
  );
  assert.equal(
    errnoOf(() => ctx.destroyObject(a.p.id)),
    'EBUSY',
  );
  ctx.destroyObject(vd.id);
  ctx.destroyObject(a.q.id);
  assert.equal(
    errnoOf(() => ctx.destroyObject(a.v.id)),
    'EBUSY',
    'the attached nested hwpt holds it',
  );
  iommufdDeviceDetach(a.d);
  ctx.destroyObject(a.h.id);
  ctx.destroyObject(a.v.id);
  ctx.destroyObject(a.p.id);
  // Unbinding a device takes its vDEVICE with it.
  const b = attached();
  b.w.ctx.destroyObject(b.d.id);
  assert.equal(
    b.w.ctx.objects().some((o) => o.type === 'vdevice'),
    false,
  );
  assert.equal(b.v.vdevs.size, 0);
  // Release with everything in place.
  const c = attached();
  c.driver.handleEvent(event(c.sid));
  c.w.platform.releaseContext(c.w.ctx.id);
  assert.equal(c.w.ctx.objectCount, 0);
  assert.equal(c.driver.vmasters.size, 0);
});
