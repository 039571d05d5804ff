import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Stage2MapConflict, Stage2Table } from '../../../core/hw/stage2.js';

test('stage2: map then lookup any address inside the page', () => {
  const t = new Stage2Table();
  t.map(0x10_0000n, 0x1_0000_3000n, true, false);
  assert.deepEqual(t.lookup(0x10_0000n), { hpa: 0x1_0000_3000n, read: true, write: false });
  assert.deepEqual(t.lookup(0x10_0fffn), { hpa: 0x1_0000_3000n, read: true, write: false });
  assert.equal(t.lookup(0x10_1000n), undefined);
  assert.equal(t.lookup(0xf_f000n), undefined);
  assert.equal(t.has(0x10_0800n), true);
  assert.equal(t.has(0x10_1000n), false);
  assert.equal(t.size, 1);
});

test('stage2: mapping a present page throws and keeps the old entry', () => {
  const t = new Stage2Table();
  t.map(0x2000n, 0x5000n, true, true);
  assert.throws(() => t.map(0x2000n, 0x6000n, true, false), Stage2MapConflict);
  assert.deepEqual(t.lookup(0x2000n), { hpa: 0x5000n, read: true, write: true });
  assert.equal(t.size, 1);
});

test('stage2: unaligned or out-of-range addresses throw RangeError', () => {
  const t = new Stage2Table();
  assert.throws(() => t.map(0x2001n, 0x5000n, true, true), RangeError);
  assert.throws(() => t.map(0x2000n, 0x5008n, true, true), RangeError);
  assert.throws(() => t.map(-0x1000n, 0x5000n, true, true), RangeError);
  assert.throws(() => t.lookup(1n << 64n), RangeError);
  assert.equal(t.size, 0);
});

test('stage2: unmap returns the entry once', () => {
  const t = new Stage2Table();
  t.map(0x3000n, 0x9000n, true, false);
  assert.deepEqual(t.unmap(0x3abcn), { hpa: 0x9000n, read: true, write: false });
  assert.equal(t.unmap(0x3000n), undefined);
  assert.equal(t.lookup(0x3000n), undefined);
  assert.equal(t.size, 0);
  t.map(0x3000n, 0xa000n, false, true);
  assert.deepEqual(t.lookup(0x3000n), { hpa: 0xa000n, read: false, write: true });
});

test('stage2: entries lists page addresses in mapping order; entries are frozen', () => {
  const t = new Stage2Table();
  t.map(0xffff_ffff_ffff_f000n, 0x1000n, true, true);
  t.map(0x0n, 0x2000n, true, false);
  const all = [...t.entries()];
  assert.deepEqual(all, [
    [0xffff_ffff_ffff_f000n, { hpa: 0x1000n, read: true, write: true }],
    [0x0n, { hpa: 0x2000n, read: true, write: false }],
  ]);
  assert.ok(Object.isFrozen(t.lookup(0n)));
});
