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
 * or auto), iopfd_table_entries{table} (what every table of the daemon
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

  constructor() {
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
    const codeName = (code: number): string => CODE_NAME[code] ?? String(code);
    this.observer = {
      veventReported: () => void vevents.reported++,
      veventRead: (n) => {
        vevents.read += n;
      },
      veventLost: () => void vevents.lost++,
      reported: () => void reportedN++,
      delivered: (n) => {
        deliveredN += n;
      },
      answered: (code, latencyMs) => {
        if (code === 0 || code === 1) answeredN[code]!++;
        else answered.inc({ code: codeName(code) });
        latency.observe('user', latencyMs / 1000);
      },
      refused: (limit) => refusals.inc({ limit }),
      autoAnswered: (cause: AutoCause, code, latencyMs) => {
        autoAnswered.inc({ cause, code: codeName(code) });
        latency.observe('auto', latencyMs / 1000);
        if (cause === 'overflow') overflowed.inc();
        else if (cause === 'timeout') timedOut.inc();
      },
    };
  }
}
