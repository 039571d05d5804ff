// End to end: the nested-translation flow a VMM drives (docs/protocol.md:
// contexts and objects, the translation model, the fault stream). The guest's RAM is an IOAS; its stage-1 page table (vtd_s1) lives in
// that RAM, written through /ioas/:id/memory/write. A device DMA faults in
// stage 1, the group arrives on the stream, the "guest" maps the page in its
// table and the VMM answers SUCCESS: the DMA completes with the data.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { VtdS1Builder, PTE } from '../../core/hw/vtd-s1.js';
import { HWPT_FLAGS, PGFAULT_FLAGS, PERM } from '../../protocol/index.js';
import { startServer, StreamClient, type Api, type Json, type TestServer } from './helpers.js';

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** u64le() - the 8 bytes of a table entry, as wire data. */
function u64le(v: bigint): string {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b.toString('hex');
}

/**
 * A guest kernel's view of its stage-1 table: a VtdS1Builder over a local
 * copy of the entries, with table pages taken from guest RAM at @tableBase;
 * flush() writes every entry changed since the last flush into guest memory.
 */
class GuestPageTable {
  private readonly entries = new Map<bigint, bigint>();
  private readonly dirty = new Set<bigint>();
  private nextTable: bigint;
  readonly builder: VtdS1Builder;

  constructor(
    private readonly api: Api,
    private readonly ioasPath: string,
    tableBase: bigint,
  ) {
    this.nextTable = tableBase;
    this.builder = new VtdS1Builder(
      () => {
        const t = this.nextTable;
        this.nextTable += 0x1000n;
        return t;
      },
      (gpa) => this.entries.get(gpa) ?? 0n,
      (gpa, v) => {
        this.entries.set(gpa, v);
        this.dirty.add(gpa);
      },
      48,
    );
  }

  /** flush() - write the changed entries into guest RAM (one request). */
  async flush(): Promise<void> {
    const writes = [...this.dirty].map((gpa) => ({ iova: hex(gpa), data: u64le(this.entries.get(gpa)!) }));
    this.dirty.clear();
    await this.api.ok('ioas.memory.write', 'POST', `${this.ioasPath}/memory/write`, { writes });
  }

  /** setEntry() - rewrite a leaf in place (the caller owes the IOTLB invalidation). */
  setEntry(va: bigint, update: (pte: bigint) => bigint): void {
    const at = this.builder.entryAddress(va);
    assert.ok(at, `va ${hex(va)} is mapped`);
    const v = update(this.entries.get(at.gpa)!);
    this.entries.set(at.gpa, v);
    this.dirty.add(at.gpa);
  }
}

let server: TestServer;
before(async () => (server = await startServer()));
after(() => server.close());

test('nested translation: stage-1 faults are served by the guest through the fault stream', async () => {
  await server.api.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'vf0' });
  const { ctx, token } = await server.api.ok('context.create', 'POST', '/v1/contexts');
  const api = server.api.withToken(token);
  const c = `/v1/contexts/${ctx}`;

  // Guest RAM: 2 MiB of GPA space backed by the IOAS (stage 2).
  const { dev_id } = await api.ok('device.bind', 'POST', `${c}/devices`, { name: 'vf0' });
  const { id: ioas } = await api.ok('ioas.alloc', 'POST', `${c}/ioas`, {});
  await api.ok('ioas.map', 'POST', `${c}/ioas/${ioas}/map`, { iova: '0x0', length: '0x200000' });
  const { id: s2 } = await api.ok('hwpt.alloc', 'POST', `${c}/hwpt`, { dev_id, pt_id: ioas, flags: HWPT_FLAGS.NEST_PARENT });
  const { id: fault, stream } = await api.ok('fault.alloc', 'POST', `${c}/faults`, {});

  // The guest's empty stage-1 table, its root in guest RAM at 0x100000.
  const guest = new GuestPageTable(api, `${c}/ioas/${ioas}`, 0x100000n);
  await guest.flush();
  const { id: s1 } = await api.ok('hwpt.alloc', 'POST', `${c}/hwpt`, {
    dev_id,
    pt_id: s2,
    flags: HWPT_FLAGS.FAULT_ID_VALID,
    data_type: 'vtd_s1',
    data: { flags: 0, pgtbl_addr: hex(guest.builder.root), addr_width: 48 },
    fault_id: fault,
  });
  await api.ok('device.attach', 'POST', `${c}/devices/${dev_id}/attach`, { pt_id: s1 });
  const { objects } = await api.ok('object.list', 'GET', `${c}/objects`);
  assert.deepEqual(
    objects.find((o: Json) => o.id === s1),
    { id: s1, type: 'hwpt_nested', parent_id: s2, flags: HWPT_FLAGS.FAULT_ID_VALID, data_type: 'vtd_s1', pgtbl_addr: hex(guest.builder.root), addr_width: 48, fault_id: fault },
  );

  const vmm = await StreamClient.open(server.wsBase, stream, { token });
  assert.equal((await vmm.json()).type, 'hello');

  // The guest's data page at GPA 0x80000, and a buffer at VA 0x7f0000000000.
  const va = 0x7f0000000000n;
  const payload = Buffer.from('hello from the guest, via stage 1').toString('hex');
  await api.ok('ioas.memory.write', 'POST', `${c}/ioas/${ioas}/memory/write`, { writes: [{ iova: '0x80010', data: payload }] });

  // 1. A read DMA faults in stage 1; the group reaches the VMM.
  const read = server.api.ok('platform.device.dma', 'POST', '/v1/platform/devices/vf0/dma', {
    iova: hex(va + 0x10n),
    length: hex(BigInt(payload.length / 2)),
    access: 'read',
  });
  const f1 = await vmm.json();
  assert.equal(f1.type, 'faults');
  assert.equal(f1.groups.length, 1);
  const [r1] = f1.groups[0].records;
  assert.deepEqual(
    { ...r1, cookie: undefined },
    { flags: PGFAULT_FLAGS.LAST_PAGE, dev_id, pasid: 0, grpid: r1.grpid, perm: PERM.READ, __reserved: 0, addr: hex(va), length: 0, cookie: undefined },
  );
  // The guest maps the page read-only and the VMM answers SUCCESS.
  guest.builder.map(va, 0x80000n, { write: false });
  await guest.flush();
  assert.deepEqual(await vmm.respond([{ cookie: f1.groups[0].cookie, code: 'success' }]), { type: 'results', ok: 1, errors: [] });
  assert.deepEqual(await read, { status: 'ok', page_requests: 1, retries: 1, data: payload });

  // 2. A write to the read-only page is a stage-1 permission fault; the guest
  //    upgrades the entry, invalidates, and answers.
  const write = server.api.ok('platform.device.dma', 'POST', '/v1/platform/devices/vf0/dma', {
    iova: hex(va),
    length: '0x4',
    access: 'write',
    data: 'deadbeef',
  });
  const f2 = await vmm.json();
  assert.equal(f2.groups[0].records[0].perm, PERM.WRITE);
  guest.setEntry(va, (pte) => pte | PTE.RW);
  await guest.flush();
  assert.deepEqual(await api.ok('hwpt.invalidate', 'POST', `${c}/hwpt/${s1}/invalidate`, { entries: [{ addr: hex(va), npages: 1 }] }), { done: 1 });
  // intel_nested_cache_invalidate_user over REST: npages all-ones as a string (with addr 0: all) and LEAF; an error carries done.
  assert.deepEqual(await api.ok('hwpt.invalidate', 'POST', `${c}/hwpt/${s1}/invalidate`, { entries: [{ addr: '0x0', npages: '0xffffffffffffffff', flags: 1 }] }), { done: 1 });
  const bad = await api.post(`${c}/hwpt/${s1}/invalidate`, { entries: [{ addr: '0x0', npages: 1 }, { addr: '0x1000', npages: '0xffffffffffffffff' }] });
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.body.errno, 'EINVAL');
  assert.equal(bad.body.done, 1);
  await vmm.respond([{ cookie: f2.groups[0].cookie, code: 0 }]);
  assert.equal((await write).status, 'ok');
  assert.deepEqual(await api.ok('ioas.memory.read', 'POST', `${c}/ioas/${ioas}/memory/read`, { iova: '0x80000', length: '0x4' }), { data: 'deadbeef' });

  // 3. A stage-1 entry pointing outside guest RAM: stage-2 fault, not recoverable, no page request.
  guest.builder.map(va + 0x1000n, 0x40000000n, { write: true });
  await guest.flush();
  const s2fault = await server.api.ok('platform.device.dma', 'POST', '/v1/platform/devices/vf0/dma', { iova: hex(va + 0x1000n), length: '0x8', access: 'read' });
  assert.deepEqual(s2fault, { status: 'stage2_fault', page_requests: 0, retries: 0 });

  // 4. The VMM answers INVALID: the DMA ends `invalid`.
  const denied = server.api.ok('platform.device.dma', 'POST', '/v1/platform/devices/vf0/dma', { iova: hex(va + 0x5000n), length: '0x8', access: 'read' });
  const f4 = await vmm.json();
  await vmm.respond([{ cookie: f4.groups[0].cookie, code: 'invalid' }]);
  assert.equal((await denied).status, 'invalid');

  const st = await api.ok('fault.get', 'GET', `${c}/faults/${fault}`);
  assert.deepEqual([st.counters.reported, st.counters.answered_success, st.counters.answered_invalid], [3, 2, 1]);
  await vmm.close();
  await api.ok('context.destroy', 'DELETE', c);
});
