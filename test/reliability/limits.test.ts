/**
 * Limits: every configurable limit, hit on purpose, gives a clear errno or
 * close code and affects only the offender: in the same test, another
 * context (or connection) keeps working. Also the memory a misbehaving peer
 * can make the daemon hold: a stream peer that writes without reading.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { CLOSE } from '../../protocol/index.js';
import { LIMITS } from '../../core/index.js';
import { parseConfig } from '../../server/config.js';
import { Api, faultFixture, injectGroup, refusedUpgrade, StreamClient, startServer, type FaultFixture, type Json, type TestServer } from '../server/helpers.js';
import { metricValue, sleep, spawnDaemon } from './helpers.js';

const ADMIN = 'limits-admin';

/** An error reply with @status and @errno whose message says which limit. */
function assertLimit(r: { status: number; body: Json; text: string }, status: number, errno: string, message: RegExp): void {
  assert.equal(r.status, status, r.text);
  assert.equal(r.body.errno, errno, r.text);
  assert.match(r.body.message, message);
}

/** A group round trip on @fx: inject one group on @device, answer it on a fresh stream, see the response. */
async function roundTrip(api: Api, wsBase: string, fx: FaultFixture, device: string, grpid: number): Promise<void> {
  const s = await StreamClient.open(wsBase, fx.stream, { token: fx.token });
  await s.json();
  await injectGroup(api, device, grpid, 0x40000n + BigInt(grpid) * 0x1000n);
  const frame = await s.reply('faults');
  assert.equal((await s.respond([{ cookie: frame.groups[0].cookie, code: 0 }])).ok, 1);
  await s.close();
}

describe('limits: a stream peer that writes without reading', () => {
  test('its frames stop being read while the replies to it are backed up; the daemon does not buffer without bound', { timeout: 180_000 }, async () => {
    // The peer leaves its socket paused, then reads a backlog of ~170 MB: on a loaded machine that
    // outlasts a 15 s heartbeat, whose pings it cannot answer meanwhile, so the heartbeat is off here.
    const d = await spawnDaemon(['--log-level', 'warn', '--heartbeat-ms', '3600000']);
    try {
      const api = new Api(d.base);
      const fx = await faultFixture({ api }, { device: 'nic0' });
      const rss = async (): Promise<number> => metricValue((await api.get('/metrics')).text, 'iopfd_process_resident_memory_bytes');
      const before = await rss();
      const s = await StreamClient.open(d.wsBase, fx.stream, { token: fx.token });
      await s.json();
      // Never read: each `responses` frame of bogus cookies (~0.9 MiB) gets a `results` frame ~4 times its size.
      (s.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      const entries = Array.from({ length: 30000 }, (_, i) => ({ cookie: 4_000_000_000 + i, code: 0 }));
      const frame = JSON.stringify({ type: 'responses', responses: entries });
      const FRAMES = 48;
      for (let i = 0; i < FRAMES; i++) s.ws.send(frame);
      await sleep(1000);
      const grown = (await rss()) - before;
      // Unthrottled, the daemon would hold every reply: FRAMES × ~3.6 MB ≈ 170 MB; throttled it
      // holds a few high-water marks plus parsing garbage (36–50 MB seen under load), whatever FRAMES is.
      assert.ok(grown < 100e6, `the daemon's RSS grew by ${(grown / 1e6).toFixed(1)} MB`);
      // Reading again, the peer gets one results frame per frame, and the stream works normally.
      (s.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      for (let i = 0; i < FRAMES; i++) {
        const r = await s.reply('results', 10000);
        assert.equal(r.errors.length, entries.length);
      }
      await injectGroup(api, 'nic0', 9, 0x9000n);
      const f = await s.reply('faults');
      assert.equal((await s.respond([{ cookie: f.groups[0].cookie, code: 0 }])).ok, 1);
      await s.close();
    } finally {
      d.child.kill('SIGKILL');
      await d.exited;
    }
  });
});

describe('limits: each one, when hit, gives a clear errno or close code and affects only the offender', { timeout: 60_000 }, () => {
  let server: TestServer;
  let admin: Api;
  /** A bystander: its context must keep working whatever the offenders do. */
  let victim: FaultFixture;

  before(async () => {
    server = await startServer({
      adminToken: ADMIN,
      limits: { maxContexts: 4, maxObjects: 6, maxStreamsPerFault: 2, maxMappedPages: 8, maxDevices: 5 },
      bodyLimit: 4096,
      stream: { maxFrame: 4096, errorFramesPerSecond: 3 },
    });
    admin = server.api.withToken(ADMIN);
    victim = await faultFixture({ api: admin }, { device: 'nic0' });
  });
  after(() => server.close());

  const bystanderWorks = (grpid: number): Promise<void> => roundTrip(admin, server.wsBase, victim, 'nic0', grpid);

  test('contexts: ENOSPC (503) at the limit; a release makes room', async () => {
    const extra: Json[] = [];
    for (;;) {
      const r = await server.api.post('/v1/contexts', {});
      if (r.status !== 201) {
        assertLimit(r, 503, 'ENOSPC', /maximum of 4 contexts/);
        break;
      }
      extra.push(r.body);
      assert.ok(extra.length < 10);
    }
    assert.equal(extra.length, 3, 'the victim plus three');
    await bystanderWorks(1);
    const gone = extra.pop();
    await server.api.withToken(gone.token).ok('context.destroy', 'DELETE', `/v1/contexts/${gone.ctx}`);
    extra.push(await server.api.ok('context.create', 'POST', '/v1/contexts'));
    for (const c of extra) await server.api.withToken(c.token).ok('context.destroy', 'DELETE', `/v1/contexts/${c.ctx}`);
  });

  test('objects per context: ENOSPC for new objects and for an automatic hwpt; other contexts unaffected', async () => {
    const c = await server.api.ok('context.create', 'POST', '/v1/contexts');
    const api = server.api.withToken(c.token);
    const prefix = `/v1/contexts/${c.ctx}`;
    const { dev_id } = await api.ok('device.bind', 'POST', `${prefix}/devices`, { name: 'accel0' });
    const ids: number[] = [];
    for (;;) {
      const r = await api.post(`${prefix}/ioas`, {});
      if (r.status !== 201) {
        assertLimit(r, 503, 'ENOSPC', /maximum of 6 objects/);
        break;
      }
      ids.push(r.body.id);
    }
    assert.equal(ids.length, 5);
    await api.ok('object.destroy', 'DELETE', `${prefix}/objects/${ids.pop()}`);
    await api.ok('ioas.alloc', 'POST', `${prefix}/ioas`, {});
    // Attaching to an IOAS needs an automatic hwpt: one object too many.
    assertLimit(await api.post(`${prefix}/devices/${dev_id}/attach`, { pt_id: ids[0] }), 503, 'ENOSPC', /maximum of 6 objects/);
    const v = await victim.api.ok('ioas.alloc', 'POST', `${victim.prefix}/ioas`, {});
    await victim.api.ok('object.destroy', 'DELETE', `${victim.prefix}/objects/${v.id}`);
    await bystanderWorks(2);
    await api.ok('context.destroy', 'DELETE', prefix);
  });

  test('mapped pages per context: ENOSPC beyond the limit, nothing mapped by the refused request; unmap makes room', async () => {
    const c = await server.api.ok('context.create', 'POST', '/v1/contexts');
    const api = server.api.withToken(c.token);
    const prefix = `/v1/contexts/${c.ctx}`;
    const { id } = await api.ok('ioas.alloc', 'POST', `${prefix}/ioas`, {});
    await api.ok('ioas.map', 'POST', `${prefix}/ioas/${id}/map`, { iova: '0x0', length: '0x6000' });
    assertLimit(await api.post(`${prefix}/ioas/${id}/map`, { iova: '0x100000', length: '0x3000' }), 503, 'ENOSPC', /limit of 8 mapped pages/);
    assert.equal((await api.post(`${prefix}/ioas/${id}/memory/read`, { iova: '0x100000', length: '0x1' })).body.errno, 'EFAULT', 'the refused map left nothing behind');
    await api.ok('ioas.map', 'POST', `${prefix}/ioas/${id}/map`, { iova: '0x100000', length: '0x2000' });
    // The limit is per context: the victim maps its own 8 pages.
    await victim.api.ok('ioas.map', 'POST', `${victim.prefix}/ioas/${victim.ioas}/map`, { iova: '0x0', length: '0x8000' });
    await victim.api.ok('ioas.unmap', 'POST', `${victim.prefix}/ioas/${victim.ioas}/unmap`, { iova: '0x0', length: '0x8000' });
    await api.ok('ioas.unmap', 'POST', `${prefix}/ioas/${id}/unmap`, { iova: '0x0', length: '0x6000' });
    await api.ok('ioas.map', 'POST', `${prefix}/ioas/${id}/map`, { iova: '0x200000', length: '0x6000' });
    // Pages are allocated on first touch; the memory budget is charged for all 8 at map time.
    const frames = server.daemon.platform.frames.inUse;
    const charged = server.daemon.platform.budget.inUse;
    await api.ok('ioas.memory.write', 'POST', `${prefix}/ioas/${id}/memory/write`, { writes: [{ iova: '0x200ffe', data: '01020304' }] });
    assert.equal(server.daemon.platform.frames.inUse, frames + 2);
    assert.equal(server.daemon.platform.budget.inUse, charged);
    await api.ok('context.destroy', 'DELETE', prefix);
    assert.equal(server.daemon.platform.frames.inUse, frames);
    assert.equal(server.daemon.platform.budget.inUse, charged - 8 * LIMITS.pageCost);
  });

  test('streams per fault queue: the upgrade is refused 503 ENOSPC before any socket; another queue is unaffected', async () => {
    const a = await StreamClient.open(server.wsBase, victim.stream, { token: victim.token });
    const b = await StreamClient.open(server.wsBase, victim.stream, { token: victim.token });
    const r = await refusedUpgrade(server.wsBase, victim.stream, { token: victim.token });
    assert.equal(r.status, 503);
    assert.equal(r.body.errno, 'ENOSPC');
    assert.match(r.body.message, /already has 2 open streams/);
    assert.equal((await victim.api.ok('fault.get', 'GET', `${victim.prefix}/faults/${victim.fault}`)).connections, 2);
    const other = await victim.api.ok('fault.alloc', 'POST', `${victim.prefix}/faults`, {});
    const c = await StreamClient.open(server.wsBase, other.stream, { token: victim.token });
    await c.json();
    await a.json();
    await b.json();
    await a.close();
    await waitConnections(victim, 1);
    const d = await StreamClient.open(server.wsBase, victim.stream, { token: victim.token });
    await d.json();
    await injectGroup(admin, 'nic0', 3, 0x3000n);
    const f = await Promise.race([b.reply('faults'), d.reply('faults')]);
    assert.equal(f.groups.length, 1);
    await b.respond([{ cookie: f.groups[0].cookie, code: 0 }]);
    for (const s of [b, c, d]) await s.close();
    await victim.api.ok('object.destroy', 'DELETE', `${victim.prefix}/objects/${other.id}`);
  });

  test('body size: 413 EMSGSIZE naming the limit; the next request is served', async () => {
    const big = { name: `x${'y'.repeat(5000)}` };
    assertLimit(await admin.post('/v1/platform/devices', big), 413, 'EMSGSIZE', /larger than 4096 bytes/);
    assertLimit(await victim.api.post(`${victim.prefix}/ioas`, big), 413, 'EMSGSIZE', /larger than 4096 bytes/);
    await bystanderWorks(4);
  });

  test('frame size: a frame over the limit closes that connection with 1009; its groups go to the others', async () => {
    const offender = await StreamClient.open(server.wsBase, victim.stream, { token: victim.token });
    await offender.json();
    await injectGroup(admin, 'nic0', 5, 0x5000n);
    const [g] = (await offender.reply('faults')).groups;
    const other = await StreamClient.open(server.wsBase, victim.stream, { token: victim.token });
    await other.json();
    offender.ws.send(JSON.stringify({ type: 'responses', responses: Array.from({ length: 200 }, () => ({ cookie: 1, code: 0 })) }));
    assert.equal((await offender.closed).code, CLOSE.TOO_BIG);
    const again = await other.reply('faults');
    assert.deepEqual([again.groups[0].cookie, again.groups[0].redelivered], [g.cookie, true]);
    assert.equal((await other.respond([{ cookie: g.cookie, code: 0 }])).ok, 1);
    await other.close();
    await waitConnections(victim, 0);
  });

  test('error frames: beyond the rate the offender is closed with 1008; the other connection is untouched', async () => {
    const offender = await StreamClient.open(server.wsBase, victim.stream, { token: victim.token });
    const polite = await StreamClient.open(server.wsBase, victim.stream, { token: victim.token });
    await offender.json();
    await polite.json();
    for (let i = 0; i < 4; i++) offender.ws.send('not json');
    for (let i = 0; i < 3; i++) assert.equal((await offender.json()).type, 'error');
    assert.equal((await offender.closed).code, CLOSE.POLICY);
    // Answers (results, write) are not error frames: a well-formed frame of stale cookies is not limited.
    for (let i = 0; i < 10; i++) assert.equal((await polite.respond([{ cookie: 999, code: 0 }])).errors.length, 1);
    assert.equal(polite.ws.readyState, polite.ws.OPEN);
    await polite.close();
    await bystanderWorks(6);
  });

  test('platform devices: ENOSPC at the limit; existing devices keep working; an unplug makes room', async () => {
    await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'lim2' });
    await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'lim3' });
    assertLimit(await admin.post('/v1/platform/devices', { name: 'lim4' }), 503, 'ENOSPC', /maximum of 5 devices/); // the default platform's three and lim2, lim3
    await bystanderWorks(7);
    await admin.ok('platform.device.remove', 'DELETE', '/v1/platform/devices/lim3');
    await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'lim4' });
  });
});

describe('limits: TCP connections', { timeout: 30_000 }, () => {
  test('one beyond --max-connections is closed as it is accepted and counted; open streams are untouched; a close makes room', async () => {
    const server = await startServer({ adminToken: ADMIN, maxConnections: 6 });
    const admin = server.api.withToken(ADMIN);
    const raw: Socket[] = [];
    try {
      const fx = await faultFixture({ api: admin }, { device: 'nic0' });
      const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
      await s.json(); // hello
      const open = (): Promise<number> => new Promise((resolve) => server.daemon.app.server.getConnections((_e, n) => resolve(n)));
      /** A raw connection: resolves with the bytes it got once the daemon closed it, or 'open' after @ms. */
      const dial = (ms: number): Promise<{ socket: Socket; got: string | 'open' }> =>
        new Promise((resolve) => {
          const socket = connect(Number(new URL(server.base).port), '127.0.0.1');
          let got = '';
          socket.on('data', (d) => (got += d.toString()));
          socket.on('error', () => {});
          const t = setTimeout(() => resolve({ socket, got: 'open' }), ms);
          socket.on('close', () => {
            clearTimeout(t);
            resolve({ socket, got });
          });
        });
      for (let n = await open(); n < 6; ) {
        const r = await dial(100);
        assert.equal(r.got, 'open', 'a connection under the limit stays open');
        raw.push(r.socket);
        // Dial the next one only once the daemon has counted this one (a loaded machine may accept it late).
        for (let t = 0; (await open()) === n && t < 500; t++) await sleep(10);
        n = await open();
      }
      const refused = await dial(2000);
      assert.equal(refused.got, '', 'closed at once, nothing sent');
      assert.equal(await open(), 6);
      // The stream, one of the six, still works: free two slots for the REST calls, and round-trip a group.
      raw.pop()!.destroy();
      raw.pop()!.destroy();
      for (let t = 0; (await open()) > 4; t++) {
        assert.ok(t < 200, 'the daemon saw the closes');
        await sleep(10);
      }
      await injectGroup(admin, 'nic0', 3, 0x40000n);
      const frame = await s.reply('faults');
      assert.equal((await s.respond([{ cookie: frame.groups[0].cookie, code: 0 }])).ok, 1);
      assert.equal(metricValue((await admin.get('/metrics')).text, 'iopfd_connections_refused_total'), 1);
      await s.close();
    } finally {
      for (const r of raw) r.destroy();
      await server.close();
    }
  });
});

describe('limits: the response log keeps the newest responses only', { timeout: 30_000 }, () => {
  test('a device that answered 50000 groups holds the newest 20000 (plus up to two chunks of 16384); seqs stay dense; ?since still works', async () => {
    const server = await startServer({ limits: { responseLog: 20000 } });
    try {
      // Unbound: the IOMMU answers every group INVALID at once.
      await server.api.ok('platform.traffic.start', 'POST', '/v1/platform/devices/nic0/traffic', { count: 50000 });
      for (let t = 0; (await server.api.ok('platform.traffic.status', 'GET', '/v1/platform/devices/nic0/traffic')).running; t++) {
        assert.ok(t < 500);
        await sleep(10);
      }
      const all = (await server.api.ok('platform.device.responses', 'GET', '/v1/platform/devices/nic0/responses')).responses as Json[];
      assert.ok(all.length >= 20000 && all.length < 50000 && all.length < 20000 + 2 * (1 << 14), `${all.length} held`);
      assert.equal(all[all.length - 1].seq, 50000, 'seq counts every response');
      assert.deepEqual(all.map((r) => r.seq), Array.from({ length: all.length }, (_, i) => 50000 - all.length + 1 + i), 'dense, newest last');
      const tail = (await server.api.ok('platform.device.responses', 'GET', '/v1/platform/devices/nic0/responses?since=49990')).responses as Json[];
      assert.deepEqual(tail.map((r) => r.seq), [49991, 49992, 49993, 49994, 49995, 49996, 49997, 49998, 49999, 50000]);
      // Asking from before the oldest held entry gives what is held (a gap the reader can see from the first seq).
      assert.equal(((await server.api.ok('platform.device.responses', 'GET', '/v1/platform/devices/nic0/responses?since=5')).responses as Json[])[0].seq, all[0].seq);
      assert.equal(metricValue((await server.api.get('/metrics')).text, 'iopfd_table_entries', 'table="response_log"'), all.length);
      assert.equal(server.daemon.platform.function('nic0').responses.length, 50000);
    } finally {
      await server.close();
    }
  });

  test('--response-log: a number of responses, 0 keeps every one (the default is 1048576)', () => {
    assert.equal(parseConfig(['--response-log', '0'], {}).limits.responseLog, 0);
    assert.equal(parseConfig([], { IOPFD_RESPONSE_LOG: '5000' }).limits.responseLog, 5000);
    assert.equal(parseConfig([], {}).limits.responseLog, undefined);
    assert.throws(() => parseConfig(['--response-log', '-1'], {}), /--response-log/);
  });
});

/** Wait until @fx's fault queue has @n connections (a close reaches the daemon a moment after the client). */
async function waitConnections(fx: FaultFixture, n: number): Promise<void> {
  for (let t = 0; (await fx.api.ok('fault.get', 'GET', `${fx.prefix}/faults/${fx.fault}`)).connections !== n; t++) {
    assert.ok(t < 200, `connections never reached ${n}`);
    await sleep(5);
  }
}

describe('limits: flags and environment', { timeout: 30_000 }, () => {
  test('every limit has a flag and an IOPFD_ variable, validated', () => {
    const c = parseConfig(
      ['--max-contexts', '3', '--max-objects=7', '--max-streams', '2', '--max-mapped-pages', '16', '--max-devices', '5', '--body-limit', '2048', '--max-frame', '512'],
      { IOPFD_ERROR_FRAMES_PER_SECOND: '4' },
    );
    assert.deepEqual(c.limits, { maxContexts: 3, maxObjects: 7, maxStreamsPerFault: 2, maxMappedPages: 16, maxDevices: 5 });
    assert.deepEqual([c.bodyLimit, c.maxFrame, c.errorFramesPerSecond], [2048, 512, 4]);
    assert.equal(parseConfig([], {}).maxConnections, 1024);
    assert.equal(parseConfig([], { IOPFD_MAX_CONNECTIONS: '64' }).maxConnections, 64);
    for (const flag of ['--max-devices', '--body-limit', '--max-frame', '--error-frames-per-second', '--max-connections']) {
      assert.throws(() => parseConfig([flag, '0'], {}), new RegExp(flag));
      assert.throws(() => parseConfig([flag, '-1'], {}), new RegExp(flag));
    }
  });

  test('the daemon process enforces them', async (t) => {
    const d = await spawnDaemon(['--log-level', 'warn', '--body-limit', '300', '--max-frame', '256', '--max-contexts', '2']);
    t.after(() => void d.child.kill('SIGKILL'));
    const api = new Api(d.base);
    assertLimit(await api.post('/v1/platform/devices', { name: 'z'.repeat(400) }), 413, 'EMSGSIZE', /larger than 300 bytes/);
    const fx = await faultFixture({ api }, { device: 'nic0' });
    await api.ok('context.create', 'POST', '/v1/contexts');
    assertLimit(await api.post('/v1/contexts', {}), 503, 'ENOSPC', /maximum of 2 contexts/);
    const s = await StreamClient.open(d.wsBase, fx.stream, { token: fx.token });
    await s.json();
    s.ws.send('x'.repeat(300));
    assert.equal((await s.closed).code, CLOSE.TOO_BIG);
    d.child.kill('SIGTERM');
    assert.equal(await d.exited, 0);
  });
});
