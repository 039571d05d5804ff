// The administrator's routes (extensions): GET /v1/platform/devices/:name,
// GET /v1/platform/contexts and DELETE /v1/platform/contexts/:ctx (the
// force-release of a context whose token is lost), and the `ctx` of each
// device in GET /v1/platform. The force-release answers every outstanding
// group INVALID exactly once, as the owner's DELETE does.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertError, deviceResponses, faultFixture, inject, startServer, StreamClient, type Json, type TestServer } from './helpers.js';

const ADMIN = 'admin-s3cret';
const PLATFORM = '/v1/platform';

describe('admin routes', () => {
  let server: TestServer;
  let admin: TestServer['api'];
  before(async () => {
    server = await startServer({ adminToken: ADMIN });
    admin = server.api.withToken(ADMIN);
  });
  after(() => server.close());

  test('GET /v1/platform/devices/:name: one device as GET /v1/platform lists it', async () => {
    const all = await admin.ok('platform.get', 'GET', PLATFORM);
    for (const d of all.devices) assert.deepEqual(await admin.ok('platform.device.get', 'GET', `${PLATFORM}/devices/${d.name}`), d);
    assert.equal(all.devices[0].ctx, null);
    assertError(await admin.get(`${PLATFORM}/devices/nope`), 404, 'ENOENT', /nope/);
    assertError(await admin.get(`${PLATFORM}/devices/bad%20name`), 400, 'EINVAL', /params\.name/);
    assertError(await server.api.get(`${PLATFORM}/devices/nic0`), 401, 'EACCES');
  });

  test('GET /v1/platform/contexts: devices, objects, streams, age; devices show their ctx', async () => {
    assertError(await server.api.get(`${PLATFORM}/contexts`), 401, 'EACCES');
    await admin.ok('platform.device.add', 'POST', `${PLATFORM}/devices`, { name: 'ls0' });
    const fx = await faultFixture({ api: admin }, { device: 'ls0' });
    const empty = await admin.ok('context.create', 'POST', '/v1/contexts');
    const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
    await s.json(); // hello
    const { contexts } = await admin.ok('platform.contexts.list', 'GET', `${PLATFORM}/contexts`);
    const mine = contexts.find((c: Json) => c.ctx === fx.ctx);
    // device, IOAS, fault queue, hwpt.
    assert.deepEqual({ ...mine, age_ms: 0 }, { ctx: fx.ctx, devices: ['ls0'], objects: 4, streams: 1, age_ms: 0 });
    assert.ok(Number.isInteger(mine.age_ms) && mine.age_ms >= 0);
    assert.deepEqual({ ...contexts.find((c: Json) => c.ctx === empty.ctx), age_ms: 0 }, { ctx: empty.ctx, devices: [], objects: 0, streams: 0, age_ms: 0 });
    assert.ok(contexts.findIndex((c: Json) => c.ctx === fx.ctx) < contexts.findIndex((c: Json) => c.ctx === empty.ctx), 'oldest first');
    const p = await admin.ok('platform.get', 'GET', PLATFORM);
    assert.equal(p.devices.find((d: Json) => d.name === 'ls0').ctx, fx.ctx);
    assert.equal((await admin.ok('platform.device.get', 'GET', `${PLATFORM}/devices/ls0`)).ctx, fx.ctx);
    await s.close();
    await fx.api.ok('context.destroy', 'DELETE', fx.prefix);
    await server.api.withToken(empty.token).ok('context.destroy', 'DELETE', `/v1/contexts/${empty.ctx}`);
    const after = await admin.ok('platform.contexts.list', 'GET', `${PLATFORM}/contexts`);
    assert.ok(!after.contexts.some((c: Json) => c.ctx === fx.ctx || c.ctx === empty.ctx));
    assert.equal((await admin.ok('platform.device.get', 'GET', `${PLATFORM}/devices/ls0`)).ctx, null);
  });

  test('DELETE /v1/platform/contexts/:ctx: a delivered and a queued group answered INVALID exactly once, the stream closed 1001', async () => {
    await admin.ok('platform.device.add', 'POST', `${PLATFORM}/devices`, { name: 'lost0' });
    const fx = await faultFixture({ api: admin }, { device: 'lost0' });
    const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token, window: 1 });
    await s.json(); // hello
    await inject(admin, 'lost0', { grpid: 5, addr: 0x5000n });
    const delivered = await s.json();
    assert.equal(delivered.groups[0].records[0].grpid, 5, 'group 5 delivered, unanswered');
    await inject(admin, 'lost0', { grpid: 6, addr: 0x6000n });
    const st = await fx.api.ok('fault.get', 'GET', `${fx.prefix}/faults/${fx.fault}`);
    assert.equal(st.outstanding + st.queued, 2);
    assert.deepEqual(await deviceResponses(admin, 'lost0'), [], 'nothing answered yet');

    // Without the admin token: refused, nothing released.
    assertError(await server.api.delete(`${PLATFORM}/contexts/${fx.ctx}`), 401, 'EACCES');
    assertError(await server.api.withToken(fx.token).delete(`${PLATFORM}/contexts/${fx.ctx}`), 401, 'EACCES');
    await admin.ok('platform.contexts.release', 'DELETE', `${PLATFORM}/contexts/${fx.ctx}`);
    assert.equal((await s.closed).code, 1001);

    const responses = await deviceResponses(admin, 'lost0');
    assert.deepEqual(
      responses.map((r: Json) => [r.grpid, r.code]).sort(),
      [
        [5, 'invalid'],
        [6, 'invalid'],
      ],
      'each group answered once, INVALID',
    );
    // The context is gone: its owner is refused, a second release is ENOENT, the device is free.
    assertError(await fx.api.get(`${fx.prefix}/objects`), 401, 'EACCES');
    assertError(await admin.delete(`${PLATFORM}/contexts/${fx.ctx}`), 404, 'ENOENT');
    assertError(await admin.delete(`${PLATFORM}/contexts/0`), 404, 'ENOENT');
    assertError(await admin.delete(`${PLATFORM}/contexts/x`), 400, 'EINVAL', /params\.ctx/);
    const dev = await admin.ok('platform.device.get', 'GET', `${PLATFORM}/devices/lost0`);
    assert.deepEqual([dev.bound, dev.ctx], [false, null]);
    assert.ok(!(await admin.ok('platform.contexts.list', 'GET', `${PLATFORM}/contexts`)).contexts.some((c: Json) => c.ctx === fx.ctx));
    // Rebinding works, and no later answer was added to the log.
    const again = await faultFixture({ api: admin }, { device: 'lost0' });
    await again.api.ok('context.destroy', 'DELETE', again.prefix);
    assert.equal((await deviceResponses(admin, 'lost0')).length, 2, 'still exactly one answer per group');
    assert.equal(server.daemon.platform.audit().outstandingGroups, 0);
  });
});
