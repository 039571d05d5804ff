// The event-loop scheduler the daemon gives the core.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventLoopScheduler } from '../../server/scheduler.js';

test('scheduler: defer runs FIFO in one batch; work deferred meanwhile runs in the next batch', async () => {
  const s = new EventLoopScheduler(() => assert.fail('nothing throws'));
  const order: string[] = [];
  let immediates = 0;
  const spy = setImmediate;
  (globalThis as { setImmediate: typeof setImmediate }).setImmediate = ((fn: () => void) => {
    immediates++;
    return spy(fn);
  }) as typeof setImmediate;
  try {
    for (let i = 0; i < 100; i++) s.defer(() => order.push(`a${i}`));
    s.defer(() => s.defer(() => order.push('late')));
    s.defer(() => order.push('b'));
    assert.equal(immediates, 1, 'one setImmediate for the whole batch');
    await new Promise((r) => spy(r));
    assert.equal(order.length, 101);
    assert.deepEqual(order.slice(-2), ['a99', 'b']);
    await new Promise((r) => spy(r));
    assert.equal(order[order.length - 1], 'late');
  } finally {
    (globalThis as { setImmediate: typeof setImmediate }).setImmediate = spy;
  }
});

test('scheduler: a throwing deferred function is reported and the batch goes on', async () => {
  const errors: unknown[] = [];
  const s = new EventLoopScheduler((e) => errors.push(e));
  const ran: number[] = [];
  s.defer(() => ran.push(1));
  s.defer(() => {
    throw new Error('bug');
  });
  s.defer(() => ran.push(3));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(ran, [1, 3]);
  assert.equal((errors[0] as Error).message, 'bug');
});

test('scheduler: timers fire once, cancel works, now() is monotonic ms', async () => {
  const s = new EventLoopScheduler(() => assert.fail('nothing throws'));
  const t0 = s.now();
  const fired: string[] = [];
  s.timer(5, () => fired.push('a'));
  const h = s.timer(5, () => fired.push('cancelled'));
  s.cancel(h);
  s.cancel(h);
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(fired, ['a']);
  assert.ok(s.now() - t0 >= 5);
});
