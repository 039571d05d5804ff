// The SDK's FaultQueue against a real daemon: groups from the iterator in
// both modes, batched answers, notices, reconnection with the daemon's
// redelivery, and the rule that no answer goes out for a cookie that went
// stale across a reconnect.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { HWPT_FLAGS, PGFAULT_FLAGS, PERM } from '../../protocol/index.js';
import {
  IopfdError,
  type FaultAllocRequest,
  type FaultGroup,
  type FaultQueue,
  type FaultQueueMode,
  type IopfdContext,
  type ReconnectOptions,
  type StaleResponse,
} from '../../clients/sdk/index.js';
import { startDaemon, waitFor, sleep, type TestDaemon } from './helpers.js';

let d: TestDaemon;
before(async () => (d = await startDaemon()));
after(() => d.close());

let deviceNo = 0;

/** A fresh device bound in a fresh context, attached at its RID to a fault-capable paging hwpt. */
async function fixture(faultBody: FaultAllocRequest = {}): Promise<{ device: string; ctx: IopfdContext; devId: number; fault: number }> {
  const device = `fq${deviceNo++}`;
  await d.client.addDevice({ name: device });
  const ctx = await d.client.createContext();
  const { dev_id: devId } = await ctx.bindDevice(device);
  const { id: ioas } = await ctx.allocIoas();
  const { id: fault } = await ctx.allocFault(faultBody);
  const { id: hwpt } = await ctx.allocHwpt({ dev_id: devId, pt_id: ioas, flags: HWPT_FLAGS.FAULT_ID_VALID, fault_id: fault });
  await ctx.attach(devId, { pt_id: hwpt });
  return { device, ctx, devId, fault };
}

/** inject() - one group of @pages page requests at @addr (grpid @grpid). */
async function inject(device: string, grpid: number, addr: number, pages = 1): Promise<void> {
  for (let i = 0; i < pages; i++) {
    await d.client.injectPageRequest(device, { grpid, addr: `0x${(addr + i * 0x1000).toString(16)}`, perm: PERM.READ | PERM.WRITE, last: i === pages - 1 });
  }
}

/** take() - the next @n groups of the iterator. */
async function take(it: AsyncIterator<FaultGroup>, n: number): Promise<FaultGroup[]> {
  const out: FaultGroup[] = [];
  for (let i = 0; i < n; i++) {
    const r = await it.next();
    assert.equal(r.done, false);
    out.push(r.value as FaultGroup);
  }
  return out;
}

async function codes(device: string): Promise<Array<[number, string]>> {
  return (await d.client.responses(device)).responses.map((r) => [r.grpid, r.code]);
}

const FAST: Partial<ReconnectOptions> = { initialDelayMs: 20, jitter: 0 };

for (const mode of ['json', 'uapi'] as FaultQueueMode[]) {
  test(`FaultQueue (${mode}): groups from the iterator, answers batched in one frame`, async () => {
    const fx = await fixture();
    const q = fx.ctx.faultQueue(fx.fault, { mode });
    const hello = await q.connect();
    assert.deepEqual(hello, { type: 'hello', protocol: `iopf.v1.${mode}`, fault_id: fx.fault, window: 1024 });
    const it = q[Symbol.asyncIterator]();
    await inject(fx.device, 5, 0x7000, 2);
    await inject(fx.device, 6, 0x9000);
    await inject(fx.device, 7, 0xa000);
    const groups = await take(it, 3);
    assert.deepEqual(
      groups.map((g) => g.records.map((r) => [r.grpid, r.addr, r.flags, r.perm, r.dev_id, r.cookie === g.cookie])),
      [
        [
          [5, 0x7000n, 0, PERM.READ | PERM.WRITE, fx.devId, true],
          [5, 0x8000n, PGFAULT_FLAGS.LAST_PAGE, PERM.READ | PERM.WRITE, fx.devId, true],
        ],
        [[6, 0x9000n, PGFAULT_FLAGS.LAST_PAGE, PERM.READ | PERM.WRITE, fx.devId, true]],
        [[7, 0xa000n, PGFAULT_FLAGS.LAST_PAGE, PERM.READ | PERM.WRITE, fx.devId, true]],
      ],
    );
    assert.ok(groups.every((g) => !g.redelivered));
    const acks: unknown[] = [];
    q.on(mode === 'json' ? 'results' : 'write', (m: unknown) => acks.push(m));
    q.respond(groups[0]!.cookie, 'success');
    q.respondMany([
      { group: groups[1]!, code: 1 },
      { cookie: groups[2]!.cookie, code: 0 },
    ]);
    await waitFor(() => q.outstanding === 0, 2000, 'acknowledgements');
    assert.deepEqual(acks, [mode === 'json' ? { type: 'results', ok: 3, errors: [] } : { type: 'write', bytes: 24 }], 'one frame for the three answers');
    assert.deepEqual(await codes(fx.device), [
      [5, 'success'],
      [6, 'invalid'],
      [7, 'success'],
    ]);

    // A second answer for a group is not sent.
    const stale: StaleResponse[] = [];
    q.on('stale', (s) => stale.push(s));
    q.respond(groups[0]!, 'invalid');
    assert.deepEqual(stale, [{ cookie: groups[0]!.cookie, code: 1, reason: 'unknown' }]);
    assert.throws(() => q.respond(1, 2 as 0), RangeError);

    await q.close();
    assert.deepEqual(await it.next(), { done: true, value: undefined });
    assert.equal((await fx.ctx.faultStatus(fx.fault)).connections, 0);
    await fx.ctx.release();
  });

  test(`FaultQueue (${mode}): a group auto-answered by a detach is revoked; a late answer is not sent`, async () => {
    const fx = await fixture();
    const q = fx.ctx.faultQueue(fx.fault, { mode });
    await q.connect();
    const it = q[Symbol.asyncIterator]();
    await inject(fx.device, 1, 0x1000);
    const [g] = await take(it, 1);
    const revoked = new Promise((resolve) => q.once('revoked', (cookies, cause) => resolve([cookies, cause])));
    await fx.ctx.detach(fx.devId);
    assert.deepEqual(await revoked, [[g!.cookie], 'detach']);
    const stale: StaleResponse[] = [];
    q.on('stale', (s) => stale.push(s));
    q.respond(g!, 'success');
    assert.deepEqual(stale, [{ cookie: g!.cookie, code: 0, reason: 'unknown' }]);
    assert.equal(q.outstanding, 0);
    assert.deepEqual(await codes(fx.device), [[1, 'invalid']]);
    await q.close();
    await fx.ctx.release();
  });

  test(`FaultQueue (${mode}): a cut connection reconnects, the group comes again once, the answer lands once`, async () => {
    const fx = await fixture();
    const q = fx.ctx.faultQueue(fx.fault, { mode, reconnect: FAST });
    await q.connect();
    const it = q[Symbol.asyncIterator]();
    await inject(fx.device, 1, 0x1000);
    await inject(fx.device, 2, 0x2000);
    const [g1, g2] = await take(it, 2);

    // 1. Cut; the answer given while disconnected goes out once the group is delivered again.
    d.streamSockets.at(-1)!.destroy();
    await waitFor(() => !q.connected, 2000, 'the cut');
    q.respond(g1!, 'success');
    await waitFor(() => q.connections === 2 && q.outstanding === 1, 3000, 'reconnect and the first answer');
    assert.deepEqual(await codes(fx.device), [[1, 'success']]);

    // 2. Cut again: g2 (never answered) is redelivered, not yielded twice, answered once.
    d.streamSockets.at(-1)!.destroy();
    await waitFor(() => q.connections === 3, 3000, 'second reconnect');
    await waitFor(async () => (await fx.ctx.faultStatus(fx.fault)).outstanding === 1, 2000, 'redelivery');
    q.respond(g2!.cookie, 'invalid');
    await waitFor(() => q.outstanding === 0, 2000, 'second answer');
    assert.deepEqual(await codes(fx.device), [
      [1, 'success'],
      [2, 'invalid'],
    ]);
    const st = await fx.ctx.faultStatus(fx.fault);
    assert.equal(st.counters.redelivered, 3, 'g1 and g2 after the first cut, g2 after the second');

    // 3. The next group is new, and the only one the iterator yields.
    await inject(fx.device, 3, 0x3000);
    const [g3] = await take(it, 1);
    assert.equal(g3!.records[0]!.grpid, 3);
    assert.equal(g3!.redelivered, false);
    await q.close();
    await fx.ctx.release();
  });

  test(`FaultQueue (${mode}): an answer caught in a cut lands exactly once`, async () => {
    const fx = await fixture();
    const q = fx.ctx.faultQueue(fx.fault, { mode, reconnect: FAST });
    await q.connect();
    const it = q[Symbol.asyncIterator]();
    for (let i = 0; i < 20; i++) await inject(fx.device, i, 0x1000 * (i + 1));
    const groups = await take(it, 20);
    // The answers leave in one frame in the next turn, and the cut comes in
    // that same turn, before the daemon (in this process) reads the frame:
    // the frame is lost, the groups come again on the next connection, and
    // the client sends their answers again.
    q.respondMany(groups.map((group) => ({ group, code: 0 as const })));
    setImmediate(() => d.streamSockets.at(-1)!.destroy());
    await waitFor(async () => (await codes(fx.device)).length === 20, 3000, 'every answer');
    await sleep(100);
    assert.equal((await fx.ctx.faultStatus(fx.fault)).counters.redelivered, 20);
    const log = await codes(fx.device);
    assert.deepEqual(
      log.map(([g]) => g).sort((a, b) => a - b),
      groups.map((_g, i) => i),
      'one response per group',
    );
    assert.ok(log.every(([, c]) => c === 'success'));
    await q.close();
    await fx.ctx.release();
  });

  test(`FaultQueue (${mode}): no stale answer across a reconnect (expired while away, cookie reused)`, async () => {
    // g1 must expire after the client saw the cut (300 ms is ample) and
    // before it reconnects (1 s later).
    const fx = await fixture({ response_timeout_ms: 300 });
    const q = fx.ctx.faultQueue(fx.fault, { mode, reconnect: { initialDelayMs: 1000, jitter: 0 } });
    const stale: StaleResponse[] = [];
    q.on('stale', (s) => stale.push(s));
    await q.connect();
    const it = q[Symbol.asyncIterator]();
    await inject(fx.device, 1, 0x1000);
    const [g1] = await take(it, 1);

    d.streamSockets.at(-1)!.destroy();
    await waitFor(() => !q.connected, 2000, 'the cut');
    q.respond(g1!, 'success'); // held: its group must come again first
    // While away: g1 expires (answered INVALID by the daemon), g2 arrives and will take g1's cookie.
    await waitFor(async () => (await codes(fx.device)).length === 1, 2000, 'expiry');
    await inject(fx.device, 2, 0x2000);
    const [g2] = await take(it, 1);
    assert.equal(g2!.cookie, g1!.cookie, 'the cookie was reused');
    assert.equal(g2!.records[0]!.grpid, 2);
    assert.deepEqual(stale, [{ cookie: g1!.cookie, code: 0, reason: 'reused' }]);
    await sleep(50);
    assert.deepEqual(await codes(fx.device), [[1, 'invalid']], 'the stale SUCCESS was not sent');
    assert.equal((await fx.ctx.faultStatus(fx.fault)).outstanding, 1);

    q.respond(g2!, 'invalid');
    await waitFor(async () => (await codes(fx.device)).length === 2, 2000, 'g2 answer');
    assert.deepEqual(await codes(fx.device), [
      [1, 'invalid'],
      [2, 'invalid'],
    ]);
    await q.close();
    await fx.ctx.release();
  });
}

test('FaultQueue: expired and overflow notices; an answer for an expired group is not sent', async () => {
  // g1 must not expire before g2 and g3 are injected (three REST calls; 1 s is ample on a loaded machine).
  const fx = await fixture({ response_timeout_ms: 1000, depth: 1, overflow: 'invalid' });
  const q = fx.ctx.faultQueue(fx.fault, { window: 1 });
  const expired: number[][] = [];
  const overflow: number[] = [];
  const stale: StaleResponse[] = [];
  q.on('expired', (c) => expired.push(c));
  q.on('overflow', (n) => overflow.push(n));
  q.on('stale', (s) => stale.push(s));
  await q.connect();
  const it = q[Symbol.asyncIterator]();
  await inject(fx.device, 1, 0x1000); // delivered (window 1)
  await inject(fx.device, 2, 0x2000); // queued (depth 1)
  await inject(fx.device, 3, 0x3000); // overflow: answered INVALID at once
  const [g1] = await take(it, 1);
  await waitFor(() => overflow.length === 1 && expired.length === 1, 5000, 'notices');
  assert.deepEqual(overflow, [1]);
  assert.deepEqual(expired, [[g1!.cookie]]);
  // The expiry freed the window slot and the cookie: g2 came with g1's cookie.
  const [g2] = await take(it, 1);
  assert.equal(g2!.cookie, g1!.cookie);
  q.respond(g1!, 'success');
  assert.deepEqual(stale, [{ cookie: g1!.cookie, code: 0, reason: 'reused' }], 'the answer meant for g1 does not reach g2');
  await q.close();
  await fx.ctx.release();
  assert.deepEqual((await codes(fx.device)).sort(), [
    [1, 'invalid'],
    [2, 'invalid'],
    [3, 'invalid'],
  ]);
});

test('FaultQueue: a refused upgrade is fatal; releasing the context ends the iterator', async () => {
  const fx = await fixture();
  const bad = d.client.context(fx.ctx.ctx, 'wrong').faultQueue(fx.fault);
  await assert.rejects(bad.connect(), (e: unknown) => e instanceof IopfdError && e.errno === 'EACCES' && e.status === 401);
  const missing = fx.ctx.faultQueue(999);
  await assert.rejects(missing.connect(), (e: unknown) => e instanceof IopfdError && e.errno === 'ENOENT');

  const q: FaultQueue = fx.ctx.faultQueue(fx.fault, { reconnect: FAST });
  await q.connect();
  const closes: number[] = [];
  q.on('close', (c) => closes.push(c.code));
  const it = q[Symbol.asyncIterator]();
  const end = it.next();
  await fx.ctx.release();
  assert.deepEqual(await end, { done: true, value: undefined });
  assert.deepEqual(closes, [1001]);
});

test('FaultQueue: a revoked group (detach) drops its queued answer; uapi mode takes redelivery from the notice', async () => {
  const fx = await fixture();
  // q must reconnect only after q2 has connected and taken g1 (2 s is ample on a loaded machine).
  const q = fx.ctx.faultQueue(fx.fault, { reconnect: { initialDelayMs: 2000, jitter: 0 } });
  const stale: StaleResponse[] = [];
  const revoked: Array<[number[], string]> = [];
  q.on('stale', (s) => stale.push(s));
  q.on('revoked', (cookies, cause) => revoked.push([cookies, cause]));
  await q.connect();
  const it = q[Symbol.asyncIterator]();
  await inject(fx.device, 1, 0x1000);
  const [g1] = await take(it, 1);

  d.streamSockets.at(-1)!.destroy();
  await waitFor(() => !q.connected, 2000, 'the cut');
  q.respond(g1!, 'success'); // held until g1 comes again on q's connection
  // Another uapi stream takes the returned group meanwhile: the notice marks it redelivered.
  const q2 = fx.ctx.faultQueue(fx.fault, { mode: 'uapi' });
  await q2.connect();
  const [again] = await take(q2[Symbol.asyncIterator](), 1);
  assert.deepEqual([again!.cookie, again!.redelivered], [g1!.cookie, true]);
  await waitFor(() => q.connected, 6000, 'the reconnect');

  await fx.ctx.detach(fx.devId);
  await waitFor(() => revoked.length === 1, 2000, 'the revoked notice');
  assert.deepEqual(revoked, [[[g1!.cookie], 'detach']]);
  assert.deepEqual(stale, [{ cookie: g1!.cookie, code: 0, reason: 'revoked' }]);
  await sleep(50);
  assert.deepEqual(await codes(fx.device), [[1, 'invalid']], 'the SUCCESS for the revoked group was not sent');
  await q.close();
  await q2.close();
  await fx.ctx.release();
});
