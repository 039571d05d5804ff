/**
 * npm run bench — iopfd against the transport's own limit and the performance targets of docs/benchmarks.md.
 *
 * In one run, on one machine: the two `ws` echo baselines (A: JSON text
 * messages, B: binary frames of 16 records), the daemon in JSON and uapi
 * mode driven by a device's traffic generator, the in-process core, and the
 * scaling figures (1 vs 16 devices, 1 vs 8 connections, 1,000 vs 100,000
 * outstanding groups with the heap each costs). Writes docs/benchmarks.md
 * and docs/benchmarks.svg; prints the figures as JSON on stdout.
 *
 * Options: --seconds S (per run, default 2), --runs N (default 5),
 * --no-docs (print only), --only-observe (just the comparison with and
 * without the observation feed subscribed, as with the console open). Run through scripts/bench.mjs (which adds
 * --expose-gc for the heap figures).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, type } from 'node:os';
import { join } from 'node:path';
import type { CoreFigures } from './core-rig.js';
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
  Tally,
  trafficRun,
  type FaultSetup,
  type TrafficResult,
} from './load.js';
import { veventRate } from './vevent-bench.js';
import { nativeFigures } from './native-bench.js';
import { renderMarkdown, renderSvg, targets, type Baseline, type Figures, type Measured } from './report.js';
import { SUBPROTOCOL_JSON, SUBPROTOCOL_UAPI, type Subprotocol } from '../../protocol/index.js';

const IN_FLIGHT = 64;
const DEVICES = 16;
const A_BYTES = 262;
const B_RECORDS = 16;

/**
 * coreInOwnProcess() - the core figures from `core-bench.js` run in a fresh
 * node (with --expose-gc), as the daemon runs in one: measured here, after
 * the load clients, it would pay for this process's heap and JIT state.
 */
function coreInOwnProcess(count: number): CoreFigures {
  const out = execFileSync(process.execPath, ['--expose-gc', join(ROOT, 'dist/test/bench/core-bench.js')], {
    cwd: ROOT,
    env: { ...process.env, BENCH_GROUPS: String(count) },
    encoding: 'utf8',
  });
  const line = out.trim().split('\n').pop() ?? '';
  const f = JSON.parse(line) as { groupsPerSec: number; with1k: number; with100k: number; heapPerGroup: number };
  return { groupsPerSec: f.groupsPerSec, with1k: f.with1k, with100k: f.with100k, heapPerGroup: f.heapPerGroup };
}

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = option('--seconds', 2);
const RUNS = option('--runs', 5);
const DOCS = !process.argv.includes('--no-docs');
/** --only-observe: just the observation-feed comparison (a quick check of that part). */
const ONLY_OBSERVE = process.argv.includes('--only-observe');

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
 * struct Config - one iopfd configuration to measure.
 * @what: its name in the log.
 * @d: the daemon.
 * @devices: the devices whose traffic generators run.
 * @connect: the clients that answer (fresh ones, or the same ones every time).
 * @persistent: the clients stay open from run to run (else they are opened
 *   before and closed after each run).
 * @around: set up around each run (e.g. a feed subscriber); returns its undo.
 */
interface Config {
  what: string;
  d: Daemon;
  devices: readonly string[];
  connect: () => Promise<FaultClient[]>;
  persistent: boolean;
  around?: () => Promise<() => Promise<void>>;
}

/**
 * observeFeed() - subscribe to @d's observation feed (GET /v1/platform/observe,
 * group events included) as the console does, reading every message until
 * the returned function closes it. Throws if the feed sent no snapshot.
 */
async function observeFeed(d: Daemon): Promise<() => Promise<void>> {
  const abort = new AbortController();
  const res = await fetch(`${d.base}/v1/platform/observe`, { signal: abort.signal });
  if (res.status !== 200 || !res.body) throw new Error(`observe: ${res.status}`);
  const reader = res.body.getReader();
  let bytes = 0;
  let snapshots = 0;
  const decoder = new TextDecoder();
  const reading = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        bytes += value.length;
        snapshots += decoder.decode(value, { stream: true }).split('event: snapshot').length - 1;
      }
    } catch {
      // closed below
    }
  })();
  return async () => {
    abort.abort();
    await reading;
    if (snapshots === 0) throw new Error(`observe: no snapshot in ${bytes} bytes`);
  };
}

/** Clients that connect() returns every time, opened on first use. */
function shared(open: () => Promise<FaultClient[]>): () => Promise<FaultClient[]> {
  let clients: Promise<FaultClient[]> | undefined;
  return () => (clients ??= open());
}

/**
 * compare() - measure @configs side by side: a warm-up of each (which also
 * sizes its runs to ~SECONDS), then RUNS rounds, each running every config
 * once in turn, so that drift on the machine touches all of them alike.
 */
async function compare(configs: readonly Config[]): Promise<Measured[]> {
  const counts: number[] = [];
  const results: TrafficResult[][] = configs.map(() => []);
  const frames = configs.map(() => ({ groups: 0, frames: 0 }));
  const once = async (i: number, count: number, record: boolean): Promise<TrafficResult> => {
    const c = configs[i]!;
    const clients = await c.connect();
    const undo = await c.around?.();
    try {
      const g0 = clients.reduce((s, x) => s + x.groups, 0);
      const f0 = clients.reduce((s, x) => s + x.frames, 0);
      const r = await trafficRun(c.d, clients, c.devices, count, IN_FLIGHT);
      if (record) {
        frames[i]!.groups += clients.reduce((s, x) => s + x.groups, 0) - g0;
        frames[i]!.frames += clients.reduce((s, x) => s + x.frames, 0) - f0;
      }
      return r;
    } finally {
      await undo?.();
      if (!c.persistent) for (const x of clients) x.close();
    }
  };
  for (let i = 0; i < configs.length; i++) {
    const n = configs[i]!.devices.length;
    const warm = await once(i, 20_000, false);
    const warm2 = await once(i, Math.max(20_000, Math.round(warm.groupsPerSec / n)), false);
    counts.push(Math.max(20_000, Math.round((warm2.groupsPerSec * SECONDS) / n)));
  }
  for (let r = 0; r < RUNS; r++) for (let i = 0; i < configs.length; i++) results[i]!.push(await once(i, counts[i]!, true));
  for (const c of configs) if (c.persistent) for (const x of await c.connect()) x.close();
  return results.map((rs, i) => {
    const p50s = rs.map((r) => median(r.status.map((s) => s.latency_us.p50)));
    const p99s = rs.map((r) => Math.max(...r.status.map((s) => s.latency_us.p99)));
    const m: Measured = {
      groupsPerSec: Math.max(...rs.map((r) => r.groupsPerSec)),
      runs: rs.map((r) => r.groupsPerSec),
      p50: median(p50s),
      p99: median(p99s),
      p99Worst: Math.max(...p99s),
      groupsPerFrame: frames[i]!.groups / Math.max(1, frames[i]!.frames),
    };
    log(`${configs[i]!.what}: ${m.runs.map(k).join(' ')} groups/s, p50 ${m.p50} µs, p99 ${m.p99} µs, ${m.groupsPerFrame.toFixed(1)} groups/frame`);
    return m;
  });
}

/** One fault queue's clients: @n connections of @window in @protocol. */
async function clientsOf(d: Daemon, setup: FaultSetup, protocol: Subprotocol, n: number, window: number): Promise<FaultClient[]> {
  const tally = new Tally();
  const out: FaultClient[] = [];
  for (let i = 0; i < n; i++) out.push(await FaultClient.open(d, setup, protocol, window, tally));
  return out;
}

/** A platform file: @names as PRI devices on one VT-d model IOMMU. */
function platformFile(dir: string, name: string, names: readonly string[]): string {
  const devices = names.map((n, i) => ({ name: n, bdf: `${(i >> 5).toString(16).padStart(2, '0')}:${(i & 31).toString(16).padStart(2, '0')}.0` }));
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify({ iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 4096 }], devices }));
  return file;
}

/** struct Parked - a daemon holding @parked outstanding groups, and what they cost its heap. */
interface Parked {
  d: Daemon;
  setup: FaultSetup;
  heapPerGroup: number;
}

/** parked() - a fresh daemon with @n groups outstanding on its queue (delivered, never answered). */
async function parked(dir: string, n: number): Promise<Parked> {
  const parkers = Array.from({ length: parkDevicesFor(n) }, (_, i) => `park${i}`);
  const d = await Daemon.start(platformFile(dir, `park-${n}.json`, ['gen0', ...parkers]));
  const setup = await setupFaultQueue(d, ['gen0', ...parkers]);
  const windows: number[] = [];
  for (let left = n; left > 0; left -= windows[windows.length - 1]!) windows.push(Math.min(50_000, left));
  const holders: ParkedClient[] = [];
  for (const w of windows) holders.push(await ParkedClient.open(d, setup, w));
  const h0 = await d.heapUsed();
  const t0 = performance.now();
  await parkGroups(d, parkers, n, holders);
  const h1 = await d.heapUsed();
  log(`parked ${n.toLocaleString('en-US')} groups in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${Math.round((h1 - h0) / n)} B of heap each`);
  return { d, setup, heapPerGroup: (h1 - h0) / n };
}

async function main(): Promise<void> {
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'iopfd-bench-'));
  try {
    const gens = Array.from({ length: DEVICES }, (_, i) => `gen${i}`);
    const gen = gens[0]!;
    const file = platformFile(dir, 'platform.json', gens);

    const none: Baseline = { rate: 0, runs: [], bytes: 0, records: 0 };
    if (!ONLY_OBSERVE) log('baseline A (ws echo, JSON text)');
    const baselineA = ONLY_OBSERVE ? none : await baseline(baselineJsonMessage(A_BYTES), A_BYTES, 1);
    if (!ONLY_OBSERVE) log(`baseline A: ${baselineA.runs.map(k).join(' ')} messages/s`);
    if (!ONLY_OBSERVE) log('baseline B (ws echo, binary 16 x 40 bytes)');
    const baselineB = ONLY_OBSERVE ? none : await baseline(Buffer.alloc(B_RECORDS * 40, 0x5a), B_RECORDS * 40, B_RECORDS);
    if (!ONLY_OBSERVE) log(`baseline B: ${baselineB.runs.map(k).join(' ')} messages/s`);
    // vEVENTQ events/s in vevent.v1.uapi (each event 40 bytes, like a record of B) against B's records/s.
    if (!ONLY_OBSERVE) log('vEVENTQ (vevent.v1.uapi, events reported by the SMMUv3 driver, read by one client)');
    const veventRuns: number[] = [];
    if (!ONLY_OBSERVE) for (let i = 0; i < RUNS; i++) veventRuns.push((await veventRate(SECONDS, 4096, 1024)).eventsPerSec);
    const vevent = ONLY_OBSERVE ? undefined : { eventsPerSec: Math.max(...veventRuns), runs: veventRuns };
    if (!ONLY_OBSERVE) log(`vEVENTQ: ${veventRuns.map(k).join(' ')} events/s`);

    const d = await Daemon.start(file);
    let json: Measured, devices16: Measured, uapi: Measured, conns1: Measured, conns8: Measured;
    let observed: Figures['observed'];
    try {
      const setup = await setupFaultQueue(d, gens);
      const jsonClients = shared(() => clientsOf(d, setup, SUBPROTOCOL_JSON, 1, 4096));
      // The console open: the same run with the observation feed subscribed, in turn with one without.
      // compare() closes its persistent clients at the end: this pair gets clients of its own.
      const feedClients = shared(() => clientsOf(d, setup, SUBPROTOCOL_JSON, 1, 4096));
      const [without, withFeed] = (await compare([
        { what: 'iopfd JSON, no feed', d, devices: [gen], connect: feedClients, persistent: true },
        { what: 'iopfd JSON, observation feed subscribed', d, devices: [gen], connect: feedClients, persistent: true, around: () => observeFeed(d) },
      ])) as [Measured, Measured];
      observed = { without, with: withFeed };
      if (ONLY_OBSERVE) {
        log(`feed subscribed: ${(withFeed.groupsPerSec / without.groupsPerSec).toFixed(3)} × the groups/s without`);
        process.stdout.write(`${JSON.stringify(observed)}\n`);
        return;
      }
      [json, devices16] = (await compare([
        { what: 'iopfd JSON', d, devices: [gen], connect: jsonClients, persistent: true },
        { what: `iopfd JSON, ${DEVICES} devices`, d, devices: gens, connect: jsonClients, persistent: true },
      ])) as [Measured, Measured];
      [uapi] = (await compare([
        { what: 'iopfd uapi', d, devices: [gen], connect: shared(() => clientsOf(d, setup, SUBPROTOCOL_UAPI, 1, 4096)), persistent: true },
      ])) as [Measured];
      [conns1, conns8] = (await compare([
        { what: '1 connection', d, devices: [gen], connect: () => clientsOf(d, setup, SUBPROTOCOL_JSON, 1, IN_FLIGHT), persistent: false },
        { what: '8 connections', d, devices: [gen], connect: () => clientsOf(d, setup, SUBPROTOCOL_JSON, 8, IN_FLIGHT / 8), persistent: false },
      ])) as [Measured, Measured];
    } finally {
      await d.stop();
    }

    const p1k = await parked(dir, 1_000);
    let o1k: Measured, o100k: Measured, p100k: Parked | undefined;
    try {
      p100k = await parked(dir, 100_000);
      const at = (p: Parked): Config => ({
        what: `JSON, ${p === p1k ? '1,000' : '100,000'} outstanding`,
        d: p.d,
        devices: ['gen0'],
        connect: shared(() => clientsOf(p.d, p.setup, SUBPROTOCOL_JSON, 1, 1024)),
        persistent: true,
      });
      [o1k, o100k] = (await compare([at(p1k), at(p100k)])) as [Measured, Measured];
    } finally {
      await p1k.d.stop();
      await p100k?.d.stop();
    }

    log('native: a C handler on libiopfd against the Node uapi client');
    const native = await nativeFigures({ seconds: SECONDS, runs: RUNS, inFlight: IN_FLIGHT, log });

    log('core, in process (a process of its own, like the daemon)');
    const core = coreInOwnProcess(300_000);
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
      outstanding1k: o1k,
      outstanding100k: o100k,
      daemonHeapPerGroup: p100k!.heapPerGroup,
      observed,
      ...(native ? { native } : {}),
      vevent,
    };
    for (const t of targets(figures)) log(`target ${t.name}: ${t.value} (${t.goal}) ${t.score >= 1 ? 'met' : 'NOT met'}`);
    if (DOCS) {
      writeFileSync(join(ROOT, 'docs/benchmarks.md'), renderMarkdown(figures));
      writeFileSync(join(ROOT, 'docs/benchmarks.svg'), renderSvg(figures));
      log('wrote docs/benchmarks.md and docs/benchmarks.svg');
    }
    log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
    process.stdout.write(`${JSON.stringify(figures)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
