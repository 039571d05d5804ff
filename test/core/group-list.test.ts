// The intrusive group lists (core/iommu/group-list.ts): order, O(1) removal
// that is a no-op off the list, head/after while walking, and the list kind
// checked by the type checker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GroupList, ListNode } from '../../core/iommu/group-list.js';

class Item {
  readonly a = new ListNode<Item, 'a'>(this);
  readonly b = new ListNode<Item, 'b'>(this);
  constructor(readonly n: number) {}
}

test('GroupList: push at both ends, remove anywhere (twice is a no-op), walk with head/after', () => {
  const l = new GroupList<Item, 'a'>();
  const other = new GroupList<Item, 'a'>();
  const xs = [0, 1, 2, 3].map((n) => new Item(n));
  l.pushTail(xs[1]!.a);
  l.pushTail(xs[2]!.a);
  l.pushHead(xs[0]!.a);
  other.pushTail(xs[3]!.a);
  assert.deepEqual(
    l.toArray().map((x) => x.n),
    [0, 1, 2],
  );
  assert.equal(l.size, 3);
  assert.ok(l.has(xs[1]!.a) && !l.has(xs[3]!.a) && other.has(xs[3]!.a));
  other.remove(xs[1]!.a); // not on `other`: nothing happens to either list
  assert.deepEqual([l.size, other.size], [3, 1]);
  l.remove(xs[1]!.a);
  l.remove(xs[1]!.a);
  assert.deepEqual(
    l.toArray().map((x) => x.n),
    [0, 2],
  );
  assert.equal(l.size, 2);
  assert.equal(l.head?.n, 0);
  assert.equal(l.after(xs[0]!.a)?.n, 2);
  assert.equal(l.after(xs[2]!.a), undefined);
  l.remove(xs[0]!.a);
  l.remove(xs[2]!.a);
  assert.deepEqual([l.size, l.head, l.toArray().length], [0, undefined, 0]);
  // A node that left a list can join another at once, at either end.
  other.pushHead(xs[2]!.a);
  assert.deepEqual(
    other.toArray().map((x) => x.n),
    [2, 3],
  );
});

test('GroupList: one item on lists of two kinds at once, through its two nodes', () => {
  const la = new GroupList<Item, 'a'>();
  const lb = new GroupList<Item, 'b'>();
  const x = new Item(7);
  la.pushTail(x.a);
  lb.pushTail(x.b);
  la.remove(x.a);
  assert.deepEqual([la.size, lb.size, lb.head?.n], [0, 1, 7]);
  if (la.size < 0) {
    // Never runs; it must not compile: a node of kind 'b' on a list of kind 'a'.
    // @ts-expect-error the list kind is part of the node's type
    la.pushTail(x.b);
  }
});
