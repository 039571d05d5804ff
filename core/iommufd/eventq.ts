/**
 * The fault queue object (drivers/iommu/iommufd/eventq.c, was fault.c).
 *
 * Groups arrive from the IOPF core through {@link iommufdFaultIopfHandler} and
 * wait on a FIFO deliver list. A read takes whole groups from the head and
 * gives each a cookie (lowest free ≥ 1); a response consumes the cookie and
 * sends the group's one hardware response. Detach, replace, remove-device,
 * destroy, context release (shutdown included), the response timeout and the
 * depth policy answer groups automatically, each exactly once, all through
 * {@link IommufdFault.autoAnswer}.
 *
 * Extensions over the kernel (the protocol reference, docs/protocol.md): several connections (the
 * stream's fds) per queue, each with a window; a closed connection's
 * unanswered groups go back to the head with their cookies; `depth`/`overflow`
 * and `response_timeout_ms`.
 *
 * Cost: every operation is O(1) per group touched (intrusive lists, an array
 * cookie table, one timer for all deadlines); nothing scans all outstanding
 * groups per event.
 */
import { IommuError } from '../iommu/errors.js';
import { IOMMU_PAGE_RESP_INVALID, IOMMU_PAGE_RESP_SUCCESS, type IommuAttachHandle, type IopfGroup } from '../iommu/iommu.js';
import { iopfFreeGroup, iopfGroupResponse } from '../iopf/io-pgfault.js';
import type { TimerHandle } from '../sched.js';
import { GroupList, ListNode } from '../iommu/group-list.js';
import { IdAllocator } from './ids.js';
import { IommufdObject, type AutoCause, type IommufdCtx } from './main.js';

/** What a connection (the stream, or a test's fd) hears from its fault queue. */
export interface FaultListener {
  /** Groups are waiting and this connection has window space. Coalesce on your side. */
  readable(): void;
  /** Groups answered INVALID by the response timeout. */
  expired(cookies: number[]): void;
  /** Groups answered at once by the depth policy. */
  overflow(count: number): void;
  /**
   * Extension: groups that held a cookie (delivered, or returned to the queue
   * with it) were answered INVALID by detach, replace, unplug or destroy;
   * their cookies are free again. One call per operation, never empty.
   */
  revoked(cookies: number[], cause: RevokeCause): void;
  /** The queue is going away (context release): close the connection. */
  kill(): void;
}

/** Why groups holding cookies were answered INVALID without a response (the `revoked` notice). */
export type RevokeCause = 'detach' | 'replace' | 'unplug' | 'destroy';

/** One open reader of a fault queue (a fault fd; a WebSocket stream). */
export class IommufdFaultConn {
  /** Groups delivered here and not answered, in delivery order. */
  readonly delivered = new GroupList<IopfGroup, 'deliver'>();
  open = true;

  constructor(
    readonly fault: IommufdFault,
    readonly window: number,
    readonly listener: FaultListener,
  ) {}

  /** Room for more groups under the window. */
  get space(): number {
    return this.window - this.delivered.size;
  }
}

/** struct iommufd_attach_handle: an attach handle plus the device that made it. */
export interface IommufdHandleGroups {
  /** Groups of this attachment owned by a fault queue (for detach in O(k)). */
  readonly groups: GroupList<IopfGroup, 'handle'>;
  /** dev_id of the attaching device. */
  readonly devId: number;
}

export type FaultAttachHandle = IommuAttachHandle & IommufdHandleGroups;

export interface FaultCounters {
  reported: number;
  delivered: number;
  redelivered: number;
  answered_success: number;
  answered_invalid: number;
  auto_detach: number;
  auto_replace: number;
  auto_unplug: number;
  auto_destroy: number;
  timeout: number;
  overflow: number;
}

export interface FaultOptions {
  depth: number;
  overflow: 'success' | 'invalid';
  responseTimeoutMs: number;
}

/** RESPOND_OK - {@link IommufdFault.respondOne}: the group was answered. */
export const RESPOND_OK = 0;
/** RESPOND_BAD_CODE - the code is neither SUCCESS (0) nor INVALID (1); the cookie stays valid. */
export const RESPOND_BAD_CODE = 1;
/** RESPOND_BAD_COOKIE - no outstanding group holds the cookie (unknown, stale, repeated). */
export const RESPOND_BAD_COOKIE = 2;
/** RespondStatus - the outcome of one response entry. */
export type RespondStatus = typeof RESPOND_OK | typeof RESPOND_BAD_CODE | typeof RESPOND_BAD_COOKIE;

/**
 * respondErrorMessage() - the EINVAL message of a refused response entry,
 * the one text for every path that refuses it (binary write, JSON frame).
 * @status: RESPOND_BAD_CODE or RESPOND_BAD_COOKIE.
 * @cookie: the entry's cookie.
 * @code: the entry's code as the client sent it (a number, or any JSON value
 *        in JSON mode).
 */
export function respondErrorMessage(status: RespondStatus, cookie: number, code: unknown): string {
  return status === RESPOND_BAD_CODE
    ? `response code ${JSON.stringify(code) ?? String(code)} is not 0 (success) or 1 (invalid)`
    : status === RESPOND_BAD_COOKIE
      ? `cookie ${String(cookie)} is not outstanding`
      : 'bad response';
}

/** The counter each automatic cause adds to (context release counts as destroy). */
const AUTO_COUNTER: Readonly<Record<AutoCause, keyof FaultCounters>> = {
  detach: 'auto_detach',
  replace: 'auto_replace',
  unplug: 'auto_unplug',
  destroy: 'auto_destroy',
  release: 'auto_destroy',
  timeout: 'timeout',
  overflow: 'overflow',
};

/** struct iommufd_fault. */
export class IommufdFault extends IommufdObject {
  readonly type = 'fault' as const;
  /** The deliver list: groups waiting for delivery (including returned ones), FIFO. */
  private readonly deliver = new GroupList<IopfGroup, 'deliver'>();
  // Cookie table: cookie → group, for groups that hold a cookie.
  private readonly cookies: Array<IopfGroup | undefined> = [undefined];
  private readonly cookieIds = new IdAllocator();
  readonly conns = new Set<IommufdFaultConn>();
  /** Response-timeout list, ordered by first delivery (so its head is the next deadline). */
  private readonly deadlines = new GroupList<IopfGroup, 'deadline'>();
  private timer: TimerHandle | undefined;
  private timerAt = 0;
  readonly counters: FaultCounters = {
    reported: 0,
    delivered: 0,
    redelivered: 0,
    answered_success: 0,
    answered_invalid: 0,
    auto_detach: 0,
    auto_replace: 0,
    auto_unplug: 0,
    auto_destroy: 0,
    timeout: 0,
    overflow: 0,
  };
  /** Bound handler: what a fault-capable domain's iopfHandler calls. */
  readonly handler = (group: IopfGroup): number => iommufdFaultIopfHandler(this, group);
  /** Bound revoke: iopf_queue_remove_device takes a group back from us. */
  readonly revoke = (group: IopfGroup): void => {
    if (group.queue === this && group.cookie !== 0) this.revokedPending.push(group.cookie);
    this.autoAnswer(group, 'unplug');
  };
  /** Cookies taken back by {@link revoke} since the last {@link revokeDone}. */
  private revokedPending: number[] = [];
  /** Bound: iopf_queue_remove_device is done revoking; one `revoked` notice for the batch. */
  readonly revokeDone = (): void => {
    const cookies = this.revokedPending;
    if (cookies.length === 0) return;
    this.revokedPending = [];
    this.notifyRevoked(cookies, 'unplug');
  };

  constructor(
    ictx: IommufdCtx,
    readonly options: FaultOptions,
  ) {
    super(ictx);
  }

  describe(): Record<string, unknown> {
    return { queued: this.queued, outstanding: this.outstanding, connections: this.conns.size };
  }

  /** Groups delivered on open connections and not answered. */
  get outstanding(): number {
    let n = 0;
    for (const c of this.conns) n += c.delivered.size;
    return n;
  }

  /** Groups holding a cookie (delivered at least once, unanswered). */
  get cookiesInUse(): number {
    return this.cookieIds.used;
  }

  /** Groups waiting for delivery (including ones returned by a closed connection). */
  get queued(): number {
    return this.deliver.size;
  }

  private armTimer(): void {
    const first = this.deadlines.head;
    if (!first) return;
    const sched = this.ictx.env.sched;
    this.timerAt = first.deliveredAt + this.options.responseTimeoutMs;
    this.timer = sched.timer(Math.max(0, this.timerAt - sched.now()), () => this.expire());
  }

  private expire(): void {
    this.timer = undefined;
    const now = this.ictx.env.sched.now();
    const cookies: number[] = [];
    let g = this.deadlines.head;
    while (g && g.deliveredAt + this.options.responseTimeoutMs <= now) {
      const next = this.deadlines.after(g.deadlineNode!);
      cookies.push(g.cookie);
      this.autoAnswer(g, 'timeout');
      g = next;
    }
    this.armTimer();
    if (cookies.length > 0) {
      for (const c of [...this.conns]) c.listener.expired(cookies);
      this.notifyReadable();
    }
  }

  // ---- tracking ------------------------------------------------------------

  /**
   * Remove `g` from every structure of this queue (deliver list, cookie table,
   * its connection, the timeout list, its handle's set). Idempotent.
   */
  untrack(g: IopfGroup): void {
    if (g.queue !== this) return;
    this.deliver.remove(g.deliverNode);
    if (g.cookie !== 0) {
      this.cookies[g.cookie] = undefined;
      this.cookieIds.free(g.cookie);
    }
    const conn = g.conn as IommufdFaultConn | undefined;
    if (conn) {
      conn.delivered.remove(g.deliverNode);
      g.conn = undefined;
      if (conn.open && this.deliver.head && conn.space === 1) conn.listener.readable();
    }
    if (g.deadlineNode) this.deadlines.remove(g.deadlineNode);
    (g.attachHandle as FaultAttachHandle | undefined)?.groups.remove(g.handleNode);
    g.queue = undefined;
    g.state = 'answered';
  }

  /**
   * autoAnswer() - answer @g without a response from user space: forget it
   * (untrack), count @cause, tell the observer, send the group's one
   * response and free it. Every automatic path goes through here: detach,
   * replace, unplug (iopf_queue_remove_device's revoke), destroy, context
   * release and shutdown, the response timeout, the depth policy. The code
   * is INVALID, except for an overflow under the `success` policy.
   * The caller collects the cookie first if it needs one (untrack frees it)
   * and sends the connections' notices.
   */
  private autoAnswer(g: IopfGroup, cause: AutoCause): void {
    this.untrack(g);
    const code = cause === 'overflow' && this.options.overflow === 'success' ? IOMMU_PAGE_RESP_SUCCESS : IOMMU_PAGE_RESP_INVALID;
    this.counters[AUTO_COUNTER[cause]]++;
    this.ictx.env.observer.autoAnswered?.(cause, code, this.ictx.env.sched.now() - g.reportedAt, g, this);
    iopfGroupResponse(g, code);
    iopfFreeGroup(g);
  }

  /** Tell every open connection that `cookies` were answered INVALID by `cause`. */
  private notifyRevoked(cookies: number[], cause: RevokeCause): void {
    for (const c of [...this.conns]) c.listener.revoked(cookies, cause);
  }

  /** Tell connections with window space that groups are waiting. */
  notifyReadable(): void {
    if (!this.deliver.head) return;
    for (const c of this.conns) if (c.space > 0) c.listener.readable();
  }

  // ---- the handler ---------------------------------------------------------

  /** Is anything waiting for delivery (poll's EPOLLIN)? */
  get readable(): boolean {
    return this.deliver.head !== undefined;
  }

  /**
   * iommufd_fault_fops_read, for one connection: take whole groups from the
   * head while the connection's window has room and `maxRecords` allows.
   * A group that does not fit stays at the head without a cookie.
   * ENOMEM/EBUSY if no cookie can be allocated and nothing was read.
   * A caller that reads often may pass `out`, an array reused from read to
   * read: it is emptied, filled and returned.
   */
  read(conn: IommufdFaultConn, maxRecords = Infinity, maxGroups = Infinity, out: IopfGroup[] = []): IopfGroup[] {
    out.length = 0;
    let records = 0;
    const now = this.ictx.env.sched.now();
    const timeout = this.options.responseTimeoutMs;
    const deliver = this.deliver;
    while (deliver.head && conn.delivered.size < conn.window && out.length < maxGroups) {
      const g = deliver.head;
      if (records + g.faultCount > maxRecords) break;
      if (g.cookie === 0) {
        const injected = this.ictx.env.failAlloc?.('cookie') ?? false;
        const cookie = injected ? 0 : this.cookieIds.alloc();
        if (cookie === 0) {
          // The group stays at the head without a cookie (kernel: fetch/restore).
          if (out.length === 0) throw new IommuError(injected ? 'ENOMEM' : 'EBUSY', injected ? 'injected allocation failure (cookie)' : 'every cookie is in use');
          break;
        }
        g.cookie = cookie;
        this.cookies[cookie] = g;
      } else {
        g.redelivered = true;
        this.counters.redelivered++;
      }
      deliver.remove(g.deliverNode);
      records += g.faultCount;
      g.state = 'delivered';
      g.conn = conn;
      conn.delivered.pushTail(g.deliverNode);
      if (g.deliveredAt < 0) {
        g.deliveredAt = now;
        if (timeout > 0) {
          this.deadlines.pushTail((g.deadlineNode ??= new ListNode(g)));
          if (!this.timer) this.armTimer();
        }
      }
      out.push(g);
    }
    if (out.length > 0) {
      this.counters.delivered += out.length;
      this.ictx.env.observer.delivered?.(out.length, out, this);
    }
    return out;
  }

  /**
   * iommufd_fault_fops_write, one entry: answer the group holding `cookie`
   * with `code`. Callers decode responses straight from a frame and call
   * this per entry (it allocates nothing); a bad entry is an EINVAL for that
   * entry. A bad code is checked first and leaves the cookie valid.
   *
   * Return: RESPOND_OK, RESPOND_BAD_CODE or RESPOND_BAD_COOKIE (see
   * {@link respondErrorMessage} for the entry's EINVAL message).
   */
  respondOne(cookie: number, code: number): RespondStatus {
    if (code !== IOMMU_PAGE_RESP_SUCCESS && code !== IOMMU_PAGE_RESP_INVALID) return RESPOND_BAD_CODE;
    const g = Number.isInteger(cookie) && cookie >= 1 && cookie < this.cookies.length ? this.cookies[cookie] : undefined;
    if (!g) return RESPOND_BAD_COOKIE;
    this.untrack(g);
    if (code === IOMMU_PAGE_RESP_SUCCESS) this.counters.answered_success++;
    else this.counters.answered_invalid++;
    const observer = this.ictx.env.observer;
    if (observer.answered) observer.answered(code, this.ictx.env.sched.now() - g.reportedAt, g, this);
    iopfGroupResponse(g, code === IOMMU_PAGE_RESP_SUCCESS ? IOMMU_PAGE_RESP_SUCCESS : IOMMU_PAGE_RESP_INVALID);
    iopfFreeGroup(g);
    return RESPOND_OK;
  }

  /**
   * Open a connection (a fault fd). ENOSPC beyond the per-queue stream limit.
   * Groups waiting for delivery make the new connection readable at once.
   */
  open(window: number, listener: FaultListener): IommufdFaultConn {
    const max = this.ictx.env.limits.maxStreamsPerFault;
    if (max > 0 && this.conns.size >= max) throw new IommuError('ENOSPC', `fault queue ${this.id} already has ${max} open streams`);
    const conn = new IommufdFaultConn(this, window, listener);
    this.conns.add(conn);
    this.users++;
    if (this.deliver.head) listener.readable();
    return conn;
  }

  /**
   * Close a connection: nothing is answered; its unanswered groups return to
   * the head of the queue, in delivery order, keeping their cookies.
   */
  close(conn: IommufdFaultConn): void {
    if (!conn.open) return;
    conn.open = false;
    this.conns.delete(conn);
    this.users--;
    const back = conn.delivered.toArray();
    for (let i = back.length - 1; i >= 0; i--) {
      const g = back[i]!;
      conn.delivered.remove(g.deliverNode);
      g.conn = undefined;
      g.state = 'queued';
      this.deliver.pushHead(g.deliverNode);
    }
    if (back.length > 0) this.notifyReadable();
  }

  /**
   * iommufd_auto_response_faults: answer INVALID every group of `handle` this
   * queue holds, queued or delivered, exactly once.
   */
  autoResponse(handle: FaultAttachHandle, cause: 'detach' | 'replace' | 'unplug'): number {
    let n = 0;
    let cookies: number[] | undefined;
    for (const g of handle.groups.toArray()) {
      if (g.queue !== this) continue;
      // The cookie, if any, before untrack() frees it.
      if (g.cookie !== 0) (cookies ??= []).push(g.cookie);
      this.autoAnswer(g, cause);
      n++;
    }
    if (cookies) this.notifyRevoked(cookies, cause);
    return n;
  }

  /** iommufd_fault_destroy: answer INVALID every group still held (deliver list and cookie table). */
  destroy(): void {
    if (this.conns.size > 0) {
      // Tell the streams before kill() closes them (the groups are answered just below).
      const cookies: number[] = [];
      for (let i = 1; i < this.cookies.length; i++) if (this.cookies[i]) cookies.push(i);
      if (cookies.length > 0) this.notifyRevoked(cookies, 'destroy');
    }
    for (const c of [...this.conns]) {
      this.close(c);
      c.listener.kill();
    }
    const all = this.deliver.toArray();
    for (const g of this.cookies) if (g && g.state !== 'queued') all.push(g);
    const cause = this.ictx.released ? 'release' : 'destroy';
    for (const g of all) this.autoAnswer(g, cause);
    if (this.timer) this.ictx.env.sched.cancel(this.timer);
    this.timer = undefined;
  }

  /** Accept a group from the IOPF core (see {@link iommufdFaultIopfHandler}). */
  enqueue(g: IopfGroup): void {
    const depth = this.options.depth;
    if (depth > 0 && this.queued >= depth) {
      this.autoAnswer(g, 'overflow');
      for (const c of this.conns) c.listener.overflow(1);
      return;
    }
    g.queue = this;
    g.state = 'queued';
    (g.attachHandle as FaultAttachHandle).groups.pushTail(g.handleNode);
    this.deliver.pushTail(g.deliverNode);
    this.counters.reported++;
    this.ictx.env.observer.reported?.(g, this);
    // Readers drain the list until it is empty or their window is full; only
    // the empty → non-empty edge needs a wake-up (a full window wakes on answer).
    if (this.queued === 1) this.notifyReadable();
  }
}

/**
 * iommufd_fault_iopf_handler: the iopf_handler of every fault-capable hwpt's
 * domain. Appends the group at the tail of the deliver list and wakes readers.
 * Never fails (returns 0).
 */
export function iommufdFaultIopfHandler(fault: IommufdFault, group: IopfGroup): number {
  fault.enqueue(group);
  return 0;
}

/**
 * IOMMU_FAULT_QUEUE_ALLOC. EOPNOTSUPP if flags ≠ 0; EINVAL for a bad option.
 */
export function iommufdFaultAlloc(
  ictx: IommufdCtx,
  req: { flags?: number; depth?: number; overflow?: 'success' | 'invalid'; response_timeout_ms?: number },
): IommufdFault {
  if ((req.flags ?? 0) !== 0) throw new IommuError('EOPNOTSUPP', `fault queue flags 0x${(req.flags ?? 0).toString(16)} are not supported`);
  const options: FaultOptions = {
    depth: req.depth ?? 0,
    overflow: req.overflow ?? 'success',
    responseTimeoutMs: req.response_timeout_ms ?? 0,
  };
  return ictx.create(new IommufdFault(ictx, options), () => {});
}

/** dev_id to put in a group's records: the object id of the device whose attachment reported it. */
export function faultGroupDevId(group: IopfGroup): number {
  return (group.attachHandle as FaultAttachHandle | undefined)?.devId ?? 0;
}
