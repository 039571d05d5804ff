/**
 * An intrusive doubly linked list of IOPF groups (the kernel's list_head).
 * A group embeds one {@link ListNode} per list it can be on (the kernel's
 * `struct list_head` members), so adding and removing cost O(1) and allocate
 * nothing — with 100,000 groups outstanding, hash-set entries per group would
 * be most of the garbage collector's work.
 *
 * Every list and node is of one class whatever the list, so each access is a
 * plain field load at a monomorphic site. The `K` parameter names the node a
 * list links through (`'pending'`, `'deliver'`, ...): passing a group's
 * pending node to a deliver list does not compile.
 */

/** struct list_head, embedded in @item: its links on at most one list of kind K. */
export class ListNode<T, K extends string = string> {
  /** The list kind, for the type checker only (no such field exists at run time). */
  declare private readonly kind: K;
  next: ListNode<T, K> | undefined = undefined;
  prev: ListNode<T, K> | undefined = undefined;
  /** The list the node is on (undefined: on none). */
  list: GroupList<T, K> | undefined = undefined;

  constructor(readonly item: T) {}
}

export class GroupList<T, K extends string = string> {
  /** The node kind it takes, for the type checker only. */
  declare private readonly kind: K;
  private first: ListNode<T, K> | undefined = undefined;
  private last: ListNode<T, K> | undefined = undefined;
  size = 0;

  /** The first member. */
  get head(): T | undefined {
    return this.first?.item;
  }

  /** Is the node's member on this list? */
  has(n: ListNode<T, K>): boolean {
    return n.list === this;
  }

  pushTail(n: ListNode<T, K>): void {
    const last = this.last;
    n.list = this;
    n.next = undefined;
    n.prev = last;
    if (last) last.next = n;
    else this.first = n;
    this.last = n;
    this.size++;
  }

  pushHead(n: ListNode<T, K>): void {
    const first = this.first;
    n.list = this;
    n.prev = undefined;
    n.next = first;
    if (first) first.prev = n;
    else this.last = n;
    this.first = n;
    this.size++;
  }

  /** Unlink the node; does nothing if it is not on this list. */
  remove(n: ListNode<T, K>): void {
    if (n.list !== this) return;
    const next = n.next;
    const prev = n.prev;
    if (prev) prev.next = next;
    else this.first = next;
    if (next) next.prev = prev;
    else this.last = prev;
    n.next = n.prev = n.list = undefined;
    this.size--;
  }

  /** The member after the node's. */
  after(n: ListNode<T, K>): T | undefined {
    return n.next?.item;
  }

  /** A snapshot of the members, head first (safe to mutate the list while walking it). */
  toArray(): T[] {
    const out: T[] = [];
    for (let n = this.first; n; n = n.next) out.push(n.item);
    return out;
  }
}
