// Per-device and per-queue metric labels: counted per event, bounded, the
// rest under `other`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { IommufdObserver } from '../../core/index.js';
import { DEFAULT_MAX_DEVICE_LABELS, DEFAULT_MAX_QUEUE_LABELS, Metrics, OTHER_LABEL } from '../../server/metrics.js';

type Group = Parameters<NonNullable<IommufdObserver['reported']>>[0];
type Queue = Parameters<NonNullable<IommufdObserver['reported']>>[1];

/** A group of device @name and a queue ctx/id, as far as the metrics read them. */
const device = (name: string) => ({ name });
const group = (dev: { name: string }) => ({ faultParam: { dev } }) as unknown as Group;
const queue = (ctx: number, id: number) => ({ id, ictx: { id: ctx } }) as unknown as Queue;

/** The value of each series of @metric on @m's /metrics text, by its label text. */
async function series(m: Metrics, metric: string): Promise<Map<string, number>> {
  const text = await m.registry.metrics();
  const out = new Map<string, number>();
  for (const [, labels, v] of text.matchAll(new RegExp(`^${metric}\\{([^}]*)\\} (\\S+)$`, 'gm'))) out.set(labels!, Number(v));
  return out;
}

test('metrics: groups per device and per queue, at most N label values each, the rest under other', async () => {
  const m = new Metrics({ maxDeviceLabels: 2, maxQueueLabels: 3 });
  const devs = ['nic0', 'nic1', 'nic2', 'nic3'].map(device);
  const queues = [queue(1, 2), queue(1, 3), queue(2, 2), queue(3, 2), queue(4, 2)];
  // Group i: device i % 4, queue i % 5; 20 groups reported, the even ones answered by a client, the odd ones by the daemon.
  const groups = Array.from({ length: 20 }, (_, i) => [group(devs[i % 4]!), queues[i % 5]!] as const);
  for (const [g, q] of groups) m.observer.reported!(g, q);
  groups.forEach(([g, q], i) => {
    m.observer.delivered!(1, [g], q);
    if (i % 2 === 0) m.observer.answered!(0, 1, g, q);
    else m.observer.autoAnswered!('timeout', 1, 1, g, q);
  });
  const dev = await series(m, 'iopfd_device_groups_total');
  // nic0 and nic1 were seen first: 5 groups each; nic2 and nic3 share `other`.
  assert.equal(dev.get('device="nic0",event="reported"'), 5);
  assert.equal(dev.get('device="nic1",event="reported"'), 5);
  assert.equal(dev.get(`device="${OTHER_LABEL}",event="reported"`), 10);
  assert.equal(dev.get('device="nic0",event="answered"'), 5, 'nic0 has the groups 0, 4, 8, ...: all even');
  assert.equal(dev.get('device="nic1",event="auto_answered"'), 5);
  assert.equal(new Set([...dev.keys()].map((k) => /device="([^"]+)"/.exec(k)![1])).size, 3, 'two devices + other');
  const q = await series(m, 'iopfd_queue_groups_total');
  for (const label of ['1/2', '1/3', '2/2']) assert.equal(q.get(`queue="${label}",event="reported"`), 4, label);
  assert.equal(q.get(`queue="${OTHER_LABEL}",event="reported"`), 8, '3/2 and 4/2');
  assert.equal(q.get(`queue="${OTHER_LABEL}",event="delivered"`), 8);
  assert.equal(new Set([...q.keys()].map((k) => /queue="([^"]+)"/.exec(k)![1])).size, 4, 'three queues + other');
  // Counters keep counting across scrapes, and a label once given stays.
  for (const [g, qq] of groups.slice(0, 5)) m.observer.reported!(g, qq);
  const again = await series(m, 'iopfd_queue_groups_total');
  assert.equal(again.get('queue="1/2",event="reported"'), 5);
  assert.equal(again.get(`queue="${OTHER_LABEL}",event="reported"`), 10);
  // The same label text from another object (a queue id reused) is the same series.
  m.observer.reported!(group(device('nic0')), queue(1, 2));
  assert.equal((await series(m, 'iopfd_queue_groups_total')).get('queue="1/2",event="reported"'), 6);
  assert.equal((await series(m, 'iopfd_device_groups_total')).get('device="nic0",event="reported"'), 8, '5 + groups 0 and 4 again + 1');
});

test('metrics: the default bounds, and the HELP text states them', async () => {
  const m = new Metrics();
  const text = await m.registry.metrics();
  assert.match(text, new RegExp(`# HELP iopfd_device_groups_total .*at most ${DEFAULT_MAX_DEVICE_LABELS} device values`));
  assert.match(text, new RegExp(`# HELP iopfd_queue_groups_total .*at most ${DEFAULT_MAX_QUEUE_LABELS} queue values`));
  for (let i = 0; i < DEFAULT_MAX_QUEUE_LABELS + 10; i++) m.observer.reported!(group(device(`d${i}`)), queue(1, i + 1));
  const q = await series(m, 'iopfd_queue_groups_total');
  assert.equal(q.size, DEFAULT_MAX_QUEUE_LABELS + 1);
  assert.equal(q.get(`queue="${OTHER_LABEL}",event="reported"`), 10);
  const d = await series(m, 'iopfd_device_groups_total');
  assert.equal(d.size, DEFAULT_MAX_DEVICE_LABELS + 1);
  assert.equal(d.get(`device="${OTHER_LABEL}",event="reported"`), DEFAULT_MAX_QUEUE_LABELS + 10 - DEFAULT_MAX_DEVICE_LABELS);
});

test('metrics: docs/server.md states the bounds the code has', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../../docs/server.md', import.meta.url)), 'utf8').replace(/\s+/g, ' ');
  assert.ok(doc.includes(`the first ${DEFAULT_MAX_DEVICE_LABELS} device names and the first ${DEFAULT_MAX_QUEUE_LABELS} queues`));
  assert.ok(doc.includes(`(${DEFAULT_MAX_DEVICE_LABELS} + 1) × 4 and (${DEFAULT_MAX_QUEUE_LABELS} + 1) × 4 series`));
});
