// The bench's report renders from its figures alone (no run needed): every
// target with its verdict, an explanation for each missed one, a well-formed SVG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderMarkdown, renderSvg, targets, type Figures, type Measured } from './report.js';

const m = (groupsPerSec: number): Measured => ({
  groupsPerSec,
  runs: [groupsPerSec * 0.9, groupsPerSec],
  p50: 250,
  p99: 900,
  p99Worst: 1200,
  groupsPerFrame: 64,
});

function figures(jsonRate: number): Figures {
  return {
    machine: { cpu: 'Test CPU <1>', cores: 2, node: 'v20.0.0', os: 'Linux 6', date: '2026-01-01T00:00:00Z', command: 'npm run bench', runs: 3, seconds: 2.5 },
    inFlight: 64,
    baselineA: { rate: 150_000, runs: [150_000], bytes: 262, records: 1 },
    baselineB: { rate: 140_000, runs: [140_000], bytes: 640, records: 16 },
    json: m(jsonRate),
    uapi: m(600_000),
    core: { groupsPerSec: 3_000_000, with1k: 2_500_000, with100k: 2_450_000, heapPerGroup: 450 },
    devices16: m(600_000),
    conns1: m(290_000),
    conns8: m(230_000),
    outstanding1k: m(250_000),
    outstanding100k: m(240_000),
    daemonHeapPerGroup: 560,
  };
}

test('report: targets, verdicts and the explanation of a missed one', () => {
  const met = figures(250_000);
  assert.ok(targets(met).every((t) => t.score >= 1));
  const md = renderMarkdown(met);
  assert.ok(md.includes('Test CPU <1>, 2 cores') && md.includes('npm run bench') && md.includes('v20.0.0'));
  assert.ok(!md.includes('not met'));

  const missed = figures(400_000); // core 7.5 × JSON
  const t = targets(missed).find((x) => x.name === 'core vs iopfd JSON')!;
  assert.ok(t.score < 1);
  const md2 = renderMarkdown(missed);
  assert.ok(md2.includes('**not met**') && md2.includes('Targets not met in this run, and why'));
});

test('report: the SVG is one well-formed document with escaped text and a bar per figure', () => {
  const svg = renderSvg(figures(250_000));
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"') && svg.trimEnd().endsWith('</svg>'));
  assert.ok(svg.includes('Test CPU &lt;1&gt;') && !svg.includes('<1>'));
  assert.equal((svg.match(/<rect /g) ?? []).length, 1 + 8 + targets(figures(250_000)).length);
  assert.ok(!/NaN|undefined|Infinity/.test(svg));
});

test('report: the libiopfd figures, when the run had a C toolchain: a target and a section', () => {
  const without = figures(250_000);
  assert.ok(!targets(without).some((t) => t.name.includes('libiopfd')) && !renderMarkdown(without).includes('## libiopfd'));
  const native = { inFlight: 64, c: [180_000, 200_000], node: [240_000, 250_000], ratio: 0.8, latencyC: 180, latencyNode: 150, addedLatency: 30 };
  const met = { ...without, native };
  const t = targets(met).find((x) => x.name === 'C handler on libiopfd vs Node uapi client')!;
  assert.equal(t.value, '0.80 ×');
  assert.ok(t.score >= 1);
  const md = renderMarkdown(met);
  assert.ok(md.includes('## libiopfd') && md.includes('| C handler on libiopfd | 200,000 |') && md.includes('adds 30 µs'));
  const missed = targets({ ...without, native: { ...native, ratio: 0.5 } }).find((x) => x.name.includes('libiopfd'))!;
  assert.ok(missed.score < 1);
});

test('report: the vEVENTQ row, when measured: events/s per baseline B record, its target, its table row and its bar', () => {
  const without = figures(250_000);
  assert.ok(!targets(without).some((t) => t.name.includes('vEVENTQ')) && !renderMarkdown(without).includes('| iopfd vEVENTQ'));
  // B echoes 140,000 messages of 16 records: 2,240,000 records/s; half of it is the target.
  const met = { ...without, vevent: { eventsPerSec: 1_344_000, runs: [1_200_000, 1_344_000] } };
  const t = targets(met).find((x) => x.name === 'vEVENTQ events vs baseline B records')!;
  assert.deepEqual([t.value, t.goal], ['0.60 ×', '≥ 0.5 ×']);
  assert.ok(t.score >= 1);
  const md = renderMarkdown(met);
  assert.ok(md.includes('| iopfd vEVENTQ (`vevent.v1.uapi`), events reported by the SMMUv3 driver, one reader | 1,344,000 events | 0.60 × B records |'));
  assert.ok(md.includes('| 1,200,000, 1,344,000 |') && md.includes('**The vEVENTQ row**'));
  assert.ok(md.includes('| vEVENTQ events vs baseline B records | 0.60 × | ≥ 0.5 × | met |'));
  const svg = renderSvg(met);
  assert.equal((svg.match(/<rect /g) ?? []).length, 1 + 9 + targets(met).length);
  assert.ok(svg.includes('iopfd vEVENTQ events (uapi)') && !/NaN|undefined|Infinity/.test(svg));
  const missed = targets({ ...without, vevent: { eventsPerSec: 1_000_000, runs: [1_000_000] } }).find((x) => x.name.includes('vEVENTQ'))!;
  assert.ok(missed.score < 1);
  assert.ok(
    renderMarkdown({ ...without, vevent: { eventsPerSec: 1_000_000, runs: [1_000_000] } }).includes(
      '**vEVENTQ events vs baseline B records** (0.45 ×, goal ≥ 0.5 ×)',
    ),
  );
});
