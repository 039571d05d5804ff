// End to end: every REST route of docs/protocol.md (platform, contexts and
// objects, operations) against a real
// daemon on 127.0.0.1, with the success bodies checked against the command
// table's response schemas and the errors against the errno table.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, HWPT_FLAGS, openApiDocument, asyncApiDocument } from '../../protocol/index.js';
import { assertError, deviceResponses, faultFixture, inject, startServer, StreamClient, waitFor, type Json, type TestServer } from './helpers.js';

const PLATFORM = '/v1/platform';

describe('platform routes', () => {
  let server: TestServer;
  before(async () => (server = await startServer()));
  after(() => server.close());

  test('GET /v1/platform: the embedded default platform', async () => {
    const p = await server.api.ok('platform.get', 'GET', PLATFORM);
    assert.deepEqual(p.iommus, [
      { name: 'dmar0', model: 'vtd', prq_depth: 4096, host_va_bits: 48 },
      { name: 'smmu0', model: 'smmuv3', prq_depth: 4096, host_va_bits: 48 },
    ]);
    assert.equal(p.kernel, 'latest');
    assert.ok(p.devices.filter((d: Json) => d.iommu === 'dmar0').length >= 2);
    for (const d of p.devices) {
      // Devices behind the SMMUv3 model have the stall cap, true by default.
      const stall = d.iommu === 'smmu0' ? { stall: true } : {};
      assert.deepEqual(d.caps, { pasid_bits: 20, pri: true, pri_outstanding: 512, ats: true, is_vf: false, prg_response_needs_pasid: true, ...stall });
      assert.equal(d.bound, false);
      assert.equal(d.pri_enabled, true);
    }
  });

  test('POST/DELETE /v1/platform/devices: hot-plug, duplicates, unknown IOMMU, bad caps, hot-unplug', async () => {
    const d = await server.api.ok('platform.device.add', 'POST', `${PLATFORM}/devices`, { name: 'hp0', bdf: '00:1f.0', caps: { pasid_bits: 0 } });
    assert.deepEqual(d.caps, { pasid_bits: 0, pri: true, pri_outstanding: 512, ats: true, is_vf: false, prg_response_needs_pasid: true });
    assert.equal(d.bdf, '00:1f.0');
    assert.equal(d.iommu, 'dmar0');
    assertError(await server.api.post(`${PLATFORM}/devices`, { name: 'hp0' }), 409, 'EEXIST');
    assertError(await server.api.post(`${PLATFORM}/devices`, { name: 'hp1', bdf: '00:1f.0' }), 409, 'EEXIST');
    assertError(await server.api.post(`${PLATFORM}/devices`, { name: 'hp1', iommu: 'nope' }), 404, 'ENOENT');
    assertError(await server.api.post(`${PLATFORM}/devices`, { name: 'hp1', caps: { pasid_bits: 21 } }), 400, 'EINVAL', /caps\.pasid_bits/);
    assertError(await server.api.post(`${PLATFORM}/devices`, { name: 'hp1', color: 'red' }), 400, 'EINVAL', /unknown key "color"/);
    await server.api.ok('platform.device.remove', 'DELETE', `${PLATFORM}/devices/hp0`);
    assertError(await server.api.delete(`${PLATFORM}/devices/hp0`), 404, 'ENOENT');
    assertError(await server.api.delete(`${PLATFORM}/devices/bad%20name`), 400, 'EINVAL', /params\.name/);
  });

  test('hot-unplug of a bound device answers its outstanding group INVALID', async () => {
    await server.api.ok('platform.device.add', 'POST', `${PLATFORM}/devices`, { name: 'hp2' });
    const fx = await faultFixture(server, { device: 'hp2' });
    await inject(server.api, 'hp2', { grpid: 3, addr: 0x5000n });
    assert.equal((await fx.api.get(`${fx.prefix}/faults/${fx.fault}`)).body.queued, 1);
    assert.deepEqual(await deviceResponses(server.api, 'hp2'), []);
    await server.api.ok('platform.device.remove', 'DELETE', `${PLATFORM}/devices/hp2`);
    // The device object went away as if detached: its group was answered once.
    const status = (await fx.api.get(`${fx.prefix}/faults/${fx.fault}`)).body;
    assert.equal(status.queued, 0);
    assert.equal(status.counters.auto_detach + status.counters.auto_unplug, 1);
    const objects = await fx.api.ok('object.list', 'GET', `${fx.prefix}/objects`);
    assert.ok(!objects.objects.some((o: Json) => o.type === 'device'));
  });

  test('POST .../dma: outcomes and refusals', async () => {
    const dma = (name: string, body: Json) => server.api.ok('platform.device.dma', 'POST', `${PLATFORM}/devices/${name}/dma`, body);
    // No domain at the RID: the IOMMU answers the page request INVALID.
    assert.deepEqual(await dma('accel0', { iova: '0x1000', length: '0x10', access: 'read' }), { status: 'invalid', page_requests: 1, retries: 0 });
    await server.api.ok('platform.device.add', 'POST', `${PLATFORM}/devices`, { name: 'nopri0', caps: { pri: false } });
    const w = await dma('nopri0', { iova: '0x1000', length: '0x2', access: 'write', data: 'abcd' });
    assert.deepEqual(w, { status: 'pri_disabled', page_requests: 0, retries: 0, data: 'abcd' });
    const bad = (body: Json) => server.api.post(`${PLATFORM}/devices/accel0/dma`, body);
    assertError(await bad({ iova: 4096, length: '0x10', access: 'read' }), 400, 'EINVAL', /body\.iova/);
    assertError(await bad({ iova: '0x1000', length: '0x10', access: 'write' }), 400, 'EINVAL');
    assertError(await bad({ iova: '0x1000', length: '0x100001', access: 'read' }), 400, 'E2BIG');
    assertError(await bad({ iova: '0xfffffffffffff000', length: '0x2000', access: 'read' }), 400, 'EOVERFLOW');
    assertError(await bad({ iova: '0x1000', length: '0x10', access: 'exec' }), 400, 'EINVAL', /body\.access/);
    assertError(await server.api.post(`${PLATFORM}/devices/nope/dma`, { iova: '0x0', length: '0x1', access: 'read' }), 404, 'ENOENT');
  });

  test('POST .../dma through a plain IOAS attachment moves the bytes', async () => {
    const { ctx, token } = await server.api.ok('context.create', 'POST', '/v1/contexts');
    const api = server.api.withToken(token);
    const c = `/v1/contexts/${ctx}`;
    await server.api.ok('platform.device.add', 'POST', `${PLATFORM}/devices`, { name: 'dma0' });
    const { dev_id } = await api.ok('device.bind', 'POST', `${c}/devices`, { name: 'dma0' });
    const { id: ioas } = await api.ok('ioas.alloc', 'POST', `${c}/ioas`, {});
    await api.ok('ioas.map', 'POST', `${c}/ioas/${ioas}/map`, { iova: '0x10000', length: '0x2000' });
    await api.ok('device.attach', 'POST', `${c}/devices/${dev_id}/attach`, { pt_id: ioas });
    await api.ok('ioas.memory.write', 'POST', `${c}/ioas/${ioas}/memory/write`, { writes: [{ iova: '0x10ffe', data: '01020304' }] });
    const r = await server.api.ok('platform.device.dma', 'POST', `${PLATFORM}/devices/dma0/dma`, { iova: '0x10ffe', length: '0x4', access: 'read' });
    assert.deepEqual(r, { status: 'ok', page_requests: 0, retries: 0, data: '01020304' });
    await server.api.ok('platform.device.dma', 'POST', `${PLATFORM}/devices/dma0/dma`, { iova: '0x11000', length: '0x3', access: 'write', data: 'AABBCC' });
    assert.deepEqual(await api.ok('ioas.memory.read', 'POST', `${c}/ioas/${ioas}/memory/read`, { iova: '0x11000', length: '0x3' }), { data: 'aabbcc' });
    // The automatic hwpt made by attaching to the IOAS is listed.
    const { objects } = await api.ok('object.list', 'GET', `${c}/objects`);
    assert.ok(objects.some((o: Json) => o.type === 'hwpt_paging' && o.auto === true));
    await api.ok('context.destroy', 'DELETE', c);
  });

  test('POST .../page-requests, GET .../responses, POST .../pri-reset', async () => {
    const before = await deviceResponses(server.api, 'nic0');
    // No domain: the IOMMU answers INVALID; the log shows it, ?since filters.
    await inject(server.api, 'nic0', { grpid: 17, addr: 0x7000n, pasid: 3 });
    await waitFor(async () => (await deviceResponses(server.api, 'nic0')).length > before.length, 2000, 'a response');
    const all = await deviceResponses(server.api, 'nic0');
    const last = all[all.length - 1];
    assert.deepEqual(last, { pasid: 3, grpid: 17, code: 'invalid', seq: all.length });
    assert.deepEqual(await deviceResponses(server.api, 'nic0', all.length), []);
    assert.deepEqual(await deviceResponses(server.api, 'nic0', all.length - 1), [last]);
    assertError(await server.api.post(`${PLATFORM}/devices/nic0/page-requests`, { grpid: 512, addr: '0x0', perm: 1, last: true }), 400, 'EINVAL');
    assertError(await server.api.post(`${PLATFORM}/devices/nope/page-requests`, { grpid: 1, addr: '0x0', perm: 1, last: true }), 404, 'ENOENT');
    assertError(await server.api.get(`${PLATFORM}/devices/nic0/responses?since=x`), 400, 'EINVAL', /query\.since/);
    assertError(await server.api.get(`${PLATFORM}/devices/nic0/responses?color=red`), 400, 'EINVAL', /unknown key/);
    await server.api.ok('platform.device.pri-reset', 'POST', `${PLATFORM}/devices/nic0/pri-reset`);
    assertError(await server.api.post(`${PLATFORM}/devices/nope/pri-reset`), 404, 'ENOENT');
  });

  test('POST/DELETE .../sva: faults resolved in the daemon, unbind, busy PASID', async () => {
    await server.api.ok('platform.device.add', 'POST', `${PLATFORM}/devices`, { name: 'sva0' });
    await server.api.ok('platform.sva.bind', 'POST', `${PLATFORM}/devices/sva0/sva`, { pasid: 9, vmas: [{ start: '0x400000', length: '0x4000' }] });
    assertError(await server.api.post(`${PLATFORM}/devices/sva0/sva`, { pasid: 9, vmas: [] }), 409, 'EBUSY');
    const inside = await server.api.ok('platform.device.dma', 'POST', `${PLATFORM}/devices/sva0/dma`, {
      pasid: 9,
      iova: '0x401000',
      length: '0x8',
      access: 'read',
    });
    assert.deepEqual(inside, { status: 'ok', page_requests: 1, retries: 1, data: '0000000000000000' });
    const outside = await server.api.ok('platform.device.dma', 'POST', `${PLATFORM}/devices/sva0/dma`, {
      pasid: 9,
      iova: '0x900000',
      length: '0x8',
      access: 'read',
    });
    assert.equal(outside.status, 'invalid');
    await server.api.ok('platform.sva.unbind', 'DELETE', `${PLATFORM}/devices/sva0/sva/9`);
    assertError(await server.api.delete(`${PLATFORM}/devices/sva0/sva/9`), 404, 'ENOENT');
    assertError(await server.api.delete(`${PLATFORM}/devices/sva0/sva/x`), 400, 'EINVAL');
  });

  test('POST/GET .../traffic: a run against a fault queue, EBUSY while it runs', async () => {
    const fx = await faultFixture(server, { device: 'accel0' });
    await server.api.ok('platform.traffic.start', 'POST', `${PLATFORM}/devices/accel0/traffic`, { count: 6, in_flight: 2 });
    assertError(await server.api.post(`${PLATFORM}/devices/accel0/traffic`, { count: 1 }), 409, 'EBUSY');
    let st = await server.api.ok('platform.traffic.status', 'GET', `${PLATFORM}/devices/accel0/traffic`);
    assert.equal(st.running, true);
    assert.equal(st.sent, 2);
    const s = await answerStream(server, fx, 6);
    await waitFor(async () => !(await server.api.get(`${PLATFORM}/devices/accel0/traffic`)).body.running, 2000, 'the run to end');
    st = await server.api.ok('platform.traffic.status', 'GET', `${PLATFORM}/devices/accel0/traffic`);
    assert.equal(st.sent, 6);
    assert.equal(st.answered, 6);
    assert.deepEqual(st.by_code, { success: 6, invalid: 0, failure: 0 });
    assert.ok(Number.isInteger(st.latency_us.p50) && Number.isInteger(st.elapsed_ms));
    assertError(await server.api.post(`${PLATFORM}/devices/accel0/traffic`, { count: 1, perm: 16 }), 400, 'EINVAL', /perm/);
    assertError(await server.api.post(`${PLATFORM}/devices/accel0/traffic`, { count: 0 }), 400, 'EINVAL', /body\.count/);
    await s.close();
    await fx.api.ok('context.destroy', 'DELETE', fx.prefix);
  });

  test('DELETE .../traffic: no new groups; those in flight are still answered; idempotent', async () => {
    const fx = await faultFixture(server, { device: 'accel0' });
    await server.api.ok('platform.traffic.start', 'POST', `${PLATFORM}/devices/accel0/traffic`, { count: 1000, in_flight: 4 });
    let st = await server.api.ok('platform.traffic.stop', 'DELETE', `${PLATFORM}/devices/accel0/traffic`);
    assert.deepEqual([st.running, st.sent, st.answered], [true, 4, 0], 'stopped with 4 groups in flight');
    const s = await answerStream(server, fx, 4);
    await waitFor(async () => !(await server.api.get(`${PLATFORM}/devices/accel0/traffic`)).body.running, 2000, 'the run to end');
    st = await server.api.ok('platform.traffic.status', 'GET', `${PLATFORM}/devices/accel0/traffic`);
    assert.deepEqual([st.running, st.sent, st.answered, st.by_code.success], [false, 4, 4, 4], 'nothing issued after the stop');
    st = await server.api.ok('platform.traffic.stop', 'DELETE', `${PLATFORM}/devices/accel0/traffic`);
    assert.deepEqual([st.running, st.sent], [false, 4]);
    assertError(await server.api.delete(`${PLATFORM}/devices/ghost/traffic`), 404, 'ENOENT');
    // A new run may start at once.
    await server.api.ok('platform.traffic.start', 'POST', `${PLATFORM}/devices/accel0/traffic`, { count: 2, in_flight: 2 });
    await s.close();
    await fx.api.ok('context.destroy', 'DELETE', fx.prefix);
    st = await server.api.ok('platform.traffic.status', 'GET', `${PLATFORM}/devices/accel0/traffic`);
    assert.deepEqual([st.running, st.sent, st.by_code.invalid], [false, 2, 2], 'context release answered the new run INVALID');
  });
});

/** Open the fault stream of @fx and answer its next @n groups SUCCESS, one by one; the stream, still open. */
async function answerStream(server: TestServer, fx: Awaited<ReturnType<typeof faultFixture>>, n: number): Promise<StreamClient> {
  const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
  await s.json(); // hello
  for (let answered = 0; answered < n; ) {
    const f = await s.json();
    for (const g of f.groups) {
      assert.equal((await s.respond([{ cookie: g.cookie, code: 'success' }])).ok, 1);
      answered++;
    }
  }
  return s;
}

describe('admin token', () => {
  let server: TestServer;
  before(async () => (server = await startServer({ adminToken: 's3cret-admin' })));
  after(() => server.close());

  test('guards /v1/platform only: missing or wrong → 401 EACCES', async () => {
    assertError(await server.api.get(PLATFORM), 401, 'EACCES', /missing admin token/);
    assertError(await server.api.withToken('wrong').get(PLATFORM), 401, 'EACCES', /wrong admin token/);
    assertError(await server.api.get(PLATFORM, { headers: { authorization: 'Basic s3cret-admin' } }), 401, 'EACCES');
    // Checked before the body: an unauthenticated caller learns nothing about validation.
    assertError(await server.api.post(`${PLATFORM}/devices`, { bogus: true }), 401, 'EACCES');
    await server.api.withToken('s3cret-admin').ok('platform.get', 'GET', PLATFORM);
    await server.api.ok('context.create', 'POST', '/v1/contexts');
    await server.api.ok('healthz', 'GET', '/healthz');
  });
});

describe('context routes', () => {
  let server: TestServer;
  before(async () => (server = await startServer({ limits: { maxContexts: 8 } })));
  after(() => server.close());

  test('POST/DELETE /v1/contexts and the context token', async () => {
    const a = await server.api.ok('context.create', 'POST', '/v1/contexts');
    const b = await server.api.ok('context.create', 'POST', '/v1/contexts', {});
    assert.notEqual(a.ctx, b.ctx);
    assert.notEqual(a.token, b.token);
    const objects = `/v1/contexts/${a.ctx}/objects`;
    assertError(await server.api.get(objects), 401, 'EACCES', /missing context token/);
    assertError(await server.api.withToken('nope').get(objects), 401, 'EACCES', /wrong context token/);
    assertError(await server.api.withToken(b.token).get(objects), 401, 'EACCES');
    // No token opens a context that does not exist: the same 401 as a wrong token.
    assertError(await server.api.withToken(a.token).get('/v1/contexts/9999/objects'), 401, 'EACCES', /wrong context token/);
    assertError(await server.api.withToken(a.token).get('/v1/contexts/abc/objects'), 400, 'EINVAL', /params\.ctx/);
    assert.deepEqual(await server.api.withToken(a.token).ok('object.list', 'GET', objects), { objects: [] });
    assertError(await server.api.post('/v1/contexts', { x: 1 }), 400, 'EINVAL', /unknown key "x"/);
    assertError(await server.api.delete(`/v1/contexts/${a.ctx}`), 401, 'EACCES');
    await server.api.withToken(a.token).ok('context.destroy', 'DELETE', `/v1/contexts/${a.ctx}`);
    assertError(await server.api.withToken(a.token).get(objects), 401, 'EACCES', /wrong context token/);
    await server.api.withToken(b.token).ok('context.destroy', 'DELETE', `/v1/contexts/${b.ctx}`);
  });

  test('the context limit is ENOSPC (503)', async () => {
    const made: Json[] = [];
    for (;;) {
      const r = await server.api.post('/v1/contexts');
      if (r.status !== 201) {
        assertError(r, 503, 'ENOSPC');
        break;
      }
      made.push(r.body);
    }
    assert.equal(made.length, 8);
    for (const m of made) await server.api.withToken(m.token).ok('context.destroy', 'DELETE', `/v1/contexts/${m.ctx}`);
  });

  test('devices, IOAS, memory, hwpt, attach/replace/detach, faults, objects', async () => {
    const { ctx, token } = await server.api.ok('context.create', 'POST', '/v1/contexts');
    const api = server.api.withToken(token);
    const c = `/v1/contexts/${ctx}`;

    // Bind: unknown device ENODEV, bound elsewhere EBUSY.
    assertError(await api.post(`${c}/devices`, { name: 'ghost' }), 404, 'ENODEV');
    const { dev_id } = await api.ok('device.bind', 'POST', `${c}/devices`, { name: 'nic0' });
    const other = await server.api.ok('context.create', 'POST', '/v1/contexts');
    assertError(await server.api.withToken(other.token).post(`/v1/contexts/${other.ctx}/devices`, { name: 'nic0' }), 409, 'EBUSY');

    // IOAS map/unmap.
    const { id: ioas } = await api.ok('ioas.alloc', 'POST', `${c}/ioas`);
    await api.ok('ioas.map', 'POST', `${c}/ioas/${ioas}/map`, { iova: '0X100000', length: '0x4000' });
    assertError(await api.post(`${c}/ioas/${ioas}/map`, { iova: '0x102000', length: '0x1000' }), 409, 'EEXIST');
    assertError(await api.post(`${c}/ioas/${ioas}/map`, { iova: '0x200800', length: '0x1000' }), 400, 'EINVAL');
    assertError(await api.post(`${c}/ioas/${ioas}/map`, { iova: 0x200000, length: '0x1000' }), 400, 'EINVAL', /body\.iova: expected a "0x…" u64 string/);
    assertError(await api.post(`${c}/ioas/${ioas}/map`, { iova: '0x10000000000000000', length: '0x1000' }), 400, 'EINVAL');
    assertError(await api.post(`${c}/ioas/${ioas}/map`, { iova: '0xfffffffffffff000', length: '0x2000' }), 400, 'EOVERFLOW');
    assertError(await api.post(`${c}/ioas/999/map`, { iova: '0x0', length: '0x1000' }), 404, 'ENOENT');
    assert.deepEqual(await api.ok('ioas.unmap', 'POST', `${c}/ioas/${ioas}/unmap`, { iova: '0x102000', length: '0x2000' }), { unmapped: '0x2000' });
    assertError(await api.post(`${c}/ioas/${ioas}/unmap`, { iova: '0x102000', length: '0x2000' }), 404, 'ENOENT');

    // Guest memory: all or nothing.
    await api.ok('ioas.memory.write', 'POST', `${c}/ioas/${ioas}/memory/write`, { writes: [{ iova: '0x100ff0', data: 'c0ffee' }] });
    assert.deepEqual(await api.ok('ioas.memory.read', 'POST', `${c}/ioas/${ioas}/memory/read`, { iova: '0x100ff0', length: '0x3' }), { data: 'c0ffee' });
    const partial = {
      writes: [
        { iova: '0x100000', data: 'ff' },
        { iova: '0x101fff', data: 'ffff' },
      ],
    };
    assertError(await api.post(`${c}/ioas/${ioas}/memory/write`, partial), 400, 'EFAULT');
    assert.equal((await api.ok('ioas.memory.read', 'POST', `${c}/ioas/${ioas}/memory/read`, { iova: '0x100000', length: '0x1' })).data, '00');
    assertError(await api.post(`${c}/ioas/${ioas}/memory/write`, { writes: [{ iova: '0x100000', data: 'abc' }] }), 400, 'EINVAL', /data/);
    assertError(await api.post(`${c}/ioas/${ioas}/memory/read`, { iova: '0x100000', length: '0x100001' }), 400, 'E2BIG');
    assertError(await api.post(`${c}/ioas/${ioas}/memory/read`, { iova: '0x200000', length: '0x1' }), 400, 'EFAULT');
    assertError(await api.post(`${c}/ioas/${ioas}/memory/read`, { iova: '0xffffffffffffffff', length: '0x2' }), 400, 'EOVERFLOW');

    // hwpt allocation rules.
    const { id: fault } = await api.ok('fault.alloc', 'POST', `${c}/faults`, {});
    const hwpt = (body: Json) => api.post(`${c}/hwpt`, { dev_id, pt_id: ioas, ...body });
    assertError(await hwpt({ flags: HWPT_FLAGS.DIRTY_TRACKING }), 400, 'EOPNOTSUPP');
    assertError(await hwpt({ flags: 0x100 }), 400, 'EOPNOTSUPP');
    assertError(await hwpt({ __reserved: 1 }), 400, 'EOPNOTSUPP');
    assertError(await hwpt({ flags: HWPT_FLAGS.NEST_PARENT | HWPT_FLAGS.FAULT_ID_VALID, fault_id: fault }), 400, 'EOPNOTSUPP');
    const before = (await api.ok('object.list', 'GET', `${c}/objects`)).objects.length;
    assertError(await hwpt({ flags: HWPT_FLAGS.FAULT_ID_VALID, fault_id: ioas }), 404, 'ENOENT');
    assert.equal((await api.ok('object.list', 'GET', `${c}/objects`)).objects.length, before, 'no hwpt left behind');
    assertError(await hwpt({ dev_id: 999 }), 404, 'ENOENT');
    const { id: plain } = await api.ok('hwpt.alloc', 'POST', `${c}/hwpt`, { dev_id, pt_id: ioas, fault_id: 12345 });
    const { id: faulty } = await api.ok('hwpt.alloc', 'POST', `${c}/hwpt`, { dev_id, pt_id: ioas, flags: HWPT_FLAGS.FAULT_ID_VALID, fault_id: fault });
    assertError(await api.post(`${c}/hwpt/${plain}/invalidate`, { entries: [{ addr: '0x0', npages: 1 }] }), 400, 'EOPNOTSUPP');
    assertError(await api.post(`${c}/hwpt/${plain}/invalidate`, { entries: [{ addr: '0x0', npages: '1' }] }), 400, 'EINVAL', /npages/);

    // Attach, replace, detach.
    assertError(await api.post(`${c}/devices/${dev_id}/attach`, { pt_id: 999 }), 404, 'ENOENT');
    assertError(await api.post(`${c}/devices/999/attach`, { pt_id: plain }), 404, 'ENOENT');
    await api.ok('device.attach', 'POST', `${c}/devices/${dev_id}/attach`, { pt_id: plain });
    assertError(await api.post(`${c}/devices/${dev_id}/attach`, { pt_id: faulty }), 409, 'EBUSY');
    await api.ok('device.replace', 'POST', `${c}/devices/${dev_id}/replace`, { pt_id: faulty });
    assertError(await api.delete(`${c}/objects/${faulty}`), 409, 'EBUSY');
    assertError(await api.delete(`${c}/objects/${fault}`), 409, 'EBUSY');
    await api.ok('device.detach', 'POST', `${c}/devices/${dev_id}/detach`, {});
    assertError(await api.post(`${c}/devices/${dev_id}/detach`, {}), 400, 'EINVAL');

    // Fault queues.
    assertError(await api.post(`${c}/faults`, { flags: 1 }), 400, 'EOPNOTSUPP');
    assertError(await api.post(`${c}/faults`, { overflow: 'maybe' }), 400, 'EINVAL', /body\.overflow/);
    const st = await api.ok('fault.get', 'GET', `${c}/faults/${fault}`);
    assert.deepEqual({ ...st, counters: undefined }, { id: fault, queued: 0, outstanding: 0, connections: 0, counters: undefined });
    assert.equal(st.counters.reported, 0);
    assertError(await api.get(`${c}/faults/${ioas}`), 404, 'ENOENT');

    // Objects and destroy.
    const { objects } = await api.ok('object.list', 'GET', `${c}/objects`);
    assert.deepEqual(
      objects.map((o: Json) => [o.id, o.type]),
      [
        [dev_id, 'device'],
        [ioas, 'ioas'],
        [fault, 'fault'],
        [plain, 'hwpt_paging'],
        [faulty, 'hwpt_paging'],
      ],
    );
    assertError(await api.delete(`${c}/objects/${ioas}`), 409, 'EBUSY');
    await api.ok('object.destroy', 'DELETE', `${c}/objects/${faulty}`);
    await api.ok('object.destroy', 'DELETE', `${c}/objects/${fault}`);
    assertError(await api.delete(`${c}/objects/${fault}`), 404, 'ENOENT');
    await api.ok('context.destroy', 'DELETE', c);
    await server.api.withToken(other.token).ok('context.destroy', 'DELETE', `/v1/contexts/${other.ctx}`);
  });
});

describe('bodies, routing and errors', () => {
  let server: TestServer;
  before(async () => (server = await startServer()));
  after(() => server.close());

  test('bad bodies never give a 500', async () => {
    assertError(await server.api.post('/v1/contexts', undefined, { raw: '{"x":' }), 400, 'EINVAL', /not valid JSON/);
    assertError(await server.api.post('/v1/contexts', undefined, { raw: 'hello', contentType: 'text/plain' }), 400, 'EINVAL', /content-type/);
    assertError(await server.api.post('/v1/contexts', undefined, { raw: '[]' }), 400, 'EINVAL');
    assertError(await server.api.post('/v1/contexts', undefined, { raw: '{"__proto__":{"a":1}}' }), 400, 'EINVAL');
    // An empty JSON body is no body.
    assert.equal((await server.api.post('/v1/contexts', undefined, { raw: '' })).status, 201);
    const big = JSON.stringify({ name: 'x'.repeat((1 << 20) + 10) });
    assertError(await server.api.post(`${PLATFORM}/devices`, undefined, { raw: big }), 413, 'EMSGSIZE');
    // A route without a query schema ignores the query string; one without a body schema takes no body.
    assert.equal((await server.api.get('/healthz?x=1')).status, 200);
    assertError(await server.api.call('DELETE', `${PLATFORM}/devices/nic9`, { body: { x: 1 } }), 400, 'EINVAL', /body/);
  });

  test('unknown routes are ENOENT; a plain GET of the stream asks for the upgrade, once its token is checked', async () => {
    assertError(await server.api.get('/v1/nothing?token=abc'), 404, 'ENOENT', /no route GET \/v1\/nothing$/);
    assertError(await server.api.call('PUT', '/v1/contexts'), 404, 'ENOENT');
    assertError(await server.api.get('/v1/platform/devices/%E0%A4%A/responses'), 400, 'EINVAL');
    assertError(await server.api.get('/v1/contexts/1/faults/1/stream'), 401, 'EACCES');
    const c = await server.api.ok('context.create', 'POST', '/v1/contexts');
    assertError(await server.api.withToken(c.token).get(`/v1/contexts/${c.ctx}/faults/1/stream`), 400, 'EINVAL', /WebSocket/);
    await server.api.withToken(c.token).ok('context.destroy', 'DELETE', `/v1/contexts/${c.ctx}`);
  });

  test('/healthz, /openapi.json, /asyncapi.json, /docs', async () => {
    assert.deepEqual(await server.api.ok('healthz', 'GET', '/healthz'), { status: 'ok' });
    const doc = await server.api.get('/openapi.json');
    assert.equal(doc.status, 200);
    assert.deepEqual(doc.body, JSON.parse(JSON.stringify(openApiDocument())));
    const streams = await server.api.get('/asyncapi.json');
    assert.equal(streams.status, 200);
    assert.deepEqual(streams.body, JSON.parse(JSON.stringify(asyncApiDocument())));
    const html = await server.api.get('/docs');
    assert.equal(html.status, 200);
    assert.match(html.headers.get('content-type') ?? '', /text\/html/);
    for (const c of COMMANDS) assert.ok(html.text.includes(c.url.replace(/:(\w+)/g, '{$1}')), c.url);
    assert.ok(html.text.includes('/v1/contexts/{ctx}/faults/{id}/stream'));
    // Descriptions are rendered markdown, not raw text.
    assert.match(html.text, /Needs the <strong>admin<\/strong> bearer token/);
    assert.match(html.text, /<code>POST \/v1\/contexts<\/code>/);
    assert.ok(!html.text.includes('**admin**'), 'no raw markdown left');
    // A token box, a try-it-out form per REST route, the page's only script served locally.
    assert.match(html.text, /id="admin-token"/);
    assert.match(html.text, /id="ctx-token"/);
    assert.equal(html.text.match(/<form class="try"/g)?.length, COMMANDS.length);
    assert.deepEqual(
      [...html.text.matchAll(/<script[^>]*src="([^"]+)"/g)].map((m) => m[1]),
      ['/docs/docs.js'],
    );
    assert.match(html.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const js = await server.api.get('/docs/docs.js');
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    assert.doesNotThrow(() => new Function(js.text), 'the script parses');
    const root = await fetch(`${server.base}/`, { redirect: 'manual' });
    assert.equal(root.status, 302);
    assert.equal(root.headers.get('location'), '/ui', '/ leads to the console');
  });

  test('/metrics counts groups reported, delivered, answered, auto-answered, and open streams', async () => {
    const fx = await faultFixture(server, { faultBody: { depth: 1 } });
    await inject(server.api, 'nic0', { grpid: 1, addr: 0x1000n });
    await inject(server.api, 'nic0', { grpid: 2, addr: 0x2000n }); // over depth 1: answered by the policy
    const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
    await s.json();
    const frame = await s.json();
    await s.respond([{ cookie: frame.groups[0].cookie, code: 0 }]);
    const m = await server.api.get('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.headers.get('content-type') ?? '', /text\/plain/);
    const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(m.text)?.[1]);
    assert.equal(value('iopfd_groups_reported_total'), 1);
    assert.equal(value('iopfd_groups_delivered_total'), 1);
    assert.equal(value('iopfd_groups_answered_total{code="success"}'), 1);
    assert.equal(value('iopfd_groups_auto_answered_total{cause="overflow",code="success"}'), 1);
    assert.equal(value('iopfd_groups_overflowed_total'), 1);
    assert.equal(value('iopfd_groups_timed_out_total'), 0);
    assert.equal(value('iopfd_streams_open'), 1);
    assert.equal(value('iopfd_fault_response_latency_seconds_count{by="user"}'), 1);
    // Per device and per queue ("ctx/fault id").
    assert.equal(value('iopfd_device_groups_total{device="nic0",event="reported"}'), 1, 'the overflowed group was never queued');
    assert.equal(value('iopfd_device_groups_total{device="nic0",event="answered"}'), 1);
    assert.equal(value('iopfd_device_groups_total{device="nic0",event="auto_answered"}'), 1);
    const queue = /^iopfd_queue_groups_total\{queue="(\d+\/\d+)",event="reported"\} 1$/m.exec(m.text)?.[1];
    assert.equal(queue, `${fx.ctx}/${fx.fault}`);
    await s.close();
    await waitFor(async () => /^iopfd_streams_open 0$/m.test((await server.api.get('/metrics')).text), 2000, 'the gauge to drop');
    await fx.api.ok('context.destroy', 'DELETE', fx.prefix);
  });

  test('an unexpected exception is EIO (500) and the daemon keeps running', async () => {
    const { buildApp } = await import('../../server/app.js');
    const daemon = buildApp();
    daemon.app.get('/boom', async () => {
      throw new Error('kaboom');
    });
    const r = await daemon.app.inject({ method: 'GET', url: '/boom' });
    assert.equal(r.statusCode, 500);
    assert.deepEqual(r.json(), { errno: 'EIO', message: 'internal error' });
    assert.equal((await daemon.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    await daemon.shutdown();
  });
});
