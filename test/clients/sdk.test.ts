// The SDK's REST client against a real daemon: every route of the command
// table through its typed method (the responses validated against the
// contract's schemas), the error classes, and the context handle.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, HWPT_FLAGS } from '../../protocol/index.js';
import { IopfdClient, IopfdConnectionError, IopfdError, type CallOptions } from '../../clients/sdk/index.js';
import { ADMIN_TOKEN, startDaemon, waitFor, type TestDaemon } from './helpers.js';

/** A client that records which commands it called. */
class RecordingClient extends IopfdClient {
  readonly called = new Set<string>();
  override call<T>(name: string, opts?: CallOptions): Promise<T> {
    this.called.add(name);
    return super.call<T>(name, opts);
  }
}

let d: TestDaemon;
before(async () => (d = await startDaemon()));
after(() => d.close());

test('IopfdClient: every route of the command table, typed, answers matching the contract', async () => {
  const c = new RecordingClient({ url: d.url, adminToken: ADMIN_TOKEN, validate: true });
  assert.deepEqual(await c.health(), { status: 'ok' });
  const platform = await c.platform();
  assert.ok(platform.devices.some((dev) => dev.name === 'nic0'));
  const added = await c.addDevice({ name: 'sdk0', caps: { pasid_bits: 8 } });
  assert.equal(added.caps.pasid_bits, 8);
  assert.equal(added.caps.pri, true);

  // No domain yet: the IOMMU answers the page request INVALID itself.
  assert.deepEqual(await c.dma('sdk0', { iova: '0x1000', length: '0x4', access: 'read' }), { status: 'invalid', page_requests: 1, retries: 0 });
  await c.injectPageRequest('sdk0', { grpid: 7, addr: '0x2000', perm: 1, last: true });
  const log = await c.responses('sdk0');
  assert.deepEqual(log.responses.map((r) => [r.grpid, r.code]), [[0, 'invalid'], [7, 'invalid']]);
  assert.equal((await c.responses('sdk0', log.responses[0]!.seq)).responses.length, 1);
  const walk = await c.walk('sdk0', { addr: '0x2000', perm: 1 });
  assert.deepEqual([walk.context, walk.result.kind, walk.result.stage], ['none', 'fault', 0]);
  const feed = await c.observe({ events: false });
  for await (const m of feed) {
    assert.equal(m.event, 'snapshot');
    if (m.event === 'snapshot') assert.ok(m.data.devices.some((dev) => dev.name === 'sdk0'));
    break;
  }
  feed.close();
  await c.priReset('sdk0');
  await c.svaBind('sdk0', { pasid: 3, vmas: [{ start: '0x10000', length: '0x1000' }] });
  assert.equal((await c.dma('sdk0', { pasid: 3, iova: '0x10000', length: '0x2', access: 'write', data: 'abcd' })).status, 'ok');
  await c.svaUnbind('sdk0', 3);
  await c.startTraffic('sdk0', { count: 4 });
  await waitFor(async () => !(await c.trafficStatus('sdk0')).running, 3000, 'traffic run');
  assert.equal((await c.trafficStatus('sdk0')).by_code.invalid, 4);
  assert.deepEqual([(await c.stopTraffic('sdk0')).running, (await c.stopTraffic('sdk0')).sent], [false, 4]);

  const ctx = await c.createContext();
  assert.ok(ctx.ctx >= 1 && ctx.token.length > 0);
  const { dev_id } = await ctx.bindDevice('sdk0');
  const { id: ioas } = await ctx.allocIoas();
  await ctx.map(ioas, { iova: '0x0', length: '0x10000' });
  await ctx.writeMemory(ioas, [{ iova: '0x100', data: 'c0ffee' }]);
  assert.deepEqual(await ctx.readMemory(ioas, { iova: '0x100', length: '0x3' }), { data: 'c0ffee' });
  const fault = await ctx.allocFault({ response_timeout_ms: 0 });
  assert.equal(fault.stream, `/v1/contexts/${ctx.ctx}/faults/${fault.id}/stream`);
  const { id: paging } = await ctx.allocHwpt({ dev_id, pt_id: ioas, flags: HWPT_FLAGS.FAULT_ID_VALID | HWPT_FLAGS.PASID, fault_id: fault.id });
  const { id: parent } = await ctx.allocHwpt({ dev_id, pt_id: ioas, flags: HWPT_FLAGS.NEST_PARENT });
  const { id: nested } = await ctx.allocHwpt({
    dev_id,
    pt_id: parent,
    data_type: 'vtd_s1',
    data: { flags: 0, pgtbl_addr: '0x8000', addr_width: 48 },
  });
  await ctx.attach(dev_id, { pt_id: paging });
  await ctx.replace(dev_id, { pt_id: nested });
  await ctx.attach(dev_id, { pt_id: paging, pasid: 1 });
  await ctx.detach(dev_id, { pasid: 1 });
  await ctx.detach(dev_id);
  assert.deepEqual(await ctx.invalidate(nested, [{ addr: '0x0', npages: 1 }]), { done: 1 });
  const st = await ctx.faultStatus(fault.id);
  assert.deepEqual([st.id, st.queued, st.outstanding, st.connections], [fault.id, 0, 0, 0]);
  const types = (await ctx.objects()).objects.map((o) => o.type).sort();
  assert.deepEqual(types, ['device', 'fault', 'hwpt_nested', 'hwpt_paging', 'hwpt_paging', 'ioas']);
  await ctx.destroyObject(nested);
  assert.deepEqual(await ctx.unmap(ioas, { iova: '0x0', length: '0x10000' }), { unmapped: '0x10000' });
  assert.deepEqual((await c.device('sdk0')).ctx, ctx.ctx);
  const listed = (await c.contexts()).contexts.find((x) => x.ctx === ctx.ctx);
  assert.deepEqual([listed?.devices, listed?.objects, listed?.streams], [['sdk0'], 5, 0]);
  await ctx.release();
  // A context whose token is lost: the admin force-releases it.
  const lost = await c.createContext();
  await lost.bindDevice('sdk0');
  await c.releaseContext(lost.ctx);
  assert.deepEqual([(await c.device('sdk0')).bound, (await c.device('sdk0')).ctx], [false, null]);
  await assert.rejects(c.releaseContext(lost.ctx), (e: unknown) => e instanceof IopfdError && e.errno === 'ENOENT');
  await c.removeDevice('sdk0');

  // vIOMMU, vDEVICE, vEVENTQ on the SMMUv3 device, and a vEVENTQ event read through VEventQueue.
  const actx = await c.createContext();
  const arm = (await actx.bindDevice('arm0')).dev_id;
  const { id: aioas } = await actx.allocIoas();
  await actx.map(aioas, { iova: '0x0', length: '0x10000' });
  const { id: aparent } = await actx.allocHwpt({ dev_id: arm, pt_id: aioas, flags: HWPT_FLAGS.NEST_PARENT });
  const { id: viommu } = await actx.allocViommu({ type: 'arm_smmuv3', dev_id: arm, hwpt_id: aparent });
  await actx.allocVdevice({ viommu_id: viommu, dev_id: arm, virt_id: '0x7' });
  // An STE whose CD (at GPA 0x1000) is all zero: V clear, so every DMA is C_BAD_CD.
  const { id: anested } = await actx.allocHwpt({ dev_id: arm, pt_id: viommu, data_type: 'arm_smmuv3', data: { ste: ['0x100b', '0x0'] } });
  await actx.attach(arm, { pt_id: anested });
  const vq = await actx.allocVeventq({ viommu_id: viommu, type: 'arm_smmuv3', depth: 4 });
  assert.equal(vq.stream, `/v1/contexts/${actx.ctx}/veventq/${vq.id}/stream`);
  const reader = actx.veventQueue(vq.id, { mode: 'uapi' });
  await reader.connect();
  assert.equal((await c.dma('arm0', { iova: '0x2000', length: '0x4', access: 'read' })).status, 'invalid');
  const it = reader[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.done, false);
  assert.deepEqual([first.value.sequence, first.value.lost, first.value.missed, Number(first.value.evt![0] & 0xffn), Number(first.value.evt![0] >> 32n)], [0, false, 0, 0x0a, 7]);
  assert.deepEqual(await actx.invalidateViommu(viommu, { data_type: 'arm_smmuv3', commands: [['0x30', '0x0']] }), { done: 1 });
  const vst = await actx.veventqStatus(vq.id);
  assert.deepEqual([vst.queued, vst.sequence, vst.connections], [0, 1, 1]);
  reader.close();
  assert.equal((await it.next()).done, true);
  await actx.release();

  assert.deepEqual([...c.called].sort(), COMMANDS.map((cmd) => cmd.name).sort(), 'every command is called through the SDK');
});

test('IopfdClient: daemon refusals are IopfdError with errno, status and message', async () => {
  const err = await d.client.removeDevice('nope').catch((e: unknown) => e);
  assert.ok(err instanceof IopfdError);
  assert.equal(err.errno, 'ENOENT');
  assert.equal(err.status, 404);
  assert.match(err.message, /nope/);

  const wrongAdmin = new IopfdClient({ url: d.url, adminToken: 'wrong' });
  await assert.rejects(wrongAdmin.platform(), (e: unknown) => e instanceof IopfdError && e.errno === 'EACCES' && e.status === 401);
  await assert.rejects(d.client.addDevice({ name: 'nic0' }), (e: unknown) => e instanceof IopfdError && e.errno === 'EEXIST' && e.status === 409);
  await assert.rejects(d.client.dma('nic0', { iova: '0x0', length: '0x4', access: 'write' }), (e: unknown) => e instanceof IopfdError && e.errno === 'EINVAL');

  const ctx = await d.client.createContext();
  const forged = d.client.context(ctx.ctx, 'not-the-token');
  await assert.rejects(forged.objects(), (e: unknown) => e instanceof IopfdError && e.errno === 'EACCES');
  await assert.rejects(ctx.map(99, { iova: '0x0', length: '0x1000' }), (e: unknown) => e instanceof IopfdError && e.errno === 'ENOENT' && e.status === 404);
  await ctx.release();
});

test('IopfdClient: an unreachable daemon is IopfdConnectionError', async () => {
  const closed = new IopfdClient({ url: 'http://127.0.0.1:1' });
  const err = await closed.health().catch((e: unknown) => e);
  assert.ok(err instanceof IopfdConnectionError, String(err));
  assert.match(err.message, /127\.0\.0\.1:1/);
});
