/**
 * An intrusive doubly linked list of IOPF groups (the kernel's list_head).
 * A group carries one link slot per list it can be on, so adding and removing
 * cost O(1) and allocate nothing — with 100,000 groups outstanding, hash-set
 * entries per group would be most of the garbage collector's work.
 *
 * The links live in one small array per member (`links`), three entries per
 * list kind (next, prev, the list it is on); a numeric index keeps every
 * access monomorphic, which named per-list fields behind a computed key would
 * not.
 */
export const LINK_PENDING = 0;
export const LINK_HANDLE = 3;
export const LINK_DELIVER = 6;
export const LINK_DEADLINE = 9;
export const LINK_SLOTS = 12;
export type LinkKind = typeof LINK_PENDING | typeof LINK_HANDLE | typeof LINK_DELIVER | typeof LINK_DEADLINE;

export interface Linked {
  readonly links: unknown[];
}

/** A fresh link array for a member (all LINK_SLOTS slots empty): a copy of a template, which has no literal allocation site (see FaultEntry in io-pgfault.ts). */
export function newLinks(): unknown[] {
  return EMPTY_LINKS.slice();
}

const EMPTY_LINKS: readonly unknown[] = new Array<unknown>(LINK_SLOTS).fill(undefined);

export class GroupList<T extends Linked> {
  head: T | undefined = undefined;
  tail: T | undefined = undefined;
  size = 0;

  constructor(private readonly k: LinkKind) {}

  /** Is `x` on this list? */
  has(x: T): boolean {
    return x.links[this.k + 2] === this;
  }

  pushTail(x: T): void {
    const k = this.k;
    const l = x.links;
    l[k + 2] = this;
    l[k] = undefined;
    l[k + 1] = this.tail;
    if (this.tail) this.tail.links[k] = x;
    else this.head = x;
    this.tail = x;
    this.size++;
  }

  pushHead(x: T): void {
    const k = this.k;
    const l = x.links;
    l[k + 2] = this;
    l[k + 1] = undefined;
    l[k] = this.head;
    if (this.head) this.head.links[k + 1] = x;
    else this.tail = x;
    this.head = x;
    this.size++;
  }

  /** Unlink `x`; does nothing if it is not on this list. */
  remove(x: T): void {
    const k = this.k;
    const l = x.links;
    if (l[k + 2] !== this) return;
    const n = l[k] as T | undefined;
    const p = l[k + 1] as T | undefined;
    if (p) p.links[k] = n;
    else this.head = n;
    if (n) n.links[k + 1] = p;
    else this.tail = p;
    l[k] = l[k + 1] = l[k + 2] = undefined;
    this.size--;
  }

  /** The member after `x`. */
  after(x: T): T | undefined {
    return x.links[this.k] as T | undefined;
  }

  /** A snapshot of the members, head first (safe to mutate the list while walking it). */
  toArray(): T[] {
    const out: T[] = [];
    for (let x = this.head; x; x = x.links[this.k] as T | undefined) out.push(x);
    return out;
  }
}
