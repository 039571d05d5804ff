/**
 * DOC: latency statistics
 *
 * LatencyRecorder keeps a bounded reservoir of samples (milliseconds) and
 * reports count, p50, p99 and max, for the VMM handler's fault-to-response
 * times and the traffic generator's DMA times.
 */

/** struct LatencySummary - @count samples; percentiles and max in ms. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** LatencyRecorder - samples in a reservoir of @capacity (uniform beyond it). */
export class LatencyRecorder {
  readonly #samples: number[] = [];
  #count = 0;
  #max = 0;

  constructor(readonly capacity = 100_000) {}

  /** add() - one sample, in ms. */
  add(ms: number): void {
    this.#count++;
    if (ms > this.#max) this.#max = ms;
    if (this.#samples.length < this.capacity) this.#samples.push(ms);
    else {
      const i = Math.floor(Math.random() * this.#count);
      if (i < this.capacity) this.#samples[i] = ms;
    }
  }

  /** summary() - the percentiles so far (all 0 without samples), rounded to µs. */
  summary(): LatencySummary {
    const sorted = [...this.#samples].sort((a, b) => a - b);
    const at = (q: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
    const round = (ms: number): number => Math.round(ms * 1000) / 1000;
    return { count: this.#count, p50: round(at(0.5)), p99: round(at(0.99)), max: round(this.#max) };
  }
}
