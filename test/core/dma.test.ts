/**
 * The path of one fault, from DMA to retry, with real page-table bytes: a
 * guest builds its vtd_s1 tables inside its own RAM (an IOAS), the device's
 * DMA misses stage 1, the group reaches the fault queue, the "guest" maps the
 * page and answers SUCCESS, the device retries and the bytes land where the
 * guest's table points. Also SVA, the IOTLB, and the DMA outcomes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iommufdDeviceAttach, iommufdHwptInvalidate, type DmaResult, type IommufdIoas, type IommufdFault } from '../../core/index.js';
import { VtdS1Builder } from '../../core/hw/vtd-s1.js';
import { World, largeLeafInvalidation } from './harness.js';

const RAM = 0x100_0000n; // 16 MiB of guest RAM at GPA 0

interface Guest {
  w: World;
  ioas: IommufdIoas;
  pt: VtdS1Builder;
  f: IommufdFault;
  nestedId: number;
  allocPage(): bigint;
}

function guest(): Guest {
  const w = new World();
  const d = w.bind();
  const ioas = w.ioas();
  ioas.map(0n, RAM, true, true);
  let next = 0x10_0000n; // guest page allocator: from 1 MiB up
  const allocPage = (): bigint => {
    const p = next;
    next += 0x1000n;
    return p;
  };
  const readU64 = (gpa: bigint): bigint => new DataView(ioas.readMemory(gpa, 8).buffer).getBigUint64(0, true);
  const writeU64 = (gpa: bigint, v: bigint): void => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    ioas.writeMemory([{ iova: gpa, data: b }]);
  };
  const pt = new VtdS1Builder(allocPage, readU64, writeU64, 48);
  const f = w.fault();
  const parent = w.parent(d, ioas);
  const h = w.nested(d, parent, f, 0, pt.root);
  iommufdDeviceAttach(d, h.id);
  return { w, ioas, pt, f, nestedId: h.id, allocPage };
}

function dma(w: World, req: Partial<Parameters<World['platform']['dma']>[1]> & { iova: bigint; length: number }): { result: () => DmaResult | undefined } {
  let result: DmaResult | undefined;
  w.platform.dma('d0', { pasid: undefined, write: false, data: undefined, priv: false, exec: false, timeoutMs: 10_000, ...req }, (r) => (result = r));
  return { result: () => result };
}

/** The guest's fault handler: map every faulting page (fresh page, writable) and answer SUCCESS. */
function serveFaults(g: Guest, fd: ReturnType<World['fd']>, policy: (addr: bigint) => 'map' | 'invalid' | 'success-only' = () => 'map'): number {
  let groups = 0;
  for (let round = 0; round < 20; round++) {
    g.w.sched.run();
    const rs = fd.records();
    if (rs.length === 0) break;
    const answered = new Map<number, number>();
    for (const r of rs) {
      const what = policy(r.addr);
      if (what === 'map' && g.pt.lookupPte(r.addr) === undefined) g.pt.map(r.addr & ~0xfffn, g.allocPage(), { write: true });
      if (what === 'invalid') answered.set(r.cookie, 1);
      else if (!answered.has(r.cookie)) answered.set(r.cookie, 0);
    }
    fd.write([...answered]);
    groups += answered.size;
  }
  g.w.sched.run();
  return groups;
}

test('dma: a nested stage-1 miss is resolved by the guest and the written bytes land in the guest page its table points at', () => {
  const g = guest();
  const fd = g.w.fd(g.f);
  const data = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
  const va = 0x7000_0800n;
  const op = dma(g.w, { iova: va, length: data.length, write: true, data });
  const groups = serveFaults(g, fd);
  const r = op.result();
  assert.ok(r);
  assert.equal(r.status, 'ok');
  assert.equal(r.pageRequests, 2); // two pages, one group
  assert.equal(groups, 1);
  assert.equal(r.retries, 1);
  // Follow the guest's own table to the guest pages and read the bytes there.
  const pte0 = g.pt.lookupPte(0x7000_0000n)!;
  const pte1 = g.pt.lookupPte(0x7000_1000n)!;
  const gpa0 = pte0 & 0x000f_ffff_ffff_f000n;
  const gpa1 = pte1 & 0x000f_ffff_ffff_f000n;
  assert.deepEqual(g.ioas.readMemory(gpa0 + 0x800n, 0x800), data.subarray(0, 0x800));
  assert.deepEqual(g.ioas.readMemory(gpa1, 5000 - 0x800), data.subarray(0x800));
  // A DMA read of the same range now hits without faulting and returns the bytes.
  const back = dma(g.w, { iova: va, length: data.length });
  g.w.sched.run();
  assert.equal(back.result()?.status, 'ok');
  assert.equal(back.result()?.pageRequests, 0);
  assert.deepEqual(back.result()?.data, data);
  assert.deepEqual(g.w.audit().outstandingGroups, 0);
});

test('dma: INVALID from the guest ends the DMA invalid; SUCCESS without a mapping ends invalid after 3 fruitless rounds', () => {
  const g = guest();
  const fd = g.w.fd(g.f);
  const a = dma(g.w, { iova: 0x9000_0000n, length: 16 });
  serveFaults(g, fd, () => 'invalid');
  assert.equal(a.result()?.status, 'invalid');
  const b = dma(g.w, { iova: 0x9000_0000n, length: 16 });
  serveFaults(g, fd, () => 'success-only');
  assert.equal(b.result()?.status, 'invalid');
  assert.equal(b.result()?.retries, 3);
  assert.equal(b.result()?.pageRequests, 3);
});

test('dma: a stage-2 miss under a nested hwpt ends stage2_fault at once, without a page request', () => {
  const g = guest();
  // The guest maps a VA to a GPA beyond its RAM: the final GPA misses stage 2.
  g.pt.map(0x5000_0000n, RAM + 0x1000n, { write: true });
  const r = dma(g.w, { iova: 0x5000_0000n, length: 8 });
  g.w.sched.run();
  assert.equal(r.result()?.status, 'stage2_fault');
  assert.equal(r.result()?.pageRequests, 0);
});

test('dma: the IOTLB caches a hit until the guest invalidates it', () => {
  const g = guest();
  const fd = g.w.fd(g.f);
  const va = 0x6000_0000n;
  const first = g.allocPage();
  const second = g.allocPage();
  g.ioas.writeMemory([
    { iova: first, data: new Uint8Array([1, 1, 1, 1]) },
    { iova: second, data: new Uint8Array([2, 2, 2, 2]) },
  ]);
  g.pt.map(va, first, { write: true });
  const readByte = (): number | undefined => {
    const r = dma(g.w, { iova: va, length: 4 });
    serveFaults(g, fd);
    return r.result()?.data?.[0];
  };
  assert.equal(readByte(), 1);
  // Retarget the PTE in guest memory without invalidating: the cached translation wins.
  g.pt.unmap(va);
  g.pt.map(va, second, { write: true });
  assert.equal(readByte(), 1);
  const nested = g.w.ctx.get(g.nestedId, 'hwpt_nested') as import('../../core/index.js').IommufdHwptNested;
  assert.equal(nested.invalidate([{ addr: va, npages: 1 }]), 1);
  assert.equal(readByte(), 2);
});

test('dma: a page-selective invalidation of one page of a 2 MiB superpage drops every cached page of it, and nothing outside it', () => {
  const g = guest();
  const fd = g.w.fd(g.f);
  largeLeafInvalidation({
    map: (va, gpa, size) => g.pt.map(va, gpa, { write: true }, size),
    unmap: (va) => void g.pt.unmap(va),
    alloc: g.allocPage,
    writeByte: (gpa, b) => g.ioas.writeMemory([{ iova: gpa, data: new Uint8Array([b]) }]),
    readByte: (iova) => {
      const r = dma(g.w, { iova, length: 1 });
      assert.equal(serveFaults(g, fd), 0, 'no fault: every address is mapped');
      return r.result()?.data?.[0];
    },
    invalidate: (va) => assert.equal(iommufdHwptInvalidate(g.w.ctx, g.nestedId, [{ addr: va, npages: 1 }]), 1),
  });
});

test('dma: a write to a read-only stage-1 page faults with WRITE permission and completes after the guest upgrades it', () => {
  const g = guest();
  const fd = g.w.fd(g.f);
  const va = 0x4000_0000n;
  const page = g.allocPage();
  g.pt.map(va, page, { write: false });
  const op = dma(g.w, { iova: va, length: 4, write: true, data: new Uint8Array([9, 8, 7, 6]) });
  g.w.sched.run();
  const [rec] = fd.records();
  assert.equal(rec!.perm & 2, 2);
  g.pt.unmap(va);
  g.pt.map(va, page, { write: true });
  const nested = g.w.ctx.get(g.nestedId, 'hwpt_nested') as import('../../core/index.js').IommufdHwptNested;
  nested.invalidate([{ addr: va, npages: 1 }]);
  fd.write([[rec!.cookie, 0]]);
  g.w.sched.run();
  assert.equal(op.result()?.status, 'ok');
  assert.deepEqual(g.ioas.readMemory(page, 4), new Uint8Array([9, 8, 7, 6]));
});

test('dma: no PRI → pri_disabled; nobody answering → timeout; IOAS unmap invalidates stage 2', () => {
  const w = new World({
    devices: [
      { name: 'd0', bdf: '00:02.0', caps: { pri: false } },
      { name: 'd1', bdf: '00:03.0' },
    ],
  });
  const r = dma(w, { iova: 0x1000n, length: 8 });
  w.sched.run();
  assert.equal(r.result()?.status, 'pri_disabled');

  const g = guest();
  g.w.fd(g.f); // open, never answers
  const t = dma(g.w, { iova: 0x3000_0000n, length: 8, timeoutMs: 100 });
  g.w.sched.advance(99);
  assert.equal(t.result(), undefined);
  g.w.sched.advance(1);
  assert.equal(t.result()?.status, 'timeout');

  // A paging hwpt straight on the IOAS: stage 2 only. Unmap must invalidate the IOTLB.
  const w2 = new World();
  const d = w2.bind();
  const ioas = w2.ioas();
  ioas.map(0x10000n, 0x1000n, true, true);
  iommufdDeviceAttach(d, ioas.id);
  const ok = dma(w2, { iova: 0x10000n, length: 4 });
  w2.sched.run();
  assert.equal(ok.result()?.status, 'ok');
  ioas.unmap(0x10000n, 0x1000n);
  const miss = dma(w2, { iova: 0x10000n, length: 4 });
  w2.sched.run();
  // The auto paging hwpt has no fault queue: the IOMMU answers INVALID.
  assert.equal(miss.result()?.status, 'invalid');
  assert.equal(w2.platform.responses('d0').at(-1)?.code, 'invalid');
});

test('sva: faults inside a VMA are resolved in the daemon; outside are INVALID; unbind flushes pending work first', () => {
  const w = new World();
  w.platform.bindSva('d0', 3, [{ start: 0x4000_0000n, length: 0x10_0000n, read: true, write: true, exec: false }]);
  const inside = dma(w, { pasid: 3, iova: 0x4000_0000n, length: 8192, write: true, data: new Uint8Array(8192).fill(0x5a) });
  const outside = dma(w, { pasid: 3, iova: 0x5000_0000n, length: 8 });
  w.sched.run();
  assert.equal(inside.result()?.status, 'ok');
  assert.equal(outside.result()?.status, 'invalid');
  const again = dma(w, { pasid: 3, iova: 0x4000_0000n, length: 8192 });
  w.sched.run();
  assert.equal(again.result()?.status, 'ok');
  assert.ok(again.result()?.data?.every((b) => b === 0x5a));
  // A group queued on the work queue but not yet run is answered by unbind's flush.
  w.T(3, 7, true, 1, 0x4000_2000n);
  assert.equal(w.log().filter((e) => e.grpid === 7).length, 0);
  w.platform.unbindSva('d0', 3);
  assert.deepEqual(
    w.log().filter((e) => e.grpid === 7),
    [{ pasid: 3, grpid: 7, code: 'success' }],
  );
  assert.deepEqual(w.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
  assert.equal(w.platform.frames.inUse, 0);
});

test('iommu_sva_handle_mm: each of READ, WRITE, EXEC must be allowed by the VMA; a request with no permission bits is serviced', () => {
  const w = new World({ model: 'generic' });
  // Write-only VMA: a read+write request asks for VM_READ too.
  w.platform.bindSva('d0', 3, [{ start: 0x4000_0000n, length: 0x10_0000n, read: false, write: true, exec: false }]);
  w.T(3, 1, true, 3, 0x4000_0000n);
  w.T(3, 2, true, 2, 0x4000_1000n);
  w.T(3, 3, true, 0, 0x4000_2000n);
  w.T(3, 4, true, 4, 0x4000_3000n);
  w.sched.run();
  assert.deepEqual(w.log(), [
    { pasid: 3, grpid: 1, code: 'invalid' },
    { pasid: 3, grpid: 2, code: 'success' },
    { pasid: 3, grpid: 3, code: 'success' },
    { pasid: 3, grpid: 4, code: 'invalid' },
  ]);
  w.platform.unbindSva('d0', 3);
});
