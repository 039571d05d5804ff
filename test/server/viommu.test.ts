// End to end: vIOMMU, vDEVICE, vEVENTQ and the nested hwpt on a vIOMMU over
// REST, and the vEVENTQ stream in both subprotocols, on the default
// platform's SMMUv3 device (arm0 behind smmu0). The guest's CD lives in its
// RAM (an IOAS) and its stage-1 table is empty, so every DMA is a stage-1
// translation fault that terminates and is reported on the vEVENTQ with the
// vSID.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { encodeCd, encodeSte, decodeEvent, STE_CFG_S1_TRANS } from '../../core/hw/smmuv3.js';
import { HWPT_FLAGS, VEVENT_SUBPROTOCOL_UAPI, decodeVevents } from '../../protocol/index.js';
import WebSocket from 'ws';
import { CLOSE } from '../../protocol/index.js';
import { MAX_PENDING_PONGS } from '../../server/stream-keepalive.js';
import {
  armFaultingDma,
  armFixture,
  assertError,
  pingFlood,
  refusedUpgrade,
  startServer,
  StreamClient,
  waitFor,
  type ArmFixture,
  type TestServer,
} from './helpers.js';
import { smmuEvent } from '../core/arm-events.js';

const hex = (v: bigint): string => `0x${v.toString(16)}`;

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.close();
});

const fixture = (depth = 2): Promise<ArmFixture> => armFixture(srv, depth);
const faultingDma = armFaultingDma;

test('vEVENTQ stream (JSON): hello, then a terminated stage-1 fault as a vevents frame with the vSID; a client frame is EOPNOTSUPP', async () => {
  const f = await fixture(8);
  assert.equal(f.veventq.stream, `/v1/contexts/${f.ctx}/veventq/${f.veventq.id}/stream`);
  const s = await StreamClient.open(srv.wsBase, f.veventq.stream, { token: f.token });
  assert.deepEqual(await s.json(), { type: 'hello', protocol: 'vevent.v1.json', veventq_id: f.veventq.id });
  const dma = await faultingDma(f.api, 0x40_0000n);
  assert.equal(dma.status, 'invalid');
  const frame = await s.json();
  assert.equal(frame.type, 'vevents');
  assert.equal(frame.events.length, 1);
  const [e] = frame.events;
  assert.equal(e.sequence, 0);
  assert.equal(e.lost, false);
  const ev = decodeEvent(e.evt.map((w: string) => BigInt(w)));
  assert.deepEqual([ev.id, ev.sid, ev.addr, ev.read], [0x10, 0x99, 0x40_0000n, true]);
  s.sendJson({ type: 'responses', responses: [] });
  const err = await s.json();
  assert.deepEqual([err.type, err.errno], ['error', 'EOPNOTSUPP']);
  const st = await f.api.ok('veventq.get', 'GET', `${f.C}/veventq/${f.veventq.id}`);
  assert.deepEqual(st, { id: f.veventq.id, queued: 0, depth: 8, sequence: 1, lost: 0, connections: 1 });
  assertError(await f.api.delete(`${f.C}/objects/${f.veventq.id}`), 409, 'EBUSY');
  // Releasing the context closes the stream with 1001.
  await f.api.ok('context.destroy', 'DELETE', f.C);
  assert.equal((await s.closed).code, 1001);
});

test('vEVENTQ stream (uapi): events queued with no reader past the depth read as 0, 1 and a LOST_EVENTS header; the next event shows the gap', async () => {
  const f = await fixture(2);
  for (let i = 0; i < 4; i++) await faultingDma(f.api, 0x40_0000n + BigInt(i) * 0x1000n);
  const st = await f.api.ok('veventq.get', 'GET', `${f.C}/veventq/${f.veventq.id}`);
  assert.deepEqual(st, { id: f.veventq.id, queued: 3, depth: 2, sequence: 4, lost: 2, connections: 0 });
  const s = await StreamClient.open(srv.wsBase, f.veventq.stream, { token: f.token, protocol: VEVENT_SUBPROTOCOL_UAPI });
  assert.equal((await s.json()).protocol, VEVENT_SUBPROTOCOL_UAPI);
  const buf = await s.binary();
  assert.equal(buf.length, 40 + 40 + 8);
  const got = decodeVevents(buf);
  assert.deepEqual(
    got.map((e) => [e.sequence, e.lost]),
    [
      [0, false],
      [1, false],
      [3, true],
    ],
  );
  assert.equal(decodeEvent(got[1]!.evt!).addr, 0x40_1000n);
  await faultingDma(f.api, 0x50_0000n);
  const next = decodeVevents(await s.binary());
  assert.deepEqual(
    next.map((e) => [e.sequence, e.lost]),
    [[4, false]],
  );
  await s.close();
  const metrics = await (await fetch(`${srv.base}/metrics`)).text();
  assert.match(metrics, /iopfd_vevents_lost_total [1-9]/);
  assert.match(metrics, /iopfd_vevents_read_total [1-9]/);
  await f.api.ok('context.destroy', 'DELETE', f.C);
});

test('vIOMMU REST errors: EIO (400) for a bad STE, EOPNOTSUPP on the VT-d model, EEXIST rules, invalidation EIO with done', async () => {
  const f = await fixture(2);
  const bad = encodeSte({ cfg: 6 }).map(hex);
  const r1 = await f.api.post(`${f.C}/hwpt`, { dev_id: f.devId, pt_id: f.viommu, data_type: 'arm_smmuv3', data: { ste: bad } });
  assertError(r1, 400, 'EIO');
  assertError(await f.api.post(`${f.C}/vdevice`, { viommu_id: f.viommu, dev_id: f.devId, virt_id: '0x98' }), 409, 'EEXIST');
  assertError(await f.api.post(`${f.C}/veventq`, { viommu_id: f.viommu, type: 'arm_smmuv3', depth: 1 }), 409, 'EEXIST');
  assertError(await f.api.post(`${f.C}/vdevice`, { viommu_id: f.viommu, dev_id: f.devId, virt_id: 99 }), 400, 'EINVAL');
  const good = [hex(0x30n), '0x0'];
  const ok = await f.api.ok('viommu.invalidate', 'POST', `${f.C}/viommu/${f.viommu}/invalidate`, {
    data_type: 'arm_smmuv3',
    commands: [good, [hex(0x05n | (0x99n << 32n)), '0x0']],
  });
  assert.deepEqual(ok, { done: 2 });
  const r2 = await f.api.post(`${f.C}/viommu/${f.viommu}/invalidate`, {
    data_type: 'arm_smmuv3',
    commands: [good, [hex(0x05n | (0x42n << 32n)), '0x0'], good],
  });
  assert.equal(r2.status, 400);
  assert.equal(r2.body.errno, 'EIO');
  assert.equal(r2.body.done, 1);
  assertError(await f.api.delete(`${f.C}/objects/${f.viommu}`), 409, 'EBUSY');
  // The VT-d model has no vIOMMU.
  const { dev_id: nic } = await f.api.ok('device.bind', 'POST', `${f.C}/devices`, { name: 'nic0' });
  const { id: ioas2 } = await f.api.ok('ioas.alloc', 'POST', `${f.C}/ioas`, {});
  const { id: p2 } = await f.api.ok('hwpt.alloc', 'POST', `${f.C}/hwpt`, { dev_id: nic, pt_id: ioas2, flags: HWPT_FLAGS.NEST_PARENT });
  assertError(await f.api.post(`${f.C}/viommu`, { type: 'arm_smmuv3', dev_id: nic, hwpt_id: p2 }), 400, 'EOPNOTSUPP');
  // Upgrades: another subprotocol, a missing queue, no token.
  assert.equal((await refusedUpgrade(srv.wsBase, f.veventq.stream, { token: f.token, protocol: 'iopf.v1.json' })).status, 400);
  assert.equal((await refusedUpgrade(srv.wsBase, `${f.C}/veventq/999/stream`, { token: f.token })).status, 404);
  assert.equal((await refusedUpgrade(srv.wsBase, f.veventq.stream, {})).status, 401);
  await f.api.ok('context.destroy', 'DELETE', f.C);
});

test('walk (SMMUv3): GET .../walk shows the guest STE, the CD read through stage 2 and the AArch64 levels; no event, no DMA', async () => {
  const f = await fixture(4);
  const w = await f.api.ok('platform.device.walk', 'GET', '/v1/platform/devices/arm0/walk?addr=0x405018&perm=1');
  const [c0, c1] = encodeCd({ ttb0: 0x2000n, t0sz: 25 });
  assert.equal(w.context, 'smmuv3');
  assert.deepEqual(w.ste, { config: STE_CFG_S1_TRANS, s1_context_ptr: '0x1000', s1_cd_max: 0, s1dss: 0 });
  assert.equal(w.cd.index, 0);
  assert.equal(w.cd.entry_gpa, '0x1000');
  assert.equal(w.cd.s2.read, true);
  assert.deepEqual(w.cd.words, [hex(c0), hex(c1)]);
  assert.equal(w.t0sz, 25);
  assert.equal(w.s1_root, '0x2000');
  // The table is empty: level 1's descriptor (read through stage 2) is invalid.
  assert.equal(w.stage1.length, 1);
  assert.deepEqual([w.stage1[0].level, w.stage1[0].entry_gpa, w.stage1[0].entry, w.stage1[0].s2.read], [1, '0x2000', '0x0', true]);
  assert.deepEqual(w.result, { kind: 'fault', stage: 1, reason: 'F_TRANSLATION', level: 1 });
  const st = await f.api.ok('veventq.get', 'GET', `${f.C}/veventq/${f.veventq.id}`);
  assert.deepEqual([st.queued, st.sequence], [0, 0], 'the walk records no event');
  // The same address by DMA: the event the walk named.
  await faultingDma(f.api, 0x405018n);
  const after = await f.api.ok('veventq.get', 'GET', `${f.C}/veventq/${f.veventq.id}`);
  assert.equal(after.queued, 1);
  await f.api.ok('context.destroy', 'DELETE', f.C);
});

describe('vEVENTQ stream limits, as the fault stream', () => {
  let lim: TestServer;
  before(async () => {
    lim = await startServer({ limits: { maxStreamsPerFault: 2 }, stream: { heartbeatMs: 100, errorFramesPerSecond: 5 } });
  });
  after(async () => {
    await lim.close();
  });
  const connections = async (f: ArmFixture): Promise<number> => (await f.api.ok('veventq.get', 'GET', `${f.C}/veventq/${f.veventq.id}`)).connections;

  test('the per-queue stream limit: one more stream is refused 503 ENOSPC before any WebSocket; a closed one frees its slot', async () => {
    const f = await armFixture(lim, 4);
    const a = await StreamClient.open(lim.wsBase, f.veventq.stream, { token: f.token });
    const b = await StreamClient.open(lim.wsBase, f.veventq.stream, { token: f.token, protocol: VEVENT_SUBPROTOCOL_UAPI });
    const refused = await refusedUpgrade(lim.wsBase, f.veventq.stream, { token: f.token });
    assert.deepEqual([refused.status, refused.body.errno], [503, 'ENOSPC']);
    assert.equal(await connections(f), 2);
    await a.close();
    await waitFor(async () => (await connections(f)) === 1, 10_000, 'the closed stream to give its slot back');
    const c = await StreamClient.open(lim.wsBase, f.veventq.stream, { token: f.token });
    assert.equal((await c.json()).type, 'hello');
    await b.close();
    await c.close();
    await f.api.ok('context.destroy', 'DELETE', f.C);
  });

  test('heartbeat: a peer that answers no ping is terminated; one that answers stays and still gets its events', async () => {
    const f = await armFixture(lim, 4);
    const dead = await StreamClient.open(lim.wsBase, f.veventq.stream, { token: f.token, autoPong: false });
    const alive = await StreamClient.open(lim.wsBase, f.veventq.stream, { token: f.token });
    await alive.json();
    assert.equal((await dead.closed).code, 1006, 'terminated without a close handshake');
    await waitFor(async () => (await connections(f)) === 1, 10_000, 'the dead stream to be gone');
    // Several heartbeat intervals later the live one is open and reads an event.
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(alive.ws.readyState, WebSocket.OPEN);
    await faultingDma(f.api, 0x40_0000n);
    const frame = await alive.json();
    assert.deepEqual([frame.type, frame.events.length], ['vevents', 1]);
    await alive.close();
    await f.api.ok('context.destroy', 'DELETE', f.C);
  });

  test(`a ping flood (${MAX_PENDING_PONGS} pongs unwritten) closes the vEVENTQ stream 1008; client frames past the error-frame rate close it 1008`, async () => {
    const f = await armFixture(lim, 4);
    const flood = await StreamClient.open(lim.wsBase, f.veventq.stream, { token: f.token });
    await flood.json();
    const closed = await pingFlood(flood);
    assert.ok([CLOSE.POLICY, 1006].includes(closed.code), `closed ${closed.code}`);

    const chatty = await StreamClient.open(lim.wsBase, f.veventq.stream, { token: f.token });
    await chatty.json();
    chatty.ws.send('{}');
    assert.equal((await chatty.json(10_000)).errno, 'EOPNOTSUPP');
    // 200 frames at once: far more than 5 in any one second.
    for (let i = 0; i < 200; i++) chatty.ws.send('{}');
    assert.equal((await chatty.closed).code, CLOSE.POLICY);
    await f.api.ok('context.destroy', 'DELETE', f.C);
  });
});

describe('vEVENTQ stream back-pressure', () => {
  // A paused reader answers no pings: keep the heartbeat out of the way.
  let bp: TestServer;
  before(async () => {
    bp = await startServer({ stream: { highWaterMark: 64 << 10, heartbeatMs: 60_000 } });
  });
  after(async () => {
    await bp.close();
  });

  test('a reader that stops reading leaves the events in the queue (depth, then one LOST_EVENTS header); resumed, it reads each kept event once, in order, with the header where events were dropped', async () => {
    const depth = 64;
    const f = await armFixture(bp, depth);
    const status = (): Promise<{ queued: number; lost: number; sequence: number }> => f.api.ok('veventq.get', 'GET', `${f.C}/veventq/${f.veventq.id}`);
    const s = await StreamClient.open(bp.wsBase, f.veventq.stream, { token: f.token, protocol: VEVENT_SUBPROTOCOL_UAPI });
    assert.equal((await s.json()).type, 'hello');
    s.ws.pause();
    // The hardware: half a queue of events per event-loop turn, so a stream
    // that takes them off the queue every turn never loses one.
    const driver = bp.daemon.platform.iommuDevice('arm0').ops as SimIommu;
    const evt = smmuEvent(bp.daemon.platform.function('arm0').rid);
    let reported = 0;
    const report = async (turns: number): Promise<void> => {
      for (let t = 0; t < turns; t++) {
        for (let i = 0; i < depth / 2; i++) assert.equal(driver.handleEvent(evt), 0);
        reported += depth / 2;
        await tick();
      }
    };
    // Until the socket is backed up and the queue full: the socket buffers
    // (the high-water mark and the kernel's) hold a few MiB at most, a
    // fraction of the cap's 40 MB.
    let st = await status();
    while (st.lost === 0 && reported < 1_000_000) {
      await report(1024);
      st = await status();
    }
    assert.ok(st.lost > 0, `events are dropped for depth once the reader stops reading (${reported} reported, none lost)`);
    assert.equal(st.queued, depth + 1, 'depth events and the LOST_EVENTS header wait in the queue');
    // Taken off the queue for the paused reader (in the socket, the daemon's or the kernel's).
    const taken = reported - st.lost - depth;
    const more = 100_000;
    await report(more / (depth / 2));
    st = await status();
    assert.equal(st.queued, depth + 1);
    assert.equal(st.sequence, reported);
    const takenAfter = reported - st.lost - depth;
    assert.ok(
      takenAfter - taken < more / 4,
      `the daemon stops taking events for a reader that does not read (${taken} taken, then ${takenAfter} after ${more} more)`,
    );

    // Reading again: every event kept, each once, in order; a LOST_EVENTS
    // header right after the last event kept before each run of drops,
    // carrying the last dropped sequence, so that read + lost = reported.
    s.ws.resume();
    const entries: Array<{ sequence: number; lost: boolean }> = [];
    let events = 0;
    while (events < reported - st.lost) {
      for (const e of decodeVevents(await s.binary(10_000))) {
        entries.push({ sequence: e.sequence, lost: e.lost });
        if (!e.lost) {
          events++;
          if (events === 1 || events === reported - st.lost) assert.equal(decodeEvent(e.evt!).sid, 0x99, 'the vSID');
        }
      }
    }
    assert.equal(entries[0]?.sequence, 0);
    let dropped = 0;
    let headers = 0;
    for (let i = 1; i < entries.length; i++) {
      const [prev, e] = [entries[i - 1]!, entries[i]!];
      if (e.lost) {
        assert.ok(!prev.lost && e.sequence > prev.sequence, `header ${e.sequence} after event ${prev.sequence}`);
        dropped += e.sequence - prev.sequence;
        headers++;
      } else assert.equal(e.sequence, prev.sequence + 1, 'a sequence gap only behind a LOST_EVENTS header');
    }
    assert.ok(headers >= 1);
    assert.equal(dropped, st.lost, 'the headers account for every dropped event');
    assert.equal(events + dropped, reported);
    assert.equal((await status()).queued, 0);
    await s.quiet();
    await s.close();
    await f.api.ok('context.destroy', 'DELETE', f.C);
  });
});
