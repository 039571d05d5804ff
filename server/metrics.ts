/**
 * DOC: metrics
 *
 * Prometheus metrics in a registry of the daemon's own (never prom-client's
 * global one, so several apps can live in one process, as in the tests).
 * The core reports every group on the iommufd path through the Platform's
 * observer; the stream server moves the open-streams gauge.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AutoCause, IommufdObserver } from '../core/index.js';

/** Response code names, by RESP_CODE value. */
const CODE_NAME: Readonly<Record<number, string>> = { 0: 'success', 1: 'invalid' };

/** Fault-to-response latency buckets, in seconds (100 µs to 30 s). */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Metrics - the daemon's Prometheus registry and the core observer feeding it.
 *
 * Series: iopfd_groups_reported_total, iopfd_groups_delivered_total,
 * iopfd_groups_answered_total{code}, iopfd_groups_auto_answered_total{cause,code},
 * iopfd_groups_overflowed_total, iopfd_groups_timed_out_total,
 * iopfd_streams_open, iopfd_fault_response_latency_seconds{by} (by = user
 * or auto), iopfd_table_entries{table} (what every table of the daemon
 * holds, so that a soak can tell that none grows), plus the process
 * metrics with the iopfd_ prefix.
 */
export class Metrics {
  readonly registry = new Registry();
  /** Open fault streams. */
  readonly streamsOpen: Gauge;
  /** What the Platform's `observer` option takes. */
  readonly observer: IommufdObserver;
  /** Sizes of the daemon's tables, by name, for `iopfd_table_entries` (set by the app). */
  tableSizes: (() => Readonly<Record<string, number>>) | undefined;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'iopfd_' });
    const reported = new Counter({ name: 'iopfd_groups_reported_total', help: 'Page request groups queued on a fault queue', registers });
    const delivered = new Counter({
      name: 'iopfd_groups_delivered_total',
      help: 'Groups delivered on a fault stream (redeliveries included)',
      registers,
    });
    const answered = new Counter({
      name: 'iopfd_groups_answered_total',
      help: 'Groups answered by a client, by response code',
      labelNames: ['code'] as const,
      registers,
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
    const latency = new Histogram({
      name: 'iopfd_fault_response_latency_seconds',
      help: 'Time from a group being reported to its response, by who answered (user or auto)',
      labelNames: ['by'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.streamsOpen = new Gauge({ name: 'iopfd_streams_open', help: 'Open fault streams', registers });
    const tables = (): Readonly<Record<string, number>> => this.tableSizes?.() ?? {};
    new Gauge({
      name: 'iopfd_table_entries',
      help: 'Entries in the daemon\'s tables, read at scrape time (contexts, objects, fault queue groups, device PRGs, ...)',
      labelNames: ['table'] as const,
      registers,
      collect() {
        this.reset();
        for (const [table, n] of Object.entries(tables())) this.set({ table }, n);
      },
    });
    const codeName = (code: number): string => CODE_NAME[code] ?? String(code);
    this.observer = {
      reported: () => reported.inc(),
      delivered: (n) => delivered.inc(n),
      answered: (code, latencyMs) => {
        answered.inc({ code: codeName(code) });
        latency.observe({ by: 'user' }, latencyMs / 1000);
      },
      autoAnswered: (cause: AutoCause, code, latencyMs) => {
        autoAnswered.inc({ cause, code: codeName(code) });
        latency.observe({ by: 'auto' }, latencyMs / 1000);
        if (cause === 'overflow') overflowed.inc();
        else if (cause === 'timeout') timedOut.inc();
      },
    };
  }
}
