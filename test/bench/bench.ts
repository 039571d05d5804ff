/**
 * npm run bench — iopfd against the transport's own limit (issue 5).
 *
 * In one run, on one machine: the two `ws` echo baselines (A: JSON text
 * messages, B: binary frames of 16 records), the daemon in JSON and uapi
 * mode driven by a device's traffic generator, the in-process core, and the
 * scaling figures (1 vs 16 devices, 1 vs 8 connections, 1,000 vs 100,000
 * outstanding groups with the heap each costs). Writes docs/benchmarks.md
 * and docs/benchmarks.svg; prints the figures as JSON on stdout.
 *
 * Options: --seconds S (per run, default 2.5), --runs N (default 3),
 * --no-docs (print only). Run through scripts/bench.mjs (which adds
 * --expose-gc for the heap figures).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, type } from 'node:os';
import { join } from 'node:path';
import { runCoreBench } from './core-rig.js';
import {
  baselineJsonMessage,
  Daemon,
  echoRate,
  FaultClient,
  ParkedClient,
  parkDevicesFor,
  parkGroups,
  ROOT,
  setupFaultQueue,
  spawnChild,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_UAPI,
  Tally,
  trafficRun,
  type FaultSetup,
  type TrafficResult,
} from './load.js';
import { renderMarkdown, renderSvg, targets, type Baseline, type Figures, type Measured } from './report.js';
import type { Subprotocol } from '../../protocol/index.js';

const IN_FLIGHT = 64;
const DEVICES = 16;
const A_BYTES = 262;
const B_RECORDS = 16;

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = option('--seconds', 2.5);
const RUNS = option('--runs', 3);
const DOCS = !process.argv.includes('--no-docs');

const log = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const k = (x: number): string => `${Math.round(x / 1000)}k`;

/** The CPU model as /proc/cpuinfo names it (os.cpus() elsewhere). */
function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown CPU';
}

async function baseline(message: string | Buffer, bytes: number, records: number): Promise<Baseline> {
  const echo = await spawnChild(['dist/test/bench/echo-server.js'], /echo listening on (\d+)/);
  try {
    await echoRate(echo.port, message, IN_FLIGHT, 1, 0); // warm-up
    const runs: number[] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await echoRate(echo.port, message, IN_FLIGHT, SECONDS, 250));
    return { rate: Math.max(...runs), runs, bytes, records };
  } finally {
    await echo.stop();
  }
}

/**
 * measure() - a warm-up run sized to ~1 s, then RUNS runs sized to ~SECONDS
 * each, of single-request groups on @devices answered by @clients.
 */
async function measure(d: Daemon, clients: FaultClient[], devices: readonly string[], what: string): Promise<Measured> {
  const framesOf = (): [number, number] => [clients.reduce((s, c) => s + c.groups, 0), clients.reduce((s, c) => s + c.frames, 0)];
  const warm = await trafficRun(d, clients, devices, 20_000, IN_FLIGHT);
  const warm2 = await trafficRun(d, clients, devices, Math.max(20_000, Math.round(warm.groupsPerSec / devices.length)), IN_FLIGHT);
  const count = Math.max(20_000, Math.round((warm2.groupsPerSec * SECONDS) / devices.length));
  const [g0, f0] = framesOf();
  const results: TrafficResult[] = [];
  for (let i = 0; i < RUNS; i++) results.push(await trafficRun(d, clients, devices, count, IN_FLIGHT));
  const [g1, f1] = framesOf();
  const p50s = results.map((r) => median(r.status.map((s) => s.latency_us.p50)));
  const p99s = results.map((r) => Math.max(...r.status.map((s) => s.latency_us.p99)));
  const m: Measured = {
    groupsPerSec: Math.max(...results.map((r) => r.groupsPerSec)),
    runs: results.map((r) => r.groupsPerSec),
    p50: median(p50s),
    p99: median(p99s),
    p99Worst: Math.max(...p99s),
    groupsPerFrame: (g1 - g0) / Math.max(1, f1 - f0),
  };
  log(`${what}: ${m.runs.map(k).join(' ')} groups/s, p50 ${m.p50} µs, p99 ${m.p99} µs, ${m.groupsPerFrame.toFixed(1)} groups/frame`);
  return m;
}

/** One fault queue's clients: @n connections of @window in @protocol. */
async function clientsOf(d: Daemon, setup: FaultSetup, protocol: Subprotocol, n: number, window: number): Promise<FaultClient[]> {
  const tally = new Tally();
  const out: FaultClient[] = [];
  for (let i = 0; i < n; i++) out.push(await FaultClient.open(d, setup, protocol, window, tally));
  return out;
}

async function withClients<T>(clients: FaultClient[], fn: (c: FaultClient[]) => Promise<T>): Promise<T> {
  try {
    return await fn(clients);
  } finally {
    for (const c of clients) c.close();
  }
}

/** A platform file: @names as PRI devices on one VT-d model IOMMU. */
function platformFile(dir: string, name: string, names: readonly string[]): string {
  const devices = names.map((n, i) => ({ name: n, bdf: `${(i >> 5).toString(16).padStart(2, '0')}:${(i & 31).toString(16).padStart(2, '0')}.0` }));
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify({ iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 4096 }], devices }));
  return file;
}

/** Throughput with @parked outstanding groups (fresh daemon); with @heap, the daemon heap per parked group. */
async function outstanding(dir: string, parked: number, heap: boolean): Promise<{ m: Measured; heapPerGroup: number }> {
  const parkers = Array.from({ length: parkDevicesFor(parked) }, (_, i) => `park${i}`);
  const d = await Daemon.start(platformFile(dir, `park-${parked}.json`, ['gen0', ...parkers]));
  try {
    const setup = await setupFaultQueue(d, ['gen0', ...parkers]);
    const windows: number[] = [];
    for (let left = parked; left > 0; left -= windows[windows.length - 1]!) windows.push(Math.min(50_000, left));
    const holders: ParkedClient[] = [];
    for (const w of windows) holders.push(await ParkedClient.open(d, setup, w));
    const h0 = heap ? await d.heapUsed() : 0;
    const t0 = performance.now();
    await parkGroups(d, parkers, parked, holders);
    log(`parked ${parked.toLocaleString('en-US')} groups in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const h1 = heap ? await d.heapUsed() : 0;
    const m = await withClients(await clientsOf(d, setup, SUBPROTOCOL_JSON, 1, 1024), (c) => measure(d, c, ['gen0'], `JSON, ${parked.toLocaleString('en-US')} outstanding`));
    return { m, heapPerGroup: (h1 - h0) / parked };
  } finally {
    await d.stop();
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'iopfd-bench-'));
  try {
    const gens = Array.from({ length: DEVICES }, (_, i) => `gen${i}`);
    const gen = gens[0]!;
    const file = platformFile(dir, 'platform.json', gens);

    log('baseline A (ws echo, JSON text)');
    const baselineA = await baseline(baselineJsonMessage(A_BYTES), A_BYTES, 1);
    log(`baseline A: ${baselineA.runs.map(k).join(' ')} messages/s`);
    log('baseline B (ws echo, binary 16 x 40 bytes)');
    const baselineB = await baseline(Buffer.alloc(B_RECORDS * 40, 0x5a), B_RECORDS * 40, B_RECORDS);
    log(`baseline B: ${baselineB.runs.map(k).join(' ')} messages/s`);

    const d = await Daemon.start(file);
    let json: Measured, uapi: Measured, devices16: Measured, conns1: Measured, conns8: Measured;
    try {
      const setup = await setupFaultQueue(d, gens);
      json = await withClients(await clientsOf(d, setup, SUBPROTOCOL_JSON, 1, 4096), async (c) => {
        const one = await measure(d, c, [gen], 'iopfd JSON');
        devices16 = await measure(d, c, gens, `iopfd JSON, ${DEVICES} devices`);
        return one;
      });
      uapi = await withClients(await clientsOf(d, setup, SUBPROTOCOL_UAPI, 1, 4096), (c) => measure(d, c, [gen], 'iopfd uapi'));
      conns1 = await withClients(await clientsOf(d, setup, SUBPROTOCOL_JSON, 1, IN_FLIGHT), (c) => measure(d, c, [gen], '1 connection'));
      conns8 = await withClients(await clientsOf(d, setup, SUBPROTOCOL_JSON, 8, IN_FLIGHT / 8), (c) => measure(d, c, [gen], '8 connections'));
    } finally {
      await d.stop();
    }

    const o1k = await outstanding(dir, 1_000, false);
    const o100k = await outstanding(dir, 100_000, true);
    log(`daemon heap per outstanding group: ${Math.round(o100k.heapPerGroup)} B`);

    log('core, in process');
    const core = runCoreBench(300_000);
    log(`core: ${k(core.groupsPerSec)} groups/s; outstanding 1k ${k(core.with1k)}, 100k ${k(core.with100k)}; heap ${Math.round(core.heapPerGroup)} B/group`);

    const figures: Figures = {
      machine: {
        cpu: cpuModel(),
        cores: cpus().length,
        node: process.version,
        os: `${type()} ${release()}`,
        date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        command: 'npm run bench',
        runs: RUNS,
        seconds: SECONDS,
      },
      inFlight: IN_FLIGHT,
      baselineA,
      baselineB,
      json,
      uapi,
      core,
      devices16: devices16!,
      conns1,
      conns8,
      outstanding1k: o1k.m,
      outstanding100k: o100k.m,
      daemonHeapPerGroup: o100k.heapPerGroup,
    };
    for (const t of targets(figures)) log(`target ${t.name}: ${t.value} (${t.goal}) ${t.score >= 1 ? 'met' : 'NOT met'}`);
    if (DOCS) {
      writeFileSync(join(ROOT, 'docs/benchmarks.md'), renderMarkdown(figures));
      writeFileSync(join(ROOT, 'docs/benchmarks.svg'), renderSvg(figures));
      log('wrote docs/benchmarks.md and docs/benchmarks.svg');
    }
    log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
    process.stdout.write(JSON.stringify(figures) + '\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
