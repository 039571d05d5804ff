#!/usr/bin/env node
/**
 * DOC: the traffic process
 *
 * Runs one DMA workload (TrafficGenerator) against a daemon and prints its
 * statistics: a line, or a JSON object with --json. Progress goes to stderr
 * when it is a terminal. SIGINT/SIGTERM stop the run early (the DMAs in
 * flight complete). Exit codes as iopfctl's: 0, 1 the daemon refused a DMA
 * request or no DMA succeeded (a warning on stderr says why, e.g. no
 * --pasid for a device attached only at a PASID), 2 usage, 3 no connection.
 */
import { parseArgs } from 'node:util';
import { formatU64 } from '../../protocol/index.js';
import {
  CONNECTION_OPTIONS,
  connectionOf,
  DEFAULT_VA_RANGE,
  EXIT,
  onTermination,
  parseBig,
  parseSeconds,
  parseU32,
  runMain,
  UsageError,
} from '../common/args.js';
import { IopfdClient } from '../sdk/index.js';
import { allFailedWarning, TRAFFIC_ACCESSES, TRAFFIC_PATTERNS, TrafficGenerator, type TrafficAccess, type TrafficPattern, type TrafficStats } from './index.js';

const USAGE = `usage: node dist/clients/traffic/main.js --device NAME [--device NAME ...] [options]

DMA workloads through POST /v1/platform/devices/:name/dma.

  --url URL           the daemon (IOPFD_URL; default http://127.0.0.1:8080)
  --admin-token T     the admin token (IOPFD_ADMIN_TOKEN)
  --device NAME       a device (repeatable)
  --pasid N           a PASID on every device (repeatable; none: the RID)
  --pattern P         ${TRAFFIC_PATTERNS.join('|')} (repeatable; default sequential)
  --access A          ${TRAFFIC_ACCESSES.join('|')} (default read)
  --base VA           first VA (default ${formatU64(DEFAULT_VA_RANGE.start)})
  --span SIZE         VA bytes used (default 16M)
  --size SIZE         bytes per DMA (default 64)
  --stride SIZE       step of the strided pattern (default 16K)
  --count N           DMAs in all (default 1000 without --duration)
  --duration S        run for S seconds
  --concurrency N     DMAs in flight (default 4)
  --timeout-ms MS     each DMA's timeout (default 10000)
  --json              print the statistics as JSON
  -h, --help          this help

Exit status: 0; 1 the daemon refused a DMA, or every DMA failed (a warning on
stderr says why); 2 bad usage; 3 no daemon.
`;

/** summaryLine() - the statistics in one line. */
function summaryLine(s: TrafficStats): string {
  const statuses = Object.entries(s.byStatus)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return (
    `traffic: ${s.dmas} DMAs in ${s.elapsedMs} ms (${s.dmasPerSec}/s): ${statuses || 'none'}; ` +
    `${s.pageRequests} page requests, ${s.retries} retries; latency ms p50 ${s.latencyMs.p50} p99 ${s.latencyMs.p99} max ${s.latencyMs.max}`
  );
}

function oneOf<T extends string>(what: string, allowed: readonly T[], s: string): T {
  if (!(allowed as readonly string[]).includes(s)) throw new UsageError(`${what}: expected ${allowed.join(', ')}, got ${JSON.stringify(s)}`);
  return s as T;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      ...CONNECTION_OPTIONS,
      device: { type: 'string', multiple: true },
      pasid: { type: 'string', multiple: true },
      pattern: { type: 'string', multiple: true },
      access: { type: 'string' },
      base: { type: 'string' },
      span: { type: 'string' },
      size: { type: 'string' },
      stride: { type: 'string' },
      count: { type: 'string' },
      duration: { type: 'string' },
      concurrency: { type: 'string' },
      'timeout-ms': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.OK;
  }
  if (!values.device?.length) throw new UsageError(`at least one --device is needed\n${USAGE}`);
  const pasids = (values.pasid ?? []).map((p) => parseU32('--pasid', p, 0, 0xfffff));
  const targets = values.device.flatMap((device) => (pasids.length === 0 ? [{ device }] : pasids.map((pasid) => ({ device, pasid }))));
  const abort = new AbortController();
  onTermination(() => abort.abort());
  let gen: TrafficGenerator;
  try {
    gen = new TrafficGenerator({
      client: new IopfdClient(connectionOf(values, process.env)),
      targets,
      patterns: values.pattern?.map((p) => oneOf<TrafficPattern>('--pattern', TRAFFIC_PATTERNS, p)),
      access: values.access === undefined ? undefined : oneOf<TrafficAccess>('--access', TRAFFIC_ACCESSES, values.access),
      base: values.base === undefined ? undefined : parseBig('--base', values.base),
      span: values.span === undefined ? undefined : parseBig('--span', values.span),
      size: values.size === undefined ? undefined : parseU32('--size', values.size, 1, 1 << 20),
      stride: values.stride === undefined ? undefined : parseBig('--stride', values.stride),
      count: values.count === undefined ? undefined : parseU32('--count', values.count, 1),
      durationMs: values.duration === undefined ? undefined : parseSeconds('--duration', values.duration),
      concurrency: values.concurrency === undefined ? undefined : parseU32('--concurrency', values.concurrency, 1, 4096),
      timeoutMs: values['timeout-ms'] === undefined ? undefined : parseU32('--timeout-ms', values['timeout-ms'], 1),
      signal: abort.signal,
    });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  const progress = process.stderr.isTTY
    ? setInterval(() => {
        const s = gen.snapshot();
        process.stderr.write(
          `\rtraffic: ${s.dmas} DMAs (${s.dmasPerSec}/s), ok ${s.byStatus.ok}, invalid ${s.byStatus.invalid}, timeout ${s.byStatus.timeout}   `,
        );
      }, 250)
    : undefined;
  try {
    const stats = await gen.run();
    if (progress) process.stderr.write('\n');
    process.stdout.write(values.json ? `${JSON.stringify({ event: 'stats', ...stats })}\n` : `${summaryLine(stats)}\n`);
    const warning = allFailedWarning(stats, pasids.length > 0);
    if (warning === undefined) return EXIT.OK;
    process.stderr.write(`traffic: warning: ${warning}\n`);
    return EXIT.DAEMON;
  } finally {
    clearInterval(progress);
  }
}

runMain('traffic', main);
