/**
 * Regressions, in process and deterministic (ManualScheduler): bugs the
 * reliability work found in the core, each pinned down by the smallest
 * sequence that showed it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualScheduler, Platform, iommufdDeviceAttach, iommufdDeviceBind, iommufdFaultAlloc, iommufdHwptAlloc, iommufdIoasAlloc } from '../../core/index.js';
import { respond } from '../core/harness.js';

/** A platform of one IOMMU (@model, PRQ @prqDepth) and one PRI device `d0` (@priOutstanding requests of budget), on a manual scheduler. */
function onePlatform(model: 'vtd' | 'smmuv3', prqDepth: number, priOutstanding = 512): { sched: ManualScheduler; p: Platform } {
  const sched = new ManualScheduler();
  const desc = {
    iommus: [{ name: 'iommu0', model, prq_depth: prqDepth }],
    devices: [{ name: 'd0', bdf: '00:02.0', caps: { pri_outstanding: priOutstanding } }],
  };
  return { sched, p: new Platform({ sched, desc }) };
}

/** An 8-byte read DMA by `d0` at @iova; its outcome goes to @ended as `iova:status`. */
function readDma(p: Platform, iova: bigint, ended: string[]): void {
  p.dma(
    'd0',
    { pasid: undefined, iova, length: 8, write: false, data: undefined, priv: false, exec: false, timeoutMs: 10_000 },
    (r) => void ended.push(`${iova}:${r.status}`),
  );
}

/** @name bound in a new context, attached to a fault-capable paging hwpt: the context's fault queue. */
function faultQueueOf(p: Platform, name: string): ReturnType<typeof iommufdFaultAlloc> {
  const ctx = p.createContext();
  const dev = iommufdDeviceBind(ctx, name);
  const ioas = iommufdIoasAlloc(ctx);
  const fault = iommufdFaultAlloc(ctx, {});
  iommufdDeviceAttach(dev, iommufdHwptAlloc(ctx, { dev_id: dev.id, pt_id: ioas.id, flags: 4, fault_id: fault.id }).id);
  return fault;
}

test('stall model: a group answered by the hardware on PRQ overflow does not leak its code into the next group with its PRG index', () => {
  const { sched, p } = onePlatform('smmuv3', 1);
  const fn = p.function('d0');
  const fault = faultQueueOf(p, 'd0');
  const conn = fault.open(16, { readable() {}, expired() {}, overflow() {}, revoked() {}, kill() {} });
  const send = (last: boolean, addr: bigint): void =>
    void fn.injectPageRequest({ pasid: undefined, prgi: 7, addr, read: true, write: false, exec: false, priv: false, last });
  const answer = (code: number): void => {
    const groups = fault.read(conn);
    assert.equal(groups.length, 1);
    assert.equal(
      respond(
        fault,
        groups.map((g) => ({ cookie: g.cookie, code })),
        false,
      ).ok,
      1,
    );
    sched.run();
  };

  // PRG 7: its first request enters the PRQ (one entry), its last finds it full: the hardware answers Success.
  send(false, 0x1000n);
  send(true, 0x2000n);
  sched.run();
  assert.deepEqual(
    fn.responses.map((r) => r.code),
    ['success'],
  );
  // The queued request is its own stall: the user answers it Invalid (no second response: its group is over).
  answer(1);
  assert.equal(fn.responses.length, 1);
  // A new group with PRG index 7, answered Success, must get Success (it got the stale Invalid).
  send(true, 0x3000n);
  sched.run();
  answer(0);
  assert.deepEqual(
    fn.responses.map((r) => `${r.grpid}:${r.code}`),
    ['7:success', '7:success'],
  );
  assert.equal(fn.unexpectedResponses, 0);
  assert.equal(fn.outstandingGroups, 0);
});

test('platform shutdown answers each outstanding group once and makes no new ones (traffic generators stop first)', () => {
  const { sched, p } = onePlatform('vtd', 4096);
  const fn = p.function('d0');
  const fault = faultQueueOf(p, 'd0');
  p.startTraffic('d0', {
    count: 1000,
    pagesPerGroup: 1,
    inFlight: 32,
    pasid: undefined,
    base: 0x100000n,
    perm: { read: true, write: false, exec: false, priv: false },
  });
  sched.run();
  assert.equal(fault.queued, 32, 'the generator waits on 32 groups');
  p.shutdown();
  sched.run();
  assert.equal(fn.responses.length, 32, 'one INVALID per outstanding group, and no group issued during shutdown');
  assert.ok([...fn.responses].every((r) => r.code === 'invalid'));
  const st = p.trafficStatus('d0');
  assert.deepEqual([st.running, st.sent, st.answered], [false, 32, 32]);
});

test('a device answered synchronously (no handler: INVALID) does not keep one PRQ drain busy for its whole traffic run', () => {
  const { sched, p } = onePlatform('vtd', 4096);
  p.startTraffic('d0', {
    count: 100_000,
    pagesPerGroup: 1,
    inFlight: 8,
    pasid: undefined,
    base: 0x1_0000_0000n,
    perm: { read: true, write: false, exec: false, priv: false },
  });
  // One interrupt: the drain takes the 8 groups queued when it started; the 8 the answers made the device send wait for the next one.
  assert.equal(sched.step(), 1);
  assert.deepEqual([p.trafficStatus('d0').answered, p.trafficStatus('d0').sent], [8, 16]);
  assert.equal(p.audit().prq, 8);
  sched.run();
  const st = p.trafficStatus('d0');
  assert.deepEqual([st.running, st.answered, st.byCode.invalid], [false, 100_000, 100_000]);
  assert.equal(p.audit().prq, 0);
});

test('hot-unplug: a DMA waiting for PRI budget ends pri_disabled at once; the function sends nothing after it is pulled', () => {
  const { sched, p } = onePlatform('vtd', 64, 1);
  const fn = p.function('d0');
  const fault = faultQueueOf(p, 'd0');
  const ended: string[] = [];
  readDma(p, 0x1000n, ended); // takes the one request of budget: its group waits on the fault queue
  readDma(p, 0x2000n, ended); // waits for budget
  sched.run();
  assert.deepEqual([fault.queued, ended], [1, []]);
  p.removeDevice('d0');
  sched.run();
  // The first DMA's group was answered INVALID by the unplug; the second never sent a request.
  assert.deepEqual(ended, ['4096:invalid', '8192:pri_disabled']);
  assert.deepEqual(
    fn.responses.map((r) => r.code),
    ['invalid'],
  );
  assert.equal(p.audit().prq, 0);
});

test('shutdown settles synchronously even when each answer lets a waiting DMA send its next group', () => {
  const { sched, p } = onePlatform('vtd', 64, 1);
  const fn = p.function('d0');
  const fault = faultQueueOf(p, 'd0');
  const ended: string[] = [];
  for (let i = 0; i < 20; i++) readDma(p, BigInt(0x1000 * (i + 1)), ended);
  sched.run();
  assert.equal(fault.queued, 1, 'one group holds the whole budget; 19 DMAs wait for it');
  p.shutdown();
  // No sched.run(): shutdown itself answered the queued group and every group the waiting DMAs sent after it.
  assert.deepEqual([ended.length, new Set(ended.map((e) => e.split(':')[1]))], [20, new Set(['invalid'])]);
  assert.equal(fn.responses.length, 20);
  assert.deepEqual(p.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
});

test('a stopped traffic run with groups in flight is still busy: a new run cannot replace it and lose its accounting', () => {
  const { sched, p } = onePlatform('vtd', 64);
  const fn = p.function('d0');
  const fault = faultQueueOf(p, 'd0');
  const req = { count: 100, pagesPerGroup: 1, inFlight: 4, pasid: undefined, base: 0x10000n, perm: { read: true, write: false, exec: false, priv: false } };
  fn.startTraffic(req);
  sched.run();
  assert.deepEqual(p.stopTraffic('d0').running, true);
  assert.throws(() => fn.startTraffic(req), /busy/);
  const conn = fault.open(16, { readable() {}, expired() {}, overflow() {}, revoked() {}, kill() {} });
  for (const g of fault.read(conn)) fault.respondOne(g.cookie, 0);
  sched.run();
  assert.deepEqual([p.trafficStatus('d0').running, p.trafficStatus('d0').answered], [false, 4]);
  fn.startTraffic(req); // idle now
});
