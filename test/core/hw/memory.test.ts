import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameAllocator, HwOutOfFrames, PAGE_SHIFT, PAGE_SIZE, PAGE_SIZE_N, SparseMemory } from '../../../core/hw/memory.js';

test('memory: page constants', () => {
  assert.equal(PAGE_SHIFT, 12n);
  assert.equal(PAGE_SIZE, 4096);
  assert.equal(PAGE_SIZE_N, 4096n);
});

test('memory: untouched memory reads as zeros without allocating', () => {
  const m = new SparseMemory();
  assert.deepEqual(m.read(0x1234_5000n, 16), new Uint8Array(16));
  assert.equal(m.readU64(0xdead_b000n), 0n);
  assert.equal(m.pagesResident, 0);
});

test('memory: write then read back across a page boundary', () => {
  const m = new SparseMemory();
  const data = Uint8Array.from({ length: 10 }, (_, i) => i + 1);
  m.write(0x1ffcn, data);
  assert.equal(m.pagesResident, 2);
  assert.deepEqual(m.read(0x1ffcn, 10), data);
  assert.deepEqual(m.read(0x1ffan, 4), Uint8Array.of(0, 0, 1, 2));
  assert.deepEqual(m.read(0x2004n, 3), Uint8Array.of(9, 10, 0));
});

test('memory: read returns a copy', () => {
  const m = new SparseMemory();
  m.write(0x100n, Uint8Array.of(7));
  const r = m.read(0x100n, 1);
  r[0] = 99;
  assert.deepEqual(m.read(0x100n, 1), Uint8Array.of(7));
});

test('memory: u64 is little-endian', () => {
  const m = new SparseMemory();
  m.writeU64(0x3008n, 0x0102_0304_0506_0708n);
  assert.deepEqual(m.read(0x3008n, 8), Uint8Array.of(8, 7, 6, 5, 4, 3, 2, 1));
  assert.equal(m.readU64(0x3008n), 0x0102_0304_0506_0708n);
  m.writeU64(0x3010n, 0xffff_ffff_ffff_ffffn);
  assert.equal(m.readU64(0x3010n), 0xffff_ffff_ffff_ffffn);
  m.write(0x3018n, Uint8Array.of(0x80, 0, 0, 0, 0, 0, 0, 0x80));
  assert.equal(m.readU64(0x3018n), 0x8000_0000_0000_0080n);
});

test('memory: unaligned or out-of-range u64 access throws RangeError', () => {
  const m = new SparseMemory();
  assert.throws(() => m.readU64(0x1004n), RangeError);
  assert.throws(() => m.writeU64(0x1001n, 1n), RangeError);
  assert.throws(() => m.writeU64(0x1000n, 1n << 64n), RangeError);
  assert.throws(() => m.writeU64(0x1000n, -1n), RangeError);
  assert.throws(() => m.readU64(-8n), RangeError);
  assert.throws(() => m.read(0xffff_ffff_ffff_fff0n, 32), RangeError);
  assert.equal(m.pagesResident, 0);
});

test('memory: the last bytes of the 64-bit space are usable', () => {
  const m = new SparseMemory();
  m.writeU64(0xffff_ffff_ffff_fff8n, 0x1122n);
  assert.equal(m.readU64(0xffff_ffff_ffff_fff8n), 0x1122n);
});

test('memory: zeroPage drops the page', () => {
  const m = new SparseMemory();
  m.writeU64(0x5000n, 42n);
  m.writeU64(0x6000n, 43n);
  m.zeroPage(0x5000n);
  assert.equal(m.readU64(0x5000n), 0n);
  assert.equal(m.readU64(0x6000n), 43n);
  assert.equal(m.pagesResident, 1);
});

test('memory: property: writes read back like a flat byte array', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ off: fc.integer({ min: 0, max: 3 * PAGE_SIZE }), bytes: fc.uint8Array({ maxLength: 5000 }) }), { maxLength: 12 }),
      (writes) => {
        const base = 0x7_0000_0000n;
        const m = new SparseMemory();
        const flat = new Uint8Array(3 * PAGE_SIZE + 5000);
        for (const w of writes) {
          m.write(base + BigInt(w.off), w.bytes);
          flat.set(w.bytes, w.off);
        }
        assert.deepEqual(m.read(base, flat.length), flat);
      },
    ),
  );
});

test('frames: alloc hands out distinct zeroed pages from the window', () => {
  const m = new SparseMemory();
  const fa = new FrameAllocator(m, 0x4000_0000n, 4);
  const a = fa.alloc();
  const b = fa.alloc();
  assert.equal(a, 0x4000_0000n);
  assert.equal(b, 0x4000_1000n);
  assert.equal(fa.inUse, 2);
  assert.equal(m.readU64(b), 0n);
});

test('frames: freed frames are reused and come back zeroed', () => {
  const m = new SparseMemory();
  const fa = new FrameAllocator(m, 0x4000_0000n, 4);
  const a = fa.alloc();
  fa.alloc();
  m.writeU64(a + 8n, 0xabcn);
  fa.free(a);
  assert.equal(fa.inUse, 1);
  assert.equal(m.pagesResident, 0);
  const c = fa.alloc();
  assert.equal(c, a);
  assert.equal(m.readU64(a + 8n), 0n);
});

test('frames: a dirty fresh frame is zeroed on alloc', () => {
  const m = new SparseMemory();
  m.writeU64(0x8000n, 5n);
  const fa = new FrameAllocator(m, 0x8000n, 1);
  assert.equal(fa.alloc(), 0x8000n);
  assert.equal(m.readU64(0x8000n), 0n);
});

test('frames: exhaustion throws HwOutOfFrames; double free throws', () => {
  const m = new SparseMemory();
  const fa = new FrameAllocator(m, 0x10000n, 2);
  const a = fa.alloc();
  fa.alloc();
  assert.throws(() => fa.alloc(), HwOutOfFrames);
  fa.free(a);
  assert.throws(() => fa.free(a), RangeError);
  assert.throws(() => fa.free(0x999000n), RangeError);
  assert.equal(fa.alloc(), a);
  assert.equal(fa.inUse, 2);
});

test('frames: default window starts at 4 GiB; bad windows are refused', () => {
  const fa = new FrameAllocator(new SparseMemory());
  assert.equal(fa.alloc(), 0x1_0000_0000n);
  assert.throws(() => new FrameAllocator(new SparseMemory(), 0x1001n), RangeError);
  assert.throws(() => new FrameAllocator(new SparseMemory(), 0n, 0), RangeError);
});
