/**
 * Isolation: a context cannot see or touch another context's objects or
 * streams; platform routes need the admin token when one is set; tokens
 * never reach the log, whatever the path (headers, query strings, refused
 * upgrades, malformed HTTP, errors), at trace level.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, type Command } from '../../protocol/index.js';
import { type Api, faultFixture, inject, refusedUpgrade, StreamClient, startServer, type FaultFixture, type Json, type TestServer } from '../server/helpers.js';
import { captureLog, rawHttp, rawSocket, type LogCapture } from './helpers.js';

const ADMIN = 'isolation-admin-secret';

/** A body that passes the command's schema as far as possible (so auth, not validation, decides). */
const BODIES: Record<string, Json> = {
  'device.bind': { name: 'iso-a' },
  'ioas.map': { iova: '0x100000', length: '0x1000' },
  'ioas.unmap': { iova: '0x100000', length: '0x1000' },
  'ioas.memory.write': { writes: [{ iova: '0x100000', data: '00' }] },
  'ioas.memory.read': { iova: '0x100000', length: '0x1' },
  'hwpt.alloc': { dev_id: 1, pt_id: 2 },
  'hwpt.invalidate': { entries: [] },
  'device.attach': { pt_id: 2 },
  'device.replace': { pt_id: 2 },
  'device.detach': {},
  'fault.alloc': {},
  'ioas.alloc': {},
};

/** The path of @c with the ids of @fx. */
function pathOf(c: Command, fx: FaultFixture, ctx = fx.ctx): string {
  return c.url
    .replace(':ctx', String(ctx))
    .replace(':dev_id', String(fx.devId))
    .replace(':id', String(c.name.startsWith('hwpt') ? fx.hwpt : c.name.startsWith('fault') ? fx.fault : c.name.startsWith('ioas') ? fx.ioas : fx.ioas))
    .replace(':name', 'iso-a')
    .replace(':pasid', '1');
}

describe('isolation', { timeout: 60_000 }, () => {
  let server: TestServer;
  let log: LogCapture;
  let admin: Api;
  let a: FaultFixture;
  let b: FaultFixture;

  before(async () => {
    log = captureLog('trace');
    server = await startServer({ adminToken: ADMIN, logger: log.logger, stream: { heartbeatMs: 200 } });
    admin = server.api.withToken(ADMIN);
    for (const name of ['iso-a', 'iso-b']) await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name });
    a = await faultFixture({ api: admin }, { device: 'iso-a', pasid: 3 });
    b = await faultFixture({ api: admin }, { device: 'iso-b' });
    // A has more objects than B: ids that exist in A only.
    for (let i = 0; i < 3; i++) await a.api.ok('ioas.alloc', 'POST', `${a.prefix}/ioas`, {});
  });
  after(() => server.close());

  test("every context route with another context's token (or none, or a wrong one) is 401 and changes nothing", async () => {
    const objectsBefore = (await a.api.ok('object.list', 'GET', `${a.prefix}/objects`)).objects;
    const ctxRoutes = COMMANDS.filter((c) => c.auth === 'ctx');
    assert.ok(ctxRoutes.length >= 15);
    for (const c of ctxRoutes) {
      for (const token of [b.token, undefined, 'x', `${a.token}x`, a.token.slice(0, -1), ADMIN]) {
        const r = await server.api.withToken(token).call(c.method, pathOf(c, a), BODIES[c.name] === undefined ? {} : { body: BODIES[c.name] });
        assert.equal(r.status, 401, `${c.name} with ${token === b.token ? "B's token" : String(token)}: ${r.text}`);
        assert.equal(r.body.errno, 'EACCES');
      }
    }
    // A context that does not exist: 401 with any token, like a wrong one (nothing to learn from the difference).
    const ghost = await b.api.get(`/v1/contexts/999999/objects`);
    const wrong = await b.api.get(`${a.prefix}/objects`);
    assert.deepEqual([ghost.status, ghost.body], [wrong.status, wrong.body]);
    assert.deepEqual((await a.api.ok('object.list', 'GET', `${a.prefix}/objects`)).objects, objectsBefore, "A's objects are untouched");
  });

  test("a context names only its own objects: A's ids are not B's", async () => {
    const aObjects = (await a.api.ok('object.list', 'GET', `${a.prefix}/objects`)).objects as Json[];
    const bIds = new Set(((await b.api.ok('object.list', 'GET', `${b.prefix}/objects`)).objects as Json[]).map((o) => o.id));
    const onlyA = aObjects.filter((o) => !bIds.has(o.id));
    assert.ok(onlyA.length >= 3);
    for (const o of onlyA) {
      const r = await b.api.delete(`${b.prefix}/objects/${o.id}`);
      assert.equal(r.status, 404, r.text);
      const m = await b.api.post(`${b.prefix}/ioas/${o.id}/map`, { iova: '0x0', length: '0x1000' });
      assert.equal(m.status, 404);
    }
    assert.equal((await b.api.get(`${b.prefix}/faults/${a.fault}`)).body.id ?? b.fault, b.fault, "the same number names B's own object, if any");
    // A's device is bound to A: B cannot take it.
    const bind = await b.api.post(`${b.prefix}/devices`, { name: 'iso-a' });
    assert.deepEqual([bind.status, bind.body.errno], [409, 'EBUSY']);
    // B cannot release A.
    assert.equal((await b.api.delete(a.prefix)).status, 401);
    assert.deepEqual((await a.api.ok('object.list', 'GET', `${a.prefix}/objects`)).objects, aObjects);
  });

  test("a stream upgrade with another context's token is refused with 401 before any socket; streams carry only their context's groups", async () => {
    for (const opts of [{ token: b.token }, { token: b.token, tokenInQuery: true }, {}, { token: ADMIN }]) {
      const r = await refusedUpgrade(server.wsBase, a.stream, opts);
      assert.equal(r.status, 401, JSON.stringify(opts));
      assert.equal(r.body.errno, 'EACCES');
    }
    assert.equal((await a.api.ok('fault.get', 'GET', `${a.prefix}/faults/${a.fault}`)).connections, 0, 'no connection was ever opened');
    // B's token on B's path with A's fault id: B has no such fault queue (or it is B's own).
    const sa = await StreamClient.open(server.wsBase, a.stream, { token: a.token });
    const sb = await StreamClient.open(server.wsBase, b.stream, { token: b.token });
    await sa.json();
    await sb.json();
    await inject(admin, 'iso-a', { grpid: 4, addr: 0x4000n });
    await inject(admin, 'iso-a', { grpid: 5, addr: 0x5000n, pasid: 3 });
    const got: Json[] = [];
    while (got.length < 2) got.push(...(await sa.reply('faults')).groups);
    assert.deepEqual(
      got.map((g) => g.records[0].dev_id),
      [a.devId, a.devId],
    );
    await sb.quiet(150);
    // B cannot answer A's cookies: the same cookie numbers on B's queue are B's (none outstanding).
    const r = await sb.respond(got.map((g) => ({ cookie: g.cookie, code: 0 })));
    assert.equal(r.ok, 0);
    assert.deepEqual(server.daemon.platform.responses('iso-a'), [], 'nothing answered through B');
    assert.equal((await sa.respond(got.map((g) => ({ cookie: g.cookie, code: 0 })))).ok, 2);
    await sa.close();
    await sb.close();
  });

  test('platform routes need the admin token: none, a wrong one, a context token are all 401', async () => {
    const platformRoutes = COMMANDS.filter((c) => c.auth === 'admin');
    assert.ok(platformRoutes.length >= 10);
    for (const c of platformRoutes) {
      for (const token of [undefined, 'wrong', a.token, `${ADMIN}x`, ADMIN.slice(1), ADMIN.toUpperCase()]) {
        const r = await server.api.withToken(token).call(c.method, pathOf(c, a), c.method === 'GET' ? {} : { body: {} });
        assert.equal(r.status, 401, `${c.name} with ${String(token)}: ${r.text}`);
        assert.equal(r.body.errno, 'EACCES');
      }
    }
    assert.equal((await admin.get('/v1/platform')).status, 200);
    // Without an admin token configured, platform routes are open (and the daemon stays on loopback: config.test.ts).
    const open = await startServer();
    assert.equal((await open.api.get('/v1/platform')).status, 200);
    await open.close();
  });

  test('tokens never appear in the log, whatever the path (checked at trace level)', async () => {
    // Exercise every place a token passes through: headers, queries, refusals, malformed HTTP, aborted bodies, errors.
    const s = await StreamClient.open(server.wsBase, a.stream, { token: a.token, tokenInQuery: true });
    await s.json();
    await refusedUpgrade(server.wsBase, `${a.stream}?token=${b.token}`);
    await refusedUpgrade(server.wsBase, `${a.stream}?token=${a.token}&window=0`);
    await server.api.withToken(`${ADMIN}-guess`).get('/v1/platform');
    await server.api.get(`/v1/platform?token=${ADMIN}`);
    await a.api.get(`${a.prefix}/objects?token=${a.token}`);
    await rawHttp(server.base, {
      method: 'POST',
      path: `${a.prefix}/ioas`,
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'text/plain' },
      body: a.token,
    });
    await rawHttp(server.base, {
      method: 'POST',
      path: `${a.prefix}/ioas`,
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' },
      body: `{"${a.token}":1}`,
    });
    await rawSocket(server.base, `GET /healthz HTTP/1.1\r\nAuthorization: Bearer ${ADMIN}\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
    await rawSocket(server.base, `POST ${a.prefix}/ioas HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${a.token}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n`);
    await rawSocket(server.base, `BAD ${a.token} HTTP/1.1\r\nAuthorization: Bearer ${a.token}\r\n\r\n`);
    await rawSocket(
      server.base,
      `POST ${a.prefix}/ioas HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${a.token}\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{`,
      100,
    );
    // A dead peer with the token in its URL, dropped by the heartbeat.
    const dead = await StreamClient.open(server.wsBase, b.stream, { token: b.token, tokenInQuery: true, autoPong: false });
    await dead.closed;
    // Context release and shutdown log too.
    const c = await server.api.ok('context.create', 'POST', '/v1/contexts');
    await server.api.withToken(c.token).ok('context.destroy', 'DELETE', `/v1/contexts/${c.ctx}`);
    await s.close();
    await server.close();

    const all = log.text();
    assert.ok(log.lines.length > 30, `trace logging happened (${log.lines.length} lines)`);
    const byteList = (t: string): string => [...Buffer.from(t)].join(',');
    for (const secret of [a.token, b.token, c.token, ADMIN]) {
      assert.ok(
        !all.includes(secret),
        `a token leaked into the log: ${all
          .split('\n')
          .find((l) => l.includes(secret))
          ?.slice(0, 300)}`,
      );
      assert.ok(!all.includes(byteList(secret)), 'a token leaked into the log as a byte array');
      assert.ok(!all.includes(Buffer.from(secret).toString('base64')), 'a token leaked into the log in base64');
      assert.ok(!all.includes(encodeURIComponent(secret)), 'a token leaked URL-encoded');
    }
    assert.ok(!/[?&]token=/.test(all), 'no query string in a logged URL');
    assert.ok(!/rawPacket/.test(all), 'no raw request bytes in the log');
  });
});
