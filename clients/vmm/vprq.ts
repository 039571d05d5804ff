/**
 * DOC: the guest's virtual page request queue
 *
 * The VT-d page request queue the virtual IOMMU exposes to the guest, of a
 * fixed depth. The VMM injects descriptors (a whole group or nothing); the
 * guest's handler reads the head, handles it and only then advances the
 * head, so a descriptor holds its slot until it has been handled. When the
 * queue cannot take a group the VMM answers it SUCCESS at once, as VT-d
 * hardware does on a full queue (spec 7.4.1) and QEMU does: the device
 * retries.
 */

/** VirtualPrq - a bounded FIFO of page request descriptors. */
export class VirtualPrq<T> {
  readonly #entries: T[] = [];

  /** @depth: the number of descriptors the queue holds (≥ 1). */
  constructor(readonly depth: number) {
    if (!Number.isInteger(depth) || depth < 1) throw new RangeError(`PRQ depth must be ≥ 1, got ${depth}`);
  }

  /** inject() - append all of @items, or none if they do not fit. Return: whether they were. */
  inject(items: readonly T[]): boolean {
    if (this.#entries.length + items.length > this.depth) return false;
    this.#entries.push(...items);
    return true;
  }

  /** head() - the oldest descriptor, still in its slot. */
  head(): T | undefined {
    return this.#entries[0];
  }

  /** advance() - the head has been handled: free its slot. */
  advance(): void {
    this.#entries.shift();
  }
}
