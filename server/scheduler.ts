/**
 * DOC: the event-loop scheduler
 *
 * The core is synchronous and takes time and deferred work from a
 * {@link Scheduler}; the daemon plugs in the Node event loop here. Deferred
 * work is batched: every defer() of one event-loop turn lands in one array
 * drained by a single setImmediate (the PRQ drain and every device response
 * go through defer(), so this is the hot path). Timers are unref'd so that
 * they never keep the process alive on their own.
 */
import { performance } from 'node:perf_hooks';
import type { Scheduler, TimerHandle } from '../core/index.js';

/** A timer handle that carries its Node timeout, so cancel() needs no table. */
interface EventLoopTimer extends TimerHandle {
  readonly timeout: NodeJS.Timeout;
}

/**
 * EventLoopScheduler - the core's Scheduler on the Node event loop.
 * @onError: called with anything a deferred function or a timer throws; the
 *   rest of the batch still runs (the core must not throw there, but a bug
 *   must not stall every later device response).
 */
export class EventLoopScheduler implements Scheduler {
  private batch: Array<() => void> = [];
  private scheduled = false;
  private nextId = 1;

  constructor(private readonly onError: (err: unknown) => void) {}

  /** now() - monotonic milliseconds (fractional), performance.now(). */
  now(): number {
    return performance.now();
  }

  /**
   * defer() - run @fn after the current command, FIFO with other deferred
   * work. Work deferred while a batch drains runs in the next batch, so a
   * fault storm yields to I/O between batches.
   */
  defer(fn: () => void): void {
    this.batch.push(fn);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.drain);
    }
  }

  /** timer() - run @fn once, @ms milliseconds from now (unref'd). */
  timer(ms: number, fn: () => void): TimerHandle {
    const timeout = setTimeout(() => this.run(fn), Math.max(0, ms));
    timeout.unref();
    const handle: EventLoopTimer = { id: this.nextId++, timeout };
    return handle;
  }

  /** cancel() - cancel a timer; a fired or cancelled one is ignored. */
  cancel(h: TimerHandle): void {
    clearTimeout((h as EventLoopTimer).timeout);
  }

  private readonly drain = (): void => {
    const batch = this.batch;
    this.batch = [];
    this.scheduled = false;
    for (const fn of batch) this.run(fn);
  };

  private run(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.onError(err);
    }
  }
}
