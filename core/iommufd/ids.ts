/**
 * Smallest-free-id allocation, as the kernel's xarrays do it with XA_FLAGS_ALLOC1:
 * object ids and fault cookies are the lowest free integer ≥ 1. O(log n) per
 * operation: every id below `fresh` that is free sits in a min-heap.
 */
export class IdAllocator {
  private fresh = 1;
  private heap: number[] = [];
  private inUse = 0;

  constructor(private readonly max = 0xffff_ffff) {}

  /** Number of ids handed out and not freed. */
  get used(): number {
    return this.inUse;
  }

  /** The lowest free id, or 0 when every id up to `max` is taken. */
  alloc(): number {
    let id: number;
    if (this.heap.length > 0) id = this.pop();
    else if (this.fresh <= this.max) id = this.fresh++;
    else return 0;
    this.inUse++;
    return id;
  }

  /** Returns `id` to the pool. The caller guarantees it was allocated and not yet freed. */
  free(id: number): void {
    this.inUse--;
    // Every heap entry stays below `fresh`: only the in-use id fresh-1 lowers it.
    if (id === this.fresh - 1) this.fresh--;
    else this.push(id);
  }

  private push(v: number): void {
    const h = this.heap;
    let i = h.push(v) - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]! <= v) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = v;
  }

  private pop(): number {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && h[r]! < h[l]! ? r : l;
        if (h[c]! >= last) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}
