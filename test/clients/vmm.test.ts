// The VMM handler against a real daemon: device DMAs fault in the guest's
// stage 1, the groups travel through the fault stream into the guest's
// virtual PRQ, the guest maps pages in its own vtd_s1 tables, and the DMAs
// complete. The test walks the guest's tables itself (memory/read) to find
// the guest page a VA maps to, and reads the DMA's bytes there.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bytesOfHex, formatU64, hexOf } from '../../protocol/index.js';
import { Vmm, type VmmOptions } from '../../clients/vmm/index.js';
import type { IopfdContext } from '../../clients/sdk/index.js';
import { ADMIN_TOKEN, spawnProgram, startDaemon, waitFor, type TestDaemon } from './helpers.js';

let d: TestDaemon;
before(async () => (d = await startDaemon()));
after(() => d.close());

const ALLOW = [
  { start: 0x7f0000000000n, length: 0x100000n, write: true },
  { start: 0x7f1000000000n, length: 0x10000n, write: false },
];

let deviceNo = 0;
async function newDevice(): Promise<string> {
  const name = `vmm${deviceNo++}`;
  await d.client.addDevice({ name });
  return name;
}

function start(opts: Partial<VmmOptions> & { devices: string[] }): Promise<Vmm> {
  return Vmm.start({ url: d.url, adminToken: ADMIN_TOKEN, allow: ALLOW, ...opts });
}

async function readU64(ctx: IopfdContext, ioas: number, gpa: bigint): Promise<bigint> {
  const b = bytesOfHex((await ctx.readMemory(ioas, { iova: formatU64(gpa), length: '0x8' })).data);
  return new DataView(b.buffer).getBigUint64(0, true);
}

/** The test's own 4-level vtd_s1 walk over guest memory: the leaf entry of @va, or 0n. */
async function leafOf(vmm: Vmm, pasid: number | undefined, va: bigint): Promise<bigint> {
  let table = vmm.guest.addressSpace(pasid).root;
  for (let level = 4; level >= 1; level--) {
    const pte = await readU64(vmm.ctx, vmm.mem.ioas, table + ((va >> BigInt(12 + 9 * (level - 1))) & 511n) * 8n);
    if ((pte & 1n) === 0n || level === 1) return pte;
    table = pte & 0x000f_ffff_ffff_f000n;
  }
  return 0n;
}

const ADDR = 0x000f_ffff_ffff_f000n;

test('VMM: a DMA write faults, the guest maps the page, the bytes land in the guest page its table points at', async () => {
  const device = await newDevice();
  const vmm = await start({ devices: [device] });
  const [b] = vmm.bindings;
  const objects = (await vmm.ctx.objects()).objects;
  assert.deepEqual(
    objects.find((o) => o.id === b!.hwptId),
    {
      id: b!.hwptId,
      type: 'hwpt_nested',
      parent_id: objects.find((o) => o.type === 'hwpt_paging')!.id,
      flags: 4,
      data_type: 'vtd_s1',
      pgtbl_addr: formatU64(vmm.guest.addressSpace(undefined).root),
      addr_width: 48,
      fault_id: b!.faultId,
    },
  );

  const va = 0x7f0000003000n;
  const payload = hexOf(new TextEncoder().encode('written by the device through stage 1'));
  const r = await d.client.dma(device, { iova: formatU64(va + 0x10n), length: formatU64(BigInt(payload.length / 2)), access: 'write', data: payload });
  assert.deepEqual(r, { status: 'ok', page_requests: 1, retries: 1, data: payload });

  const leaf = await leafOf(vmm, undefined, va);
  assert.equal(leaf & 0x7n, 0x7n, 'present, writable, user');
  assert.equal(leaf >> 63n, 1n, 'execute-disable');
  const gpa = leaf & ADDR;
  assert.ok(gpa >= vmm.mem.base && gpa < vmm.mem.base + vmm.mem.size, 'a page of guest RAM');
  const back = await vmm.ctx.readMemory(vmm.mem.ioas, { iova: formatU64(gpa + 0x10n), length: formatU64(BigInt(payload.length / 2)) });
  assert.equal(back.data, payload);

  // A read of the same page needs no fault now.
  assert.deepEqual(await d.client.dma(device, { iova: formatU64(va + 0x10n), length: '0x7', access: 'read' }), {
    status: 'ok',
    page_requests: 0,
    retries: 0,
    data: payload.slice(0, 14),
  });

  const st = await vmm.stop();
  assert.deepEqual([st.groups, st.success, st.invalid, st.outstanding, st.guest.pagesMapped], [1, 1, 0, 0, 1]);
  assert.equal(st.latencyMs.count, 1);
  assert.deepEqual(vmm.errors, []);
  assert.deepEqual(
    (await d.client.responses(device)).responses.map((x) => x.code),
    ['success'],
  );
});

test('VMM: read maps read-only, a later write upgrades the entry and invalidates; outside the ranges is INVALID', async () => {
  const device = await newDevice();
  const vmm = await start({ devices: [device], mode: 'json' });
  const va = 0x7f0000010000n;
  assert.equal((await d.client.dma(device, { iova: formatU64(va), length: '0x8', access: 'read' })).status, 'ok');
  assert.equal((await leafOf(vmm, undefined, va)) & 0x2n, 0n, 'mapped read-only');
  const w = await d.client.dma(device, { iova: formatU64(va), length: '0x2', access: 'write', data: 'beef' });
  assert.deepEqual([w.status, w.page_requests], ['ok', 1]);
  const leaf = await leafOf(vmm, undefined, va);
  assert.equal(leaf & 0x2n, 0x2n, 'writable now');
  assert.equal((await vmm.ctx.readMemory(vmm.mem.ioas, { iova: formatU64(leaf & ADDR), length: '0x2' })).data, 'beef');

  // Outside every range, and a write to the read-only range: INVALID.
  assert.equal((await d.client.dma(device, { iova: '0x7f2000000000', length: '0x8', access: 'read' })).status, 'invalid');
  assert.equal((await d.client.dma(device, { iova: '0x7f1000000000', length: '0x2', access: 'write', data: 'aaaa' })).status, 'invalid');
  assert.equal((await d.client.dma(device, { iova: '0x7f1000000000', length: '0x2', access: 'read' })).status, 'ok');

  const st = await vmm.stop();
  assert.deepEqual([st.groups, st.success, st.invalid, st.invalidations, st.guest.upgrades, st.guest.pagesMapped], [5, 3, 2, 1, 1, 2]);
});

test('VMM: one fault queue and nested hwpt per PASID, attached at the PASID; multi-page DMAs', async () => {
  const device = await newDevice();
  const vmm = await start({ devices: [device], pasids: [1, 2] });
  assert.deepEqual(
    vmm.bindings.map((b) => b.pasid),
    [1, 2],
  );
  assert.notEqual(vmm.guest.addressSpace(1).root, vmm.guest.addressSpace(2).root);
  const objects = (await vmm.ctx.objects()).objects;
  assert.deepEqual(
    objects.filter((o) => o.type === 'hwpt_nested').map((o) => o.flags),
    [12, 12],
    'FAULT_ID_VALID | PASID',
  );
  assert.equal(objects.filter((o) => o.type === 'fault').length, 2);

  const data = 'ab'.repeat(0x2000);
  const r = await d.client.dma(device, { pasid: 2, iova: '0x7f0000020800', length: '0x2000', access: 'write', data });
  assert.deepEqual([r.status, r.page_requests], ['ok', 3], 'three pages in one group');
  assert.equal(await leafOf(vmm, 1, 0x7f0000020000n), 0n, 'PASID 1 has its own table');
  for (const page of [0x7f0000020000n, 0x7f0000021000n, 0x7f0000022000n]) assert.equal((await leafOf(vmm, 2, page)) & 1n, 1n);
  assert.equal((await d.client.dma(device, { pasid: 1, iova: '0x7f0000020800', length: '0x4', access: 'read' })).data, '00000000');
  const st = await vmm.stop();
  assert.deepEqual([st.groups, st.guest.requests, st.guest.pagesMapped], [2, 4, 4]);
});

test('VMM: a full virtual PRQ answers SUCCESS at once; the device retries', async () => {
  const device = await newDevice();
  const vmm = await start({ devices: [device], prqDepth: 1 });
  const dmas = [0, 1, 2, 3].map((i) => d.client.dma(device, { iova: formatU64(0x7f0000040000n + BigInt(i) * 0x1000n), length: '0x4', access: 'read' }));
  const results = await Promise.all(dmas);
  const st = await vmm.stop();
  assert.ok(st.prqFull >= 1, `prqFull ${st.prqFull}`);
  // A DMA whose retries keep meeting a full queue ends invalid (3 fruitless rounds), never timeout.
  assert.ok(
    results.every((r) => r.status === 'ok' || r.status === 'invalid'),
    JSON.stringify(results),
  );
  assert.ok(results.some((r) => r.status === 'ok'));
  assert.equal(st.outstanding, 0);
  const log = (await d.client.responses(device)).responses;
  assert.equal(log.filter((x) => x.code === 'success').length, st.success);
});

test('VMM: a guest Response Failure (out of guest RAM) becomes INVALID plus a PRI reset', async () => {
  const device = await newDevice();
  // 5 pages of RAM: the root table, three intermediate tables, one data page.
  const vmm = await start({ devices: [device], ramSize: 0x5000n });
  assert.equal((await d.client.dma(device, { iova: '0x7f0000000000', length: '0x4', access: 'read' })).status, 'ok');
  assert.equal((await d.client.dma(device, { iova: '0x7f0000001000', length: '0x4', access: 'read' })).status, 'invalid');
  const st = await vmm.stop();
  assert.deepEqual([st.failures, st.invalid, st.guest.failedRequests], [1, 1, 1]);
  assert.deepEqual(vmm.errors, []);
  assert.deepEqual(
    (await d.client.responses(device)).responses.map((x) => x.code),
    ['success', 'invalid'],
    'the device never sees Response Failure',
  );
  const dev = (await d.client.platform()).devices.find((x) => x.name === device)!;
  assert.deepEqual([dev.pri_enabled, dev.pri_status], [true, { response_failure: false, stopped: false }]);
});

test('VMM: start() fails with the daemon errno (EBUSY: the device is bound elsewhere)', async () => {
  const device = await newDevice();
  const other = await d.client.createContext();
  await other.bindDevice(device);
  await assert.rejects(start({ devices: [device] }), (e: unknown) => (e as { errno?: string }).errno === 'EBUSY');
  await other.release();
});

test('VMM process: ready line and file, serves faults, statistics at SIGTERM; exits when the daemon goes', async () => {
  const device = await newDevice();
  const readyFile = join(mkdtempSync(join(tmpdir(), 'vmm-')), 'ready');
  const args = ['--device', device, '--pasid', '3', '--allow', '0x7f0000000000:1M', '--ready-file', readyFile, '--json', '--mode', 'json'];
  const vmm = spawnProgram('clients/vmm/main.js', args, { IOPFD_URL: d.url, IOPFD_ADMIN_TOKEN: ADMIN_TOKEN });
  await waitFor(() => vmm.stdout.includes('\n'), 10000, 'the ready line');
  const ready = JSON.parse(vmm.stdout.split('\n')[0]!);
  assert.equal(ready.event, 'ready');
  assert.deepEqual(
    ready.bindings.map((b: { device: string; pasid: number }) => [b.device, b.pasid]),
    [[device, 3]],
  );
  assert.ok(existsSync(readyFile));
  assert.equal((await d.client.dma(device, { pasid: 3, iova: '0x7f0000000000', length: '0x4', access: 'read' })).status, 'ok');
  vmm.proc.kill('SIGTERM');
  assert.equal(await vmm.exited, 0);
  const stats = JSON.parse(vmm.stdout.trim().split('\n').at(-1)!);
  assert.deepEqual([stats.event, stats.groups, stats.success, stats.outstanding], ['stats', 1, 1, 0]);
  assert.equal(existsSync(readyFile), false, 'the ready file is removed');

  // A daemon of its own that goes away: the streams end, and so does the VMM (no daemon: exit 3).
  const own = await startDaemon();
  const orphan = spawnProgram('clients/vmm/main.js', ['--device', 'nic0', '--url', own.url, '--admin-token', ADMIN_TOKEN]);
  await waitFor(() => orphan.stdout.includes('vmm: ready'), 10000, 'the second VMM');
  await own.close();
  assert.equal(await orphan.exited, 3);

  assert.equal(await spawnProgram('clients/vmm/main.js', ['--device', 'x', '--allow', '0x1001:4K']).exited, 2);
});
