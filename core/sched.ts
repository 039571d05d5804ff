/**
 * Time and deferred work for the synchronous core.
 *
 * The core never sleeps and never awaits: the PRQ drain, the SVA work queue,
 * device retries and response timeouts come in through this interface, so a
 * test can drive a fault storm or a timeout without waiting, and the daemon
 * plugs in the event loop. Kernel analogue: the threaded IRQ, workqueues and
 * timers that the real IOMMU drivers use.
 */
export interface TimerHandle {
  /** Opaque to callers. */
  readonly id: number;
}

export interface Scheduler {
  /** Monotonic time in milliseconds (fractional). */
  now(): number;
  /** Runs `fn` after the current command, in FIFO order with other deferred work. */
  defer(fn: () => void): void;
  /** Runs `fn` once, `ms` milliseconds from now. */
  timer(ms: number, fn: () => void): TimerHandle;
  /** Cancels a timer; cancelling a fired or cancelled timer does nothing. */
  cancel(h: TimerHandle): void;
}

interface ManualTimer {
  id: number;
  at: number;
  fn: () => void;
  seq: number;
}

/**
 * A scheduler driven by hand: deferred work runs on {@link ManualScheduler.run},
 * timers fire on {@link ManualScheduler.advance}. Deterministic; for tests and
 * the in-process benchmark.
 */
export class ManualScheduler implements Scheduler {
  private t = 0;
  private seq = 0;
  private queue: Array<() => void> = [];
  private head = 0;
  private timers = new Map<number, ManualTimer>();

  now(): number {
    return this.t;
  }

  defer(fn: () => void): void {
    this.queue.push(fn);
  }

  timer(ms: number, fn: () => void): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { id, at: this.t + Math.max(0, ms), fn, seq: id });
    return { id };
  }

  cancel(h: TimerHandle): void {
    this.timers.delete(h.id);
  }

  /** Number of deferred callbacks waiting. */
  get pending(): number {
    return this.queue.length - this.head;
  }

  /** Runs deferred work until none is left (work may defer more work). Returns how many ran. */
  run(limit = 10_000_000): number {
    const n = this.step(limit);
    if (this.head < this.queue.length) throw new Error('ManualScheduler.run: deferred work does not settle');
    return n;
  }

  /** Runs at most @max deferred callbacks, oldest first (a test's single step). Returns how many ran. */
  step(max = 1): number {
    let n = 0;
    while (this.head < this.queue.length && n < max) {
      n++;
      const fn = this.queue[this.head]!;
      this.queue[this.head++] = noop;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      fn();
    }
    return n;
  }

  /** Moves time forward by `ms`, firing due timers in deadline order and running deferred work after each. */
  advance(ms: number): void {
    const end = this.t + ms;
    this.run();
    for (;;) {
      let next: ManualTimer | undefined;
      for (const tm of this.timers.values()) {
        if (tm.at <= end && (!next || tm.at < next.at || (tm.at === next.at && tm.seq < next.seq))) next = tm;
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.t = Math.max(this.t, next.at);
      next.fn();
      this.run();
    }
    this.t = end;
  }

  /** Number of armed timers. */
  get armedTimers(): number {
    return this.timers.size;
  }
}

function noop(): void {}
