// End to end: the fault stream of docs/protocol.md over a real WebSocket, in
// both modes, byte for byte; window, redelivery, heartbeat loss, replies,
// error frames, notices, upgrade refusals and back-pressure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CLOSE, PGFAULT_FLAGS, PERM, RECORD_FIELDS, RECORD_SIZE } from '../../protocol/index.js';
import {
  decodeBinaryRecords,
  deviceResponses,
  faultFixture,
  inject,
  injectGroup,
  refusedUpgrade,
  responsesBuffer,
  startServer,
  StreamClient,
  waitFor,
  type FaultFixture,
  type Json,
  type TestServer,
} from './helpers.js';

let nextDevice = 0;

/** A fresh device and a fault fixture on it (so tests do not share devices). */
async function fixture(server: TestServer, opts: { faultBody?: object; pasid?: number } = {}): Promise<FaultFixture & { device: string }> {
  const device = `s${nextDevice++}`;
  await server.api.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: device });
  return { ...(await faultFixture(server, { device, ...opts })), device };
}

/** open() - a stream on the fixture's fault queue, hello checked. */
async function open(server: TestServer, fx: FaultFixture, opts: { protocol?: string; window?: number; autoPong?: boolean } = {}): Promise<StreamClient> {
  const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token, ...opts });
  const hello = await s.json();
  assert.deepEqual(hello, { type: 'hello', protocol: opts.protocol ?? 'iopf.v1.json', fault_id: fx.fault, window: opts.window ?? 1024 });
  return s;
}

/** faultStatus() - GET .../faults/:id. */
async function faultStatus(fx: FaultFixture): Promise<Json> {
  return fx.api.ok('fault.get', 'GET', `${fx.prefix}/faults/${fx.fault}`);
}

/** groupsOf() - read `faults` frames until @n groups arrived; returns them in order. */
async function groupsOf(s: StreamClient, n: number): Promise<Json[]> {
  const out: Json[] = [];
  while (out.length < n) {
    const f = await s.take((f) => !f.binary && JSON.parse(f.data.toString()).type === 'faults');
    out.push(...JSON.parse(f.data.toString()).groups);
  }
  assert.equal(out.length, n, 'whole groups only, no more than asked');
  return out;
}

describe('fault stream', () => {
  let server: TestServer;
  before(async () => (server = await startServer({ limits: { maxStreamsPerFault: 2 }, stream: { errorFramesPerSecond: 5 } })));
  after(() => server.close());

  test('JSON mode: hello, a multi-record group field for field, results, the device gets SUCCESS', async () => {
    const fx = await fixture(server, { pasid: 5 });
    const s = await open(server, fx);
    await injectGroup(server.api, fx.device, 7, 0x7f000000n, 3, 5);
    const frame = await s.json();
    const needs = PGFAULT_FLAGS.PASID_VALID | PGFAULT_FLAGS.NEEDS_PASID;
    const record = (i: number, flags: number) => ({
      flags,
      dev_id: fx.devId,
      pasid: 5,
      grpid: 7,
      perm: PERM.READ,
      __reserved: 0,
      addr: `0x${(0x7f000000 + i * 0x1000).toString(16)}`,
      length: 0,
      cookie: 1,
    });
    assert.deepEqual(frame, {
      type: 'faults',
      groups: [{ cookie: 1, redelivered: false, records: [record(0, needs), record(1, needs), record(2, needs | PGFAULT_FLAGS.LAST_PAGE)] }],
    });
    assert.deepEqual(
      Object.keys(frame.groups[0]!.records[0]!),
      RECORD_FIELDS.map((f) => f.name),
      'fields in layout order',
    );
    assert.deepEqual(await s.respond([{ cookie: 1, code: 'success' }]), { type: 'results', ok: 1, errors: [] });
    assert.deepEqual(await deviceResponses(server.api, fx.device), [{ pasid: 5, grpid: 7, code: 'success', seq: 1 }]);
    await s.close();
  });

  test('uapi mode: records byte for byte, write replies, ESPIPE, stop at the first bad response', async () => {
    const fx = await fixture(server);
    const s = await open(server, fx, { protocol: 'iopf.v1.uapi' });
    // A canonical high address: a VT-d model answers non-canonical ones itself.
    await inject(server.api, fx.device, { grpid: 0x1ff, addr: 0xffff800012345000n, perm: PERM.READ | PERM.WRITE });
    await injectGroup(server.api, fx.device, 2, 0x3000n, 2);
    let buf = Buffer.alloc(0);
    while (buf.length < 3 * RECORD_SIZE) buf = Buffer.concat([buf, await s.binary()]);
    assert.equal(buf.length, 3 * RECORD_SIZE);
    // The exact bytes, little-endian at the protocol's offsets.
    const expected = Buffer.alloc(3 * RECORD_SIZE);
    const put = (i: number, flags: number, grpid: number, perm: number, addr: bigint, cookie: number) => {
      const o = i * RECORD_SIZE;
      expected.writeUInt32LE(flags, o);
      expected.writeUInt32LE(fx.devId, o + 4);
      expected.writeUInt32LE(0, o + 8);
      expected.writeUInt32LE(grpid, o + 12);
      expected.writeUInt32LE(perm, o + 16);
      expected.writeBigUInt64LE(addr, o + 24);
      expected.writeUInt32LE(cookie, o + 36);
    };
    put(0, PGFAULT_FLAGS.LAST_PAGE, 0x1ff, PERM.READ | PERM.WRITE, 0xffff800012345000n, 1);
    put(1, 0, 2, PERM.READ, 0x3000n, 2);
    put(2, PGFAULT_FLAGS.LAST_PAGE, 2, PERM.READ, 0x4000n, 2);
    assert.ok(buf.equals(expected), `got ${buf.toString('hex')}`);
    const recs = decodeBinaryRecords(buf);
    assert.deepEqual(
      recs.map((r) => [r.reserved, r.length]),
      [
        [0, 0],
        [0, 0],
        [0, 0],
      ],
    );

    s.ws.send(Buffer.alloc(7));
    assert.deepEqual(await s.reply('write'), { type: 'write', bytes: 0, errno: 'ESPIPE', index: 0 });
    s.ws.send(Buffer.alloc(0));
    assert.deepEqual(await s.reply('write'), { type: 'write', bytes: 0 });
    s.ws.send(responsesBuffer([{ cookie: 1, code: 2 }]));
    assert.deepEqual(await s.reply('write'), { type: 'write', bytes: 0, errno: 'EINVAL', index: 0 });
    s.ws.send(
      responsesBuffer([
        { cookie: 1, code: 0 },
        { cookie: 99, code: 0 },
        { cookie: 2, code: 0 },
      ]),
    );
    assert.deepEqual(await s.reply('write'), { type: 'write', bytes: 8, errno: 'EINVAL', index: 1 });
    s.ws.send(responsesBuffer([{ cookie: 2, code: 1 }]));
    assert.deepEqual(await s.reply('write'), { type: 'write', bytes: 8 });
    s.ws.send('{"type":"responses","responses":[]}');
    const err = await s.reply('error');
    assert.equal(err.errno, 'EINVAL');
    const log = await deviceResponses(server.api, fx.device);
    assert.deepEqual(
      log.map((r: Json) => [r.grpid, r.code]),
      [
        [0x1ff, 'success'],
        [2, 'invalid'],
      ],
    );
    await s.close();
  });

  test('a backlog goes out as several groups per frame, FIFO, cookies the smallest free', async () => {
    const fx = await fixture(server);
    for (let g = 0; g < 3; g++) await inject(server.api, fx.device, { grpid: 10 + g, addr: BigInt(g) * 0x1000n });
    const s = await open(server, fx);
    const frame = await s.json();
    assert.deepEqual(
      frame.groups.map((g: Json) => [g.cookie, g.records[0].grpid]),
      [
        [1, 10],
        [2, 11],
        [3, 12],
      ],
    );
    assert.equal((await s.respond([{ cookie: 2, code: 0 }])).ok, 1);
    await inject(server.api, fx.device, { grpid: 13, addr: 0x9000n });
    assert.equal((await groupsOf(s, 1))[0].cookie, 2, 'the freed cookie is reused');
    await s.close();
  });

  test('window: a connection holds at most `window` unanswered groups', async () => {
    const fx = await fixture(server);
    for (let g = 0; g < 5; g++) await inject(server.api, fx.device, { grpid: g, addr: BigInt(g) * 0x1000n });
    const s = await open(server, fx, { window: 2 });
    const first = await groupsOf(s, 2);
    await s.quiet();
    assert.deepEqual(await faultStatus(fx).then((st) => [st.queued, st.outstanding, st.connections]), [3, 2, 1]);
    await s.respond([{ cookie: first[0].cookie, code: 'invalid' }]);
    const third = await groupsOf(s, 1);
    assert.equal(third[0].records[0].grpid, 2);
    await s.quiet();
    await s.close();
  });

  test('redelivery: a closed connection returns its groups with their cookies', async () => {
    const fx = await fixture(server);
    const a = await open(server, fx);
    await inject(server.api, fx.device, { grpid: 1, addr: 0x1000n });
    await inject(server.api, fx.device, { grpid: 2, addr: 0x2000n });
    const delivered = await groupsOf(a, 2);
    assert.deepEqual(
      delivered.map((g) => [g.cookie, g.redelivered]),
      [
        [1, false],
        [2, false],
      ],
    );
    await a.close();
    await waitFor(async () => (await faultStatus(fx)).connections === 0, 2000, 'the close');
    assert.deepEqual(await faultStatus(fx).then((st) => [st.queued, st.outstanding]), [2, 0]);
    assert.deepEqual(await deviceResponses(server.api, fx.device), [], 'nothing answered because a connection closed');
    const b = await open(server, fx);
    const again = await groupsOf(b, 2);
    assert.deepEqual(
      again.map((g) => [g.cookie, g.redelivered, g.records[0].grpid]),
      [
        [1, true, 1],
        [2, true, 2],
      ],
    );
    assert.equal((await faultStatus(fx)).counters.redelivered, 2);
    // A group delivered on one connection may be answered on another.
    const c = await open(server, fx);
    assert.deepEqual(
      await c.respond([
        { cookie: 1, code: 0 },
        { cookie: 2, code: 0 },
      ]),
      { type: 'results', ok: 2, errors: [] },
    );
    assert.deepEqual(
      (await deviceResponses(server.api, fx.device)).map((r: Json) => r.code),
      ['success', 'success'],
    );
    await b.close();
    await c.close();
  });

  test('JSON replies: per-entry errors in results; bad frames get one error frame and the stream stays open', async () => {
    const fx = await fixture(server);
    const s = await open(server, fx);
    await inject(server.api, fx.device, { grpid: 4, addr: 0x4000n });
    const [g] = await groupsOf(s, 1);
    const r = await s.respond([
      { cookie: 999, code: 0 },
      { cookie: g.cookie, code: 'maybe' },
      { cookie: g.cookie, code: 1 },
      { cookie: g.cookie, code: 1 },
    ]);
    assert.equal(r.ok, 1);
    assert.deepEqual(
      r.errors.map((e: Json) => [e.index, e.cookie, e.errno]),
      [
        [0, 999, 'EINVAL'],
        [1, g.cookie, 'EINVAL'],
        [3, g.cookie, 'EINVAL'],
      ],
    );
    assert.match(r.errors[1].message, /"maybe"/);
    // One bad-code text on every path: a code the frame scanner decodes (7) and one it leaves to the parser ("maybe").
    await inject(server.api, fx.device, { grpid: 5, addr: 0x5000n });
    const [g2] = await groupsOf(s, 1);
    const r2 = await s.respond([{ cookie: g2.cookie, code: 7 }]);
    assert.equal(r2.errors[0].message, 'response code 7 is not 0 (success) or 1 (invalid)');
    assert.equal(r.errors[1].message, 'response code "maybe" is not 0 (success) or 1 (invalid)');
    assert.equal((await s.respond([{ cookie: g2.cookie, code: 'invalid' }])).ok, 1, 'a bad code leaves the cookie valid');
    for (const bad of ['not json', '{"type":"hello"}', '{"type":"responses","responses":[{"cookie":1}]}', '{"type":"responses","responses":[],"x":1}']) {
      s.ws.send(bad);
      const e = await s.json();
      assert.equal(e.type, 'error', bad);
      assert.equal(e.errno, 'EINVAL');
      assert.deepEqual(Object.keys(e), ['type', 'errno', 'message']);
    }
    s.ws.send(Buffer.from([1, 2, 3]));
    assert.equal((await s.json()).type, 'error');
    assert.deepEqual(await s.respond([]), { type: 'results', ok: 0, errors: [] }, 'still open, no stray results');
    await s.close();
  });

  test('error frames beyond the per-second budget close the stream with 1008', async () => {
    const fx = await fixture(server);
    const s = await open(server, fx);
    for (let i = 0; i < 6; i++) s.ws.send('nope');
    for (let i = 0; i < 5; i++) assert.equal((await s.json()).type, 'error');
    assert.equal((await s.closed).code, CLOSE.POLICY);
  });

  test('a frame over 1 MiB closes the stream with 1009', async () => {
    const fx = await fixture(server);
    const s = await open(server, fx);
    s.ws.send('x'.repeat((1 << 20) + 1));
    assert.equal((await s.closed).code, CLOSE.TOO_BIG);
    await waitFor(async () => (await faultStatus(fx)).connections === 0, 2000, 'the close');
  });

  test('notices: overflow (depth policy) and expired (response timeout)', async () => {
    // g must not expire before groups 2 and 3 are injected (two REST calls; 1 s is ample on a loaded machine).
    const fx = await fixture(server, { faultBody: { depth: 1, overflow: 'invalid', response_timeout_ms: 1000 } });
    const s = await open(server, fx, { window: 1 });
    await inject(server.api, fx.device, { grpid: 1, addr: 0x1000n }); // delivered
    const [g] = await groupsOf(s, 1);
    await inject(server.api, fx.device, { grpid: 2, addr: 0x2000n }); // queued (depth 1 reached)
    await inject(server.api, fx.device, { grpid: 3, addr: 0x3000n }); // answered by the policy
    assert.deepEqual(await s.reply('overflow'), { type: 'overflow', count: 1 });
    assert.deepEqual(await s.reply('expired'), { type: 'expired', cookies: [g.cookie] });
    // The expired group's cookie is free again at once: the queued group takes it.
    const [next] = await groupsOf(s, 1);
    assert.deepEqual([next.cookie, next.records[0].grpid], [g.cookie, 2]);
    assert.equal((await s.respond([{ cookie: next.cookie, code: 0 }])).ok, 1);
    const log = await deviceResponses(server.api, fx.device);
    assert.deepEqual(
      log.map((r: Json) => [r.grpid, r.code]),
      [
        [3, 'invalid'],
        [1, 'invalid'],
        [2, 'success'],
      ],
    );
    const st = await faultStatus(fx);
    assert.equal(st.counters.overflow, 1);
    assert.equal(st.counters.timeout, 1);
    await s.close();
  });

  test('upgrade refusals: token, context, fault, query, subprotocol, stream limit', async () => {
    const fx = await fixture(server);
    const other = await server.api.ok('context.create', 'POST', '/v1/contexts');
    const ws = server.wsBase;
    const expect = async (path: string, opts: Json, status: number, errno: string) => {
      const r = await refusedUpgrade(ws, path, opts);
      assert.equal(r.status, status, `${path} ${JSON.stringify(opts)}`);
      assert.equal(r.body.errno, errno);
    };
    await expect(fx.stream, {}, 401, 'EACCES');
    await expect(fx.stream, { token: 'wrong' }, 401, 'EACCES');
    await expect(fx.stream, { token: other.token }, 401, 'EACCES');
    await expect(fx.stream, { token: 'wrong', tokenInQuery: true }, 401, 'EACCES');
    await expect(`/v1/contexts/99999/faults/${fx.fault}/stream`, { token: fx.token }, 401, 'EACCES');
    await expect(`${fx.prefix}/faults/999/stream`, { token: fx.token }, 404, 'ENOENT');
    await expect(`${fx.prefix}/faults/${fx.ioas}/stream`, { token: fx.token }, 404, 'ENOENT');
    await expect(`${fx.prefix}/faults/x/stream`, { token: fx.token }, 400, 'EINVAL');
    await expect('/v1/contexts', { token: fx.token }, 404, 'ENOENT');
    for (const window of [0, 65537, 'abc']) await expect(fx.stream, { token: fx.token, window }, 400, 'EINVAL');
    await expect(`${fx.stream}?color=red`, { token: fx.token }, 400, 'EINVAL');
    await expect(fx.stream, { token: fx.token, protocol: 'iopf.v2.json' }, 400, 'EINVAL');
    // Accepted: the token in the query, the first subprotocol the daemon speaks, window bounds.
    const q = await StreamClient.open(ws, fx.stream, { token: fx.token, tokenInQuery: true, protocol: ['x.y', 'iopf.v1.uapi'], window: 65536 });
    assert.equal(q.ws.protocol, 'iopf.v1.uapi');
    const w1 = await StreamClient.open(ws, fx.stream, { token: fx.token, window: 1 });
    await expect(fx.stream, { token: fx.token }, 503, 'ENOSPC');
    assertBusy(await fx.api.delete(`${fx.prefix}/objects/${fx.fault}`));
    await q.close();
    await w1.close();
    await server.api.withToken(other.token).ok('context.destroy', 'DELETE', `/v1/contexts/${other.ctx}`);
  });

  test('releasing the context closes its streams with 1001 and answers their groups INVALID', async () => {
    const fx = await fixture(server);
    const s = await open(server, fx);
    await inject(server.api, fx.device, { grpid: 8, addr: 0x8000n });
    await groupsOf(s, 1);
    await inject(server.api, fx.device, { grpid: 9, addr: 0x9000n });
    await fx.api.ok('context.destroy', 'DELETE', fx.prefix);
    assert.equal((await s.closed).code, CLOSE.GOING_AWAY);
    const log = await deviceResponses(server.api, fx.device);
    assert.deepEqual(log.map((r: Json) => [r.grpid, r.code]).sort(), [
      [8, 'invalid'],
      [9, 'invalid'],
    ]);
  });
});

function assertBusy(r: Json): void {
  assert.equal(r.status, 409);
  assert.equal(r.body.errno, 'EBUSY');
}

describe('fault stream heartbeat', () => {
  let server: TestServer;
  before(async () => (server = await startServer({ stream: { heartbeatMs: 100 } })));
  after(() => server.close());

  test('heartbeat: a peer that stops answering pings is dropped and its groups go to another connection', async () => {
    const fx = await fixture(server);
    const dead = await open(server, fx, { autoPong: false });
    await inject(server.api, fx.device, { grpid: 6, addr: 0x6000n });
    const [g] = await groupsOf(dead, 1);
    const alive = await open(server, fx);
    const [again] = await groupsOf(alive, 1);
    assert.deepEqual([again.cookie, again.redelivered], [g.cookie, true]);
    assert.equal((await dead.closed).code, 1006, 'terminated without a close handshake');
    // The live connection keeps answering pings and stays open.
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(alive.ws.readyState, alive.ws.OPEN);
    await alive.respond([{ cookie: g.cookie, code: 0 }]);
    assert.deepEqual(
      (await deviceResponses(server.api, fx.device)).map((r: Json) => r.code),
      ['success'],
    );
    await alive.close();
  });
});

describe('fault stream flow control', () => {
  // A paused client answers no pings: keep the heartbeat out of the way.
  let server: TestServer;
  before(async () => (server = await startServer({ stream: { highWaterMark: 64 << 10 } })));
  after(() => server.close());

  test('sending pauses while the socket is backed up and resumes on drain', async () => {
    const fx = await fixture(server);
    const s = await open(server, fx, { window: 65536 });
    s.ws.pause();
    // Inject in-process: a backlog of big groups, far more than the socket buffers hold.
    const total = 6000;
    for (let i = 0; i < total; i++) {
      for (let p = 0; p < 8; p++) {
        server.daemon.platform.injectPageRequest(fx.device, { grpid: i % 512, addr: BigInt(i * 8 + p) * 0x1000n, perm: PERM.READ, last: p === 7 });
      }
    }
    await waitFor(async () => (await faultStatus(fx)).outstanding > 0, 2000, 'delivery to start');
    await new Promise((r) => setTimeout(r, 200));
    const paused = await faultStatus(fx);
    assert.ok(paused.queued > 0, `groups wait in the queue while the socket is full (queued ${paused.queued})`);
    assert.equal(paused.queued + paused.outstanding, total);
    s.ws.resume();
    const groups = await groupsOf(s, total);
    assert.deepEqual(
      groups.map((g) => g.cookie),
      Array.from({ length: total }, (_, i) => i + 1),
    );
    assert.equal((await faultStatus(fx)).queued, 0);
    await s.close();
  });
});
