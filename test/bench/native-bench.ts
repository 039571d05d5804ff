/**
 * The native figures of `npm run bench`: a C handler on a
 * libiopfd fd (test/native/lib-handler, fault-loop.h's epoll loop) against
 * the Node uapi client (load.ts's FaultClient in `iopf.v1.uapi`) in the
 * same run, on the same daemon and fault queue, one client connected at a
 * time, runs alternating so that drift touches both alike:
 *
 * - throughput: groups/s with @inFlight groups in flight (target: the C
 *   handler ≥ 0.8 × the Node client);
 * - the bridge's added latency: the device-side p50 (request to response)
 *   with one group in flight, C handler minus Node client.
 *
 * Both are timed the same way: from the traffic start request until the
 * client saw the daemon confirm its last answer. Run alone: `node dist/test/bench/native-bench.js [--quick]`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Daemon, FaultClient, setupFaultQueue, Tally, type FaultSetup } from './load.js';
import { SUBPROTOCOL_UAPI, type TrafficStatus } from '../../protocol/index.js';
import { buildNative, NATIVE_BUILD, NativeProgram } from '../native/helpers.js';

/**
 * struct NativeFigures - the native figures of one bench run.
 * @c: the C handler's groups/s per run.
 * @node: the Node uapi client's groups/s per run.
 * @ratio: best C / best Node.
 * @latencyC: the C handler's device-side p50 at one group in flight, µs.
 * @latencyNode: the Node client's, µs.
 * @addedLatency: @latencyC - @latencyNode, µs (the bridge's cost).
 */
export interface NativeFigures {
  inFlight: number;
  c: number[];
  node: number[];
  ratio: number;
  latencyC: number;
  latencyNode: number;
  addedLatency: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const DEVICE = 'gen0';

/**
 * A client that answers the queue, opened before a run (not timed) and
 * closed after: answered(n) resolves once it has seen the daemon confirm
 * @n answers (the C handler: lib-handler's "done" line, printed after its
 * close(), which waits for the daemon's replies to its pipelined write()s;
 * the Node client: the daemon's `write` replies), as load.ts's trafficRun()
 * times the Node client.
 */
interface Handler {
  answered(n: number): Promise<void>;
  close(): Promise<void>;
}

/** Start @count groups (@inFlight at a time) on @h; the rate up to its last confirmed answer, and the device's status. */
async function run(d: Daemon, h: Handler, count: number, inFlight: number): Promise<{ groupsPerSec: number; status: TrafficStatus }> {
  const done = h.answered(count);
  const t0 = performance.now();
  await d.call('POST', `/v1/platform/devices/${DEVICE}/traffic`, { count, in_flight: inFlight });
  await done;
  const groupsPerSec = count / ((performance.now() - t0) / 1000);
  for (const deadline = performance.now() + 10_000; ; ) {
    const st = (await d.call('GET', `/v1/platform/devices/${DEVICE}/traffic`)) as TrafficStatus;
    if (!st.running) {
      if (st.by_code.success !== count) throw new Error(`native bench: ${JSON.stringify(st)}`);
      return { groupsPerSec, status: st };
    }
    if (performance.now() > deadline) throw new Error(`native bench: the device still runs: ${JSON.stringify(st)}`);
    await sleep(5);
  }
}

/** The C handler (lib-handler --quiet --stop-after @count) on @setup's queue. */
async function openC(d: Daemon, setup: FaultSetup, count: number): Promise<Handler> {
  const m = /^\/v1\/contexts\/(\d+)\/faults\/(\d+)\/stream$/.exec(setup.stream);
  if (!m) throw new Error(`native bench: unexpected stream path ${setup.stream}`);
  const p = new NativeProgram(`${NATIVE_BUILD}lib-handler`, [d.base, m[1]!, setup.token, m[2]!, '--quiet', '--stop-after', String(count)]);
  await p.waitLines(/^ready$/);
  return {
    answered: async (n) => {
      const [line] = await p.waitLines(/^done /, 1, 120_000);
      if (!line!.startsWith(`done groups=${n} `)) throw new Error(`native bench: the C handler ended with "${line}", ${n} expected`);
    },
    close: async () => {
      await p.kill();
    },
  };
}

/** The Node uapi client on @setup's queue. */
async function openNode(d: Daemon, setup: FaultSetup): Promise<Handler> {
  const tally = new Tally();
  const c = await FaultClient.open(d, setup, SUBPROTOCOL_UAPI, 4096, tally);
  return {
    answered: (n) => tally.until(n),
    close: async () => {
      c.close();
      await sleep(50); // the daemon sees the close before the next client's run
    },
  };
}

/**
 * nativeFigures() - measure; undefined (with the reason on @log) when no C
 * toolchain is here.
 * @opts: seconds per run, runs, groups in flight, a log.
 */
export async function nativeFigures(opts: { seconds: number; runs: number; inFlight: number; log: (s: string) => void }): Promise<NativeFigures | undefined> {
  const skip = buildNative();
  if (skip) {
    opts.log(`native: skipped: ${skip}`);
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'iopfd-native-bench-'));
  const file = join(dir, 'platform.json');
  writeFileSync(file, JSON.stringify({ iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 4096 }], devices: [{ name: DEVICE, bdf: '00:00.0' }] }));
  const d = await Daemon.start(file);
  try {
    const setup = await setupFaultQueue(d, [DEVICE]);
    const kinds = { c: (count: number) => openC(d, setup, count), node: () => openNode(d, setup) };
    const once = async (kind: keyof typeof kinds, count: number, inFlight: number): Promise<{ groupsPerSec: number; status: TrafficStatus }> => {
      const h = await kinds[kind](count);
      try {
        return await run(d, h, count, inFlight);
      } finally {
        await h.close();
      }
    };
    // Warm-up (JIT, connections), which also sizes the runs to ~seconds each.
    const warm = Math.min((await once('node', 20_000, opts.inFlight)).groupsPerSec, (await once('c', 20_000, opts.inFlight)).groupsPerSec);
    const count = Math.max(5_000, Math.round(warm * opts.seconds));
    const c: number[] = [];
    const node: number[] = [];
    for (let r = 0; r < opts.runs; r++) {
      node.push((await once('node', count, opts.inFlight)).groupsPerSec);
      c.push((await once('c', count, opts.inFlight)).groupsPerSec);
    }
    const k = (x: number): string => `${Math.round(x / 1000)}k`;
    opts.log(`native: C handler on libiopfd ${c.map(k).join(' ')} groups/s; Node uapi client ${node.map(k).join(' ')} groups/s (in flight ${opts.inFlight})`);
    // One group in flight: the device-side p50, as many single-group round trips as fit in ~seconds/2.
    const lc: number[] = [];
    const ln: number[] = [];
    const n1 = Math.max(500, Math.round(1000 * opts.seconds));
    for (let r = 0; r < Math.max(1, Math.ceil(opts.runs / 2)); r++) {
      ln.push((await once('node', n1, 1)).status.latency_us.p50);
      lc.push((await once('c', n1, 1)).status.latency_us.p50);
    }
    const f: NativeFigures = {
      inFlight: opts.inFlight,
      c,
      node,
      ratio: Math.max(...c) / Math.max(...node),
      latencyC: median(lc),
      latencyNode: median(ln),
      addedLatency: median(lc) - median(ln),
    };
    opts.log(`native: one group in flight: p50 C ${f.latencyC} µs, Node ${f.latencyNode} µs: the bridge adds ${f.addedLatency} µs`);
    opts.log(`native: target C ≥ 0.8 × Node uapi: ${f.ratio.toFixed(2)} × ${f.ratio >= 0.8 ? 'met' : 'NOT met'}`);
    return f;
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const f = await nativeFigures({ seconds: quick ? 0.3 : 2, runs: quick ? 1 : 5, inFlight: 64, log: (s) => void process.stderr.write(`bench: ${s}\n`) });
  process.stdout.write(`${JSON.stringify(f ?? null)}\n`);
}
