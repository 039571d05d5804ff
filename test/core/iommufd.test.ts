/**
 * The iommufd object layer beyond the acceptance cases: id allocation,
 * IOAS map/unmap/memory rules, hwpt allocation errors, bind, automatic
 * hwpts on an IOAS, release.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { iommufdDeviceAttach, iommufdDeviceBind, iommufdDeviceDetach, iommufdDeviceReplace, iommufdHwptAlloc, iommufdHwptInvalidate } from '../../core/index.js';
import { IdAllocator } from '../../core/iommufd/ids.js';
import { MAX_MAP_PAGES } from '../../core/iommufd/ioas.js';
import { World, errnoOf } from './harness.js';

test('ids: always the lowest free id ≥ 1 (model check)', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constant(-1), fc.nat(40)), { maxLength: 300 }), (ops) => {
      const ids = new IdAllocator();
      const used = new Set<number>();
      for (const op of ops) {
        if (op === -1 || used.size === 0) {
          let expect = 1;
          while (used.has(expect)) expect++;
          assert.equal(ids.alloc(), expect);
          used.add(expect);
        } else {
          const victim = [...used][op % used.size]!;
          used.delete(victim);
          ids.free(victim);
        }
        assert.equal(ids.used, used.size);
      }
    }),
  );
  const small = new IdAllocator(2);
  assert.deepEqual([small.alloc(), small.alloc(), small.alloc()], [1, 2, 0]);
});

test('ioas: alignment, overlap, unmap and guest memory rules', () => {
  const w = new World();
  const ioas = w.ioas();
  assert.equal(errnoOf(() => ioas.map(0x1001n, 0x1000n, true, true)), 'EINVAL');
  assert.equal(errnoOf(() => ioas.map(0x1000n, 0n, true, true)), 'EINVAL');
  assert.equal(errnoOf(() => ioas.map(0xffff_ffff_ffff_f000n, 0x2000n, true, true)), 'EOVERFLOW');
  ioas.map(0x10000n, 0x3000n, true, true);
  assert.equal(errnoOf(() => ioas.map(0x12000n, 0x2000n, true, true)), 'EEXIST');
  assert.equal(ioas.mapped, 3);
  assert.equal(ioas.pages.size, 0, 'a map allocates no page before a touch');
  // Fresh memory reads as zeros; a write spanning pages lands and reads back.
  assert.deepEqual(ioas.readMemory(0x10ffen, 4), new Uint8Array(4));
  ioas.writeMemory([{ iova: 0x10ffen, data: new Uint8Array([1, 2, 3, 4]) }]);
  assert.deepEqual(ioas.readMemory(0x10ffen, 4), new Uint8Array([1, 2, 3, 4]));
  // EFAULT: nothing of any write is written when one byte is unmapped.
  assert.equal(
    errnoOf(() =>
      ioas.writeMemory([
        { iova: 0x10000n, data: new Uint8Array([9]) },
        { iova: 0x12fffn, data: new Uint8Array([9, 9]) },
      ]),
    ),
    'EFAULT',
  );
  assert.deepEqual(ioas.readMemory(0x10000n, 1), new Uint8Array([0]));
  assert.equal(ioas.unmap(0x11000n, 0x4000n), 0x2000n);
  assert.equal(errnoOf(() => ioas.unmap(0x11000n, 0x1000n)), 'ENOENT');
  assert.equal(w.ctx.mappedPages, 1);
  w.platform.releaseContext(w.ctx.id);
  assert.equal(w.platform.frames.inUse, 0);
});

test('ioas: one call maps at most MAX_MAP_PAGES (E2BIG); the per-context mapped-page limit is ENOSPC and maps nothing', () => {
  const w = new World();
  const ioas = w.ioas();
  assert.equal(errnoOf(() => ioas.map(0n, BigInt(MAX_MAP_PAGES + 1) * 0x1000n, true, true)), 'E2BIG');
  const limit = w.platform.env.limits.maxMappedPages;
  for (let done = 0; done + MAX_MAP_PAGES <= limit; done += MAX_MAP_PAGES) ioas.map(BigInt(done) * 0x1000n, BigInt(MAX_MAP_PAGES) * 0x1000n, true, true);
  const mapped = ioas.mapped;
  assert.equal(errnoOf(() => ioas.map(0x1_0000_0000_0000n, BigInt(limit - mapped + 1) * 0x1000n, true, true)), 'ENOSPC');
  assert.equal(ioas.mapped, mapped);
});

test('hwpt alloc: the kernel errnos, in order', () => {
  const w = new World();
  const d = w.bind();
  const ioas = w.ioas();
  const f = w.fault();
  const alloc = (req: Partial<Parameters<typeof iommufdHwptAlloc>[1]>): string | undefined =>
    errnoOf(() => iommufdHwptAlloc(w.ctx, { dev_id: d.id, pt_id: ioas.id, ...req }));
  assert.equal(alloc({ __reserved: 1 }), 'EOPNOTSUPP');
  assert.equal(alloc({ data_type: 'vtd_s1' }), 'EINVAL');
  assert.equal(alloc({ dev_id: 99 }), 'ENOENT');
  assert.equal(alloc({ pt_id: 99 }), 'EINVAL');
  assert.equal(alloc({ pt_id: f.id }), 'EINVAL');
  assert.equal(alloc({ flags: 2 }), 'EOPNOTSUPP');
  assert.equal(alloc({ flags: 0x10 }), 'EOPNOTSUPP');
  const plain = iommufdHwptAlloc(w.ctx, { dev_id: d.id, pt_id: ioas.id });
  // Nested on a parent that is not NEST_PARENT.
  assert.equal(alloc({ pt_id: plain.id, data_type: 'vtd_s1', data: { flags: 0, pgtbl_addr: 0n, addr_width: 48 } }), 'EINVAL');
  const p = w.parent(d, ioas);
  assert.equal(alloc({ pt_id: p.id, data_type: 'vtd_s1', data: { flags: 8, pgtbl_addr: 0n, addr_width: 48 } }), 'EOPNOTSUPP');
  assert.equal(alloc({ pt_id: p.id, data_type: 'vtd_s1', data: { flags: 0, pgtbl_addr: 0n, addr_width: 39 } }), 'EINVAL');
  assert.equal(alloc({ pt_id: p.id, data_type: 'vtd_s1', data: { flags: 0, pgtbl_addr: 0x10n, addr_width: 48 } }), 'EINVAL');
  // Invalidation: paging hwpts have none; nested entries are checked.
  assert.equal(errnoOf(() => iommufdHwptInvalidate(w.ctx, p.id, [{ addr: 0n, npages: 1 }])), 'EOPNOTSUPP');
  const n = w.nested(d, p, undefined);
  assert.equal(errnoOf(() => iommufdHwptInvalidate(w.ctx, n.id, [{ addr: 0n, npages: 1, flags: 2 }])), 'EOPNOTSUPP');
  assert.equal(errnoOf(() => iommufdHwptInvalidate(w.ctx, n.id, [{ addr: 0x800n, npages: 1 }])), 'EINVAL');
  assert.equal(iommufdHwptInvalidate(w.ctx, n.id, [{ addr: 0n, npages: 1 }, { addr: 0x1000n, npages: 8 }]), 2);
  // Users: the IOAS is held by its hwpts, the parent by its nested child.
  assert.equal(errnoOf(() => w.ctx.destroyObject(ioas.id)), 'EBUSY');
  assert.equal(errnoOf(() => w.ctx.destroyObject(p.id)), 'EBUSY');
  w.ctx.destroyObject(n.id);
  w.ctx.destroyObject(p.id);
});

test('bind: exclusive across contexts, ENODEV for an unknown device; release unbinds', () => {
  const w = new World();
  w.bind();
  const other = w.platform.createContext();
  assert.equal(errnoOf(() => iommufdDeviceBind(other, 'd0')), 'EBUSY');
  assert.equal(errnoOf(() => iommufdDeviceBind(other, 'nope')), 'ENODEV');
  w.platform.releaseContext(w.ctx.id);
  assert.ok(iommufdDeviceBind(other, 'd0').id >= 1);
  assert.equal(w.platform.deviceInfo('d0').bound, true);
});

test('attach: an IOAS gets one automatic hwpt shared by RID and PASID; replacing with the same IOAS does nothing; the last detach destroys it', () => {
  const w = new World();
  const d = w.bind();
  const ioas = w.ioas();
  iommufdDeviceAttach(d, ioas.id);
  iommufdDeviceAttach(d, ioas.id, 7);
  const autos = w.ctx.objects().filter((o) => o.type === 'hwpt_paging');
  assert.equal(autos.length, 1);
  assert.equal(autos[0]!.users, 2);
  iommufdDeviceReplace(d, ioas.id);
  assert.deepEqual(w.log(), []);
  assert.equal(errnoOf(() => iommufdDeviceAttach(d, ioas.id)), 'EBUSY');
  assert.equal(errnoOf(() => iommufdDeviceAttach(d, ioas.id, 0)), 'EINVAL');
  iommufdDeviceDetach(d);
  assert.equal(w.ctx.objects().filter((o) => o.type === 'hwpt_paging').length, 1);
  iommufdDeviceDetach(d, 7);
  assert.equal(w.ctx.objects().filter((o) => o.type === 'hwpt_paging').length, 0);
  assert.equal(errnoOf(() => iommufdDeviceDetach(d)), 'EINVAL');
  assert.equal(errnoOf(() => iommufdDeviceReplace(d, ioas.id)), 'EINVAL');
  assert.equal(ioas.users, 0);
});

test('attach: PASID rules — PASID bits, the hwpt PASID flag, a device without PASID', () => {
  const w = new World({ devices: [{ name: 'd0', bdf: '00:02.0', caps: { pasid_bits: 4 } }, { name: 'd1', bdf: '00:03.0', caps: { pasid_bits: 0 } }] });
  const d = w.bind('d0');
  const d1 = w.bind('d1');
  const p = w.parent(d);
  const h = w.nested(d, p, w.fault(), 8);
  assert.equal(errnoOf(() => iommufdDeviceAttach(d, h.id, 16)), 'EINVAL');
  iommufdDeviceAttach(d, h.id, 15);
  assert.equal(errnoOf(() => iommufdDeviceAttach(d1, h.id, 1)), 'EINVAL');
  iommufdDeviceAttach(d1, h.id);
});

test('release: every object goes, leaves first, whatever the order they were made in', () => {
  const w = new World();
  const { d } = w.standard();
  const ioas2 = w.ioas();
  iommufdDeviceAttach(d, ioas2.id, 3);
  w.fd(w.fault());
  w.platform.releaseContext(w.ctx.id);
  assert.equal(w.ctx.objects().length, 0);
  assert.equal(w.ctx.objectCount, 0);
  assert.equal(errnoOf(() => w.platform.releaseContext(w.ctx.id)), 'ENOENT');
  assert.equal(w.platform.deviceInfo('d0').bound, false);
});
