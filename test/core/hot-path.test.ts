// The allocation-free pieces of the group path: respondOne(), read() into a
// reused array, the device's response log in typed chunks, and the traffic
// generator's latency histogram.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RESPOND_BAD_CODE, RESPOND_BAD_COOKIE, RESPOND_OK, respondErrorMessage, type IopfGroup } from '../../core/index.js';
import { ResponseLog } from '../../core/hw/pcie-function.js';
import { PRG_FAILURE, PRG_INVALID, PRG_SUCCESS } from '../../core/hw/iommu-unit.js';
import { IdAllocator } from '../../core/iommufd/ids.js';
import { World, respond } from './harness.js';

test('respondOne: a bad code leaves the cookie valid, a bad or used cookie is refused, one response per group', () => {
  const w = new World();
  const { f } = w.standard();
  const fd = w.fd(f);
  w.T(undefined, 1, true);
  w.T(undefined, 2, true);
  const groups = f.read(fd.conn);
  assert.deepEqual(
    groups.map((g) => g.cookie),
    [1, 2],
  );
  assert.equal(f.respondOne(1, 7), RESPOND_BAD_CODE);
  assert.equal(f.respondOne(1, 0), RESPOND_OK);
  assert.equal(f.respondOne(1, 0), RESPOND_BAD_COOKIE, 'answered already');
  for (const bad of [0, -1, 1.5, 99, NaN]) assert.equal(f.respondOne(bad, 1), RESPOND_BAD_COOKIE, String(bad));
  assert.equal(f.respondOne(2, 1), RESPOND_OK);
  w.sched.run();
  assert.deepEqual(w.log(), [
    { pasid: undefined, grpid: 1, code: 'success' },
    { pasid: undefined, grpid: 2, code: 'invalid' },
  ]);
  assert.equal(respondErrorMessage(RESPOND_BAD_CODE, 1, 7), 'response code 7 is not 0 (success) or 1 (invalid)');
  assert.equal(respondErrorMessage(RESPOND_BAD_COOKIE, 99, 0), 'cookie 99 is not outstanding');
  assert.deepEqual(respond(f, [{ cookie: 5, code: 0 }], true), {
    ok: 0,
    errors: [{ index: 0, cookie: 5, errno: 'EINVAL', message: 'cookie 5 is not outstanding' }],
    stoppedAt: 0,
  });
  assert.deepEqual(w.audit().outstandingGroups, 0);
});

test('read: into a reused array, emptied first', () => {
  const w = new World();
  const { f } = w.standard();
  const fd = w.fd(f);
  const out: IopfGroup[] = [];
  w.T(undefined, 1, true);
  assert.equal(f.read(fd.conn, Infinity, Infinity, out), out);
  assert.equal(out.length, 1);
  assert.equal(f.read(fd.conn, Infinity, Infinity, out).length, 0, 'nothing waiting: emptied');
});

test('ResponseLog: entries across chunks, seq = index + 1, since() and map()', () => {
  const log = new ResponseLog();
  const n = (1 << 14) * 2 + 5;
  for (let i = 0; i < n; i++) log.push(i % 3 === 0 ? undefined : i & 0xfffff, i & 511, [PRG_SUCCESS, PRG_INVALID, PRG_FAILURE, 0xf][i % 4]!);
  assert.equal(log.length, n);
  const expect = (i: number): object => ({
    pasid: i % 3 === 0 ? undefined : i & 0xfffff,
    grpid: i & 511,
    code: ['success', 'invalid', 'failure', 'failure'][i % 4],
    seq: i + 1,
  });
  for (const i of [0, 1, (1 << 14) - 1, 1 << 14, n - 1]) assert.deepEqual(log.at(i), expect(i));
  assert.deepEqual(log.since(n - 2), [expect(n - 2), expect(n - 1)]);
  assert.deepEqual(log.since(n + 5), []);
  assert.equal(
    log.map((e) => e.seq).reduce((a, b) => a + b, 0),
    (n * (n + 1)) / 2,
  );
  assert.equal([...log].length, n);
});

test('traffic generator: latency percentiles from its histogram', () => {
  const w = new World();
  const { f } = w.standard();
  const fd = w.fd(f);
  w.platform.startTraffic('d0', {
    count: 200,
    pagesPerGroup: 1,
    inFlight: 200,
    pasid: undefined,
    base: 0x1_0000_0000n,
    perm: { read: true, write: false, exec: false, priv: false },
  });
  w.sched.run();
  const groups = f.read(fd.conn);
  assert.equal(groups.length, 200);
  // Answer group i after (i + 1) × 10 µs: latencies 10, 20, ..., 2000 µs.
  for (const g of groups) {
    w.sched.advance(0.01);
    assert.equal(f.respondOne(g.cookie, 0), RESPOND_OK);
  }
  w.sched.run();
  const st = w.platform.trafficStatus('d0');
  assert.equal(st.answered, 200);
  assert.equal(st.running, false);
  // Rank floor(q × 200): p50 is the 101st latency (1010 µs), p99 the 199th (1990 µs); buckets are within 0.4 %.
  assert.ok(Math.abs(st.latencyUs.p50 - 1010) <= 1010 * 0.004, `p50 ${st.latencyUs.p50}`);
  assert.ok(Math.abs(st.latencyUs.p99 - 1990) <= 1990 * 0.004, `p99 ${st.latencyUs.p99}`);
  assert.ok(Math.abs(st.latencyUs.max - 2000) < 0.1, `max ${st.latencyUs.max}`);
});

test('traffic generator: small latencies are exact to 0.1 µs', () => {
  const w = new World();
  const { f } = w.standard();
  const fd = w.fd(f);
  w.platform.startTraffic('d0', {
    count: 3,
    pagesPerGroup: 1,
    inFlight: 3,
    pasid: undefined,
    base: 0x1_0000_0000n,
    perm: { read: true, write: false, exec: false, priv: false },
  });
  w.sched.run();
  for (const g of f.read(fd.conn)) {
    w.sched.advance(0.0123);
    f.respondOne(g.cookie, 0);
  }
  const st = w.platform.trafficStatus('d0');
  assert.equal(st.latencyUs.p50, 24.6);
  assert.equal(st.latencyUs.max, 36.9);
});

test('IdAllocator: the lowest free id across several bitmap levels (model check)', () => {
  const ids = new IdAllocator();
  const used = new Set<number>();
  const list: number[] = []; // the same ids, for picking one at random
  const at = new Map<number, number>(); // id → its index in list
  let expectLowest = 1;
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let step = 0; step < 30_000; step++) {
    // Grow to 5,000 ids in use (three bitmap levels), then churn with frees anywhere.
    if (used.size < 5_000 && (used.size === 0 || rand(10) < 7)) {
      while (used.has(expectLowest)) expectLowest++;
      assert.equal(ids.alloc(), expectLowest);
      used.add(expectLowest);
      at.set(expectLowest, list.length);
      list.push(expectLowest);
    } else {
      const victim = rand(2) === 0 ? 1 + rand(used.size * 2) : list[rand(list.length)]!;
      if (!used.has(victim)) continue;
      used.delete(victim);
      const i = at.get(victim)!;
      const moved = list[list.length - 1]!;
      list[i] = moved;
      at.set(moved, i);
      list.pop();
      at.delete(victim);
      ids.free(victim);
      if (victim < expectLowest) expectLowest = victim;
    }
  }
  assert.equal(ids.used, used.size);
});
