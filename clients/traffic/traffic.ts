/**
 * DOC: DMA workloads
 *
 * TrafficGenerator drives devices' DMA engines through
 * `POST /v1/platform/devices/:name/dma`: a number of workers, each issuing
 * one DMA at a time, until a count or a duration is reached. DMA number i
 * goes to target i mod T (a device, at a PASID or its RID) with the pattern
 * ⌊i / T⌋ mod P, and each (target, pattern) pair walks its own cursor over
 * the VA range [base, base + span):
 *
 * - sequential: consecutive slots of `size` bytes;
 * - strided: slots `stride` bytes apart, wrapping in the range;
 * - random: a slot drawn at random.
 *
 * A DMA of at most 4 KiB never crosses a page (slots are packed inside
 * pages), so each of its faults is one single-page group. Reads, writes
 * (a byte pattern of the DMA's number) or both alternately. Completions are
 * counted by status, with page requests, retries and latency.
 */
import { DMA_STATUS, formatU64, hexOf } from '../../protocol/index.js';
import { DEFAULT_VA_RANGE } from '../common/args.js';
import { LatencyRecorder, type LatencySummary } from '../common/latency.js';
import type { DmaResult, IopfdClient } from '../sdk/index.js';

/** TRAFFIC_PATTERNS - the address patterns. */
export const TRAFFIC_PATTERNS = ['sequential', 'strided', 'random'] as const;
/** TrafficPattern - one of %TRAFFIC_PATTERNS. */
export type TrafficPattern = (typeof TRAFFIC_PATTERNS)[number];

/** TRAFFIC_ACCESSES - read, write, or alternately (even DMAs read, odd ones write). */
export const TRAFFIC_ACCESSES = ['read', 'write', 'mixed'] as const;
/** TrafficAccess - one of %TRAFFIC_ACCESSES. */
export type TrafficAccess = (typeof TRAFFIC_ACCESSES)[number];

/** DmaStatus - a DMA outcome. */
export type DmaStatus = DmaResult['status'];

/** struct TrafficTarget - a device, at @pasid (undefined: its RID). */
export interface TrafficTarget {
  device: string;
  pasid?: number | undefined;
}

/**
 * struct TrafficOptions - a workload.
 * @client: the SDK client (with the admin token).
 * @targets: where the DMAs go (at least one).
 * @patterns: address patterns (default sequential).
 * @access: default read.
 * @base: first VA (default 0x10000000).
 * @span: bytes of VA used (default 16 MiB).
 * @size: bytes per DMA, 1..1 MiB (default 64).
 * @stride: the strided pattern's step, a multiple of 4 KiB (default 16 KiB).
 * @count: DMAs in all; @durationMs: time to run; without either, 1000 DMAs.
 * @concurrency: DMAs in flight (default 4).
 * @timeoutMs: each DMA's own timeout (default 10000).
 * @signal: stops the run early.
 */
export interface TrafficOptions {
  client: IopfdClient;
  targets: readonly TrafficTarget[];
  patterns?: readonly TrafficPattern[] | undefined;
  access?: TrafficAccess | undefined;
  base?: bigint | undefined;
  span?: bigint | undefined;
  size?: number | undefined;
  stride?: bigint | undefined;
  count?: number | undefined;
  durationMs?: number | undefined;
  concurrency?: number | undefined;
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * struct TrafficStats - a run's completions.
 * @dmas: DMAs completed.
 * @byStatus: completions by status (`timeout` ones are lost DMAs).
 * @pageRequests: page requests the devices sent; @retries: translation retries.
 * @bytes: bytes moved by DMAs that completed `ok`.
 * @elapsedMs: since the start; @dmasPerSec: completions per second.
 * @latencyMs: per DMA, request to answer.
 */
export interface TrafficStats {
  dmas: number;
  byStatus: Record<DmaStatus, number>;
  pageRequests: number;
  retries: number;
  bytes: number;
  elapsedMs: number;
  dmasPerSec: number;
  latencyMs: LatencySummary;
}

const PAGE = 4096;

/**
 * allFailedWarning() - the warning for a run where DMAs completed but none
 * of them `ok`, with the likely cause (a device attached only at a PASID,
 * DMAs without --pasid; PRI disabled; nobody answering the faults).
 * @s: the run's statistics.
 * @withPasid: whether the DMAs carried a PASID.
 *
 * Return: the warning, or undefined when a DMA succeeded (or none completed).
 */
export function allFailedWarning(s: TrafficStats, withPasid: boolean): string | undefined {
  if (s.dmas === 0 || s.byStatus.ok > 0) return undefined;
  const statuses = Object.entries(s.byStatus)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k}`)
    .join(', ');
  const hints: string[] = [];
  if (s.byStatus.invalid > 0) {
    hints.push(
      withPasid
        ? 'invalid: nothing translates these addresses at that PASID (is the device attached there, and the range mapped or served?)'
        : 'invalid: nothing translates these addresses at the RID; a device attached only at a PASID needs --pasid N',
    );
  }
  if (s.byStatus.pri_disabled > 0) hints.push('pri_disabled: the device has no PRI, or it stopped (iopfctl pri-reset DEVICE)');
  if (s.byStatus.timeout > 0) hints.push('timeout: nobody answered the page faults (is a fault handler connected?)');
  if (s.byStatus.failure > 0 || s.byStatus.stage2_fault > 0) hints.push('failure/stage2_fault: the handler refused, or stage 2 does not map the address');
  return `every DMA failed (${statuses})${hints.map((h) => `\n  ${h}`).join('')}`;
}

/** TrafficOptions with the defaults applied (no count or duration: 1000 DMAs). */
interface Resolved {
  client: IopfdClient;
  targets: readonly TrafficTarget[];
  patterns: readonly TrafficPattern[];
  access: TrafficAccess;
  base: bigint;
  span: bigint;
  size: number;
  stride: bigint;
  count: number;
  durationMs: number;
  concurrency: number;
  timeoutMs: number;
  signal: AbortSignal | undefined;
}

/** TrafficGenerator - one run of a DMA workload. */
export class TrafficGenerator {
  readonly #opts: Resolved;
  readonly #cursors = new Map<string, number>();
  readonly #latency = new LatencyRecorder();
  readonly #byStatus = Object.fromEntries(DMA_STATUS.map((s) => [s, 0])) as Record<DmaStatus, number>;
  #issued = 0;
  #dmas = 0;
  #pageRequests = 0;
  #retries = 0;
  #bytes = 0;
  #startedAt = 0;
  #endedAt: number | undefined;
  #failure: Error | undefined;
  /** Slots of `size` bytes in the span, and how many share a page (0: a slot spans whole pages). */
  readonly #slots: number;
  readonly #slotsPerPage: number;

  /** Throws RangeError for an empty target list or out-of-range numbers. */
  constructor(opts: TrafficOptions) {
    this.#opts = {
      client: opts.client,
      targets: opts.targets,
      patterns: opts.patterns ?? ['sequential'],
      access: opts.access ?? 'read',
      base: opts.base ?? DEFAULT_VA_RANGE.start,
      span: opts.span ?? DEFAULT_VA_RANGE.length,
      size: opts.size ?? 64,
      stride: opts.stride ?? 0x4000n,
      count: opts.count ?? (opts.durationMs === undefined ? 1000 : Infinity),
      durationMs: opts.durationMs ?? Infinity,
      concurrency: opts.concurrency ?? 4,
      timeoutMs: opts.timeoutMs ?? 10000,
      signal: opts.signal,
    };
    const { targets, patterns, size, span, stride, concurrency } = this.#opts;
    if (targets.length === 0 || patterns.length === 0) throw new RangeError('a workload needs targets and patterns');
    if (!Number.isInteger(size) || size < 1 || size > 1 << 20) throw new RangeError(`size must be 1..1048576, got ${size}`);
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be ≥ 1');
    if (stride === 0n || stride % BigInt(PAGE) !== 0n) throw new RangeError('stride must be a positive multiple of 4 KiB');
    this.#slotsPerPage = size <= PAGE ? Math.floor(PAGE / size) : 0;
    const pages = Number(span / BigInt(PAGE));
    this.#slots = this.#slotsPerPage > 0 ? pages * this.#slotsPerPage : Math.floor(pages / Math.ceil(size / PAGE));
    if (this.#slots < 1) throw new RangeError('span is smaller than one DMA');
  }

  /**
   * run() - issue the workload and wait for every DMA.
   * Return: the statistics.
   * Throws: the first IopfdError or IopfdConnectionError a DMA request met
   * (the run stops at once then).
   */
  async run(): Promise<TrafficStats> {
    this.#startedAt = performance.now();
    const workers = Array.from({ length: this.#opts.concurrency }, () => this.#worker());
    await Promise.all(workers);
    this.#endedAt = performance.now();
    if (this.#failure) throw this.#failure;
    return this.snapshot();
  }

  /** snapshot() - the statistics so far. */
  snapshot(): TrafficStats {
    const elapsedMs = Math.round((this.#endedAt ?? performance.now()) - this.#startedAt);
    return {
      dmas: this.#dmas,
      byStatus: { ...this.#byStatus },
      pageRequests: this.#pageRequests,
      retries: this.#retries,
      bytes: this.#bytes,
      elapsedMs,
      dmasPerSec: elapsedMs > 0 ? Math.round((this.#dmas * 1000) / elapsedMs) : 0,
      latencyMs: this.#latency.summary(),
    };
  }

  #more(): boolean {
    const { count, durationMs, signal } = this.#opts;
    if (this.#failure || signal?.aborted) return false;
    return this.#issued < count && performance.now() - this.#startedAt < durationMs;
  }

  async #worker(): Promise<void> {
    while (this.#more()) {
      const i = this.#issued++;
      const { targets, patterns, access, size, timeoutMs, client } = this.#opts;
      const target = targets[i % targets.length]!;
      const pattern = patterns[Math.floor(i / targets.length) % patterns.length]!;
      const iova = this.#addressOf(`${target.device}@${target.pasid ?? 'rid'}/${pattern}`, pattern);
      const write = access === 'write' || (access === 'mixed' && i % 2 === 1);
      const t0 = performance.now();
      let r: DmaResult;
      try {
        r = await client.dma(target.device, {
          ...(target.pasid === undefined ? {} : { pasid: target.pasid }),
          iova: formatU64(iova),
          length: formatU64(BigInt(size)),
          access: write ? 'write' : 'read',
          ...(write ? { data: hexOf(new Uint8Array(size).fill(i & 0xff)) } : {}),
          timeout_ms: timeoutMs,
        });
      } catch (e) {
        this.#failure ??= e as Error;
        return;
      }
      this.#latency.add(performance.now() - t0);
      this.#dmas++;
      this.#byStatus[r.status]++;
      this.#pageRequests += r.page_requests;
      this.#retries += r.retries;
      if (r.status === 'ok') this.#bytes += size;
    }
  }

  /** The next address of the (target, pattern) stream @key. */
  #addressOf(key: string, pattern: TrafficPattern): bigint {
    const k = this.#cursors.get(key) ?? 0;
    this.#cursors.set(key, k + 1);
    const { base, span, size, stride } = this.#opts;
    if (pattern === 'strided') return base + ((BigInt(k) * stride) % span);
    const slot = pattern === 'random' ? Math.floor(Math.random() * this.#slots) : k % this.#slots;
    if (this.#slotsPerPage === 0) return base + BigInt(slot) * BigInt(Math.ceil(size / PAGE) * PAGE);
    return base + BigInt(Math.floor(slot / this.#slotsPerPage) * PAGE + (slot % this.#slotsPerPage) * size);
  }
}
