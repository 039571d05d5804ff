// The arm guest's own copies of the SMMUv3 and AArch64 layouts, checked
// against the daemon's model on the same bytes: tables the guest builds are
// walked by core/hw's walker, its STE and CDs decoded and used by
// smmuStage1, its event records and commands read by core/hw's decoders.
// And the virtual event queue's ring: wrap bit, full, overflow flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { walkArmLpae } from '../../core/hw/arm-lpae.js';
import {
  CD_SIZE,
  decodeCd,
  decodeEvent,
  decodeSte,
  encodeEvent,
  EVT_ID as CORE_EVT_ID,
  smmuStage1,
  STE_CFG_S1_TRANS as CORE_S1_TRANS,
} from '../../core/hw/smmuv3.js';
import { CMDQ_OP } from '../../core/drivers/arm-vsmmu.js';
import {
  ArmGuest,
  CD_BYTES,
  cmdCfgiCd,
  cmdCfgiSte,
  cmdOpcode,
  cmdSid,
  cmdResume,
  cmdSync,
  cmdTlbiNhVa,
  CMD_OP,
  EventQueueReader,
  eventWords,
  EVT_ID,
  GuestArmPageTable,
  GuestOutOfMemory,
  parseEvent,
  parseResume,
  Q_OVF,
  RESUME_RESP,
  STE_BYTES,
  STE_CFG_S1_TRANS,
  VirtualEventQueue,
  type Command,
  type EventRecord,
  type GuestEvent,
  type GuestRam,
} from '../../clients/vmm/index.js';

/** FakeRam - guest RAM in process: u64 words by address, a bump page allocator. */
class FakeRam implements GuestRam {
  readonly words = new Map<bigint, bigint>();
  #next: bigint;
  constructor(
    base = 0x4000_0000n,
    readonly end = 0x4100_0000n,
  ) {
    this.#next = base;
  }
  allocPage(): bigint {
    if (this.#next >= this.end) throw new GuestOutOfMemory('fake RAM exhausted');
    const p = this.#next;
    this.#next += 0x1000n;
    return p;
  }
  u64(gpa: bigint): bigint {
    assert.equal(gpa % 8n, 0n, 'aligned reads only');
    return this.words.get(gpa) ?? 0n;
  }
  async read(gpa: bigint, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < length; i += 8) dv.setBigUint64(i, this.u64(gpa + BigInt(i)), true);
    return out;
  }
  async readU64(gpa: bigint): Promise<bigint> {
    return this.u64(gpa);
  }
  async writeU64s(entries: ReadonlyArray<readonly [bigint, bigint]>): Promise<void> {
    for (const [gpa, v] of entries) {
      assert.equal(gpa % 8n, 0n, 'aligned writes only');
      this.words.set(gpa, v);
    }
  }
}

const READ = { write: false, exec: false, priv: false };
const WRITE = { write: true, exec: false, priv: false };

test('arm guest tables: what GuestArmPageTable writes, core/hw walkArmLpae translates (T0SZ 16, 25, 34)', async () => {
  for (const t0sz of [16, 25, 34]) {
    const ram = new FakeRam();
    const pt = new GuestArmPageTable(ram, t0sz);
    const vas = [0x1000_0000n, 0x1000_1000n, 0x1020_0000n, 0x3000_5000n];
    const pages = new Map<bigint, bigint>();
    for (const [i, va] of vas.entries()) {
      const leaf = (await pt.walk(va, true))!;
      assert.equal(leaf.pte, 0n);
      const page = ram.allocPage();
      pages.set(va, page);
      await ram.writeU64s([...leaf.writes, [leaf.slot, GuestArmPageTable.leafOf(page, i % 2 === 0)]]);
    }
    const walk = (va: bigint, access = READ) => walkArmLpae((gpa) => ram.u64(gpa), pt.root, t0sz, va, access);
    for (const [i, va] of vas.entries()) {
      const r = walk(va + 0x18n);
      assert.equal(r.kind, 'ok', `T0SZ ${t0sz} va 0x${va.toString(16)}`);
      if (r.kind !== 'ok') continue;
      assert.equal(r.pa, pages.get(va)! + 0x18n);
      assert.equal(r.pageSize, 0x1000n);
      assert.deepEqual([r.writable, r.user, r.executable], [i % 2 === 0, true, false]);
      // Read-only pages fault on a write with a permission fault, at level 3.
      if (i % 2 === 1) assert.deepEqual(walk(va, WRITE), { kind: 'fault', fault: 'permission', level: 3 });
      // The guest's own walk finds the same descriptor.
      assert.equal((await pt.walk(va, false))!.pte, GuestArmPageTable.leafOf(pages.get(va)!, i % 2 === 0));
    }
    // A neighbour of a mapped page: its table exists, its descriptor is invalid.
    assert.deepEqual(walk(0x1000_2000n), { kind: 'fault', fault: 'translation', level: 3 });
    assert.equal((await pt.walk(0x1000_2000n, false))!.pte, 0n);
    // Beyond the input range: both refuse it.
    const beyond = 1n << BigInt(64 - t0sz);
    assert.equal(pt.covers(beyond), false);
    assert.equal(await pt.walk(beyond, true), undefined);
    assert.equal(walk(beyond).kind, 'fault');
  }
});

test('arm guest tables: an upgrade to writable is what the walker reads; bad arguments throw', async () => {
  const ram = new FakeRam();
  const pt = new GuestArmPageTable(ram);
  const va = 0x7f00_0000_0000n;
  const leaf = (await pt.walk(va, true))!;
  assert.equal(leaf.writes.length, 3, 'levels 0-2 created for a 48-bit VA');
  const page = ram.allocPage();
  await ram.writeU64s([...leaf.writes, [leaf.slot, GuestArmPageTable.leafOf(page, false)]]);
  assert.equal(walkArmLpae((g) => ram.u64(g), pt.root, 16, va, WRITE).kind, 'fault');
  await ram.writeU64s([[leaf.slot, GuestArmPageTable.leafOf(page, true)]]);
  assert.equal(walkArmLpae((g) => ram.u64(g), pt.root, 16, va, WRITE).kind, 'ok');
  assert.throws(() => GuestArmPageTable.leafOf(0x1234n, true), RangeError);
  assert.throws(() => new GuestArmPageTable(ram, 12), RangeError);
  assert.throws(() => new GuestArmPageTable(new FakeRam(0n, 0n)), GuestOutOfMemory);
});

/** A guest on fake RAM, its commands recorded. */
function fakeGuest(opts: { pasids?: number[]; terminate?: number[]; evtqLog2?: number; allowWrite?: boolean } = {}) {
  const ram = new FakeRam();
  const issued: Command[][] = [];
  const guest = new ArmGuest({
    mem: ram,
    vsids: [0x100, 0x101],
    pasids: opts.pasids ?? [1, 2],
    terminate: opts.terminate ?? [5],
    allow: [{ start: 0x1000_0000n, length: 0x10_0000n, write: opts.allowWrite ?? true }],
    evtqLog2: opts.evtqLog2 ?? 4,
    issue: async (cmds) => {
      issued.push([...cmds]);
    },
  });
  return { ram, guest, issued };
}

test('arm guest STE and CDs: decoded by core/hw as written; smmuStage1 walks them (stall, terminate, SSID checks)', async () => {
  const { ram, guest, issued } = fakeGuest();
  await guest.setup();
  assert.equal(guest.cdMax, 3, 'PASID 5 needs 8 CDs');
  // CFGI_CD for each (vSID, SSID), then CMD_SYNC, in one batch; then per device CFGI_STE and CMD_SYNC.
  assert.equal(issued.length, 3);
  assert.deepEqual(issued.slice(1), [
    [cmdCfgiSte(0x100), cmdSync()],
    [cmdCfgiSte(0x101), cmdSync()],
  ]);
  const cmds = issued[0]!;
  assert.equal(cmds.length, 2 * 4 + 1);
  assert.equal(cmdOpcode(cmds.at(-1)!), CMD_OP.SYNC);
  for (const c of cmds.slice(0, -1)) assert.equal(cmdOpcode(c), CMDQ_OP.CFGI_CD);
  assert.deepEqual(
    cmds.slice(0, 4).map(([w0]) => [Number(w0 >> 32n), Number((w0 >> 12n) & 0xfffffn)]),
    [
      [0x100, 0],
      [0x100, 1],
      [0x100, 2],
      [0x100, 5],
    ],
  );

  assert.equal(STE_CFG_S1_TRANS, CORE_S1_TRANS);
  assert.equal(CD_BYTES, CD_SIZE);
  // The stream table: 2^9 STEs (vSID 0x101 needs 9 bits) in guest RAM; each device's STE at STRTAB_BASE + vSID × 64,
  // words 0-1 its steOf() words, words 2-7 zero; the other STEs (no device) stay invalid.
  assert.equal(guest.strtabLog2, 9);
  assert.equal(guest.steAddress(0x101), guest.strtabBase + 0x101n * STE_BYTES);
  assert.throws(() => guest.steAddress(0x200), RangeError);
  const steAt = (vsid: number): bigint[] => Array.from({ length: 8 }, (_, i) => ram.u64(guest.strtabBase + BigInt(vsid) * 64n + BigInt(i) * 8n));
  for (const vsid of [0x100, 0x101]) assert.deepEqual(steAt(vsid), [...guest.steOf(vsid), 0n, 0n, 0n, 0n, 0n, 0n]);
  assert.equal(decodeSte(...(steAt(0xff) as [bigint, bigint])).valid, false);
  const [w0, w1] = steAt(0x101) as [bigint, bigint];
  const ste = decodeSte(w0, w1);
  assert.deepEqual(
    { valid: ste.valid, cfg: ste.cfg, s1fmt: ste.s1fmt, cdMax: ste.s1CdMax, s1dss: ste.s1dss, ptr: ste.s1ContextPtr },
    { valid: true, cfg: CORE_S1_TRANS, s1fmt: 0, cdMax: 3, s1dss: 2, ptr: guest.cdAddress(0x101, 0) },
  );
  // The stream table and the CD tables do not overlap.
  assert.ok(guest.cdAddress(0x100, 0) >= guest.strtabBase + (STE_BYTES << 9n) || guest.cdAddress(0x100, 0) < guest.strtabBase);
  const asids = new Set<number>();
  for (const ssid of [0, 1, 2, 5]) {
    const a = guest.cdAddress(0x101, ssid);
    const cd = decodeCd(ram.u64(a), ram.u64(a + 8n));
    assert.deepEqual(
      { valid: cd.valid, aa64: cd.aa64, tg0: cd.tg0, t0sz: cd.t0sz, stall: cd.stall, r: cd.record, a: cd.abort, epd0: cd.epd0, ttb0: cd.ttb0 },
      { valid: true, aa64: true, tg0: 0, t0sz: 16, stall: ssid !== 5, r: true, a: true, epd0: false, ttb0: guest.addressSpace(ssid)!.root },
    );
    asids.add(cd.asid);
  }
  assert.equal(asids.size, 4, 'one ASID per address space');
  // CD 3 (no PASID of the guest) is not valid.
  assert.equal(decodeCd(ram.u64(guest.cdAddress(0x101, 3)), 0n).valid, false);

  const s1 = (ssid: number | undefined, va: bigint, write = false) => smmuStage1((g) => ram.u64(g), ste, 0x101, va, { write, exec: false, priv: false, ssid });
  // Nothing mapped: a stall-capable fault at PASID 1, a terminating one at PASID 5, and CD 0 without a PASID.
  const r1 = s1(1, 0x1000_0000n);
  assert.ok(r1.kind === 'event' && r1.stallable && r1.event.id === CORE_EVT_ID.F_TRANSLATION);
  const r5 = s1(5, 0x1000_0000n);
  assert.ok(r5.kind === 'event' && !r5.stallable && r5.record && r5.event.id === CORE_EVT_ID.F_TRANSLATION);
  assert.ok(s1(undefined, 0x1000_0000n).kind === 'event');
  // A SubstreamID beyond S1CDMax, and CD 3 (V clear).
  const r9 = s1(9, 0x1000_0000n);
  assert.ok(r9.kind === 'event' && r9.event.id === CORE_EVT_ID.C_BAD_SUBSTREAMID);
  const r3 = s1(3, 0x1000_0000n);
  assert.ok(r3.kind === 'event' && r3.event.id === CORE_EVT_ID.C_BAD_CD);

  // The guest serves a stall at PASID 1: the walker then translates it, with that CD's ASID.
  await guest.evtq.push(stall({ sid: 0x101, ssid: 1, stag: 7, read: true, addr: 0x1000_0040n }));
  await guest.idle();
  const ok = s1(1, 0x1000_0040n);
  assert.ok(
    ok.kind === 'ok' && !ok.writable,
    JSON.stringify(ok, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v)),
  );
  const cd1 = decodeCd(ram.u64(guest.cdAddress(0x101, 1)), 0n);
  assert.equal(ok.kind === 'ok' && ok.asid, cd1.asid);
  // PASID 2's address space is another one: still unmapped there.
  assert.equal(s1(2, 0x1000_0040n).kind, 'event');
});

function stall(f: Partial<GuestEvent> & { sid: number; addr: bigint }): EventRecord {
  return eventWords({ id: EVT_ID.F_TRANSLATION, ssid: undefined, stag: 0, stall: true, priv: false, exec: false, read: true, s2: false, cls: 2, ...f });
}

test('arm guest event records and commands: the same bytes as core/hw and the kernel layout', () => {
  const fields = { id: 0x13, sid: 0x1234, ssid: 0x54321, stag: 0xbeef, stall: true, priv: true, exec: false, read: false, s2: false, addr: 0xdead_b000n };
  const words = eventWords({ ...fields, cls: 2 });
  assert.deepEqual(words, encodeEvent({ ...fields, class: 2, ipa: 0n }));
  const back = decodeEvent(words);
  assert.deepEqual(parseEvent(words), { ...fields, cls: back.class });
  // A record the daemon's model writes (a stage-2 fault, CLASS TT, with an IPA) reads back field for field.
  const modelFields = { id: 0x10, sid: 7, ssid: undefined, stag: 0, stall: false, priv: false, exec: true, read: true, s2: true, addr: 0x42n };
  assert.deepEqual(parseEvent(encodeEvent({ ...modelFields, class: 1, ipa: 0x9000n })), { ...modelFields, cls: 1 });

  // Opcodes as the daemon's vSMMU knows them.
  assert.equal(CMD_OP.CFGI_CD, CMDQ_OP.CFGI_CD);
  assert.equal(CMD_OP.CFGI_CD_ALL, CMDQ_OP.CFGI_CD_ALL);
  assert.equal(CMD_OP.TLBI_NH_ASID, CMDQ_OP.TLBI_NH_ASID);
  assert.equal(CMD_OP.TLBI_NH_VA, CMDQ_OP.TLBI_NH_VA);
  // CMDQ_CFGI_0_SSID 31:12, CMDQ_CFGI_0_SID 63:32, CMDQ_CFGI_1_LEAF 0.
  assert.deepEqual(cmdCfgiCd(0x100, 3), [0x05n | (3n << 12n) | (0x100n << 32n), 1n]);
  // CMDQ_OP_CFGI_STE 0x03: CMDQ_CFGI_0_SID 63:32, CMDQ_CFGI_1_LEAF 0.
  assert.deepEqual(cmdCfgiSte(0x1234), [0x03n | (0x1234n << 32n), 1n]);
  assert.equal(cmdSid(cmdCfgiSte(0xfedc_ba98)), 0xfedc_ba98);
  // CMDQ_TLBI_0_ASID 63:48; CMDQ_TLBI_1_VA_MASK 63:12, LEAF 0.
  assert.deepEqual(cmdTlbiNhVa(9, 0x1234_5fffn), [0x12n | (9n << 48n), 0x1234_5001n]);
  // CMDQ_RESUME_0_RESP 13:12, CMDQ_RESUME_0_SID 63:32, CMDQ_RESUME_1_STAG 15:0.
  const r = cmdResume(0x101, 0xabcd, RESUME_RESP.ABORT);
  assert.deepEqual(r, [0x44n | (2n << 12n) | (0x101n << 32n), 0xabcdn]);
  assert.deepEqual(parseResume(r), { sid: 0x101, stag: 0xabcd, resp: RESUME_RESP.ABORT });
  assert.deepEqual(cmdSync(), [0x46n, 0n]);
});

test('arm guest stalls: map and RETRY, upgrade with TLBI_NH_VA then RETRY, ABORT outside the ranges; events only counted', async () => {
  const { ram, guest, issued } = fakeGuest({ pasids: [1], terminate: [] });
  await guest.setup();
  issued.length = 0;
  const va = 0x1000_3000n;
  await guest.evtq.push(stall({ sid: 0x100, ssid: 1, stag: 1, read: true, addr: va + 8n }));
  await guest.evtq.push(stall({ sid: 0x100, ssid: 1, stag: 2, read: false, addr: va + 16n }));
  await guest.evtq.push(stall({ sid: 0x101, ssid: 1, stag: 3, read: true, addr: 0x2000_0000n }));
  await guest.evtq.push(stall({ sid: 0x101, ssid: 1, stag: 4, read: true, exec: true, addr: va }));
  await guest.evtq.push(stall({ sid: 0x999, ssid: 1, stag: 5, read: true, addr: va }));
  await guest.evtq.push(
    eventWords({ id: EVT_ID.F_TRANSLATION, sid: 0x100, ssid: 2, stag: 0, stall: false, priv: false, exec: false, read: true, s2: false, cls: 2, addr: va }),
  );
  await guest.idle();
  const resumes = issued
    .flat()
    .filter((c) => cmdOpcode(c) === CMD_OP.RESUME)
    .map(parseResume);
  assert.deepEqual(resumes, [
    { sid: 0x100, stag: 1, resp: RESUME_RESP.RETRY },
    { sid: 0x100, stag: 2, resp: RESUME_RESP.RETRY },
    { sid: 0x101, stag: 3, resp: RESUME_RESP.ABORT },
    { sid: 0x101, stag: 4, resp: RESUME_RESP.ABORT },
    { sid: 0x999, stag: 5, resp: RESUME_RESP.ABORT },
  ]);
  // The upgrade's batch: TLBI_NH_VA of that page with PASID 1's ASID, CMD_SYNC, then the RESUME.
  const second = issued[1]!;
  const asid = decodeCd(ram.u64(guest.cdAddress(0x100, 1)), 0n).asid;
  assert.deepEqual(second.slice(0, 2), [cmdTlbiNhVa(asid, va), cmdSync()]);
  assert.equal(cmdOpcode(issued[0]![0]!), CMD_OP.RESUME, 'a fresh mapping needs no TLBI');
  const s = guest.stats;
  assert.deepEqual(
    {
      records: s.records,
      stalls: s.stalls,
      retried: s.retried,
      aborted: s.aborted,
      refused: s.refused,
      mapped: s.pagesMapped,
      upgrades: s.upgrades,
      events: s.events,
    },
    { records: 6, stalls: 5, retried: 2, aborted: 3, refused: 3, mapped: 1, upgrades: 1, events: { F_TRANSLATION: 1 } },
  );
  const leaf = (await guest.addressSpace(1)!.walk(va, false))!;
  assert.equal(GuestArmPageTable.isWritable(leaf.pte), true);
});

test('arm guest: a write stall in a read-only range is aborted; bad configurations throw', async () => {
  const { guest, issued } = fakeGuest({ allowWrite: false });
  await guest.setup();
  await guest.evtq.push(stall({ sid: 0x100, ssid: 2, stag: 9, read: false, addr: 0x1000_0000n }));
  await guest.idle();
  assert.deepEqual(parseResume(issued.at(-1)!.find((c) => cmdOpcode(c) === CMD_OP.RESUME)!), { sid: 0x100, stag: 9, resp: RESUME_RESP.ABORT });
  const mem = new FakeRam();
  const base = { mem, vsids: [1], allow: [], evtqLog2: 4, issue: async () => {} };
  assert.throws(() => new ArmGuest({ ...base, pasids: [1], terminate: [1] }), /twice/);
  assert.throws(() => new ArmGuest({ ...base, pasids: [1 << 21], terminate: [] }), RangeError);
  assert.throws(() => new ArmGuest({ ...base, pasids: [], terminate: [], evtqLog2: 17 }), RangeError);
  assert.throws(() => fakeGuest().guest.steOf(0x42), RangeError);
  // A linear stream table of more than 2^16 STEs is refused, as is a vSID that is not a StreamID.
  assert.throws(() => new ArmGuest({ ...base, vsids: [1 << 16], pasids: [], terminate: [] }), /stream table/);
  assert.throws(() => new ArmGuest({ ...base, vsids: [-1], pasids: [], terminate: [] }), RangeError);
});

/** A record whose words tell its number @n. */
const rec = (n: number): EventRecord => [BigInt(n), BigInt(n) << 8n, BigInt(n) << 16n, BigInt(n) << 24n];

test('virtual event queue: PROD/CONS with the wrap bit, full at the same index, reads across the end of the ring', async () => {
  const ram = new FakeRam();
  const base = ram.allocPage();
  const q = new VirtualEventQueue(ram, base, 2); // 4 records
  const reader = new EventQueueReader(q);
  let interrupts = 0;
  q.onInterrupt = () => interrupts++;
  for (let n = 0; n < 3; n++) assert.equal(await q.push(rec(n)), true);
  assert.deepEqual([q.prod, q.cons, q.full()], [3, 0, false]);
  // The bytes are in guest RAM at base + 32 × index.
  assert.equal(ram.u64(base + 32n * 2n + 8n), 2n << 8n);
  let b = await reader.read();
  assert.deepEqual(b, { records: [rec(0), rec(1), rec(2)], overflow: false });
  assert.equal(q.cons, 3);
  // Four more: indexes 3, 0, 1, 2, so PROD wraps (bit 2) and the queue is full.
  for (let n = 3; n < 7; n++) assert.equal(await q.push(rec(n)), true);
  assert.deepEqual([q.prod, q.cons, q.full()], [0b111, 3, true]);
  b = await reader.read();
  assert.deepEqual(b, { records: [rec(3), rec(4), rec(5), rec(6)], overflow: false }, 'read in two runs: index 3, then 0-2');
  assert.deepEqual([q.prod, q.cons, q.full()], [0b111, 0b111, false]);
  assert.equal(interrupts, 7);
  assert.deepEqual(await reader.read(), { records: [], overflow: false });
  // The driver cannot move CONS past PROD.
  q.writeCons(0b001);
  assert.equal(q.cons, 0b111);
  assert.throws(() => new VirtualEventQueue(ram, base + 8n, 2), RangeError);
  assert.throws(() => new VirtualEventQueue(ram, base, 17), RangeError);
});

test('virtual event queue: a record finding it full is dropped and toggles OVFLG once until the driver acknowledges', async () => {
  const ram = new FakeRam();
  const q = new VirtualEventQueue(ram, ram.allocPage(), 1); // 2 records
  const reader = new EventQueueReader(q);
  assert.equal(await q.push(rec(1)), true);
  assert.equal(await q.push(rec(2)), true);
  assert.equal(await q.push(rec(3)), false);
  assert.equal((q.prod & Q_OVF) >>> 0, Q_OVF, 'OVFLG toggled');
  assert.equal(await q.push(rec(4)), false);
  assert.equal((q.prod & Q_OVF) >>> 0, Q_OVF, 'not toggled again while unacknowledged');
  assert.deepEqual([q.dropped, q.overflows], [2, 1]);
  // The driver reads what is there, sees the overflow, and acknowledges it in CONS.
  assert.deepEqual(await reader.read(), { records: [rec(1), rec(2)], overflow: true });
  assert.equal((q.cons & Q_OVF) >>> 0, Q_OVF, 'OVACKFLG = OVFLG');
  assert.deepEqual(await reader.read(), { records: [], overflow: false });
  // The next overflow toggles OVFLG back to 0: still "different from OVACKFLG".
  await q.push(rec(5));
  await q.push(rec(6));
  assert.equal(await q.push(rec(7)), false);
  assert.equal(q.prod & Q_OVF, 0);
  assert.deepEqual(await reader.read(), { records: [rec(5), rec(6)], overflow: true });
  assert.equal(q.cons & Q_OVF, 0);
  // Losses before the queue (the host's vEVENTQ dropped events) signal the same way.
  await q.signalOverflow();
  assert.deepEqual(await reader.read(), { records: [], overflow: true });
  assert.deepEqual([q.written, q.dropped, q.overflows], [4, 3, 3]);
});

test('virtual event queue: concurrent pushes are published in order, each after its bytes', async () => {
  const ram = new FakeRam();
  const q = new VirtualEventQueue(ram, ram.allocPage(), 3);
  const seen: number[] = [];
  q.onInterrupt = () => seen.push(q.prod);
  const results = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => q.push(rec(n))));
  assert.deepEqual(results, [true, true, true, true, true, true, true, true, false, false]);
  assert.deepEqual(seen.slice(0, 8), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual((await new EventQueueReader(q).read()).records, [0, 1, 2, 3, 4, 5, 6, 7].map(rec));
});
