/**
 * The AArch64 4 KiB-granule walker: every descriptor kind (table, page,
 * 1 GiB and 2 MiB blocks, invalid, a block where none may be) and every fault
 * type (translation, address size, access flag, permission by AP[2], AP[1],
 * PXN, UXN), the start level from T0SZ, and every read through stage 2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ArmLpaeBuilder, LPAE, lpaeLeaf, lpaeStartLevel, walkArmLpae, type LpaeAccess } from '../../../core/hw/arm-lpae.js';

/** A flat "guest RAM" of 8-byte words and a page allocator over it. */
function ram(): { read: (a: bigint) => bigint; write: (a: bigint, v: bigint) => void; alloc: () => bigint; words: Map<bigint, bigint> } {
  const words = new Map<bigint, bigint>();
  let next = 0x10_0000n;
  return {
    words,
    read: (a) => words.get(a) ?? 0n,
    write: (a, v) => void words.set(a, v),
    alloc: () => {
      const p = next;
      next += 0x1000n;
      return p;
    },
  };
}

const R: LpaeAccess = { write: false, exec: false, priv: false };
const W: LpaeAccess = { write: true, exec: false, priv: false };

test('arm-lpae: T0SZ picks the start level (4 levels for 48 bits, 3 for 39, 2 for 30); out of range is a RangeError', () => {
  assert.equal(lpaeStartLevel(16), 0);
  assert.equal(lpaeStartLevel(24), 0);
  assert.equal(lpaeStartLevel(25), 1);
  assert.equal(lpaeStartLevel(33), 1);
  assert.equal(lpaeStartLevel(34), 2);
  assert.equal(lpaeStartLevel(39), 2);
  assert.throws(() => lpaeStartLevel(15), RangeError);
  assert.throws(() => lpaeStartLevel(40), RangeError);
});

for (const t0sz of [16, 25]) {
  test(`arm-lpae: pages, 2 MiB and 1 GiB blocks translate with their offsets (T0SZ ${t0sz})`, () => {
    const m = ram();
    const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, t0sz);
    b.map(0x4000_0000n, 0x8000_0000n, { write: true }, 0x4000_0000n);
    b.map(0x20_0000n, 0x60_0000n, { write: false }, 0x20_0000n);
    b.map(0x1000n, 0x9000n, { write: true });
    const walk = (va: bigint, a = R) => walkArmLpae((g) => m.read(g), b.root, t0sz, va, a);
    assert.deepEqual(walk(0x4123_4567n), { kind: 'ok', pa: 0x8123_4567n, pageSize: 0x4000_0000n, writable: true, executable: false, user: true });
    assert.deepEqual(walk(0x21_2345n), { kind: 'ok', pa: 0x61_2345n, pageSize: 0x20_0000n, writable: false, executable: false, user: true });
    assert.deepEqual(walk(0x1abcn, W), { kind: 'ok', pa: 0x9abcn, pageSize: 0x1000n, writable: true, executable: false, user: true });
    assert.deepEqual(walk(0x2000n), { kind: 'fault', fault: 'translation', level: 3 });
  });
}

test('arm-lpae: an input address beyond 64 - T0SZ bits is a translation fault at the start level, with no read', () => {
  const m = ram();
  const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, 25);
  let reads = 0;
  const r = walkArmLpae((g) => (reads++, m.read(g)), b.root, 25, 1n << 39n, R);
  assert.deepEqual(r, { kind: 'fault', fault: 'translation', level: 1 });
  assert.equal(reads, 0);
});

test('arm-lpae: invalid descriptors, a block at level 0 and 0b01 at level 3 are translation faults', () => {
  const m = ram();
  const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, 16);
  b.map(0x1000n, 0x9000n, { write: true });
  const walk = (va: bigint) => walkArmLpae((g) => m.read(g), b.root, 16, va, R);
  // 0b10 at level 0 (bit 1 without valid): invalid.
  m.write(b.root + 8n, 0x20_0000n | LPAE.TABLE);
  assert.deepEqual(walk(1n << 39n), { kind: 'fault', fault: 'translation', level: 0 });
  // 0b01 at level 0: no blocks there with the 4 KiB granule.
  m.write(b.root + 8n, 0x0n | LPAE.VALID | LPAE.AF);
  assert.deepEqual(walk(1n << 39n), { kind: 'fault', fault: 'translation', level: 0 });
  // 0b01 at level 3: reserved.
  const leaf = b.entryAddress(0x1000n)!;
  assert.equal(leaf.level, 3);
  m.write(leaf.gpa, 0x9000n | LPAE.VALID | LPAE.AF);
  assert.deepEqual(walk(0x1000n), { kind: 'fault', fault: 'translation', level: 3 });
});

test('arm-lpae: output address bits 51:48 are an address size fault, in a table, a leaf, or TTB0', () => {
  const m = ram();
  const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, 16);
  b.map(0x1000n, 0x9000n, { write: true });
  const walk = (va: bigint, ttb = b.root) => walkArmLpae((g) => m.read(g), ttb, 16, va, R);
  const leaf = b.entryAddress(0x1000n)!;
  m.write(leaf.gpa, m.read(leaf.gpa) | (1n << 48n));
  assert.deepEqual(walk(0x1000n), { kind: 'fault', fault: 'addr-size', level: 3 });
  const l0 = m.read(b.root);
  m.write(b.root, l0 | (1n << 50n));
  assert.deepEqual(walk(0x1000n), { kind: 'fault', fault: 'addr-size', level: 0 });
  assert.deepEqual(walk(0x1000n, 1n << 49n), { kind: 'fault', fault: 'addr-size', level: 0 });
});

test('arm-lpae: AF clear is an access fault, ahead of a permission fault', () => {
  const m = ram();
  const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, 16);
  b.map(0x1000n, 0x9000n, { write: false, af: false });
  b.map(0x20_0000n, 0x40_0000n, { write: true, af: false }, 0x20_0000n);
  const walk = (va: bigint, a: LpaeAccess) => walkArmLpae((g) => m.read(g), b.root, 16, va, a);
  assert.deepEqual(walk(0x1000n, W), { kind: 'fault', fault: 'access', level: 3 });
  assert.deepEqual(walk(0x20_0000n, R), { kind: 'fault', fault: 'access', level: 2 });
});

test('arm-lpae: permission faults: AP[2] read-only on write, AP[1] clear on unprivileged, UXN / PXN on fetch', () => {
  const m = ram();
  const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, 16);
  b.map(0x1000n, 0x9000n, { write: false });
  b.map(0x2000n, 0xa000n, { write: true, user: false });
  b.map(0x3000n, 0xb000n, { write: true, exec: true });
  const walk = (va: bigint, a: LpaeAccess) => walkArmLpae((g) => m.read(g), b.root, 16, va, a);
  const perm = { kind: 'fault', fault: 'permission', level: 3 };
  assert.deepEqual(walk(0x1000n, W), perm);
  assert.equal(walk(0x1000n, R).kind, 'ok');
  assert.deepEqual(walk(0x2000n, R), perm);
  assert.equal(walk(0x2000n, { write: true, exec: false, priv: true }).kind, 'ok');
  assert.deepEqual(walk(0x1000n, { write: false, exec: true, priv: false }), perm);
  assert.equal(walk(0x3000n, { write: false, exec: true, priv: false }).kind, 'ok');
  // UXN only: privileged fetch allowed, unprivileged not.
  const leaf = b.entryAddress(0x3000n)!;
  m.write(leaf.gpa, m.read(leaf.gpa) | LPAE.UXN);
  assert.deepEqual(walk(0x3000n, { write: false, exec: true, priv: false }), perm);
  assert.equal(walk(0x3000n, { write: false, exec: true, priv: true }).kind, 'ok');
  m.write(leaf.gpa, (m.read(leaf.gpa) & ~LPAE.UXN) | LPAE.PXN);
  assert.deepEqual(walk(0x3000n, { write: false, exec: true, priv: true }), perm);
  assert.equal(walk(0x3000n, { write: false, exec: true, priv: false }).kind, 'ok');
});

test('arm-lpae: every descriptor read goes through stage 2; a miss names the table address and level', () => {
  const m = ram();
  const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, 16);
  b.map(0x1000n, 0x9000n, { write: true });
  const seen: bigint[] = [];
  const ok = walkArmLpae((g) => (seen.push(g), m.read(g)), b.root, 16, 0x1000n, R);
  assert.equal(ok.kind, 'ok');
  assert.equal(seen.length, 4);
  assert.equal(seen[0], b.root);
  const l2table = m.read(m.read(b.root) & LPAE.OA_MASK) & LPAE.OA_MASK;
  const r = walkArmLpae((g) => ((g & ~0xfffn) === l2table ? undefined : m.read(g)), b.root, 16, 0x1000n, R);
  assert.deepEqual(r, { kind: 's2-fault', gpa: l2table, level: 2 });
});

test('arm-lpae: builder refuses overlaps, misalignment and addresses outside the input range; unmap clears the leaf', () => {
  const m = ram();
  const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, 25);
  b.map(0x20_0000n, 0x20_0000n, { write: true }, 0x20_0000n);
  assert.throws(() => b.map(0x20_1000n, 0x1000n, { write: true }), /block/);
  assert.throws(() => b.map(0x20_0000n, 0x20_0000n, { write: true }, 0x20_0000n), /already mapped/);
  assert.throws(() => b.map(0x1800n, 0x1000n, { write: true }), RangeError);
  assert.throws(() => b.map(1n << 39n, 0x1000n, { write: true }), RangeError);
  assert.throws(() => new ArmLpaeBuilder(m.alloc, m.read, m.write, 34).map(0n, 0n, { write: true }, 0x4000_0000n), RangeError);
  assert.equal(b.unmap(0x20_0000n), true);
  assert.equal(b.unmap(0x20_0000n), false);
  assert.equal(walkArmLpae((g) => m.read(g), b.root, 25, 0x20_0000n, R).kind, 'fault');
});

test('arm-lpae (property): a mapped page translates to its address with the leaf permissions; anything else faults', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.bigInt({ min: 0n, max: (1n << 36n) - 1n }), { minLength: 1, maxLength: 20 }),
      fc.array(fc.record({ write: fc.boolean(), user: fc.boolean(), exec: fc.boolean() }), { minLength: 20, maxLength: 20 }),
      fc.bigInt({ min: 0n, max: (1n << 36n) - 1n }),
      (pfns, perms, probe) => {
        const m = ram();
        const b = new ArmLpaeBuilder(m.alloc, m.read, m.write, 16);
        const mapped = new Map<bigint, { pa: bigint; p: { write: boolean; user: boolean; exec: boolean } }>();
        pfns.forEach((pfn, i) => {
          const p = perms[i]!;
          const pa = ((pfn * 7n + 3n) & ((1n << 36n) - 1n)) << 12n;
          b.map(pfn << 12n, pa, p);
          mapped.set(pfn, { pa, p });
        });
        for (const pfn of [...pfns, probe]) {
          const e = mapped.get(pfn);
          const r = walkArmLpae((g) => m.read(g), b.root, 16, (pfn << 12n) | 0x123n, { write: false, exec: false, priv: true });
          if (!e) assert.ok(r.kind === 'fault' && r.fault === 'translation');
          else assert.deepEqual(r, { kind: 'ok', pa: e.pa | 0x123n, pageSize: 0x1000n, writable: e.p.write, executable: e.p.exec, user: e.p.user });
        }
      },
    ),
    { numRuns: 60 },
  );
  assert.equal(lpaeLeaf(0x5000n, 3, { write: true }) & 3n, 3n);
  assert.equal(lpaeLeaf(0x20_0000n, 2, { write: true }) & 3n, 1n);
});
