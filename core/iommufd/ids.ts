/**
 * Smallest-free-id allocation, as the kernel's xarrays do it with XA_FLAGS_ALLOC1:
 * object ids and fault cookies are the lowest free integer ≥ 1.
 *
 * Ids below `fresh` that are free are bits in a bitmap with summary levels
 * above it (a bit per 32-bit word of the level below: "this word has a free
 * id"), so the lowest free id is found by walking down from the one-word top
 * level, and alloc/free cost O(log32 n) word operations (about four for
 * 100,000 ids), with no array resizing on the way. The bitmap covers the
 * highest id ever handed out at once, not the id space.
 */
export class IdAllocator {
  private fresh = 1;
  private inUse = 0;
  /** Free ids below `fresh`. */
  private free_ = 0;
  /** levels[0]: a set bit per free id; levels[k]: a set bit per non-zero word of levels[k - 1]; the last has one word. */
  private levels: Uint32Array[] = [new Uint32Array(1)];

  constructor(private readonly max = 0xffff_ffff) {}

  /** Number of ids handed out and not freed. */
  get used(): number {
    return this.inUse;
  }

  /** The lowest free id, or 0 when every id up to `max` is taken. */
  alloc(): number {
    let id: number;
    if (this.free_ > 0) {
      id = this.lowest();
      this.clear(id);
      this.free_--;
    } else if (this.fresh <= this.max) {
      id = this.fresh++;
    } else {
      return 0;
    }
    this.inUse++;
    return id;
  }

  /** Returns `id` to the pool. The caller guarantees it was allocated and not yet freed. */
  free(id: number): void {
    this.inUse--;
    // Every free bit stays below `fresh`: only the in-use id fresh-1 lowers it.
    if (id === this.fresh - 1) {
      this.fresh--;
    } else {
      this.set(id);
      this.free_++;
    }
  }

  /** The lowest set bit of the bitmap (there is one). */
  private lowest(): number {
    const levels = this.levels;
    let i = 0;
    for (let k = levels.length - 1; k >= 0; k--) {
      const w = levels[k]![i]!;
      i = i * 32 + (31 - Math.clz32(w & -w));
    }
    return i;
  }

  private set(id: number): void {
    if (id >>> 5 >= this.levels[0]!.length) this.grow(id);
    const levels = this.levels;
    let i = id;
    for (let k = 0; k < levels.length; k++) {
      const words = levels[k]!;
      const w = words[i >>> 5]!;
      words[i >>> 5] = w | (1 << (i & 31));
      if (w !== 0) return; // the levels above already say this word has a free id
      i >>>= 5;
    }
  }

  private clear(id: number): void {
    const levels = this.levels;
    let i = id;
    for (let k = 0; k < levels.length; k++) {
      const words = levels[k]!;
      const w = words[i >>> 5]! & ~(1 << (i & 31));
      words[i >>> 5] = w;
      if (w !== 0) return;
      i >>>= 5;
    }
  }

  /** Make the bitmap cover `id`: double the bottom level and rebuild the summaries. */
  private grow(id: number): void {
    let words = this.levels[0]!.length;
    while (words <= id >>> 5) words *= 2;
    const bottom = new Uint32Array(words);
    bottom.set(this.levels[0]!);
    const levels = [bottom];
    for (let below = bottom; below.length > 1; ) {
      const up = new Uint32Array(Math.ceil(below.length / 32));
      for (let j = 0; j < below.length; j++) if (below[j] !== 0) up[j >>> 5]! |= 1 << (j & 31);
      levels.push(up);
      below = up;
    }
    this.levels = levels;
  }
}
