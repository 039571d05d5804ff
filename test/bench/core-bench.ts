/**
 * npm run bench:core — groups per second through the whole in-process path:
 * device traffic generator → PRQ → sim-iommu driver → IOPF core → iommufd
 * fault queue → read (cookie) → respond → iopfGroupResponse → driver → device,
 * which issues its next group. Single-request groups, 512 in flight.
 *
 * Also: the same with 100,000 other groups outstanding (delivered, unanswered)
 * on the queue, as a ratio to 1,000 outstanding, and the heap each outstanding
 * group costs. Run with --expose-gc for the heap figure. The loop lives in
 * core-rig.ts (shared with `npm run bench`).
 */
import { runCoreBench } from './core-rig.js';

const COUNT = Number(process.env.BENCH_GROUPS ?? 300_000);
const f = runCoreBench(COUNT);
const ratio = f.with100k / f.with1k;

const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
console.log(`node ${process.version}, ${COUNT.toLocaleString('en-US')} single-request groups per run, best of 3`);
console.log(`core groups/s                       ${fmt(f.groupsPerSec)}   (target ≥ 500,000: ${f.groupsPerSec >= 500_000 ? 'met' : 'NOT met'})`);
console.log(`with 1,000 outstanding              ${fmt(f.with1k)}`);
console.log(`with 100,000 outstanding            ${fmt(f.with100k)}   ratio ${ratio.toFixed(2)} (target ≥ 0.80: ${ratio >= 0.8 ? 'met' : 'NOT met'})`);
console.log(
  `heap per outstanding group          ${Number.isNaN(f.heapPerGroup) ? 'n/a (run with --expose-gc)' : `${Math.round(f.heapPerGroup)} B`}   (target ≤ 1024 B: ${f.heapPerGroup <= 1024 ? 'met' : 'NOT met'})`,
);
console.log(
  JSON.stringify({
    bench: 'core',
    groupsPerSec: Math.round(f.groupsPerSec),
    with1k: Math.round(f.with1k),
    with100k: Math.round(f.with100k),
    ratio,
    heapPerGroup: Math.round(f.heapPerGroup),
  }),
);
