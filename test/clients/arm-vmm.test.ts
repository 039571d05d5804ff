// The arm VMM handler (--arch arm) against a real daemon on 127.0.0.1: a
// device behind the SMMUv3 model stalls on the guest's empty AArch64 tables,
// the stall travels through the fault queue into the guest's event queue in
// its RAM, the guest maps the page (or refuses), issues its TLBI, and its
// CMD_RESUME answers the fault queue; a PASID whose CD does not stall
// terminates, and its events reach the guest through the vEVENTQ.
//
// "Exactly one response per stall" is checked from the device's side: a
// stall resumed RETRY makes its DMA retry once (the DMA's `retries`), one
// resumed ABORT ends its DMA `invalid`, one never answered leaves it
// `timeout`, and the device's response log holds one entry per CMD_RESUME
// (Success for RETRY, Invalid for ABORT); and from the daemon's: its fault
// queues' counters.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatU64, hexOf } from '../../protocol/index.js';
import {
  ArmVmm,
  ArmVmmCommandError,
  ArmVmmConfigError,
  CMD_OP,
  GuestArmPageTable,
  STE_S1DSS_SSID0,
  steWords,
  type ArmVmmOptions,
  type ArmVmmStats,
} from '../../clients/vmm/index.js';
import type { DmaResult } from '../../clients/sdk/index.js';
import { ADMIN_TOKEN, spawnProgram, startDaemon, waitFor, type TestDaemon } from './helpers.js';

let d: TestDaemon;
before(async () => (d = await startDaemon()));
after(() => d.close());

const RW = 0x1000_0000n;
const RO = 0x2000_0000n;
const OUTSIDE = 0x3000_0000n;
const ALLOW = [
  { start: RW, length: 0x40_0000n, write: true },
  { start: RO, length: 0x10_0000n, write: false },
];

let deviceNo = 0;
async function newArmDevice(): Promise<string> {
  const name = `armvm${deviceNo++}`;
  await d.client.addDevice({ name, iommu: 'smmu0' });
  return name;
}

function start(opts: Partial<ArmVmmOptions> & { devices: string[] }): Promise<ArmVmm> {
  return ArmVmm.start({ url: d.url, adminToken: ADMIN_TOKEN, allow: ALLOW, ...opts });
}

interface Dma {
  device: string;
  pasid?: number | undefined;
  iova: bigint;
  write: boolean;
}

/** run() - the DMAs, @concurrency at a time; their results in order. */
async function run(dmas: readonly Dma[], concurrency = 8): Promise<DmaResult[]> {
  const out: DmaResult[] = new Array(dmas.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < dmas.length; i = next++) {
      const m = dmas[i]!;
      out[i] = await d.client.dma(m.device, {
        ...(m.pasid === undefined ? {} : { pasid: m.pasid }),
        iova: formatU64(m.iova),
        length: '0x8',
        access: m.write ? 'write' : 'read',
        ...(m.write ? { data: hexOf(new Uint8Array(8).fill(i & 0xff)) } : {}),
        timeout_ms: 30000,
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

const sum = (rs: readonly DmaResult[], f: (r: DmaResult) => number): number => rs.reduce((n, r) => n + f(r), 0);

/**
 * assertOneResponsePerStall() - no DMA timed out (of @all), and the DMAs
 * that could stall (@stalling) saw exactly the VMM's answers: one retry per
 * RETRY, one invalid end per ABORT; the response logs of @devices (fresh
 * for the test) hold exactly one CMD_RESUME per stall; the daemon's fault
 * queues saw every stall answered once, by the VMM.
 */
async function assertOneResponsePerStall(devices: readonly string[], stalling: readonly DmaResult[], all: readonly DmaResult[], s: ArmVmmStats): Promise<void> {
  const logged = (await Promise.all(devices.map((dev) => d.client.responses(dev)))).flatMap((r) => r.responses);
  assert.deepEqual(
    [logged.length, logged.filter((r) => r.code === 'success').length, logged.filter((r) => r.code === 'invalid').length],
    [s.stalls, s.success, s.invalid],
    'one CMD_RESUME in the device logs per stall',
  );
  assert.deepEqual(
    all.filter((r) => r.status === 'timeout'),
    [],
  );
  assert.equal(
    sum(stalling, (r) => r.retries),
    s.success,
  );
  assert.equal(
    sum(stalling, (r) => Number(r.status === 'invalid')),
    s.invalid,
  );
  assert.equal(s.stalls, s.success + s.invalid);
  assert.deepEqual(s.faultQueues, { reported: s.stalls, answered: s.stalls, auto: 0 });
}

test('arm VMM: stalls served by the guest in its own tables, one response each; S=0 faults arrive as events; TLBI and CFGI forwarded', async () => {
  const devices = [await newArmDevice(), await newArmDevice()];
  const vmm = await start({ devices, pasids: [1, 2], terminate: [3], vsidBase: 0x40 });
  assert.deepEqual(
    vmm.bindings.map((b) => [b.device, b.vsid]),
    [
      [devices[0], 0x40],
      [devices[1], 0x41],
    ],
  );
  // The host objects: a vDEVICE per device with its vSID, a nested hwpt on the vIOMMU with the guest's STE and a fault queue.
  const objects = (await vmm.ctx.objects()).objects as Array<Record<string, unknown>>;
  for (const b of vmm.bindings) {
    assert.equal(objects.find((o) => o.id === b.vdeviceId)?.type, 'vdevice');
    const hwpt = objects.find((o) => o.id === b.hwptId)!;
    assert.equal(hwpt.type, 'hwpt_nested');
    assert.equal(hwpt.fault_id, b.faultId);
  }

  // First a read, then a write of the same pages: mapped read-only, then upgraded (TLBI_NH_VA).
  const upgrade: Dma[] = [0, 1, 2].map((k) => ({ device: devices[0]!, pasid: 1, iova: RW + 0x10_0000n + BigInt(k) * 0x1000n, write: false }));
  const first = await run(upgrade, 1);
  const second = await run(
    upgrade.map((m) => ({ ...m, write: true })),
    1,
  );
  assert.deepEqual(
    [...first, ...second].map((r) => [r.status, r.retries]),
    Array(6).fill(['ok', 1]),
  );

  // Then a mixed burst: both devices, both stalling PASIDs and the RID (CD 0), writes into the
  // read-only range and accesses outside every range (both ABORT), and PASID 3 (CD.S = 0: events).
  const stallDmas: Dma[] = [];
  for (let k = 0; k < 48; k++) {
    const device = devices[k % 2]!;
    stallDmas.push({ device, pasid: [1, 2, undefined][k % 3], iova: RW + BigInt(k >> 1) * 0x800n, write: (k >> 2) % 2 === 1 });
  }
  for (let k = 0; k < 6; k++) stallDmas.push({ device: devices[k % 2]!, pasid: 2, iova: RO + BigInt(k) * 0x1000n, write: k % 2 === 1 });
  for (let k = 0; k < 4; k++) stallDmas.push({ device: devices[k % 2]!, pasid: 1, iova: OUTSIDE + BigInt(k) * 0x1000n, write: false });
  const eventDmas: Dma[] = [];
  for (let k = 0; k < 10; k++) eventDmas.push({ device: devices[k % 2]!, pasid: 3, iova: RW + BigInt(k) * 0x1000n, write: false });
  const all = await run([...stallDmas, ...eventDmas]);
  const stallResults = [...first, ...second, ...all.slice(0, stallDmas.length)];
  const eventResults = all.slice(stallDmas.length);

  // The written bytes sit in the guest page its table maps the VA to.
  const target = upgrade[0]!.iova;
  const leaf = (await vmm.guest.addressSpace(1)!.walk(target, false))!;
  assert.equal(GuestArmPageTable.isWritable(leaf.pte), true);
  const page = leaf.pte & 0x0000_ffff_ffff_f000n;
  const bytes = await vmm.mem.read(page, 8);
  assert.equal(hexOf(bytes), hexOf(new Uint8Array(8).fill(0)), 'the bytes of the first write DMA of the second run');

  const s = await vmm.stop();
  assert.deepEqual(vmm.errors, []);
  // No DMA was left waiting; device side: one RETRY = one retry of its DMA, one ABORT = one invalid DMA; daemon side: each stall answered once.
  await assertOneResponsePerStall(devices, stallResults, [...stallResults, ...eventResults], s);
  assert.equal(s.invalid, 3 + 4, 'writes into the read-only range, and the accesses outside');
  assert.deepEqual([s.outstanding, s.staleAnswers, s.resumesUnmatched, s.evtqFull, s.lost, s.unaccounted], [0, 0, 0, 0, 0, 0]);
  // PASID 3: terminated, never stalled, one event each, seen by the guest with its vSID.
  assert.deepEqual(
    eventResults.map((r) => [r.status, r.retries]),
    Array(10).fill(['invalid', 0]),
  );
  assert.equal(s.events, 10);
  assert.deepEqual(s.veventq, { sequence: 10, lost: 0, queued: 0 });
  assert.deepEqual(s.guest.events, { F_TRANSLATION: 10 });
  assert.equal(s.guest.records, s.stalls + s.events);
  assert.deepEqual([s.guest.stalls, s.guest.retried, s.guest.aborted], [s.stalls, s.success, s.invalid]);
  // Invalidations: a CFGI_CD per (vSID, SSID 0-3), a TLBI_NH_VA per upgrade.
  assert.equal(s.cfgi, 2 * 4);
  assert.ok(s.guest.upgrades >= 3);
  assert.equal(s.tlbi, s.guest.upgrades);
  assert.equal(s.commands, s.cfgi + s.tlbi);
});

test('arm VMM: the guest STE read from its stream table is the hwpt; a changed STE replaces the hwpt, the same one does nothing, bad ones are refused; CFGI_STE is never forwarded', async () => {
  const device = await newArmDevice();
  const vmm = await start({ devices: [device], pasids: [1], vsidBase: 0x40 });
  const [b0] = vmm.bindings;
  const vsid = b0!.vsid;
  const u64s = (bytes: Uint8Array): bigint[] =>
    Array.from({ length: bytes.length / 8 }, (_, i) => new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(i * 8, true));
  // The STE in guest RAM (read back through the daemon) is the binding's, and the daemon walks with its fields.
  const inRam = u64s(await vmm.mem.read(vmm.guest.strtabBase + BigInt(vsid) * 64n, 64));
  assert.deepEqual(inRam, [...b0!.ste, 0n, 0n, 0n, 0n, 0n, 0n]);
  assert.deepEqual(b0!.ste, vmm.guest.steOf(vsid));
  const walk = await d.client.walk(device, { addr: formatU64(RW), pasid: 1 });
  assert.equal(walk.context, 'smmuv3');
  assert.equal(BigInt(walk.ste!.s1_context_ptr), vmm.guest.cdAddress(vsid, 0));
  let s = vmm.stats();
  assert.deepEqual([s.steInstalls, s.steReplaced, s.steUnchanged, s.steErrors], [1, 0, 0, 0]);
  assert.equal(s.commands, s.cfgi, 'only the CFGI_CDs were forwarded');

  // From here on, every command forwarded to the vIOMMU is seen.
  const forwarded: number[] = [];
  const invalidate = vmm.ctx.invalidateViommu.bind(vmm.ctx);
  vmm.ctx.invalidateViommu = (id, body) => {
    for (const [w0] of body.commands) forwarded.push(Number(BigInt(w0) & 0xffn));
    return invalidate(id, body);
  };
  assert.deepEqual(
    (await run([{ device, pasid: 1, iova: RW, write: false }])).map((r) => [r.status, r.retries]),
    [['ok', 1]],
  );

  // The guest moves its CD table (a copy in a fresh page) and installs the changed STE.
  const moved = vmm.mem.allocPage();
  const cds = u64s(await vmm.mem.read(vmm.guest.cdAddress(vsid, 0), 128));
  await vmm.mem.writeU64s(cds.map((w, i) => [moved + BigInt(i) * 8n, w] as const));
  const changed = steWords({ cdTable: moved, cdMax: vmm.guest.cdMax, s1dss: STE_S1DSS_SSID0 });
  await vmm.guest.installSte(vsid, changed);
  const [b1] = vmm.bindings;
  assert.notEqual(b1!.hwptId, b0!.hwptId);
  assert.deepEqual([b1!.faultId, b1!.ste], [b0!.faultId, changed]);
  const objects = (await vmm.ctx.objects()).objects as Array<Record<string, unknown>>;
  assert.equal(
    objects.find((o) => o.id === b0!.hwptId),
    undefined,
    'the old hwpt is destroyed',
  );
  assert.deepEqual(
    objects.filter((o) => o.type === 'hwpt_nested').map((o) => [o.id, o.fault_id]),
    [[b1!.hwptId, b1!.faultId]],
  );
  assert.equal(BigInt((await d.client.walk(device, { addr: formatU64(RW), pasid: 1 })).ste!.s1_context_ptr), moved);
  // The same STE again: nothing changes.
  await vmm.guest.installSte(vsid, changed);
  assert.equal(vmm.bindings[0]!.hwptId, b1!.hwptId);
  // A vSID without a device (inside the stream table), and an STE the host refuses (Config stage-2): CERROR_ILL, nothing changes.
  await assert.rejects(vmm.guest.installSte(vsid + 1, changed), (e: unknown) => e instanceof ArmVmmCommandError && /CERROR_ILL.*no device/.test(e.message));
  const s2 = [(changed[0] & ~0xen) | (6n << 1n), changed[1]] as const;
  await assert.rejects(vmm.guest.installSte(vsid, s2), (e: unknown) => e instanceof ArmVmmCommandError && /CERROR_ILL/.test(e.message));
  assert.deepEqual([vmm.bindings[0]!.hwptId, vmm.bindings[0]!.ste], [b1!.hwptId, changed]);
  await vmm.guest.installSte(vsid, changed);

  // The device is still served after the replace: a new stall (a write to the page mapped read-only: TLBI_NH_VA) is answered once.
  const after = await run([{ device, pasid: 1, iova: RW, write: true }]);
  assert.deepEqual(
    after.map((r) => [r.status, r.retries]),
    [['ok', 1]],
  );
  s = await vmm.stop();
  assert.equal(vmm.errors.length, 2, 'the two refused STEs');
  assert.deepEqual([s.steInstalls, s.steReplaced, s.steUnchanged, s.steErrors], [6, 1, 2, 2]);
  assert.deepEqual([s.stalls, s.success, s.invalid, s.lost, s.outstanding], [2, 2, 0, 0, 0]);
  assert.deepEqual(s.faultQueues, { reported: 2, answered: 2, auto: 0 });
  // Of the guest's commands since start only the TLBI_NH_VA reached the vIOMMU: none of the five CFGI_STEs.
  assert.deepEqual(forwarded, [CMD_OP.TLBI_NH_VA]);
  assert.deepEqual([s.tlbi, s.commands], [1, s.cfgi + 1]);
});

test('arm VMM: a guest event queue of one record and a vEVENTQ of one event overflow; stalls are answered at once, losses are told, nothing is lost', async () => {
  const device = await newArmDevice();
  const vmm = await start({ devices: [device], pasids: [1], terminate: [2], evtqLog2: 0, veventqDepth: 1 });
  const dmas: Dma[] = [];
  for (let k = 0; k < 32; k++) dmas.push({ device, pasid: k % 2 === 0 ? 1 : 2, iova: RW + BigInt(k) * 0x1000n, write: false });
  const results = await run(dmas, 16);
  const s = await vmm.stop();
  await assertOneResponsePerStall(
    [device],
    results.filter((_, k) => k % 2 === 0),
    results,
    s,
  );
  assert.equal(s.lost, 0);
  // Every record was either read by the guest or dropped on the full queue (and a drop raised the overflow flag).
  assert.equal(s.guest.records + s.evtqDropped, s.stalls + s.events);
  assert.ok(s.evtqFull <= s.evtqDropped);
  assert.equal(s.guest.aborted + s.evtqFull, s.invalid);
  if (s.evtqDropped > 0) assert.ok(s.overflows >= 1 && s.guest.overflows >= 1, JSON.stringify(s));
  // Every S=0 fault (16) was received or known lost, the VMM's count of the losses is the daemon's,
  // and a loss raised the guest's overflow flag.
  assert.equal(s.events + s.eventsLost, 16);
  assert.deepEqual([s.veventq.sequence, s.veventq.lost, s.veventq.queued, s.unaccounted], [16, s.eventsLost, 0, 0]);
  if (s.eventsLost > 0) assert.ok(s.overflows >= 1 && s.guest.overflows >= 1, JSON.stringify(s));
});

test('arm VMM: streams cut mid-traffic reconnect; stalls are still answered once, events read for the dead connection count as lost', async () => {
  const device = await newArmDevice();
  const vmm = await start({ devices: [device], pasids: [1], terminate: [2] });
  const dmas: Dma[] = [];
  for (let k = 0; k < 40; k++) dmas.push({ device, pasid: k % 2 === 0 ? 1 : 2, iova: RW + BigInt(k) * 0x1000n, write: k % 4 === 0 });
  const before = await run(dmas.slice(0, 12));
  const sockets = d.streamSockets.length;
  const during = run(dmas.slice(12));
  // Cut the fault stream and the vEVENTQ stream while DMAs are in flight.
  setImmediate(() => {
    for (const sock of d.streamSockets.slice(0, sockets)) sock.destroy();
  });
  const results = [...before, ...(await during)];
  const s = await vmm.stop();
  assert.deepEqual(vmm.errors, []);
  await assertOneResponsePerStall(
    [device],
    results.filter((_, k) => k % 2 === 0),
    results,
    s,
  );
  assert.deepEqual([s.outstanding, s.lost, s.unaccounted], [0, 0, 0]);
  // Every S=0 fault (20) reached the guest or is known lost (read by the daemon for the cut connection).
  assert.equal(s.events + s.eventsLost, 20);
  assert.equal(s.veventq.sequence, 20);
});

test('arm VMM: devices not behind an SMMUv3 are refused (with or without the admin token); bad options too', async () => {
  await assert.rejects(start({ devices: ['nic0'] }), (e: unknown) => e instanceof ArmVmmConfigError && /nic0 is behind dmar0 \(vtd\)/.test(e.message));
  await assert.rejects(
    ArmVmm.start({ url: d.url, devices: ['nic0'], allow: ALLOW }),
    (e: unknown) => e instanceof ArmVmmConfigError && /SMMUv3/.test(e.message),
  );
  const device = await newArmDevice();
  await assert.rejects(start({ devices: [device], pasids: [1], terminate: [1] }), ArmVmmConfigError);
  // Nothing was left behind: the device is free again.
  assert.equal((await d.client.device(device)).bound, false);
  assert.equal((await d.client.device('nic0')).bound, false);
});

test('vmm --arch arm process: ready line, a stall served, statistics at SIGTERM; usage errors exit 2', async () => {
  const device = await newArmDevice();
  const args = ['--arch', 'arm', '--device', device, '--pasid', '1', '--allow', '0x10000000:1M', '--json'];
  const ENV = { IOPFD_URL: d.url, IOPFD_ADMIN_TOKEN: ADMIN_TOKEN };
  const vmm = spawnProgram('clients/vmm/main.js', args, ENV);
  await waitFor(() => vmm.stdout.includes('\n'), 15000, 'the ready line');
  const ready = JSON.parse(vmm.stdout.split('\n')[0]!);
  assert.deepEqual([ready.event, ready.arch, ready.bindings.length, ready.bindings[0].device, ready.bindings[0].vsid], ['ready', 'arm', 1, device, '0x100']);
  assert.deepEqual(await d.client.dma(device, { pasid: 1, iova: '0x10000000', length: '0x4', access: 'read' }), {
    status: 'ok',
    page_requests: 0,
    retries: 1,
    data: '00000000',
  });
  vmm.proc.kill('SIGTERM');
  assert.equal(await vmm.exited, 0);
  const stats = JSON.parse(vmm.stdout.trim().split('\n').at(-1)!);
  assert.deepEqual([stats.event, stats.arch, stats.stalls, stats.success, stats.outstanding, stats.lost], ['stats', 'arm', 1, 1, 0, 0]);

  const exitOf = async (a: string[]): Promise<[number | null, string]> => {
    const p = spawnProgram('clients/vmm/main.js', a, ENV);
    return [await p.exited, p.stderr];
  };
  const [c1, e1] = await exitOf(['--arch', 'arm', '--device', 'nic0']);
  assert.equal(c1, 2);
  assert.match(e1, /SMMUv3-model IOMMU: nic0 is behind dmar0/);
  assert.equal((await exitOf(['--arch', 'riscv', '--device', device]))[0], 2);
  assert.equal((await exitOf(['--device', 'nic0', '--terminate-pasid', '3']))[0], 2);
  assert.equal((await exitOf(['--arch', 'arm', '--device', device, '--prq-depth', '4']))[0], 2);
});
