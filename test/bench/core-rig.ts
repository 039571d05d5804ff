/**
 * The in-process core benchmark, shared by `npm run bench:core`
 * (core-bench.ts) and `npm run bench` (bench.ts).
 *
 * One platform on a ManualScheduler: device `gen` runs the traffic generator
 * (single-request groups, 512 in flight) through a nested hwpt with a fault
 * queue; the loop drains the deferred work, reads every waiting group and
 * answers each SUCCESS with respondOne(), as the daemon's stream does. Device
 * `bulk` parks groups (delivered, never answered) on a second connection for
 * the outstanding-groups figures.
 */
import {
  ManualScheduler,
  Platform,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdFaultAlloc,
  iommufdHwptAlloc,
  iommufdIoasAlloc,
  type IommufdFault,
  type IommufdFaultConn,
  type IopfGroup,
} from '../../core/index.js';

/** struct CoreRig - one platform wired for the loop. */
export interface CoreRig {
  sched: ManualScheduler;
  platform: Platform;
  fault: IommufdFault;
  /** The connection the loop reads and answers. */
  conn: IommufdFaultConn;
  /** The connection parked groups are delivered on (never answered). */
  backlogConn: IommufdFaultConn;
}

/** coreRig() - a fresh platform: `gen` and `bulk` attached to nested hwpts on one fault queue. */
export function coreRig(): CoreRig {
  const sched = new ManualScheduler();
  const platform = new Platform({
    sched,
    desc: {
      iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 4096 }],
      devices: [
        { name: 'gen', bdf: '00:02.0' },
        { name: 'bulk', bdf: '00:03.0' },
      ],
    },
    limits: { maxStreamsPerFault: 0 },
  });
  const ctx = platform.createContext();
  const fault = iommufdFaultAlloc(ctx, {});
  const ioas = iommufdIoasAlloc(ctx);
  for (const name of ['gen', 'bulk']) {
    const d = iommufdDeviceBind(ctx, name);
    const parent = iommufdHwptAlloc(ctx, { dev_id: d.id, pt_id: ioas.id, flags: 1 });
    const h = iommufdHwptAlloc(ctx, {
      dev_id: d.id,
      pt_id: parent.id,
      flags: 4,
      data_type: 'vtd_s1',
      data: { flags: 0, pgtbl_addr: 0n, addr_width: 48 },
      fault_id: fault.id,
    });
    iommufdDeviceAttach(d, h.id);
  }
  const noop = { readable() {}, expired() {}, overflow() {}, revoked() {}, kill() {} };
  return { sched, platform, fault, conn: fault.open(1024, noop), backlogConn: fault.open(1 << 30, noop) };
}

/** parkGroups() - deliver @n groups from `bulk` on the backlog connection and leave them unanswered. */
export function parkGroups(r: CoreRig, n: number): void {
  for (let i = 0; i < n; i++) r.platform.injectPageRequest('bulk', { grpid: i & 511, addr: BigInt(0x1000 * i), perm: 1, last: true });
  r.fault.read(r.backlogConn);
}

/** measureCore() - run @count single-request groups through the loop; groups/s. Throws if one is lost. */
export function measureCore(r: CoreRig, count: number): number {
  const { sched, platform, fault, conn } = r;
  const groups: IopfGroup[] = [];
  platform.startTraffic('gen', {
    count,
    pagesPerGroup: 1,
    inFlight: 512,
    pasid: undefined,
    base: 0x1_0000_0000n,
    perm: { read: true, write: false, exec: false, priv: false },
  });
  const t0 = performance.now();
  for (;;) {
    sched.run();
    fault.read(conn, Infinity, Infinity, groups);
    if (groups.length === 0) break;
    for (const g of groups) fault.respondOne(g.cookie, 0);
  }
  const dt = performance.now() - t0;
  const st = platform.trafficStatus('gen');
  if (st.answered !== count || st.byCode.success !== count) throw new Error(`lost groups: ${JSON.stringify(st)}`);
  return count / (dt / 1000);
}

/** heapUsed() - the heap in use after two full collections (when run with --expose-gc). */
export function heapUsed(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  return process.memoryUsage().heapUsed;
}

/** bestOf() - the largest of @runs results of @fn. */
export function bestOf(fn: () => number, runs = 3): number {
  let b = 0;
  for (let i = 0; i < runs; i++) b = Math.max(b, fn());
  return b;
}

/**
 * struct CoreFigures - what runCoreBench() measures.
 * @groupsPerSec: the loop alone.
 * @with1k: with 1,000 other groups outstanding on the queue.
 * @with100k: with 100,000 outstanding.
 * @heapPerGroup: heap bytes per outstanding group (NaN without --expose-gc).
 */
export interface CoreFigures {
  groupsPerSec: number;
  with1k: number;
  with100k: number;
  heapPerGroup: number;
}

/**
 * runCoreBench() - warm up, then each figure as the best of 3 runs of @count
 * groups. The warm-up runs fresh rigs for at least a second (as the daemon's
 * runs follow a warm-up of about that length): the first few hundred
 * thousand groups still run partly unoptimized code, 20-25 % slower.
 */
export function runCoreBench(count: number): CoreFigures {
  const warm = performance.now();
  do measureCore(coreRig(), count);
  while (performance.now() - warm < 1000);
  const groupsPerSec = bestOf(() => measureCore(coreRig(), count));
  const r1k = coreRig();
  parkGroups(r1k, 1_000);
  const with1k = bestOf(() => measureCore(r1k, count));
  const r100k = coreRig();
  const h0 = heapUsed();
  parkGroups(r100k, 100_000);
  const h1 = heapUsed();
  const with100k = bestOf(() => measureCore(r100k, count));
  const exposed = (globalThis as { gc?: unknown }).gc !== undefined;
  return { groupsPerSec, with1k, with100k, heapPerGroup: exposed ? (h1 - h0) / 100_000 : NaN };
}
