/**
 * DOC: the observation feed
 *
 * GET /v1/platform/observe (admin): a read-only Server-Sent Events stream
 * for consoles and dashboards. Once a second a `snapshot` event (devices,
 * fault queues, contexts, totals over the interval); every quarter second
 * a `groups` event with the sampled group events since the last one.
 *
 * It never takes, delays or answers a group: it is fed by the core's
 * observer (core/iommufd/main.ts, IommufdObserver), which the fault queue
 * calls after it did its work, and it only reads. Its cost per group:
 *
 * - nobody subscribed: one boolean test per observer call;
 * - subscribed: a few additions and a histogram bucket per group, plus,
 *   for at most %ObserveOptions.eventsPerSecond groups a second (the
 *   sample), one small event object in a bounded ring. Later events of a
 *   sampled group (delivered, answered) follow it; other groups are
 *   counted as `sampled_out`.
 *
 * Slow subscribers are dropped from, never waited for: a message is not
 * written to a subscriber whose unsent output is over
 * %ObserveOptions.slowBytes (it is counted in its `dropped`), and a
 * subscriber that stays that slow for %ObserveOptions.slowSnapshots
 * snapshots in a row is disconnected.
 */
import { PassThrough, type Readable } from 'node:stream';
import type { AutoCause, IommufdFault, IommufdObject, IommufdObserver, IopfGroup, Platform } from '../core/index.js';
import { formatU64, type ObserveGroupEvent, type ObserveSnapshot } from '../protocol/index.js';
import type { ContextRegistry } from './contexts.js';
import { HttpError } from './errors.js';

/**
 * struct ObserveOptions - the feed's bounds.
 * @maxSubscribers: open feeds at most (one more is ENOSPC).
 * @intervalMs: between snapshots.
 * @flushMs: between `groups` events.
 * @eventsPerSecond: groups sampled per second at most.
 * @ringSize: group events held between two flushes at most.
 * @slowBytes: unsent output above which a subscriber misses messages.
 * @slowSnapshots: snapshots in a row a subscriber may stay that slow.
 */
export interface ObserveOptions {
  maxSubscribers: number;
  intervalMs: number;
  flushMs: number;
  eventsPerSecond: number;
  ringSize: number;
  slowBytes: number;
  slowSnapshots: number;
}

/** DEFAULT_OBSERVE_OPTIONS - the daemon's feed bounds. */
export const DEFAULT_OBSERVE_OPTIONS: ObserveOptions = {
  maxSubscribers: 16,
  intervalMs: 1000,
  flushMs: 250,
  eventsPerSecond: 200,
  ringSize: 512,
  slowBytes: 256 * 1024,
  slowSnapshots: 10,
};

/** One open feed. */
interface Subscriber {
  readonly out: PassThrough;
  readonly events: boolean;
  dropped: number;
  slowFor: number;
}

/** PASID_VALID in a fault's flags (IOMMU_FAULT_PAGE_REQUEST_PASID_VALID). */
const PASID_VALID = 1;
/** Latency histogram: bucket i holds latencies up to 2^(i/4) µs (the last one everything above). */
const LAT_BUCKETS = 4 * 28;
const CODE_NAMES = ['success', 'invalid'] as const;

/**
 * LatencyBuckets - latencies of one interval in logarithmic buckets
 * (quarter powers of two, so a percentile is within 19 % above the truth).
 */
class LatencyBuckets {
  private readonly counts = new Uint32Array(LAT_BUCKETS);
  count = 0;
  max = 0;

  add(ms: number): void {
    const us = ms * 1000;
    const i = us <= 1 ? 0 : Math.min(LAT_BUCKETS - 1, Math.ceil(Math.log2(us) * 4));
    this.counts[i]!++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  /** percentile() - the bucket bound under which @p of the latencies lie, in ms (at most the maximum). */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const want = Math.ceil(this.count * p);
    let acc = 0;
    for (let i = 0; i < LAT_BUCKETS; i++) {
      acc += this.counts[i]!;
      if (acc >= want) return Math.min(this.max, 2 ** (i / 4) / 1000);
    }
    return this.max;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.max = 0;
  }
}

/**
 * ObserveFeed - the observation feed: an observer wrapped around another
 * (the metrics one), the subscribers, and their timers (running only while
 * someone subscribes).
 */
export class ObserveFeed {
  /** What the Platform's `observer` option takes: @inner first, then the feed. */
  readonly observer: IommufdObserver;
  private readonly subs = new Set<Subscriber>();
  private active = false;
  private platform: Platform | undefined;
  private contexts: ContextRegistry | undefined;
  private snapshotTimer: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private intervalStart = 0;
  // Interval counts.
  private reported = 0;
  private answered = 0;
  private auto = 0;
  private readonly latency = new LatencyBuckets();
  // Sampling: groups whose later events follow, and the interval's budget left.
  private sampled = new WeakSet<IopfGroup>();
  private budget = 0;
  private sent = 0;
  private sampledOut = 0;
  private ring: ObserveGroupEvent[] = [];
  private closed = false;

  constructor(
    inner: IommufdObserver,
    private readonly opts: ObserveOptions = DEFAULT_OBSERVE_OPTIONS,
  ) {
    this.observer = {
      refused: (what) => inner.refused?.(what),
      veventReported: () => inner.veventReported?.(),
      veventRead: (n) => inner.veventRead?.(n),
      veventLost: () => inner.veventLost?.(),
      reported: (g, q) => {
        inner.reported?.(g, q);
        if (!this.active) return;
        this.reported++;
        if (this.budget > 0) {
          this.budget--;
          this.sampled.add(g);
          this.push(this.event('reported', g, q));
        } else this.sampledOut++;
      },
      delivered: (n, groups, q) => {
        inner.delivered?.(n, groups, q);
        if (!this.active) return;
        for (const g of groups) {
          if (!this.sampled.has(g)) continue;
          const e = this.event('delivered', g, q);
          e.cookie = g.cookie;
          this.push(e);
        }
      },
      answered: (code, latencyMs, g, q) => {
        inner.answered?.(code, latencyMs, g, q);
        if (!this.active) return;
        this.answered++;
        this.latency.add(latencyMs);
        if (!this.sampled.has(g)) return;
        const e = this.event('answered', g, q);
        e.code = CODE_NAMES[code] ?? 'invalid';
        e.latency_ms = latencyMs;
        this.push(e);
      },
      autoAnswered: (cause: AutoCause, code, latencyMs, g, q) => {
        inner.autoAnswered?.(cause, code, latencyMs, g, q);
        if (!this.active) return;
        this.auto++;
        this.latency.add(latencyMs);
        // An overflowed group was never reported: it is sampled here, if the budget allows.
        if (!this.sampled.has(g)) {
          if (cause !== 'overflow' || this.budget <= 0) return;
          this.budget--;
        }
        const e = this.event('auto', g, q);
        e.code = CODE_NAMES[code] ?? 'invalid';
        e.latency_ms = latencyMs;
        e.cause = cause;
        this.push(e);
      },
    };
  }

  /** attach() - what snapshots read: the platform and the open contexts. */
  attach(platform: Platform, contexts: ContextRegistry): void {
    this.platform = platform;
    this.contexts = contexts;
  }

  /** Open feeds. */
  get subscribers(): number {
    return this.subs.size;
  }

  /**
   * subscribe() - open a feed.
   * @events: also send the sampled group events (else snapshots only).
   *
   * Return: the SSE stream; it starts with a snapshot. Destroying it (the
   * client went away) unsubscribes.
   * Throws: HttpError ENOSPC beyond %ObserveOptions.maxSubscribers; EIO
   * after close().
   */
  subscribe(events: boolean): Readable {
    if (this.closed) throw new HttpError('EIO', 'the daemon is shutting down');
    if (this.subs.size >= this.opts.maxSubscribers) {
      throw new HttpError('ENOSPC', `the observation feed has its maximum of ${this.opts.maxSubscribers} subscribers`);
    }
    const sub: Subscriber = { out: new PassThrough(), events, dropped: 0, slowFor: 0 };
    this.subs.add(sub);
    sub.out.on('close', () => this.unsubscribe(sub));
    if (!this.active) this.start();
    sub.out.write(`retry: 2000\n\n`);
    this.write(sub, 'snapshot', JSON.stringify(this.snapshot(sub)));
    return sub.out;
  }

  /** close() - end every feed (shutdown); no new one opens. */
  close(): void {
    this.closed = true;
    for (const s of [...this.subs]) s.out.end();
    this.subs.clear();
    this.stop();
  }

  private unsubscribe(sub: Subscriber): void {
    this.subs.delete(sub);
    if (this.subs.size === 0) this.stop();
  }

  private start(): void {
    this.active = true;
    this.resetInterval();
    this.snapshotTimer = setInterval(() => this.tick(), this.opts.intervalMs);
    this.flushTimer = setInterval(() => this.flush(), this.opts.flushMs);
    this.snapshotTimer.unref();
    this.flushTimer.unref();
  }

  private stop(): void {
    this.active = false;
    clearInterval(this.snapshotTimer);
    clearInterval(this.flushTimer);
    this.snapshotTimer = this.flushTimer = undefined;
    this.ring = [];
    this.sampled = new WeakSet();
  }

  private resetInterval(): void {
    this.intervalStart = performance.now();
    this.reported = this.answered = this.auto = 0;
    this.latency.reset();
    this.budget = Math.max(1, Math.round((this.opts.eventsPerSecond * this.opts.intervalMs) / 1000));
    this.sent = this.sampledOut = 0;
  }

  /** event() - a group event of @kind for @g on @q (its last request's fields). */
  private event(kind: ObserveGroupEvent['kind'], g: IopfGroup, q: IommufdObject): ObserveGroupEvent {
    const prm = g.lastFault.prm;
    const e: ObserveGroupEvent = {
      t: Date.now(),
      kind,
      device: g.faultParam.dev.name,
      grpid: prm.grpid,
      addr: formatU64(prm.addr),
      perm: prm.perm,
      ctx: q.ictx.id,
      queue: q.id,
    };
    if (prm.flags & PASID_VALID) e.pasid = prm.pasid;
    return e;
  }

  private push(e: ObserveGroupEvent): void {
    if (this.ring.length >= this.opts.ringSize) {
      this.sampledOut++;
      return;
    }
    this.ring.push(e);
  }

  private flush(): void {
    if (this.ring.length === 0) return;
    const events = this.ring;
    this.ring = [];
    this.sent += events.length;
    const text = JSON.stringify({ events });
    for (const s of this.subs) if (s.events) this.write(s, 'groups', text);
  }

  private tick(): void {
    this.flush();
    for (const s of [...this.subs]) {
      if (this.slow(s)) {
        if (++s.slowFor >= this.opts.slowSnapshots) {
          s.out.destroy();
          continue;
        }
      } else s.slowFor = 0;
      this.write(s, 'snapshot', JSON.stringify(this.snapshot(s)));
    }
    this.resetInterval();
  }

  private slow(s: Subscriber): boolean {
    return s.out.writableLength + s.out.readableLength > this.opts.slowBytes;
  }

  /** write() - one SSE message to @s, unless it reads too slowly (then it misses it). */
  private write(s: Subscriber, event: string, data: string): void {
    if (s.out.destroyed || s.out.writableEnded) return;
    if (this.slow(s)) {
      s.dropped++;
      return;
    }
    s.out.write(`event: ${event}\ndata: ${data}\n\n`);
  }

  /** snapshot() - the state now and the interval's totals, for @s. */
  private snapshot(s: Subscriber): ObserveSnapshot {
    const seconds = Math.max(1e-3, (performance.now() - this.intervalStart) / 1000);
    const per = (n: number): number => Math.round((n / seconds) * 10) / 10;
    const lat = this.latency;
    const round = (ms: number): number => Math.round(ms * 1000) / 1000;
    return {
      t: Date.now(),
      interval_ms: Math.round(seconds * 1000),
      devices: this.devices(),
      ...this.queuesAndContexts(),
      totals: {
        reported_per_s: per(this.reported),
        answered_per_s: per(this.answered),
        auto_answered_per_s: per(this.auto),
        latency_ms: { count: lat.count, p50: round(lat.percentile(0.5)), p90: round(lat.percentile(0.9)), p99: round(lat.percentile(0.99)), max: round(lat.max) },
      },
      events: { sent: this.sent, sampled_out: this.sampledOut },
      dropped: s.dropped,
    };
  }

  private devices(): ObserveSnapshot['devices'] {
    const platform = this.platform;
    if (!platform) return [];
    return platform.listDevices().map((d) => {
      const fn = platform.function(d.name);
      const unit = platform.iommus.get(d.iommu)!.unit;
      return {
        name: d.name,
        iommu: d.iommu,
        pri_enabled: d.pri_enabled,
        iopf: platform.iommuDevice(d.name).faultParam !== undefined,
        pri_budget: { in_use: fn.outstandingRequests, total: d.caps.pri_outstanding },
        prq: { used: unit.prqLength, depth: unit.prqDepth, overflow: unit.overflow },
      };
    });
  }

  private queuesAndContexts(): Pick<ObserveSnapshot, 'queues' | 'contexts'> {
    const queues: ObserveSnapshot['queues'] = [];
    const contexts: ObserveSnapshot['contexts'] = [];
    for (const { ctx } of this.contexts?.all() ?? []) {
      const objects: Record<string, number> = {};
      for (const o of ctx.objects()) {
        objects[o.type] = (objects[o.type] ?? 0) + 1;
        if (o.type !== 'fault') continue;
        const f = o as IommufdFault;
        queues.push({ ctx: ctx.id, id: f.id, queued: f.queued, outstanding: f.outstanding, connections: f.conns.size, counters: { ...f.counters } });
      }
      contexts.push({ ctx: ctx.id, objects });
    }
    return { queues, contexts };
  }
}
