/**
 * The SMMUv3 nested path end to end in the core, with real table bytes: the
 * guest writes its STE's CD table and AArch64 tables into its own RAM (an
 * IOAS), the device's DMA walks them through stage 2, and a stage-1 fault
 * either stalls into the hwpt's fault queue (CD.S on a stall-capable device)
 * or terminates as an event on the vIOMMU's vEVENTQ with the vSID; stage-2
 * faults stay the host's; the guest's TLBI goes through the vIOMMU.
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
  type DmaResult,
  type IommufdFault,
  type IommufdIoas,
  type IommufdVeventq,
  type IommufdViommu,
} from '../../core/index.js';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { ArmLpaeBuilder } from '../../core/hw/arm-lpae.js';
import { CD_SIZE, EVT_ID, decodeEvent, encodeCd, encodeSte, STE_CFG_ABORT, STE_CFG_S1_TRANS } from '../../core/hw/smmuv3.js';
import { CMDQ_OP, tlbiPages } from '../../core/drivers/arm-vsmmu.js';
import { World, FAULT_ID_VALID, largeLeafInvalidation } from './harness.js';

const RAM = 0x100_0000n;
const VSID = 0x99n;

interface ArmGuest {
  w: World;
  ioas: IommufdIoas;
  pt: ArmLpaeBuilder;
  f: IommufdFault;
  q: IommufdVeventq;
  v: IommufdViommu;
  cdTable: bigint;
  setCd(ssid: number, opts: { stall?: boolean; record?: boolean }): void;
  alloc(): bigint;
  writeBytes(gpa: bigint, data: Uint8Array): void;
}

function guest(opts: { stall?: boolean; deviceStall?: boolean; faultQueue?: boolean } = {}): ArmGuest {
  const w = new World({ model: 'smmuv3', devices: [{ name: 'd0', bdf: '00:02.0', caps: { stall: opts.deviceStall ?? true } }] });
  const d = w.bind();
  const ioas = w.ioas();
  ioas.map(0n, RAM, true, true);
  let next = 0x10_0000n;
  const alloc = (): bigint => {
    next += 0x1000n;
    return next - 0x1000n;
  };
  const readU64 = (gpa: bigint): bigint => new DataView(ioas.readMemory(gpa, 8).buffer).getBigUint64(0, true);
  const writeU64 = (gpa: bigint, v: bigint): void => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    ioas.writeMemory([{ iova: gpa, data: b }]);
  };
  const pt = new ArmLpaeBuilder(alloc, readU64, writeU64, 25);
  const cdTable = alloc();
  const setCd = (ssid: number, o: { stall?: boolean; record?: boolean }): void => {
    const [c0, c1] = encodeCd({ ttb0: pt.root, t0sz: 25, asid: 1, ...o });
    writeU64(cdTable + BigInt(ssid) * CD_SIZE, c0);
    writeU64(cdTable + BigInt(ssid) * CD_SIZE + 8n, c1);
  };
  setCd(0, { stall: opts.stall ?? false });
  const p = w.parent(d, ioas);
  const v = iommufdViommuAlloc(w.ctx, { type: 'arm_smmuv3', dev_id: d.id, hwpt_id: p.id });
  iommufdVdeviceAlloc(w.ctx, { viommu_id: v.id, dev_id: d.id, virt_id: VSID });
  const f = w.fault();
  const withFault = opts.faultQueue ?? true;
  const h = iommufdHwptAlloc(w.ctx, {
    dev_id: d.id,
    pt_id: v.id,
    flags: withFault ? FAULT_ID_VALID : 0,
    ...(withFault ? { fault_id: f.id } : {}),
    data_type: 'arm_smmuv3',
    data: { ste: encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: cdTable }) },
  });
  iommufdDeviceAttach(d, h.id);
  const q = iommufdVeventqAlloc(w.ctx, { viommu_id: v.id, type: 'arm_smmuv3', depth: 64 });
  return { w, ioas, pt, f, q, v, cdTable, setCd, alloc, writeBytes: (gpa, data) => ioas.writeMemory([{ iova: gpa, data }]) };
}

function dma(g: ArmGuest, iova: bigint, write = false, length = 16): () => DmaResult | undefined {
  let result: DmaResult | undefined;
  g.w.platform.dma(
    'd0',
    { pasid: undefined, iova, length, write, data: write ? new Uint8Array(length).fill(0xab) : undefined, priv: false, exec: false, timeoutMs: 10_000 },
    (r) => (result = r),
  );
  g.w.sched.run();
  return () => result;
}

test('arm nested DMA: the walk reads the guest CD and AArch64 tables through stage 2 and moves the bytes', () => {
  const g = guest();
  const page = g.alloc();
  g.writeBytes(page, new Uint8Array([1, 2, 3, 4]));
  g.pt.map(0x4000_0000n & ((1n << 39n) - 1n), page, { write: true });
  const r = dma(g, 0x4000_0000n, false, 4)();
  assert.equal(r?.status, 'ok');
  assert.deepEqual([...r!.data!], [1, 2, 3, 4]);
  assert.equal(g.q.queued, 0);
  assert.equal(g.w.audit().stalls, 0);
});

test('arm nested DMA: a translation fault of a CD with S=0 terminates and reaches the vEVENTQ with the vSID', () => {
  const g = guest();
  const r = dma(g, 0x7000_0000n, true)();
  assert.equal(r?.status, 'invalid');
  const [e, ...rest] = g.q.read();
  assert.equal(rest.length, 0);
  const ev = decodeEvent(e!.data!);
  assert.deepEqual(
    [ev.id, ev.sid, ev.addr, ev.read, ev.stall, ev.s2, ev.ssid],
    [EVT_ID.F_TRANSLATION, Number(VSID), 0x7000_0000n, false, false, false, undefined],
  );
  assert.equal(g.f.readable, false, 'nothing for the fault queue');
});

test('arm nested DMA: a write to a read-only page is F_PERMISSION; AF clear is F_ACCESS; CD.R=0 records nothing', () => {
  const g = guest();
  g.pt.map(0x1000n, g.alloc(), { write: false });
  g.pt.map(0x2000n, g.alloc(), { write: true, af: false });
  assert.equal(dma(g, 0x1000n, true)()?.status, 'invalid');
  assert.equal(dma(g, 0x2000n, false)()?.status, 'invalid');
  assert.equal(dma(g, 0x1000n, false)()?.status, 'ok');
  assert.deepEqual(
    g.q.read().map((e) => decodeEvent(e.data!).id),
    [EVT_ID.F_PERMISSION, EVT_ID.F_ACCESS],
  );
  g.setCd(0, { record: false });
  assert.equal(dma(g, 0x5000n)()?.status, 'invalid');
  assert.equal(g.q.queued, 0);
});

test('arm nested DMA: with CD.S=1 on a stall-capable device the fault stalls into the fault queue (one record, grpid = STAG); SUCCESS retries, INVALID aborts', () => {
  const g = guest({ stall: true });
  const fd = g.w.fd(g.f);
  const res = dma(g, 0x3000n, true, 8);
  assert.equal(res(), undefined, 'stalled');
  const [rec, ...more] = fd.records();
  assert.equal(more.length, 0);
  assert.equal(rec!.flags, 2, 'LAST_PAGE, no PASID');
  assert.equal(rec!.perm, 2);
  assert.equal(rec!.addr, 0x3000n);
  assert.equal(g.w.audit().stalls, 1);
  const page = g.alloc();
  g.pt.map(0x3000n, page, { write: true });
  fd.write([[rec!.cookie, 0]]);
  g.w.sched.run();
  assert.equal(res()?.status, 'ok');
  assert.deepEqual([...g.ioas.readMemory(page, 8)], new Array(8).fill(0xab));
  assert.equal(g.q.queued, 0, 'a stall is never a vEVENTQ event');
  const res2 = dma(g, 0x9000n);
  const [rec2] = fd.records();
  fd.write([[rec2!.cookie, 1]]);
  g.w.sched.run();
  assert.equal(res2()?.status, 'invalid');
  assert.equal(g.w.audit().stalls, 0);
});

test('arm nested DMA: with every stall tag in use a fault of a CD with S=1 is terminated: its event has STALL clear and goes to the vEVENTQ; the DMA ends invalid', () => {
  const g = guest({ stall: true });
  const unit = g.w.platform.iommus.get('iommu0')!.driver.unit;
  unit.stagSpace = 1;
  const fd = g.w.fd(g.f);
  const held = dma(g, 0x3000n);
  assert.equal(held(), undefined, 'stalled: it holds the only tag');
  const [rec] = fd.records();
  const r = dma(g, 0x4000n)();
  assert.equal(r?.status, 'invalid');
  assert.equal(unit.stallsTerminated, 1);
  const [e, ...rest] = g.q.read();
  assert.equal(rest.length, 0);
  const ev = decodeEvent(e!.data!);
  assert.deepEqual([ev.id, ev.stall, ev.sid, ev.addr], [EVT_ID.F_TRANSLATION, false, Number(VSID), 0x4000n]);
  assert.equal(fd.records().length, 0, 'nothing more for the fault queue');
  g.pt.map(0x3000n, g.alloc(), { write: true });
  fd.write([[rec!.cookie, 0]]);
  g.w.sched.run();
  assert.equal(held()?.status, 'ok');
  assert.deepEqual(
    g.w.log().map((l) => l.code),
    ['success'],
    'one response: the resumed stall',
  );
  assert.deepEqual(g.w.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
});

test('arm nested DMA: without the stall cap (or CD.S=0) a fault terminates; a fault-capable attach needs the cap (ENODEV)', () => {
  assert.throws(
    () => guest({ stall: true, deviceStall: false }),
    (e: unknown) => (e as { errno?: string }).errno === 'ENODEV',
  );
  const g = guest({ stall: true, deviceStall: false, faultQueue: false });
  assert.equal(dma(g, 0x3000n)()?.status, 'invalid');
  const [e] = g.q.read();
  const ev = decodeEvent(e!.data!);
  assert.deepEqual([ev.id, ev.stall, ev.sid], [EVT_ID.F_TRANSLATION, false, Number(VSID)]);
  assert.equal(g.w.audit().stalls, 0);
});

test("arm nested DMA: a stage-2 miss of a table read is the host's: stage2_fault, no vEVENTQ event", () => {
  const g = guest();
  g.pt.map(0x6000n, RAM + 0x10_0000n, { write: true });
  const r = dma(g, 0x6000n)();
  assert.equal(r?.status, 'stage2_fault');
  assert.equal(g.q.queued, 0);
  const driver = g.w.platform.iommuDevice('d0').ops as SimIommu;
  assert.equal(driver.unhandledEvents.get(EVT_ID.F_TRANSLATION), 1);
});

test('arm nested DMA: a cached translation survives the guest clearing its leaf until TLBI_NH_VA through the vIOMMU', () => {
  const g = guest();
  g.pt.map(0x8000n, g.alloc(), { write: true });
  assert.equal(dma(g, 0x8000n)()?.status, 'ok');
  g.pt.unmap(0x8000n);
  assert.equal(dma(g, 0x8000n)()?.status, 'ok', 'still in the IOTLB');
  const r = iommufdViommuInvalidate(g.w.ctx, g.v.id, 'arm_smmuv3', [[BigInt(CMDQ_OP.TLBI_NH_VA) | (1n << 48n), 0x8000n]]);
  assert.deepEqual(r, { done: 1 });
  assert.equal(dma(g, 0x8000n)()?.status, 'invalid');
  assert.equal(g.q.read().length, 1);
});

test('arm nested DMA: a range TLBI_NH_VA drops (NUM+1)·2^SCALE granules from its address, and not the page after them', () => {
  const g = guest();
  const pages = [0x10000n, 0x11000n, 0x12000n, 0x13000n, 0x20000n, 0x21000n, 0x22000n, 0x23000n, 0x24000n];
  for (const va of pages) g.pt.map(va, g.alloc(), { write: true });
  for (const va of pages) assert.equal(dma(g, va)()?.status, 'ok');
  for (const va of pages) g.pt.unmap(va);
  // TG 1 (4 KiB) in word 1; NUM 12..16 and SCALE 20..24 in word 0.
  const range = (addr: bigint, num: bigint, scale: bigint): [bigint, bigint] => [
    BigInt(CMDQ_OP.TLBI_NH_VA) | (num << 12n) | (scale << 20n) | (1n << 48n),
    addr | (1n << 10n),
  ];
  assert.deepEqual(iommufdViommuInvalidate(g.w.ctx, g.v.id, 'arm_smmuv3', [range(0x10000n, 2n, 0n), range(0x20000n, 1n, 1n)]), { done: 2 });
  assert.deepEqual(
    pages.map((va) => dma(g, va)()?.status),
    ['invalid', 'invalid', 'invalid', 'ok', 'invalid', 'invalid', 'invalid', 'invalid', 'ok'],
    '3 pages from 0x10000, 4 from 0x20000; the next page of each stays cached',
  );
  assert.equal(tlbiPages(range(0n, 31n, 3n)[0], 3n << 10n), 32 * 8 * 16, 'a 64 KiB granule is 16 pages');
});

test("arm nested DMA: a single-page TLBI_NH_VA at a 2 MiB block's base drops every cached page of the block, and nothing outside it", () => {
  const g = guest();
  largeLeafInvalidation({
    map: (va, gpa, size) => g.pt.map(va, gpa, { write: true }, size),
    unmap: (va) => void g.pt.unmap(va),
    alloc: g.alloc,
    writeByte: (gpa, b) => g.writeBytes(gpa, new Uint8Array([b])),
    readByte: (iova) => dma(g, iova, false, 1)()?.data?.[0],
    // arm_smmu_tlb_inv_range_asid for a block without range invalidation: one TLBI_NH_VA at its base, TG (and TTL) 0.
    invalidate: (va) => assert.deepEqual(iommufdViommuInvalidate(g.w.ctx, g.v.id, 'arm_smmuv3', [[BigInt(CMDQ_OP.TLBI_NH_VA) | (1n << 48n), va]]), { done: 1 }),
  });
});

test('arm nested DMA: detaching with a stalled transaction answers its group INVALID once; the DMA aborts; nothing stays stalled', () => {
  const g = guest({ stall: true });
  const fd = g.w.fd(g.f);
  const res = dma(g, 0xa000n);
  assert.equal(fd.records().length, 1);
  const idev = g.w.ctx.objects().find((o) => o.type === 'device')!;
  iommufdDeviceDetach(idev as Parameters<typeof iommufdDeviceDetach>[0]);
  g.w.sched.run();
  assert.equal(res()?.status, 'invalid');
  const a = g.w.audit();
  assert.deepEqual([a.stalls, a.outstandingGroups, a.unexpectedResponses], [0, 0, 0]);
});

test('walk trace (SMMUv3): the guest STE, the CD and each AArch64 level, each read through stage 2, then the output; the DMA lands where it says', () => {
  const g = guest();
  const page = g.alloc();
  const va = 0x4000_0000n;
  g.pt.map(va, page, { write: true });
  const t = g.w.platform.walk('d0', undefined, va + 0x18n, 1);
  assert.equal(t.context, 'smmuv3');
  assert.deepEqual(t.ste, { config: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable, s1CdMax: 0, s1dss: 0 });
  assert.equal(t.cd?.index, 0);
  assert.equal(t.cd?.entryGpa, g.cdTable);
  // The IOAS maps guest RAM at GPA 0 one to one onto host frames: the CD's stage-2 step is readable.
  assert.ok(t.cd?.s2?.hpa !== undefined && t.cd.s2.read);
  assert.deepEqual(t.cd?.words, encodeCd({ ttb0: g.pt.root, t0sz: 25, asid: 1, stall: false }));
  assert.equal(t.t0sz, 25);
  assert.equal(t.s1Root, g.pt.root);
  // T0SZ 25: 39 input bits, the walk starts at level 1.
  assert.deepEqual(
    t.s1.map((l) => l.level),
    [1, 2, 3],
  );
  assert.equal(t.s1[0]!.entryGpa, g.pt.root + ((va >> 30n) & 511n) * 8n);
  assert.ok(t.s1.every((l) => l.entry !== undefined && l.s2?.read === true));
  assert.equal(t.s1[2]!.entry! & 0x0000_ffff_ffff_f000n, page);
  assert.equal(t.s2?.gpa, page + 0x18n);
  assert.ok(t.result.kind === 'ok' && t.result.hpa === t.s2?.hpa);
  // The host bytes there are the ones the DMA reads.
  g.writeBytes(page + 0x18n, new Uint8Array([9, 8, 7]));
  assert.deepEqual([...g.w.platform.mem.read(t.result.hpa, 3)], [9, 8, 7]);
  assert.deepEqual([...dma(g, va + 0x18n, false, 3)()!.data!], [9, 8, 7]);
});

test('walk trace (SMMUv3): side-effect free: no event, no stall, no IOTLB fill, no AF update; each fault named as the event the unit would record', () => {
  const g = guest({ stall: true });
  const unit = g.w.platform.iommus.get('iommu0')!.driver.unit;
  const walk = (addr: bigint, perm = 1, pasid?: number) => g.w.platform.walk('d0', pasid, addr, perm);
  g.pt.map(0x1000n, g.alloc(), { write: false });
  g.pt.map(0x2000n, g.alloc(), { write: true, af: false });
  const leaf = g.pt.entryAddress(0x2000n)!;
  const before = g.ioas.readMemory(leaf.gpa, 8);

  assert.equal(walk(0x1000n).result.kind, 'ok');
  assert.deepEqual(walk(0x1000n, 2).result, { kind: 'fault', stage: 1, reason: 'F_PERMISSION, stalls (CD.S)', level: 3 });
  assert.deepEqual(walk(0x2000n).result, { kind: 'fault', stage: 1, reason: 'F_ACCESS, stalls (CD.S)', level: 3 });
  const miss = walk(0x4000_0000n);
  assert.equal(miss.result.kind === 'fault' && miss.result.reason, 'F_TRANSLATION, stalls (CD.S)');
  assert.equal(miss.s1.at(-1)!.entry, 0n, 'the walk stops at the invalid descriptor');
  // A SubstreamID the STE (S1CDMax 0) has no CD for.
  assert.deepEqual(walk(0x1000n, 1, 3).result, { kind: 'fault', stage: 1, reason: 'C_BAD_SUBSTREAMID' });

  assert.deepEqual([...g.ioas.readMemory(leaf.gpa, 8)], [...before], 'AF not set by the walk');
  assert.equal(unit.evtq.length, 0);
  assert.equal(unit.stallCount, 0);
  assert.equal(unit.iotlb.size, 0);
  assert.equal(g.q.queued, 0);
  assert.equal(g.w.fd(g.f).records().length, 0);
});

test('walk trace (SMMUv3): a CD outside what stage 2 maps is a stage-2 fault of the CD fetch; an abort STE ends without an event', () => {
  const g = guest();
  const d = g.w.ctx.objects().find((o) => o.type === 'device') as Parameters<typeof iommufdDeviceAttach>[0];
  const nested = (ste: [bigint, bigint]) => iommufdHwptAlloc(g.w.ctx, { dev_id: d.id, pt_id: g.v.id, data_type: 'arm_smmuv3', data: { ste } });
  iommufdDeviceReplace(d, nested(encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: RAM + 0x1000n })).id);
  const t = g.w.platform.walk('d0', undefined, 0x1000n, 1);
  assert.deepEqual(t.result, { kind: 'fault', stage: 2, reason: 'F_TRANSLATION (S2): context descriptor not readable in stage 2' });
  assert.equal(t.cd?.entryGpa, RAM + 0x1000n);
  assert.equal(t.cd?.s2?.hpa, undefined);
  assert.equal(t.cd?.words, undefined);
  assert.deepEqual(t.s1, []);

  iommufdDeviceReplace(d, nested(encodeSte({ cfg: STE_CFG_ABORT })).id);
  const a = g.w.platform.walk('d0', undefined, 0x1000n, 1);
  assert.equal(a.ste?.config, STE_CFG_ABORT);
  assert.equal(a.cd, undefined);
  assert.deepEqual(a.result, { kind: 'fault', stage: 1, reason: 'STE.Config abort: terminated without an event' });
});
