// The observation feed (GET /v1/platform/observe) and the walk (GET
// .../walk), docs/protocol.md 4.2: the feed shows every sampled group's
// report, delivery and answer while the client alone answers them, its
// snapshots describe devices, queues and contexts, it is admin-only,
// bounded, drops a slow subscriber and ends at shutdown; the walk records
// every level of a nested translation and changes nothing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { VtdS1Builder } from '../../core/hw/vtd-s1.js';
import { HWPT_FLAGS, zObserveGroups, zObserveSnapshot } from '../../protocol/index.js';
import { ObserveFeed } from '../../server/observe.js';
import { ObserveStream } from '../../clients/sdk/index.js';
import { assertError, deviceResponses, faultFixture, inject, startServer, StreamClient, waitFor, type Json, type TestServer } from './helpers.js';

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** One Server-Sent Event. */
interface Sse {
  event: string;
  data: Json;
}

/** SseReader - a feed read with the SDK's ObserveStream; its messages are kept in order. */
class SseReader {
  readonly events: Sse[] = [];
  ended = false;
  private readonly done: Promise<void>;

  private constructor(
    readonly res: Response,
    private readonly stream: ObserveStream,
  ) {
    this.done = (async () => {
      try {
        for await (const m of stream) this.events.push(m);
      } catch {
        // the connection broke: ended as well
      }
      this.ended = true;
    })();
  }

  static async open(base: string, query = '', token?: string): Promise<SseReader> {
    const ac = new AbortController();
    const res = await fetch(`${base}/v1/platform/observe${query}`, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      signal: ac.signal,
    });
    return new SseReader(res, new ObserveStream(res, ac));
  }

  of(event: string): Json[] {
    return this.events.filter((e) => e.event === event).map((e) => e.data);
  }

  groupEvents(): Json[] {
    return this.of('groups').flatMap((g) => g.events);
  }

  async close(): Promise<void> {
    this.stream.close();
    await this.done;
  }
}

let server: TestServer;
before(async () => (server = await startServer({ adminToken: 'admin-secret' })));
after(() => server.close());

test('observe: the feed shows the groups the client answers, and takes none', async () => {
  const admin = server.api.withToken('admin-secret');
  const fx = await faultFixture({ api: admin }, { device: 'nic0' });
  const feed = await SseReader.open(server.base, '', 'admin-secret');
  assert.equal(feed.res.status, 200);
  assert.match(feed.res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const client = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
  assert.equal((await client.json()).type, 'hello');
  const before = (await deviceResponses(admin, 'nic0')).length;

  const N = 6;
  const codes: Record<number, string> = {};
  for (let g = 0; g < N; g++) {
    await inject(admin, 'nic0', { grpid: 100 + g, addr: 0x40000n + BigInt(g) * 0x1000n, perm: 1 + (g % 2) });
    const f = await client.json();
    assert.equal(f.type, 'faults');
    for (const group of f.groups) {
      const code = group.records[0].grpid % 3 === 0 ? 'invalid' : 'success';
      codes[group.records[0].grpid] = code;
      await client.respond([{ cookie: group.cookie, code }]);
    }
  }
  await waitFor(() => feed.groupEvents().filter((e) => e.kind === 'answered').length >= N, 30_000, 'the answers on the feed');
  await waitFor(() => feed.of('snapshot').length >= 2, 30_000, 'a second snapshot');

  // Every event matches its schema; each group was reported, delivered, answered with the client's code.
  for (const g of feed.of('groups')) assert.ok(zObserveGroups.safeParse(g).success, JSON.stringify(g));
  for (const s of feed.of('snapshot')) assert.ok(zObserveSnapshot.safeParse(s).success, JSON.stringify(s));
  for (let g = 0; g < N; g++) {
    const grpid = 100 + g;
    const mine = feed.groupEvents().filter((e) => e.grpid === grpid);
    assert.deepEqual(mine.map((e) => e.kind), ['reported', 'delivered', 'answered'], `group ${grpid}`);
    for (const e of mine) {
      assert.equal(e.device, 'nic0');
      assert.equal(e.ctx, fx.ctx);
      assert.equal(e.queue, fx.fault);
      assert.equal(e.addr, hex(0x40000n + BigInt(g) * 0x1000n));
      assert.equal(e.perm, 1 + (g % 2));
    }
    assert.ok(mine[1].cookie >= 1);
    assert.equal(mine[2].code, codes[grpid]);
    assert.ok(mine[2].latency_ms >= 0);
  }

  // The device got one response per group, the client's code (the feed answered nothing).
  const log = (await deviceResponses(admin, 'nic0')).slice(before);
  assert.deepEqual(
    log.map((r: Json) => [r.grpid, r.code]),
    Object.entries(codes).map(([g, c]) => [Number(g), c]),
  );

  // The snapshot describes the device, the queue and the context.
  const snap = feed.of('snapshot').at(-1);
  const dev = snap.devices.find((d: Json) => d.name === 'nic0');
  assert.deepEqual({ ...dev, pri_budget: dev.pri_budget.total }, { name: 'nic0', iommu: 'dmar0', pri_enabled: true, iopf: true, pri_budget: 512, prq: { used: 0, depth: 4096, overflow: false } });
  assert.equal(dev.pri_budget.in_use, 0);
  const q = snap.queues.find((x: Json) => x.ctx === fx.ctx && x.id === fx.fault);
  assert.deepEqual([q.queued, q.outstanding, q.connections], [0, 0, 1]);
  const total = (s: Json) => s.queues.find((x: Json) => x.ctx === fx.ctx)?.counters;
  assert.equal(total(snap).reported, N);
  assert.deepEqual(snap.contexts.find((c: Json) => c.ctx === fx.ctx).objects, { device: 1, ioas: 1, fault: 1, hwpt_paging: 1 });
  const sum = feed.of('snapshot').reduce((a: number, s: Json) => a + s.totals.latency_ms.count, 0);
  assert.equal(sum, N, 'every answer counted once in the latency totals');

  await client.close();
  await feed.close();
  await admin.withToken(fx.token).ok('context.destroy', 'DELETE', fx.prefix);
});

test('observe: auto-answered groups carry their cause; events=0 sends snapshots only', async () => {
  const admin = server.api.withToken('admin-secret');
  const fx = await faultFixture({ api: admin }, { device: 'accel0', faultBody: { depth: 1, overflow: 'invalid' } });
  const feed = await SseReader.open(server.base, '?events=1', 'admin-secret');
  const quiet = await SseReader.open(server.base, '?events=0', 'admin-secret');
  await inject(admin, 'accel0', { grpid: 1, addr: 0x1000n });
  await inject(admin, 'accel0', { grpid: 2, addr: 0x2000n }); // over the depth: overflow, INVALID
  await admin.withToken(fx.token).ok('device.detach', 'POST', `${fx.prefix}/devices/${fx.devId}/detach`, {}); // group 1: detach
  await waitFor(() => feed.groupEvents().filter((e) => e.kind === 'auto').length >= 2, 30_000, 'the auto answers');
  const auto = feed.groupEvents().filter((e) => e.kind === 'auto');
  assert.deepEqual(auto.map((e) => [e.grpid, e.cause, e.code]), [[2, 'overflow', 'invalid'], [1, 'detach', 'invalid']]);
  await waitFor(() => quiet.of('snapshot').length >= 2, 30_000, 'snapshots on the quiet feed');
  assert.equal(quiet.of('groups').length, 0);
  await feed.close();
  await quiet.close();
  await admin.withToken(fx.token).ok('context.destroy', 'DELETE', fx.prefix);
});

test('observe: admin only; bad query is EINVAL', async () => {
  assertError(await server.api.get('/v1/platform/observe'), 401, 'EACCES');
  assertError(await server.api.withToken('nope').get('/v1/platform/observe'), 401, 'EACCES');
  assertError(await server.api.withToken('admin-secret').get('/v1/platform/observe?events=2'), 400, 'EINVAL', /events/);
  assertError(await server.api.get('/v1/platform/devices/nic0/walk?addr=0x1000'), 401, 'EACCES');
});

test('observe: at most maxSubscribers feeds (ENOSPC); a closed feed frees its place; shutdown ends the feeds', async () => {
  const s = await startServer({ observe: { maxSubscribers: 2 } });
  try {
    const a = await SseReader.open(s.base);
    const b = await SseReader.open(s.base);
    const refused = await s.api.get('/v1/platform/observe');
    assertError(refused, 503, 'ENOSPC', /maximum of 2 subscribers/);
    await a.close();
    await waitFor(() => s.daemon.observe.subscribers === 1, 30_000, 'the closed feed to leave');
    const c = await SseReader.open(s.base);
    assert.equal(c.res.status, 200);
    await s.close(); // resolves although two feeds are open: shutdown ends them
    await waitFor(() => b.ended && c.ended, 30_000, 'the feeds to end');
  } finally {
    await s.close();
  }
});

test('observe: a subscriber that does not read misses messages and is dropped; the groups still flow', async () => {
  const feed = new ObserveFeed({}, { maxSubscribers: 4, intervalMs: 5, flushMs: 5, eventsPerSecond: 100, ringSize: 8, slowBytes: 1, slowSnapshots: 3 });
  const out: Readable = feed.subscribe(true); // never read
  const closed = new Promise<void>((resolve) => out.on('close', () => resolve()));
  await closed;
  assert.equal(feed.subscribers, 0);
  feed.close();
  assert.throws(() => feed.subscribe(true), /shutting down/);
});

/** A stage-1 table written into guest RAM through the REST API. */
async function nestedFixture(admin: TestServer['api']) {
  await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'walk0' });
  const { ctx, token } = await admin.ok('context.create', 'POST', '/v1/contexts');
  const api = admin.withToken(token);
  const c = `/v1/contexts/${ctx}`;
  const { dev_id } = await api.ok('device.bind', 'POST', `${c}/devices`, { name: 'walk0' });
  const { id: ioas } = await api.ok('ioas.alloc', 'POST', `${c}/ioas`, {});
  await api.ok('ioas.map', 'POST', `${c}/ioas/${ioas}/map`, { iova: '0x0', length: '0x200000' });
  const { id: s2 } = await api.ok('hwpt.alloc', 'POST', `${c}/hwpt`, { dev_id, pt_id: ioas, flags: HWPT_FLAGS.NEST_PARENT });
  const entries = new Map<bigint, bigint>();
  let next = 0x100000n;
  const builder = new VtdS1Builder(() => ((next += 0x1000n), next - 0x1000n), (gpa) => entries.get(gpa) ?? 0n, (gpa, v) => void entries.set(gpa, v), 48);
  const va = 0x7f0000000000n;
  builder.map(va, 0x80000n, { write: false });
  const writes = [...entries].map(([gpa, v]) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return { iova: hex(gpa), data: b.toString('hex') };
  });
  await api.ok('ioas.memory.write', 'POST', `${c}/ioas/${ioas}/memory/write`, { writes });
  const { id: s1 } = await api.ok('hwpt.alloc', 'POST', `${c}/hwpt`, {
    dev_id, pt_id: s2, data_type: 'vtd_s1', data: { flags: 0, pgtbl_addr: hex(builder.root), addr_width: 48 },
  });
  await api.ok('device.attach', 'POST', `${c}/devices/${dev_id}/attach`, { pt_id: s1 });
  return { api, c, ioas, va, entries, builder };
}

test('walk: every stage-1 level with its stage-2 translation; read-only (no IOTLB fill, entries unchanged)', async () => {
  const admin = server.api.withToken('admin-secret');
  const { api, c, ioas, va, entries, builder } = await nestedFixture(admin);
  const unit = server.daemon.platform.iommus.get('dmar0')!.unit;
  const iotlb = unit.iotlb.size;
  const tables = await api.ok('ioas.memory.read', 'POST', `${c}/ioas/${ioas}/memory/read`, { iova: '0x100000', length: '0x4000' });

  // A mapped VA: four levels, each entry as the guest wrote it, then stage 2 of the page.
  const ok = await admin.ok('platform.device.walk', 'GET', `/v1/platform/devices/walk0/walk?addr=${hex(va + 0x18n)}&perm=1`);
  assert.equal(ok.context, 'nested');
  assert.equal(ok.s1_root, hex(builder.root));
  assert.deepEqual(ok.stage1.map((l: Json) => l.level), [4, 3, 2, 1]);
  for (const l of ok.stage1) {
    assert.equal(l.entry, hex(entries.get(BigInt(l.entry_gpa))!), `level ${l.level}`);
    assert.equal(l.s2.gpa, l.entry_gpa);
    assert.ok(l.s2.hpa && l.s2.read);
  }
  assert.equal(ok.stage2.gpa, '0x80018');
  assert.deepEqual(ok.result, { kind: 'ok', hpa: ok.stage2.hpa });

  // A write to the read-only page: a stage-1 permission fault at the leaf.
  const ro = await admin.ok('platform.device.walk', 'GET', `/v1/platform/devices/walk0/walk?addr=${hex(va)}&perm=2`);
  assert.deepEqual(ro.result, { kind: 'fault', stage: 1, reason: 'write', level: 1 });
  // An unmapped VA: the walk stops at the first non-present entry.
  const np = await admin.ok('platform.device.walk', 'GET', `/v1/platform/devices/walk0/walk?addr=${hex(va + 0x40000000n)}`);
  assert.deepEqual(np.result, { kind: 'fault', stage: 1, reason: 'not-present', level: 3 });
  assert.equal(np.stage1.length, 2);
  // No context at a PASID nobody attached.
  const none = await admin.ok('platform.device.walk', 'GET', `/v1/platform/devices/walk0/walk?addr=0x1000&pasid=5`);
  assert.deepEqual([none.context, none.stage1, none.result.stage], ['none', [], 0]);

  // Nothing changed: the IOTLB and every table byte (no Accessed/Dirty bit).
  assert.equal(unit.iotlb.size, iotlb);
  assert.deepEqual(await api.ok('ioas.memory.read', 'POST', `${c}/ioas/${ioas}/memory/read`, { iova: '0x100000', length: '0x4000' }), tables);

  assertError(await admin.get('/v1/platform/devices/nope/walk?addr=0x0'), 404, 'ENOENT');
  assertError(await admin.get('/v1/platform/devices/walk0/walk'), 400, 'EINVAL', /addr/);
  assertError(await admin.get('/v1/platform/devices/walk0/walk?addr=4096'), 400, 'EINVAL', /addr/);
  assertError(await admin.get('/v1/platform/devices/walk0/walk?addr=0x0&perm=16'), 400, 'EINVAL', /perm/);
  await api.ok('context.destroy', 'DELETE', c);
});
