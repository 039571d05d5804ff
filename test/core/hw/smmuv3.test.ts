/**
 * The SMMUv3 stage-1 model: STE and CD decode, the CD table indexed by
 * SubstreamID, every configuration error and fault event the model raises,
 * stall versus terminate by CD.S, stage-2 misses on CD and table fetches, and
 * the event record layout the kernel reads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ArmLpaeBuilder } from '../../../core/hw/arm-lpae.js';
import {
  CD_SIZE,
  EVT_ID,
  STE_CFG_ABORT,
  STE_CFG_BYPASS,
  STE_CFG_S1_TRANS,
  decodeCd,
  decodeEvent,
  decodeSte,
  encodeCd,
  encodeEvent,
  encodeSte,
  smmuStage1,
  withEventSid,
  type SmmuAccess,
  type SmmuS1Result,
} from '../../../core/hw/smmuv3.js';

const SID = 0x42;
const R: SmmuAccess = { write: false, exec: false, priv: false, ssid: undefined };

function world() {
  const words = new Map<bigint, bigint>();
  let next = 0x10_0000n;
  const read = (a: bigint): bigint => words.get(a) ?? 0n;
  const write = (a: bigint, v: bigint): void => void words.set(a, v);
  const alloc = (): bigint => {
    next += 0x1000n;
    return next - 0x1000n;
  };
  const cdTable = alloc();
  const pt = new ArmLpaeBuilder(alloc, read, write, 16);
  pt.map(0x1000n, 0x9000n, { write: false });
  const setCd = (ssid: number, cd: [bigint, bigint]): void => {
    write(cdTable + BigInt(ssid) * CD_SIZE, cd[0]);
    write(cdTable + BigInt(ssid) * CD_SIZE + 8n, cd[1]);
  };
  setCd(0, encodeCd({ ttb0: pt.root, t0sz: 16, asid: 7 }));
  return { words, read, write, alloc, cdTable, pt, setCd };
}

function ev(r: SmmuS1Result): number {
  assert.equal(r.kind, 'event');
  return r.kind === 'event' ? r.event.id : -1;
}

test('smmuv3: STE and CD words decode to the fields a guest encoded', () => {
  const [w0, w1] = encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: 0x12_3440n, s1CdMax: 5, s1dss: 2, s1StallD: true, eats: 1 });
  assert.deepEqual(decodeSte(w0, w1), { valid: true, cfg: 5, s1fmt: 0, s1ContextPtr: 0x12_3440n, s1CdMax: 5, s1dss: 2, s1StallD: true, eats: 1 });
  const [c0, c1] = encodeCd({ ttb0: 0xabc_d000n, t0sz: 25, asid: 0x1234, stall: true, record: false });
  const cd = decodeCd(c0, c1);
  assert.deepEqual(cd, { valid: true, t0sz: 25, tg0: 0, epd0: false, aa64: true, stall: true, record: false, abort: true, asid: 0x1234, ttb0: 0xabc_d000n });
});

test('smmuv3: event records carry the EVTQ fields at the kernel offsets; the SID swaps for a vSID', () => {
  const e = {
    id: EVT_ID.F_PERMISSION,
    sid: 0x1234_5678,
    ssid: 0xabcde,
    stag: 0xbeef,
    stall: true,
    priv: true,
    exec: true,
    read: true,
    s2: true,
    class: 2,
    addr: 0xdead_beef_0000_1234n,
    ipa: 0x000f_ffff_ffff_f000n,
  };
  const w = encodeEvent(e);
  assert.equal(w[0], 0x13n | (1n << 11n) | (0xabcden << 12n) | (0x1234_5678n << 32n));
  assert.equal(w[1], 0xbeefn | (1n << 31n) | (1n << 33n) | (1n << 34n) | (1n << 35n) | (1n << 39n) | (2n << 40n));
  assert.equal(w[2], 0xdead_beef_0000_1234n);
  assert.equal(w[3], 0x000f_ffff_ffff_f000n);
  assert.deepEqual(decodeEvent(w), e);
  const v = withEventSid(w, 0x99);
  assert.equal(decodeEvent(v).sid, 0x99);
  assert.deepEqual({ ...decodeEvent(v), sid: e.sid }, e);
  assert.equal(decodeEvent(encodeEvent({ ...e, ssid: undefined })).ssid, undefined);
});

test('smmuv3: S1_TRANS translates through CD 0; abort STEs terminate silently; bypass passes the address through', () => {
  const g = world();
  const ste = decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable }));
  const ok = smmuStage1(g.read, ste, SID, 0x1234n, R);
  assert.deepEqual(ok, { kind: 'ok', gpa: 0x9234n, writable: false, executable: false, user: true, asid: 7, bypass: false, pageSize: 4096n });
  assert.deepEqual(smmuStage1(g.read, decodeSte(...encodeSte({ cfg: STE_CFG_ABORT })), SID, 0x1234n, R), { kind: 'abort' });
  assert.deepEqual(smmuStage1(g.read, decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, valid: false })), SID, 0x1234n, R), { kind: 'abort' });
  const by = smmuStage1(g.read, decodeSte(...encodeSte({ cfg: STE_CFG_BYPASS })), SID, 0x5678n, R);
  assert.equal(by.kind === 'ok' && by.bypass && by.gpa, 0x5678n);
});

test('smmuv3: C_BAD_STE for a 2-level CD table, S1CDMax beyond 20 bits, or a stage-2 config', () => {
  const g = world();
  const bad = [
    decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable })),
    decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable, s1CdMax: 21 })),
    decodeSte(...encodeSte({ cfg: 6, s1ContextPtr: g.cdTable })),
  ];
  bad[0]!.s1fmt = 2;
  for (const ste of bad) assert.equal(ev(smmuStage1(g.read, ste, SID, 0x1000n, R)), EVT_ID.C_BAD_STE);
});

test('smmuv3: SubstreamIDs index the CD table; out of range or absent CD table is C_BAD_SUBSTREAMID; S1DSS decides a transaction without one', () => {
  const g = world();
  const pt5 = new ArmLpaeBuilder(g.alloc, g.read, g.write, 25);
  pt5.map(0x1000n, 0x5000n, { write: true });
  g.setCd(5, encodeCd({ ttb0: pt5.root, t0sz: 25, asid: 5 }));
  const ste = (s1dss: number, s1CdMax = 3) => decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable, s1CdMax, s1dss }));
  const r5 = smmuStage1(g.read, ste(0), SID, 0x1010n, { ...R, ssid: 5 });
  assert.equal(r5.kind === 'ok' && r5.gpa, 0x5010n);
  assert.equal(ev(smmuStage1(g.read, ste(0), SID, 0x1010n, { ...R, ssid: 8 })), EVT_ID.C_BAD_SUBSTREAMID);
  assert.equal(ev(smmuStage1(g.read, ste(0, 0), SID, 0x1010n, { ...R, ssid: 1 })), EVT_ID.C_BAD_SUBSTREAMID);
  assert.equal(ev(smmuStage1(g.read, ste(2), SID, 0x1010n, { ...R, ssid: 0 })), EVT_ID.C_BAD_SUBSTREAMID);
  assert.equal(ev(smmuStage1(g.read, ste(0), SID, 0x1010n, R)), EVT_ID.F_STREAM_DISABLED);
  const by = smmuStage1(g.read, ste(1), SID, 0x1010n, R);
  assert.equal(by.kind === 'ok' && by.bypass, true);
  const cd0 = smmuStage1(g.read, ste(2), SID, 0x1010n, R);
  assert.equal(cd0.kind === 'ok' && cd0.asid, 7);
});

test('smmuv3: C_BAD_CD for V clear, AArch32, a granule other than 4 KiB, T0SZ out of range, or S with STE.S1STALLD', () => {
  const g = world();
  const ste = decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable }));
  const root = g.pt.root;
  const cases: Array<[bigint, bigint]> = [
    encodeCd({ ttb0: root, t0sz: 16, valid: false }),
    encodeCd({ ttb0: root, t0sz: 16, tg0: 1 }),
    encodeCd({ ttb0: root, t0sz: 15 }),
    encodeCd({ ttb0: root, t0sz: 40 }),
  ];
  const aarch32 = encodeCd({ ttb0: root, t0sz: 16 });
  cases.push([aarch32[0] & ~(1n << 41n), aarch32[1]]);
  for (const cd of cases) {
    g.setCd(0, cd);
    assert.equal(ev(smmuStage1(g.read, ste, SID, 0x1000n, R)), EVT_ID.C_BAD_CD);
  }
  g.setCd(0, encodeCd({ ttb0: root, t0sz: 16, stall: true }));
  const stalld = decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable, s1StallD: true }));
  assert.equal(ev(smmuStage1(g.read, stalld, SID, 0x1000n, R)), EVT_ID.C_BAD_CD);
  assert.equal(smmuStage1(g.read, ste, SID, 0x1000n, R).kind, 'ok');
});

test('smmuv3: walk faults become F_TRANSLATION / F_ADDR_SIZE / F_ACCESS / F_PERMISSION with the access bits; CD.S makes them stallable, CD.R=0 unrecorded', () => {
  const g = world();
  const ste = decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable, s1CdMax: 1, s1dss: 2 }));
  g.pt.map(0x2000n, 0xa000n, { write: true, af: false });
  g.pt.map(0x3000n, 0xb000n, { write: true });
  const leaf = g.pt.entryAddress(0x3000n)!;
  g.write(leaf.gpa, g.read(leaf.gpa) | (1n << 49n));
  const W: SmmuAccess = { write: true, exec: false, priv: true, ssid: 1 };
  g.setCd(1, encodeCd({ ttb0: g.pt.root, t0sz: 16, asid: 1 }));
  const t = smmuStage1(g.read, ste, SID, 0x7000n, W);
  assert.equal(t.kind, 'event');
  if (t.kind === 'event') {
    assert.deepEqual(t.event, {
      id: EVT_ID.F_TRANSLATION,
      sid: SID,
      ssid: 1,
      stag: 0,
      stall: false,
      priv: true,
      exec: false,
      read: false,
      s2: false,
      class: 2,
      addr: 0x7000n,
      ipa: 0n,
    });
    assert.equal(t.stallable, false);
    assert.equal(t.record, true);
  }
  assert.equal(ev(smmuStage1(g.read, ste, SID, 0x3000n, W)), EVT_ID.F_ADDR_SIZE);
  assert.equal(ev(smmuStage1(g.read, ste, SID, 0x2000n, W)), EVT_ID.F_ACCESS);
  assert.equal(ev(smmuStage1(g.read, ste, SID, 0x1000n, W)), EVT_ID.F_PERMISSION);
  g.setCd(1, encodeCd({ ttb0: g.pt.root, t0sz: 16, epd0: true }));
  assert.equal(ev(smmuStage1(g.read, ste, SID, 0x1000n, W)), EVT_ID.F_TRANSLATION);
  g.setCd(1, encodeCd({ ttb0: g.pt.root, t0sz: 16, stall: true, record: false }));
  const s = smmuStage1(g.read, ste, SID, 0x1000n, W);
  assert.ok(s.kind === 'event' && s.stallable && s.record && s.event.id === EVT_ID.F_PERMISSION);
  g.setCd(1, encodeCd({ ttb0: g.pt.root, t0sz: 16, record: false }));
  const q = smmuStage1(g.read, ste, SID, 0x1000n, W);
  assert.ok(q.kind === 'event' && !q.stallable && !q.record);
});

test('smmuv3: a stage-2 miss on the CD fetch or a table read is F_TRANSLATION with S2 and CLASS CD / TT and the IPA', () => {
  const g = world();
  const ste = decodeSte(...encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: g.cdTable }));
  const noCd = (a: bigint) => ((a & ~0xfffn) === g.cdTable ? undefined : g.read(a));
  const c = smmuStage1(noCd, ste, SID, 0x1000n, R);
  assert.ok(c.kind === 'event');
  if (c.kind === 'event') assert.deepEqual([c.event.id, c.event.s2, c.event.class, c.event.ipa], [EVT_ID.F_TRANSLATION, true, 0, g.cdTable]);
  const noRoot = (a: bigint) => ((a & ~0xfffn) === g.pt.root ? undefined : g.read(a));
  const t = smmuStage1(noRoot, ste, SID, 0x1000n, R);
  assert.ok(t.kind === 'event');
  if (t.kind === 'event') assert.deepEqual([t.event.id, t.event.s2, t.event.class, t.event.ipa], [EVT_ID.F_TRANSLATION, true, 1, g.pt.root]);
  // The event encodes with S2 and CLASS set.
  if (t.kind === 'event') assert.equal((encodeEvent(t.event)[1] >> 39n) & 7n, 0b011n);
});
