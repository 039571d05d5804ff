/**
 * DOC: metrics
 *
 * Prometheus metrics in a registry of the daemon's own (never prom-client's
 * global one, so several apps can live in one process, as in the tests).
 * The core reports every group on the iommufd path through the Platform's
 * observer; the stream server moves the open-streams gauge.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry, type Histogram } from 'prom-client';
import type { AutoCause, IommufdObserver } from '../core/index.js';

/** DEFAULT_MAX_DEVICE_LABELS - distinct `device` label values before `other`. */
export const DEFAULT_MAX_DEVICE_LABELS = 64;

/** DEFAULT_MAX_QUEUE_LABELS - distinct `queue` label values before `other`. */
export const DEFAULT_MAX_QUEUE_LABELS = 256;

/** OTHER_LABEL - the label value that counts everything beyond a bound. */
export const OTHER_LABEL = 'other';

/** The group events counted per device and per queue, in slot order. */
const GROUP_EVENTS = ['reported', 'delivered', 'answered', 'auto_answered'] as const;
const REPORTED = 0;
const DELIVERED = 1;
const ANSWERED = 2;
const AUTO_ANSWERED = 3;

/** One label value's counts since the last scrape, by GROUP_EVENTS index. */
interface LabelSlot {
  readonly label: string;
  readonly counts: Float64Array;
}

/**
 * BoundedLabels - the values of one label, at most @max of them: the first
 * @max distinct keys seen (for the daemon's lifetime, so that a counter
 * never goes back) get their own value, every later one counts under
 * `other`. The slot of an object key is cached on it (a WeakMap), so the
 * hot path makes no string and hashes no labels; prom-client's counter is
 * fed at scrape time.
 */
class BoundedLabels {
  private readonly slots = new Map<string, LabelSlot>();
  private readonly byKey = new WeakMap<object, LabelSlot>();
  private other: LabelSlot | undefined;

  constructor(private readonly max: number) {}

  /** slot() - the slot counting @key, whose label value labelOf(@key) makes (called once per key). */
  slot<K extends object>(key: K, labelOf: (key: K) => string): LabelSlot {
    let slot = this.byKey.get(key);
    if (slot) return slot;
    const label = labelOf(key);
    slot = this.slots.get(label);
    if (!slot) {
      if (this.slots.size < this.max) {
        slot = { label, counts: new Float64Array(GROUP_EVENTS.length) };
        this.slots.set(label, slot);
      } else {
        this.other ??= { label: OTHER_LABEL, counts: new Float64Array(GROUP_EVENTS.length) };
        slot = this.other;
      }
    }
    this.byKey.set(key, slot);
    return slot;
  }

  /** drain() - hand every slot's counts to @inc and zero them. */
  drain(inc: (label: string, event: string, n: number) => void): void {
    const all = this.other ? [...this.slots.values(), this.other] : this.slots.values();
    for (const slot of all) {
      slot.counts.forEach((n, i) => {
        if (n > 0) inc(slot.label, GROUP_EVENTS[i]!, n);
      });
      slot.counts.fill(0);
    }
  }
}

/**
 * struct MetricsOptions - the label bounds.
 * @maxDeviceLabels: distinct `device` values (default DEFAULT_MAX_DEVICE_LABELS).
 * @maxQueueLabels: distinct `queue` values (default DEFAULT_MAX_QUEUE_LABELS).
 */
export interface MetricsOptions {
  maxDeviceLabels?: number;
  maxQueueLabels?: number;
}

/** What the per-device and per-queue counts read of a group and of its queue. */
type ObservedGroup = Parameters<NonNullable<IommufdObserver['reported']>>[0];
type ObservedQueue = Parameters<NonNullable<IommufdObserver['reported']>>[1];
type ObservedDevice = ObservedGroup['faultParam']['dev'];

/** The `device` label of a device: its name. */
const deviceLabel = (dev: ObservedDevice): string => dev.name;

/** The `queue` label of a fault queue: `ctx/fault id`. */
const queueLabel = (q: ObservedQueue): string => `${q.ictx.id}/${q.id}`;

/** Response code names, by RESP_CODE value. */
const CODE_NAME: Readonly<Record<number, string>> = { 0: 'success', 1: 'invalid' };

/** Fault-to-response latency buckets, in seconds (100 µs to 30 s). */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** One sample line of a histogram, as prom-client's registry reads it. */
interface HistogramValue {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

/**
 * LatencyHistogram - `iopfd_fault_response_latency_seconds{by}` without
 * prom-client on the hot path: an observation is a bucket search and three
 * additions on plain arrays (prom-client hashes the labels and allocates on
 * every observe); the registry reads it at scrape time through get(), in
 * prom-client's own histogram shape, so the exposition text is the same.
 */
class LatencyHistogram {
  readonly name = 'iopfd_fault_response_latency_seconds';
  readonly help = 'Time from a group being reported to its response, by who answered (user or auto)';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Per `by` value: a count per bucket (the last one +Inf only), the sum, the count. */
  private series = new Map<string, { buckets: Float64Array; sum: number; count: number }>();

  /** observe() - one latency of @seconds, answered by @by. */
  observe(by: 'user' | 'auto', seconds: number): void {
    let s = this.series.get(by);
    if (!s) {
      s = { buckets: new Float64Array(LATENCY_BUCKETS.length + 1), sum: 0, count: 0 };
      this.series.set(by, s);
    }
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    s.buckets[i]!++;
    s.sum += seconds;
    s.count++;
  }

  /** get() - the histogram as prom-client's registry formats it (cumulative buckets, +Inf, sum, count). */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramValue[] }> {
    const values: HistogramValue[] = [];
    for (const [by, s] of this.series) {
      let acc = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        acc += s.buckets[i]!;
        values.push({ labels: { le, by }, value: acc, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', by }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { by }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { by }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.series.clear();
  }
}

/**
 * Metrics - the daemon's Prometheus registry and the core observer feeding it.
 *
 * Series: iopfd_groups_reported_total, iopfd_groups_delivered_total,
 * iopfd_groups_answered_total{code}, iopfd_groups_auto_answered_total{cause,code},
 * iopfd_groups_overflowed_total, iopfd_groups_timed_out_total,
 * iopfd_streams_open, iopfd_connections_refused_total,
 * iopfd_fault_response_latency_seconds{by} (by = user
 * or auto), iopfd_device_groups_total{device,event} and
 * iopfd_queue_groups_total{queue,event} (event = reported, delivered,
 * answered or auto_answered; device the device name, queue `ctx/fault id`;
 * at most MetricsOptions' bound of values each, then `other`),
 * iopfd_table_entries{table} (what every table of the daemon
 * holds, so that a soak can tell that none grows), plus the process
 * metrics with the iopfd_ prefix.
 */
export class Metrics {
  readonly registry = new Registry();
  /** Open fault streams. */
  readonly streamsOpen: Gauge;
  /** Connections closed as accepted, beyond --max-connections. */
  readonly connectionsRefused: Counter;
  /** What the Platform's `observer` option takes. */
  readonly observer: IommufdObserver;
  /** The memory budget's bytes in use and limit, for `iopfd_memory_budget_bytes` (set by the app). */
  memoryBudget: (() => { inUse: number; limit: number }) | undefined;
  /** Sizes of the daemon's tables, by name, for `iopfd_table_entries` (set by the app). */
  tableSizes: (() => Readonly<Record<string, number>>) | undefined;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'iopfd_' });
    // The per-group counts are plain numbers, added to the counters at scrape time (collect).
    let reportedN = 0;
    let deliveredN = 0;
    const answeredN = [0, 0];
    new Counter({
      name: 'iopfd_groups_reported_total',
      help: 'Page request groups queued on a fault queue',
      registers,
      collect() {
        this.inc(reportedN);
        reportedN = 0;
      },
    });
    new Counter({
      name: 'iopfd_groups_delivered_total',
      help: 'Groups delivered on a fault stream (redeliveries included)',
      registers,
      collect() {
        this.inc(deliveredN);
        deliveredN = 0;
      },
    });
    const answered = new Counter({
      name: 'iopfd_groups_answered_total',
      help: 'Groups answered by a client, by response code',
      labelNames: ['code'] as const,
      registers,
      collect() {
        answeredN.forEach((n, code) => {
          if (n > 0) this.inc({ code: codeName(code) }, n);
          answeredN[code] = 0;
        });
      },
    });
    const autoAnswered = new Counter({
      name: 'iopfd_groups_auto_answered_total',
      help: 'Groups answered by the daemon (detach, replace, unplug, destroy, release, timeout, overflow), by cause and code',
      labelNames: ['cause', 'code'] as const,
      registers,
    });
    const overflowed = new Counter({
      name: 'iopfd_groups_overflowed_total',
      help: 'Groups answered at once because their fault queue was at its depth',
      registers,
    });
    const timedOut = new Counter({
      name: 'iopfd_groups_timed_out_total',
      help: 'Groups answered INVALID by the response timeout',
      registers,
    });
    // vEVENTQ events, counted at scrape time like the groups.
    const vevents = { reported: 0, read: 0, lost: 0 };
    for (const [key, help] of [
      ['reported', 'vEVENTQ events reported (kept or dropped)'],
      ['read', 'vEVENTQ events read by a vEVENTQ stream'],
      ['lost', 'vEVENTQ events dropped at the queue depth (a LOST_EVENTS header stands for them)'],
    ] as const) {
      new Counter({
        name: `iopfd_vevents_${key}_total`,
        help,
        registers,
        collect() {
          this.inc(vevents[key]);
          vevents[key] = 0;
        },
      });
    }
    const latency = new LatencyHistogram();
    // A metric object of our own: the registry only needs name, type, get() and reset().
    this.registry.registerMetric(latency as unknown as Histogram);
    this.streamsOpen = new Gauge({ name: 'iopfd_streams_open', help: 'Open fault streams', registers });
    this.connectionsRefused = new Counter({
      name: 'iopfd_connections_refused_total',
      help: 'TCP connections closed as they were accepted, beyond --max-connections',
      registers,
    });
    const tables = (): Readonly<Record<string, number>> => this.tableSizes?.() ?? {};
    new Gauge({
      name: 'iopfd_table_entries',
      help: "Entries in the daemon's tables, read at scrape time (contexts, objects, fault queue groups, device PRGs, ...)",
      labelNames: ['table'] as const,
      registers,
      collect() {
        this.reset();
        for (const [table, n] of Object.entries(tables())) this.set({ table }, n);
      },
    });
    const refusals = new Counter({
      name: 'iopfd_limit_refusals_total',
      help: "Commands refused by a limit, by limit (memory: the daemon's memory budget, ENOMEM; the others ENOSPC)",
      labelNames: ['limit'] as const,
      registers,
    });
    const budget = (): { inUse: number; limit: number } | undefined => this.memoryBudget?.();
    new Gauge({
      name: 'iopfd_memory_budget_bytes',
      help: 'The memory budget mapped pages are charged to: bytes in use, and the limit (0: none)',
      labelNames: ['kind'] as const,
      registers,
      collect() {
        const b = budget();
        if (!b) return;
        this.set({ kind: 'in_use' }, b.inUse);
        this.set({ kind: 'limit' }, b.limit);
      },
    });
    const devices = new BoundedLabels(opts.maxDeviceLabels ?? DEFAULT_MAX_DEVICE_LABELS);
    const queues = new BoundedLabels(opts.maxQueueLabels ?? DEFAULT_MAX_QUEUE_LABELS);
    new Counter({
      name: 'iopfd_device_groups_total',
      help: `Groups by device name and event (reported, delivered, answered, auto_answered); at most ${opts.maxDeviceLabels ?? DEFAULT_MAX_DEVICE_LABELS} device values, the rest under "${OTHER_LABEL}"`,
      labelNames: ['device', 'event'] as const,
      registers,
      collect() {
        devices.drain((device, event, n) => this.inc({ device, event }, n));
      },
    });
    new Counter({
      name: 'iopfd_queue_groups_total',
      help: `Groups by fault queue ("ctx/fault id") and event (reported, delivered, answered, auto_answered); at most ${opts.maxQueueLabels ?? DEFAULT_MAX_QUEUE_LABELS} queue values, the rest under "${OTHER_LABEL}"`,
      labelNames: ['queue', 'event'] as const,
      registers,
      collect() {
        queues.drain((queue, event, n) => this.inc({ queue, event }, n));
      },
    });
    /** Count @event for the device of @g and for the queue @q. */
    const count = (event: number, g: ObservedGroup, q: ObservedQueue, n = 1): void => {
      devices.slot(g.faultParam.dev, deviceLabel).counts[event]! += n;
      queues.slot(q, queueLabel).counts[event]! += n;
    };
    const codeName = (code: number): string => CODE_NAME[code] ?? String(code);
    this.observer = {
      veventReported: () => void vevents.reported++,
      veventRead: (n) => {
        vevents.read += n;
      },
      veventLost: () => void vevents.lost++,
      reported: (g, q) => {
        reportedN++;
        count(REPORTED, g, q);
      },
      delivered: (n, groups, q) => {
        deliveredN += n;
        for (let i = 0; i < n; i++) count(DELIVERED, groups[i]!, q);
      },
      answered: (code, latencyMs, g, q) => {
        if (code === 0 || code === 1) answeredN[code]!++;
        else answered.inc({ code: codeName(code) });
        latency.observe('user', latencyMs / 1000);
        count(ANSWERED, g, q);
      },
      refused: (limit) => refusals.inc({ limit }),
      autoAnswered: (cause: AutoCause, code, latencyMs, g, q) => {
        count(AUTO_ANSWERED, g, q);
        autoAnswered.inc({ cause, code: codeName(code) });
        latency.observe('auto', latencyMs / 1000);
        if (cause === 'overflow') overflowed.inc();
        else if (cause === 'timeout') timedOut.inc();
      },
    };
  }
}
