import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Iotlb, type IotlbEntry } from '../../../core/hw/iotlb.js';

const E = (hpa: bigint, write = true): IotlbEntry => ({ hpa, write, exec: false, user: true });

test('iotlb: lookup hits any address of the inserted page, keyed by tag and pasid', () => {
  const t = new Iotlb();
  t.insert(1, 0, 0x1234_5678n, E(0x9_0000n));
  assert.deepEqual(t.lookup(1, 0, 0x1234_5000n), E(0x9_0000n));
  assert.deepEqual(t.lookup(1, 0, 0x1234_5fffn), E(0x9_0000n));
  assert.equal(t.lookup(1, 0, 0x1234_6000n), undefined);
  assert.equal(t.lookup(1, 1, 0x1234_5000n), undefined);
  assert.equal(t.lookup(2, 0, 0x1234_5000n), undefined);
  assert.equal(t.hits, 2);
  assert.equal(t.misses, 3);
  assert.equal(t.size, 1);
});

test('iotlb: insert replaces an existing entry', () => {
  const t = new Iotlb();
  t.insert(1, 5, 0x1000n, E(0xa000n));
  t.insert(1, 5, 0x1800n, E(0xb000n, false));
  assert.equal(t.size, 1);
  assert.deepEqual(t.lookup(1, 5, 0x1000n), E(0xb000n, false));
});

test('iotlb: the oldest inserted entry is evicted when full; reinsertion refreshes', () => {
  const t = new Iotlb(3);
  t.insert(1, 0, 0x1000n, E(0x1000n));
  t.insert(1, 0, 0x2000n, E(0x2000n));
  t.insert(2, 0, 0x3000n, E(0x3000n));
  t.insert(1, 0, 0x1000n, E(0x1000n)); // refresh: 0x2000 is now the oldest
  t.insert(3, 0, 0x4000n, E(0x4000n));
  assert.equal(t.size, 3);
  assert.equal(t.lookup(1, 0, 0x2000n), undefined);
  assert.deepEqual(t.lookup(1, 0, 0x1000n), E(0x1000n));
  t.insert(3, 0, 0x5000n, E(0x5000n)); // evicts tag 2's only entry
  assert.equal(t.lookup(2, 0, 0x3000n), undefined);
  assert.equal(t.invalidateTag(2), 0);
  assert.equal(t.size, 3);
  assert.throws(() => new Iotlb(0), RangeError);
});

test('iotlb: invalidateRange drops exactly the range for one pasid', () => {
  const t = new Iotlb();
  for (let p = 0n; p < 16n; p++) {
    t.insert(1, 0, p << 12n, E(p << 12n));
    t.insert(1, 1, p << 12n, E(p << 12n));
  }
  t.insert(2, 0, 0x4000n, E(0x4000n));
  assert.equal(t.invalidateRange(1, 0, 0x4abcn, 3), 3);
  assert.equal(t.lookup(1, 0, 0x3000n)?.hpa, 0x3000n);
  assert.equal(t.lookup(1, 0, 0x4000n), undefined);
  assert.equal(t.lookup(1, 0, 0x6000n), undefined);
  assert.equal(t.lookup(1, 0, 0x7000n)?.hpa, 0x7000n);
  assert.equal(t.lookup(1, 1, 0x4000n)?.hpa, 0x4000n);
  assert.equal(t.lookup(2, 0, 0x4000n)?.hpa, 0x4000n);
  assert.equal(t.size, 30);
  assert.equal(t.invalidateRange(1, 0, 0x4000n, 3), 0);
  assert.equal(t.invalidateRange(1, 0, 0x0n, 0), 0);
  assert.equal(t.invalidateRange(9, 0, 0x0n, 100), 0);
});

test('iotlb: invalidateRange with undefined pasid covers every pasid of the tag', () => {
  const t = new Iotlb();
  t.insert(1, 0, 0x10_0000n, E(1n << 12n));
  t.insert(1, 7, 0x10_1000n, E(2n << 12n));
  t.insert(1, 7, 0x10_2000n, E(3n << 12n));
  t.insert(2, 7, 0x10_1000n, E(4n << 12n));
  assert.equal(t.invalidateRange(1, undefined, 0x10_0000n, 2n), 2);
  assert.equal(t.size, 2);
  assert.equal(t.lookup(1, 7, 0x10_2000n)?.hpa, 3n << 12n);
  assert.equal(t.lookup(2, 7, 0x10_1000n)?.hpa, 4n << 12n);
});

test('iotlb: a huge range (scan path) drops only pages inside it, clipped to 2^64', () => {
  const t = new Iotlb();
  t.insert(1, 0, 0x0n, E(0x1000n));
  t.insert(1, 0, 0x8000_0000n, E(0x2000n));
  t.insert(1, 0, 0xffff_ffff_ffff_f000n, E(0x3000n));
  assert.equal(t.invalidateRange(1, 0, 0x1000n, 1n << 60n), 2);
  assert.equal(t.lookup(1, 0, 0x0n)?.hpa, 0x1000n);
  assert.equal(t.size, 1);
  assert.throws(() => t.invalidateRange(1, 0, 0n, -1), RangeError);
});

test('iotlb: a range wider than the entries held (scan path) keeps pages past its end', () => {
  const t = new Iotlb();
  for (const p of [1n, 5n, 9n, 10n, 400n]) t.insert(1, 0, p << 12n, E(p << 12n));
  assert.equal(t.invalidateRange(1, 0, 0x5000n, 100), 3);
  assert.equal(t.lookup(1, 0, 0x1000n)?.hpa, 0x1000n);
  assert.equal(t.lookup(1, 0, 0x19_0000n)?.hpa, 0x19_0000n);
  assert.equal(t.size, 2);
});

test('iotlb: invalidateTag and invalidateAll', () => {
  const t = new Iotlb();
  t.insert(1, 0, 0x1000n, E(0x1000n));
  t.insert(1, 3, 0x1000n, E(0x1000n));
  t.insert(2, 0, 0x1000n, E(0x1000n));
  assert.equal(t.invalidateTag(1), 2);
  assert.equal(t.invalidateTag(1), 0);
  assert.equal(t.size, 1);
  assert.equal(t.lookup(2, 0, 0x1000n)?.hpa, 0x1000n);
  assert.equal(t.invalidateAll(), 1);
  assert.equal(t.size, 0);
});

test('iotlb: an invalidation touching any page of a larger leaf drops every entry of that leaf, not its neighbours', () => {
  const t = new Iotlb();
  const MiB2 = 0x20_0000n;
  // Two pages of a 2 MiB leaf at 2 MiB, the pages either side of it (4 KiB leaves), one page of a 1 GiB leaf; pasid 1 alike.
  for (const pasid of [0, 1]) {
    t.insert(1, pasid, MiB2 + 0x1000n, E(0x1000n), MiB2);
    t.insert(1, pasid, MiB2 + 0x1f_f000n, E(0x2000n), MiB2);
    t.insert(1, pasid, MiB2 - 0x1000n, E(0x3000n));
    t.insert(1, pasid, 2n * MiB2, E(0x4000n));
  }
  t.insert(1, 0, 0x4000_0000n + 0x3000_0000n, E(0x5000n), 0x4000_0000n);
  assert.equal(t.invalidateRange(1, 0, MiB2 + 0x10_0000n, 1), 2, 'a page of the leaf nobody looked up');
  assert.equal(t.lookup(1, 0, MiB2 + 0x1000n), undefined);
  assert.equal(t.lookup(1, 0, MiB2 + 0x1f_f000n), undefined);
  assert.equal(t.lookup(1, 0, MiB2 - 0x1000n)?.hpa, 0x3000n);
  assert.equal(t.lookup(1, 0, 2n * MiB2)?.hpa, 0x4000n);
  assert.equal(t.lookup(1, 1, MiB2 + 0x1000n)?.hpa, 0x1000n, 'another pasid');
  assert.equal(t.invalidateRange(1, undefined, 0x4000_0000n, 1), 1, 'the 1 GiB leaf, from its base');
  // A range from the page before the 2 MiB leaf into it: the 4 KiB page and the whole leaf.
  assert.equal(t.invalidateRange(1, 1, MiB2 - 0x1000n, 2), 3);
  assert.equal(t.size, 3);
  // Re-inserting a page as a 4 KiB leaf takes it out of its old leaf.
  t.insert(2, 0, 0x1000n, E(0x1000n), MiB2);
  t.insert(2, 0, 0x2000n, E(0x2000n), MiB2);
  t.insert(2, 0, 0x2000n, E(0x2000n));
  assert.equal(t.invalidateRange(2, 0, 0x1000n, 1), 1);
  assert.equal(t.lookup(2, 0, 0x2000n)?.hpa, 0x2000n);
  assert.throws(() => t.insert(2, 0, 0n, E(0n), 0x3000n), RangeError);
  assert.throws(() => t.insert(2, 0, 0n, E(0n), 0x800n), RangeError);
});

test('iotlb: property: agrees with a naive model under random operations', () => {
  type Op =
    | { k: 'ins'; tag: number; pasid: number; page: number; hpa: number; leaf: number }
    | { k: 'rng'; tag: number; pasid: number | undefined; page: number; n: number }
    | { k: 'tag'; tag: number };
  const small = { tag: fc.integer({ min: 0, max: 1 }), pasid: fc.integer({ min: 0, max: 1 }), page: fc.integer({ min: 0, max: 100 }) };
  // Mostly inserts, so that ranges find entries (and leaves around their ends) to drop.
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ k: fc.constant('ins' as const), ...small, hpa: fc.integer({ min: 0, max: 1000 }), leaf: fc.constantFrom(1, 1, 4, 16) }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        k: fc.constant('rng' as const),
        ...small,
        pasid: fc.option(small.pasid, { nil: undefined }),
        n: fc.integer({ min: 0, max: 120 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('tag' as const), tag: small.tag }) },
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.array(op, { minLength: 20, maxLength: 80 }), (cap, ops) => {
      const t = new Iotlb(cap);
      // key -> [hpa, pages of its leaf]; insertion-ordered, like the eviction order.
      const model = new Map<string, [number, number]>();
      for (const o of ops) {
        if (o.k === 'ins') {
          const key = `${o.tag}/${o.pasid}/${o.page}`;
          model.delete(key);
          if (model.size >= cap) model.delete(model.keys().next().value!);
          model.set(key, [o.hpa, o.leaf]);
          t.insert(o.tag, o.pasid, BigInt(o.page) << 12n, E(BigInt(o.hpa) << 12n), BigInt(o.leaf) << 12n);
        } else if (o.k === 'rng') {
          let want = 0;
          for (const [key, [, leaf]] of [...model]) {
            const [tag, pasid, page] = key.split('/').map(Number) as [number, number, number];
            const base = page - (page % leaf);
            if (tag === o.tag && (o.pasid === undefined || pasid === o.pasid) && base < o.page + o.n && base + leaf > o.page && o.n > 0) {
              model.delete(key);
              want++;
            }
          }
          assert.equal(t.invalidateRange(o.tag, o.pasid, BigInt(o.page) << 12n, o.n), want);
        } else {
          let want = 0;
          for (const key of [...model.keys()]) {
            if (key.startsWith(`${o.tag}/`)) {
              model.delete(key);
              want++;
            }
          }
          assert.equal(t.invalidateTag(o.tag), want);
        }
        assert.equal(t.size, model.size);
      }
      for (let tag = 0; tag <= 1; tag++)
        for (let pasid = 0; pasid <= 1; pasid++)
          for (let page = 0; page <= 100; page++) {
            const want = model.get(`${tag}/${pasid}/${page}`);
            assert.equal(t.lookup(tag, pasid, BigInt(page) << 12n)?.hpa, want === undefined ? undefined : BigInt(want[0]) << 12n);
          }
    }),
  );
});
