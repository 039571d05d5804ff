/**
 * Shutdown under load: traffic generators on several devices, fault streams
 * in both modes that answer slowly (so that groups are both queued and
 * delivered-unanswered), then SIGTERM mid-traffic. The daemon exits 0,
 * closes every stream with 1001, and answers every outstanding group
 * INVALID: checked in process from the devices' logs, and across the
 * process boundary from the summary line the daemon writes on stderr
 * (server/main.ts), which is computed from the devices' response logs and
 * Platform.audit().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { CLOSE, HWPT_FLAGS, PGFAULT_FLAGS, RECORD_SIZE } from '../../protocol/index.js';
import { Api, startServer, type Json } from '../server/helpers.js';
import { sleep, spawnDaemon } from './helpers.js';

const ADMIN = 'shutdown-admin';
const DEVICES = ['sd0', 'sd1', 'sd2', 'sd3'];

/** A fault stream client that answers every group SUCCESS after @delayMs, and counts what it holds. */
class SlowAnswerer {
  held = 0;
  answered = 0;
  private stopped = false;
  readonly closed: Promise<number>;

  private constructor(
    readonly ws: WebSocket,
    readonly uapi: boolean,
    delayMs: number,
  ) {
    this.closed = new Promise((r) => ws.on('close', (code) => r(code)));
    ws.on('message', (data: Buffer, binary: boolean) => {
      const cookies: number[] = [];
      if (binary) {
        for (let o = 0; o < data.length; o += RECORD_SIZE) if (data.readUInt32LE(o) & PGFAULT_FLAGS.LAST_PAGE) cookies.push(data.readUInt32LE(o + 36));
      } else {
        const m = JSON.parse(data.toString('utf8'));
        if (m.type === 'faults') for (const g of m.groups) cookies.push(g.cookie);
      }
      if (cookies.length === 0) return;
      this.held += cookies.length;
      setTimeout(() => {
        if (this.stopped || ws.readyState !== WebSocket.OPEN) return;
        this.held -= cookies.length;
        this.answered += cookies.length;
        if (uapi) {
          const b = Buffer.alloc(cookies.length * 8);
          cookies.forEach((c, i) => {
            b.writeUInt32LE(c, i * 8);
          });
          ws.send(b);
        } else {
          ws.send(JSON.stringify({ type: 'responses', responses: cookies.map((cookie) => ({ cookie, code: 0 })) }));
        }
      }, delayMs);
    });
  }

  static async open(wsBase: string, path: string, token: string, uapi: boolean, delayMs: number): Promise<SlowAnswerer> {
    const ws = new WebSocket(`${wsBase}${path}?window=256`, uapi ? 'iopf.v1.uapi' : 'iopf.v1.json', { headers: { authorization: `Bearer ${token}` } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return new SlowAnswerer(ws, uapi, delayMs);
  }

  /** stop() - answer nothing more (what is held stays outstanding). */
  stop(): void {
    this.stopped = true;
  }
}

/** Two contexts, two devices each, attached at the RID and PASID 1; traffic running on all four; slow answerers. */
async function load(api: Api, wsBase: string): Promise<SlowAnswerer[]> {
  const admin = api.withToken(ADMIN);
  for (const name of DEVICES) await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name });
  const streams: SlowAnswerer[] = [];
  for (let c = 0; c < 2; c++) {
    const created = await api.ok('context.create', 'POST', '/v1/contexts');
    const ctx = api.withToken(created.token);
    const prefix = `/v1/contexts/${created.ctx}`;
    const ioas = (await ctx.ok('ioas.alloc', 'POST', `${prefix}/ioas`, {})).id;
    const fault = await ctx.ok('fault.alloc', 'POST', `${prefix}/faults`, {});
    let hwpt = 0;
    for (const name of DEVICES.slice(c * 2, c * 2 + 2)) {
      const { dev_id } = await ctx.ok('device.bind', 'POST', `${prefix}/devices`, { name });
      if (!hwpt)
        hwpt = (
          await ctx.ok('hwpt.alloc', 'POST', `${prefix}/hwpt`, { dev_id, pt_id: ioas, flags: HWPT_FLAGS.FAULT_ID_VALID | HWPT_FLAGS.PASID, fault_id: fault.id })
        ).id;
      await ctx.ok('device.attach', 'POST', `${prefix}/devices/${dev_id}/attach`, { pt_id: hwpt });
      await ctx.ok('device.attach', 'POST', `${prefix}/devices/${dev_id}/attach`, { pt_id: hwpt, pasid: 1 });
    }
    streams.push(await SlowAnswerer.open(wsBase, fault.stream, created.token, c === 1, 25));
  }
  for (const [i, name] of DEVICES.entries()) {
    await admin.ok('platform.traffic.start', 'POST', `/v1/platform/devices/${name}/traffic`, {
      count: 1_000_000,
      in_flight: 64,
      pages_per_group: 1 + (i % 2),
      ...(i % 2 ? { pasid: 1 } : {}),
    });
  }
  return streams;
}

/** Wait until every device has had groups answered, and groups are held by the streams. */
async function underLoad(api: Api, streams: SlowAnswerer[]): Promise<void> {
  const admin = api.withToken(ADMIN);
  for (let t = 0; ; t++) {
    await sleep(50);
    const st = await Promise.all(DEVICES.map((n) => admin.ok('platform.traffic.status', 'GET', `/v1/platform/devices/${n}/traffic`)));
    if (st.every((s: Json) => s.running && s.answered > 50) && streams.every((s) => s.held > 0)) return;
    assert.ok(t < 200, `no load: ${JSON.stringify(st)}`);
  }
}

test('shutdown under load, in process: every outstanding group answered INVALID once, streams closed 1001', { timeout: 60_000 }, async () => {
  const server = await startServer({ adminToken: ADMIN });
  const streams = await load(server.api, server.wsBase);
  await underLoad(server.api, streams);
  for (const s of streams) s.stop();
  const platform = server.daemon.platform;
  const before = new Map(DEVICES.map((n) => [n, platform.responses(n).length]));
  const outstanding = platform.audit().outstandingGroups;
  const held = streams.reduce((n, s) => n + s.held, 0);
  assert.ok(outstanding >= held && held > 0, `${outstanding} outstanding, ${held} held by the streams`);
  await server.close();
  for (const s of streams) assert.equal(await s.closed, CLOSE.GOING_AWAY);
  let invalid = 0;
  for (const name of DEVICES) {
    const after = platform.responses(name, before.get(name));
    assert.ok(
      after.every((r) => r.code === 'invalid'),
      `${name}: only INVALID during shutdown`,
    );
    invalid += after.length;
    const fn = platform.function(name);
    assert.equal(fn.outstandingGroups, 0, `${name}: nothing left outstanding`);
    assert.equal(fn.unexpectedResponses, 0);
    const st = platform.trafficStatus(name);
    assert.equal(st.answered, st.sent, `${name}: every group the generator sent was answered`);
    assert.equal(st.running, false);
  }
  assert.equal(invalid, outstanding, 'one INVALID per outstanding group');
  const summary = server.daemon.shutdownSummary();
  assert.deepEqual(summary, {
    outstandingBefore: outstanding,
    heldByFaultQueues: summary?.heldByFaultQueues,
    answered: { success: 0, invalid: outstanding, failure: 0 },
    audit: { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 },
  });
  assert.ok(summary!.heldByFaultQueues >= held);
});

test('shutdown under load, the daemon process: SIGTERM mid-traffic exits 0, streams close 1001, its summary line shows every outstanding group answered INVALID', {
  timeout: 60_000,
}, async (t) => {
  const d = await spawnDaemon(['--admin-token', ADMIN, '--log-level', 'warn']);
  t.after(() => void d.child.kill('SIGKILL'));
  const api = new Api(d.base);
  const streams = await load(api, d.wsBase);
  await underLoad(api, streams);
  for (const s of streams) s.stop();
  const held = streams.reduce((n, s) => n + s.held, 0);
  d.child.kill('SIGTERM');
  for (const s of streams) assert.equal(await s.closed, CLOSE.GOING_AWAY);
  assert.equal(await d.exited, 0);
  assert.equal(d.stdout().trim().split('\n').length, 1, 'stdout holds the listening line only');
  const m = /iopfd: shutdown: answered (\d+) outstanding groups INVALID, audit (\{[^}]*\}), summary (\{.*\})\n/.exec(d.stderr());
  assert.ok(m, `no shutdown summary on stderr: ${d.stderr().slice(-500)}`);
  const n = Number(m[1]);
  const audit = JSON.parse(m[2]!);
  const summary = JSON.parse(m[3]!);
  assert.deepEqual(audit, { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 }, 'nothing left unanswered');
  assert.deepEqual(summary.answered, { success: 0, invalid: n, failure: 0 });
  assert.equal(summary.outstandingBefore, n, 'every group outstanding at the devices was answered INVALID, once');
  assert.ok(summary.heldByFaultQueues >= held && held > 0, `${summary.heldByFaultQueues} held by fault queues, ${held} by the streams`);
});
