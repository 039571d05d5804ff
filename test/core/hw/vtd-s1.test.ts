import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameAllocator, SparseMemory } from '../../../core/hw/memory.js';
import { Stage2Table } from '../../../core/hw/stage2.js';
import { PTE, VTD_S1_EAFE, VTD_S1_SRE, VTD_S1_WPE, VtdS1Builder, walkVtdS1, type S1Access } from '../../../core/hw/vtd-s1.js';

const RD: S1Access = { write: false, exec: false, priv: false };
const WR: S1Access = { write: true, exec: false, priv: false };
const EX: S1Access = { write: false, exec: true, priv: false };
const SUP: S1Access = { write: false, exec: false, priv: true };

/**
 * A guest: host memory, a stage-2 table mapping guest physical pages (the
 * parent IOAS's IOVAs) to host frames, and a builder whose table pages are
 * guest pages allocated from 0x10_0000 up. `tables` lists their GPAs in
 * allocation order (root first).
 */
function guest(addrWidth: 48 | 57) {
  const mem = new SparseMemory();
  const frames = new FrameAllocator(mem);
  const s2 = new Stage2Table();
  const tables: bigint[] = [];
  let nextGpa = 0x10_0000n;
  const hostOf = (gpa: bigint): bigint => {
    const e = s2.lookup(gpa);
    if (e === undefined) throw new Error(`guest touched unmapped gpa 0x${gpa.toString(16)}`);
    return e.hpa + (gpa & 0xfffn);
  };
  const b = new VtdS1Builder(
    () => {
      const gpa = nextGpa;
      nextGpa += 0x1000n;
      s2.map(gpa, frames.alloc(), true, true);
      tables.push(gpa);
      return gpa;
    },
    (gpa) => mem.readU64(hostOf(gpa)),
    (gpa, v) => mem.writeU64(hostOf(gpa), v),
    addrWidth,
  );
  const readTableEntry = (gpa: bigint): bigint | undefined => {
    const e = s2.lookup(gpa);
    return e === undefined || !e.read ? undefined : mem.readU64(e.hpa + (gpa & 0xfffn));
  };
  // Supervisor requests allowed and bound by read-only entries unless a test says otherwise.
  const walk = (va: bigint, access: S1Access = RD, flags = VTD_S1_SRE | VTD_S1_WPE) => walkVtdS1(readTableEntry, b.root, addrWidth, va, access, flags);
  // A walk that updates Accessed/Dirty in the guest's entries, through stage 2.
  const walkAd = (va: bigint, access: S1Access = RD, flags = VTD_S1_SRE | VTD_S1_WPE) =>
    walkVtdS1(readTableEntry, b.root, addrWidth, va, access, flags, (gpa, v) => {
      const e = s2.lookup(gpa);
      if (e === undefined || !e.write) return false;
      mem.writeU64(e.hpa + (gpa & 0xfffn), v);
      return true;
    });
  const poke = (gpa: bigint, v: bigint) => mem.writeU64(hostOf(gpa), v);
  const peek = (gpa: bigint) => mem.readU64(hostOf(gpa));
  return { mem, s2, b, tables, walk, walkAd, poke, peek, hostOf };
}

const idx = (va: bigint, level: number) => (va >> (12n + 9n * BigInt(level - 1))) & 511n;

test('vtd-s1: 4-level walk of a 4 KiB page, with the real bytes in memory', () => {
  const g = guest(48);
  const va = 0x7f12_3456_7000n;
  g.b.map(va, 0x4000_0000n, { write: true });
  assert.equal(g.tables.length, 4);
  const [root, l3, l2, l1] = g.tables as [bigint, bigint, bigint, bigint];
  assert.equal(g.b.root, root);
  // The root entry, byte for byte, little-endian: l3 | P | RW | US.
  const raw = g.mem.read(g.hostOf(root + idx(va, 4) * 8n), 8);
  assert.deepEqual(raw, Uint8Array.of(0x07, 0x10, 0x10, 0, 0, 0, 0, 0));
  assert.equal(l3, 0x10_1000n);
  assert.equal(g.peek(l3 + idx(va, 3) * 8n), l2 | 7n);
  assert.equal(g.peek(l2 + idx(va, 2) * 8n), l1 | 7n);
  assert.equal(g.peek(l1 + idx(va, 1) * 8n), 0x8000_0000_4000_0007n);
  assert.deepEqual(g.walk(va + 0x123n, WR), { kind: 'ok', gpa: 0x4000_0123n, writable: true, executable: false, user: true, pageSize: 4096n });
});

test('vtd-s1: 5-level walk uses bits 56:48', () => {
  const g = guest(57);
  const va = 0x00ab_cdef_1234_5000n; // not canonical for 48 bits
  g.b.map(va, 0x7000n, { write: false, exec: true });
  assert.equal(g.tables.length, 5);
  assert.equal(g.peek(g.tables[0]! + idx(va, 5) * 8n), g.tables[1]! | 7n);
  assert.equal(idx(va, 5), 0xabn);
  assert.deepEqual(g.walk(va + 0xfffn, EX), { kind: 'ok', gpa: 0x7fffn, writable: false, executable: true, user: true, pageSize: 4096n });
  // Same low 48 bits, another level-5 slot: not present at level 5.
  assert.deepEqual(g.walk(0x0012_cdef_1234_5000n), { kind: 's1-fault', reason: 'not-present', level: 5 });
  // Upper half of the 57-bit space.
  const hi = 0xff80_0000_0020_0000n;
  g.b.map(hi, 0x20_0000n, { write: true }, 0x200000n);
  assert.deepEqual(g.walk(hi + 0x1_2345n), { kind: 'ok', gpa: 0x21_2345n, writable: true, executable: false, user: true, pageSize: 0x200000n });
  assert.deepEqual(walkVtdS1(() => 0n, 0n, 48, va, RD), { kind: 's1-fault', reason: 'non-canonical', level: 4 });
});

test('vtd-s1: 2 MiB and 1 GiB leaves', () => {
  const g = guest(48);
  g.b.map(0x4000_0000n, 0x80_0000_0000n, { write: false }, 0x40000000n);
  g.b.map(0x20_0000n, 0x1234_0000_0000n + 0x60_0000n, { write: true, exec: true }, 0x200000n);
  assert.equal(g.tables.length, 3); // root, one level-3 table, one level-2 table
  assert.deepEqual(g.walk(0x7fff_fff8n), { kind: 'ok', gpa: 0x80_3fff_fff8n, writable: false, executable: false, user: true, pageSize: 0x40000000n });
  assert.deepEqual(g.walk(0x3f_ffffn, WR), { kind: 'ok', gpa: 0x1234_007f_ffffn, writable: true, executable: true, user: true, pageSize: 0x200000n });
  assert.equal(g.b.lookupPte(0x5555_5555n), 0x8000_0080_0000_0085n);
  assert.deepEqual(g.b.entryAddress(0x21_0000n), { gpa: g.tables[2]! + 8n, level: 2 });
  assert.deepEqual(g.walk(0x40_0000n), { kind: 's1-fault', reason: 'not-present', level: 2 });
});

test('vtd-s1: permission faults at the leaf: write, exec, user', () => {
  const g = guest(48);
  g.b.map(0x1000n, 0x5000n, { write: false, exec: false, user: false });
  assert.deepEqual(g.walk(0x1000n, { write: true, exec: false, priv: true }), { kind: 's1-fault', reason: 'write', level: 1 });
  assert.deepEqual(g.walk(0x1000n, { write: false, exec: true, priv: true }), { kind: 's1-fault', reason: 'exec', level: 1 });
  assert.deepEqual(g.walk(0x1000n, RD), { kind: 's1-fault', reason: 'user', level: 1 });
  assert.deepEqual(g.walk(0x1010n, SUP), { kind: 'ok', gpa: 0x5010n, writable: false, executable: false, user: false, pageSize: 4096n });
  g.b.map(0x2000n, 0x6000n, { write: true, exec: true });
  assert.deepEqual(g.walk(0x2000n, { write: true, exec: true, priv: false }), { kind: 'ok', gpa: 0x6000n, writable: true, executable: true, user: true, pageSize: 4096n });
});

test('vtd-s1: permissions are the AND of every level', () => {
  const cases: Array<[bigint, bigint, S1Access, string]> = [
    [PTE.RW, 0n, WR, 'write'],
    [PTE.US, 0n, RD, 'user'],
    [0n, PTE.XD, EX, 'exec'],
  ];
  for (const level of [4, 3, 2]) {
    for (const [clear, set, access, reason] of cases) {
      const g = guest(48);
      const va = 0x1234_5678_9000n;
      g.b.map(va, 0x9000n, { write: true, exec: true });
      const table = g.tables[4 - level]!;
      const slot = table + idx(va, level) * 8n;
      g.poke(slot, (g.peek(slot) & ~clear) | set);
      assert.deepEqual(g.walk(va, access), { kind: 's1-fault', reason, level: 1 }, `level ${level} ${reason}`);
      const sup = g.walk(va, SUP);
      assert.deepEqual(sup, { kind: 'ok', gpa: 0x9000n, writable: reason !== 'write', executable: reason !== 'exec', user: reason !== 'user', pageSize: 4096n });
    }
  }
});

test('vtd-s1: not present at each level (4 and 5 levels)', () => {
  for (const width of [48, 57] as const) {
    const g = guest(width);
    const va = 0x0000_3456_789a_b000n;
    g.b.map(va, 0x1000n, { write: true });
    const top = width === 48 ? 4 : 5;
    for (let level = top; level >= 1; level--) {
      const other = va ^ (1n << (12n + 9n * BigInt(level - 1)));
      assert.deepEqual(g.walk(other), { kind: 's1-fault', reason: 'not-present', level }, `width ${width} level ${level}`);
    }
    assert.equal(g.b.unmap(va + 0x800n), true);
    assert.equal(g.b.unmap(va), false);
    assert.deepEqual(g.walk(va), { kind: 's1-fault', reason: 'not-present', level: 1 });
    assert.equal(g.b.lookupPte(va), undefined);
  }
});

test('vtd-s1: a table page missing from stage 2 is an s2-fault naming the entry', () => {
  const g = guest(48);
  const va = 0x5a5a_5a5a_5000n;
  g.b.map(va, 0x1000n, { write: true });
  const [root, , l2] = g.tables as [bigint, bigint, bigint, bigint];
  g.s2.unmap(l2);
  assert.deepEqual(g.walk(va), { kind: 's2-fault', gpa: l2 + idx(va, 2) * 8n, level: 2 });
  g.s2.unmap(root);
  assert.deepEqual(g.walk(va), { kind: 's2-fault', gpa: root + idx(va, 4) * 8n, level: 4 });
  // A stage-2 mapping without read permission is a miss too.
  g.s2.map(root, 0x2_0000_0000n, false, true);
  assert.deepEqual(g.walk(va), { kind: 's2-fault', gpa: root + idx(va, 4) * 8n, level: 4 });
});

test('vtd-s1: non-canonical addresses fault before any read', () => {
  let reads = 0;
  const read = () => {
    reads++;
    return 0n;
  };
  assert.deepEqual(walkVtdS1(read, 0n, 48, 0x0000_8000_0000_0000n, RD), { kind: 's1-fault', reason: 'non-canonical', level: 4 });
  assert.deepEqual(walkVtdS1(read, 0n, 48, 0xfffe_ffff_ffff_f000n, RD), { kind: 's1-fault', reason: 'non-canonical', level: 4 });
  assert.deepEqual(walkVtdS1(read, 0n, 57, 0x0100_0000_0000_0000n, RD), { kind: 's1-fault', reason: 'non-canonical', level: 5 });
  assert.deepEqual(walkVtdS1(read, 0n, 48, 1n << 64n, RD), { kind: 's1-fault', reason: 'non-canonical', level: 4 });
  assert.deepEqual(walkVtdS1(read, 0n, 48, -1n, RD), { kind: 's1-fault', reason: 'non-canonical', level: 4 });
  assert.equal(reads, 0);
  // Canonical upper half: the walk proceeds (and finds nothing).
  assert.deepEqual(walkVtdS1(read, 0n, 48, 0xffff_8000_0000_0000n, RD), { kind: 's1-fault', reason: 'not-present', level: 4 });
  assert.equal(reads, 1);
});

test('vtd-s1: reserved: misaligned large leaves (bit 12 is PAT, not reserved) and PS at level 1 or 4', () => {
  const g = guest(48);
  g.b.map(0x20_0000n, 0x40_0000n, { write: true }, 0x200000n);
  g.b.map(0x4000_0000n, 0x4000_0000n, { write: true }, 0x40000000n);
  g.b.map(0x80_0000_1000n, 0x1000n, { write: true });
  const e2 = g.b.entryAddress(0x20_0000n)!;
  const e3 = g.b.entryAddress(0x4000_0000n)!;
  const e1 = g.b.entryAddress(0x80_0000_1000n)!;
  assert.equal(e2.level, 2);
  assert.equal(e3.level, 3);
  assert.equal(e1.level, 1);
  g.poke(e2.gpa, g.peek(e2.gpa) | 0x1000n); // bit 12 in a 2 MiB leaf: PAT, no address bit
  assert.deepEqual(g.walk(0x20_0123n), { kind: 'ok', gpa: 0x40_0123n, writable: true, executable: false, user: true, pageSize: 0x200000n });
  g.poke(e2.gpa, g.peek(e2.gpa) | 0x2000n); // bit 13: reserved
  assert.deepEqual(g.walk(0x20_0000n), { kind: 's1-fault', reason: 'reserved', level: 2 });
  g.poke(e3.gpa, g.peek(e3.gpa) | 0x20_0000n); // bit 21 in a 1 GiB leaf
  assert.deepEqual(g.walk(0x4000_0000n), { kind: 's1-fault', reason: 'reserved', level: 3 });
  g.poke(e1.gpa, g.peek(e1.gpa) | PTE.PS);
  assert.deepEqual(g.walk(0x80_0000_1000n), { kind: 's1-fault', reason: 'reserved', level: 1 });
  const rootSlot = g.b.root + idx(0x80_0000_1000n, 4) * 8n;
  g.poke(rootSlot, g.peek(rootSlot) | PTE.PS);
  assert.deepEqual(g.walk(0x80_0000_1000n), { kind: 's1-fault', reason: 'reserved', level: 4 });
  // A clean 1 GiB leaf with its top address bit (bit 51) set is fine.
  g.b.map(0x8000_0000n, 0x8_0000_0000_0000n, { write: false }, 0x40000000n);
  assert.deepEqual(g.walk(0x8000_0008n), { kind: 'ok', gpa: 0x8_0000_0000_0008n, writable: false, executable: false, user: true, pageSize: 0x40000000n });
});

test('vtd-s1: builder refuses overlaps and bad arguments', () => {
  const g = guest(48);
  g.b.map(0x20_0000n, 0x40_0000n, { write: true }, 0x200000n);
  g.b.map(0x4000n, 0x1000n, { write: true });
  assert.throws(() => g.b.map(0x4000n, 0x2000n, { write: true }), /already mapped/);
  assert.throws(() => g.b.map(0x20_1000n, 0x2000n, { write: true }), /large page/);
  assert.throws(() => g.b.map(0x0n, 0x20_0000n, { write: true }, 0x200000n), /already mapped/);
  assert.throws(() => g.b.map(0x1800n, 0x2000n, { write: true }), RangeError);
  assert.throws(() => g.b.map(0x40_0000n, 0x1000n, { write: true }, 0x200000n), RangeError);
  assert.throws(() => g.b.map(0x0000_8000_0000_0000n, 0x1000n, { write: true }), RangeError);
  assert.throws(() => g.b.map(0x9000n, 0x10_0000_0000_0000n, { write: true }), RangeError);
  assert.equal(g.b.lookupPte(0x4000n), 0x8000_0000_0000_1007n);
  assert.equal(g.b.lookupPte(0x21_0000n), 0x8000_0000_0040_0087n);
  assert.equal(g.b.lookupPte(0x0000_8000_0000_0000n), undefined);
  assert.throws(() => new VtdS1Builder(() => 0x123n, () => 0n, () => {}, 48), RangeError);
});

test('vtd-s1: property: mapped addresses walk to their gpa, unmapped ones fault not-present', () => {
  for (const width of [48, 57] as const) {
    const vaBits = BigInt(width - 1);
    // 4 KiB pages live below 2^(vaBits-2), 2 MiB pages in [2^(vaBits-2), 2^(vaBits-1)),
    // each mirrored in the upper canonical half when `negate` says so.
    const region2m = 1n << (vaBits - 2n);
    const small = fc.oneof(fc.bigInt({ min: 0n, max: 2047n }), fc.bigInt({ min: 0n, max: (1n << (vaBits - 14n)) - 1n }));
    const large = fc.oneof(fc.bigInt({ min: 0n, max: 63n }), fc.bigInt({ min: 0n, max: (1n << (vaBits - 23n)) - 1n }));
    const probe2m = fc.tuple(large, fc.bigInt({ min: 0n, max: 511n })).map(([p, sub]) => (region2m >> 12n) | (p << 9n) | sub);
    const negate = fc.boolean();
    const canon = (x: bigint, upper: boolean) => (upper ? x | (((1n << 64n) - 1n) ^ ((1n << vaBits) - 1n)) : x);
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(small, negate), { maxLength: 40, selector: ([p, n]) => `${p}/${n}` }),
        fc.uniqueArray(fc.tuple(large, negate), { maxLength: 8, selector: ([p, n]) => `${p}/${n}` }),
        fc.array(fc.tuple(fc.oneof(small, probe2m), negate, fc.bigInt({ min: 0n, max: 4095n })), { maxLength: 30 }),
        fc.nat(),
        (pages4k, pages2m, probes, unmapEvery) => {
          const g = guest(width);
          const want = new Map<bigint, { gpa: bigint; size: bigint }>(); // va page base -> gpa
          let gpa = 0x1_0000_0000n;
          for (const [p, up] of pages4k) {
            const va = canon(p << 12n, up);
            g.b.map(va, gpa, { write: true });
            want.set(va, { gpa, size: 4096n });
            gpa += 0x1000n;
          }
          gpa = 0x10_0000_0000n;
          for (const [p, up] of pages2m) {
            const va = canon(region2m | (p << 21n), up);
            g.b.map(va, gpa, { write: false }, 0x200000n);
            want.set(va, { gpa, size: 0x200000n });
            gpa += 0x20_0000n;
          }
          // Unmap some of them again.
          let i = 0;
          for (const va of [...want.keys()]) {
            if (unmapEvery > 1 && i++ % unmapEvery === 0) {
              assert.equal(g.b.unmap(va), true);
              want.delete(va);
            }
          }
          for (const [va, { gpa: pa, size }] of want) {
            const off = size - 8n;
            const r = g.walk(va + off);
            assert.deepEqual(r, { kind: 'ok', gpa: pa + off, writable: size === 4096n, executable: false, user: true, pageSize: size });
          }
          for (const [p, up, off] of probes) {
            const va = canon((p << 12n) + off, up);
            const hit4k = want.get(va & ~0xfffn);
            const hit2m = want.get(va & ~0x1f_ffffn);
            const hit = hit4k ?? (hit2m?.size === 0x200000n ? hit2m : undefined);
            const r = g.walk(va);
            if (hit === undefined) assert.deepEqual({ kind: r.kind, reason: r.kind === 's1-fault' ? r.reason : '' }, { kind: 's1-fault', reason: 'not-present' });
            else assert.deepEqual(r.kind === 'ok' ? r.gpa : r, hit.gpa + (va & (hit.size - 1n)));
          }
        },
      ),
      { numRuns: 60 },
    );
  }
});

test('intel_pasid_setup_nested: without SRE a supervisor request faults before any read', () => {
  let reads = 0;
  const read = () => {
    reads++;
    return 0n;
  };
  assert.deepEqual(walkVtdS1(read, 0n, 48, 0x1000n, SUP, 0), { kind: 's1-fault', reason: 'supervisor', level: 4 });
  assert.deepEqual(walkVtdS1(read, 0n, 57, 0x1000n, { write: true, exec: false, priv: true }, VTD_S1_WPE | VTD_S1_EAFE), { kind: 's1-fault', reason: 'supervisor', level: 5 });
  assert.equal(reads, 0);
  const g = guest(48);
  g.b.map(0x1000n, 0x5000n, { write: false, user: false });
  assert.deepEqual(g.walk(0x1000n, SUP, VTD_S1_SRE).kind, 'ok');
  // A user request needs no SRE.
  g.b.map(0x2000n, 0x6000n, { write: false });
  assert.deepEqual(g.walk(0x2000n, RD, 0).kind, 'ok');
});

test('intel_pasid_setup_nested: WPE makes supervisor writes honour read-only entries', () => {
  const g = guest(48);
  g.b.map(0x1000n, 0x5000n, { write: false, user: false });
  const supWrite: S1Access = { write: true, exec: false, priv: true };
  assert.deepEqual(g.walk(0x1008n, supWrite, VTD_S1_SRE), { kind: 'ok', gpa: 0x5008n, writable: false, executable: false, user: false, pageSize: 4096n });
  assert.deepEqual(g.walk(0x1008n, supWrite, VTD_S1_SRE | VTD_S1_WPE), { kind: 's1-fault', reason: 'write', level: 1 });
  // A user write to a read-only page faults whatever WPE says.
  g.b.map(0x2000n, 0x6000n, { write: false });
  assert.deepEqual(g.walk(0x2000n, WR, VTD_S1_SRE), { kind: 's1-fault', reason: 'write', level: 1 });
});

test('vtd-s1: the walker sets Accessed in every entry used, Dirty in the leaf of a write, EA with EAFE', () => {
  const g = guest(48);
  const va = 0x12_3456_7000n;
  g.b.map(va, 0x9000n, { write: true });
  const slots = [4, 3, 2, 1].map((level) => g.tables[4 - level]! + idx(va, level) * 8n);
  const before = slots.map((s) => g.peek(s));
  // The pure walker writes nothing.
  assert.equal(g.walk(va, WR).kind, 'ok');
  assert.deepEqual(slots.map((s) => g.peek(s)), before);
  // A read: A everywhere, no D.
  assert.equal(g.walkAd(va, RD).kind, 'ok');
  assert.deepEqual(slots.map((s) => g.peek(s)), before.map((v) => v | PTE.A));
  // A write: D in the leaf only.
  assert.equal(g.walkAd(va, WR).kind, 'ok');
  assert.deepEqual(slots.map((s) => g.peek(s)), before.map((v, i) => v | PTE.A | (i === 3 ? PTE.D : 0n)));
  // EAFE adds the extended-accessed bit (10).
  assert.equal(g.walkAd(va, RD, VTD_S1_EAFE).kind, 'ok');
  assert.deepEqual(slots.map((s) => g.peek(s)), before.map((v, i) => v | PTE.A | PTE.EA | (i === 3 ? PTE.D : 0n)));
  // A faulting walk writes nothing.
  const other = va + 0x1000n;
  assert.equal(g.walkAd(other, WR).kind, 's1-fault');
  assert.deepEqual(slots.map((s) => g.peek(s)), before.map((v, i) => v | PTE.A | PTE.EA | (i === 3 ? PTE.D : 0n)));
  // A 2 MiB leaf gets its D too; bit 12 (PAT) stays as it was.
  g.b.map(0x4000_0000n, 0x20_0000n, { write: true }, 0x200000n);
  const e2 = g.b.entryAddress(0x4000_0000n)!;
  g.poke(e2.gpa, g.peek(e2.gpa) | PTE.PAT_LARGE);
  assert.equal(g.walkAd(0x4000_0010n, WR).kind, 'ok');
  assert.equal(g.peek(e2.gpa) & (PTE.A | PTE.D | PTE.PAT_LARGE), PTE.A | PTE.D | PTE.PAT_LARGE);
  // An entry stage 2 maps read-only cannot take its A bit: a stage-2 fault naming it.
  const g2 = guest(48);
  g2.b.map(va, 0x9000n, { write: true });
  const l1 = g2.tables[3]!;
  const e = g2.s2.lookup(l1)!;
  g2.s2.unmap(l1);
  g2.s2.map(l1, e.hpa, true, false);
  assert.deepEqual(g2.walkAd(va, RD), { kind: 's2-fault', gpa: l1 + idx(va, 1) * 8n, level: 1 });
});
