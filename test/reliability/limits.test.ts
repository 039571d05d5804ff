/**
 * Limits: every configurable limit, hit on purpose, gives a clear errno or
 * close code and affects only the offender: in the same test, another
 * context (or connection) keeps working. Also the memory a misbehaving peer
 * can make the daemon hold: a stream peer that writes without reading.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CLOSE } from '../../protocol/index.js';
import { Api, faultFixture, injectGroup, StreamClient, startServer, type FaultFixture, type Json, type TestServer } from '../server/helpers.js';
import { metricValue, sleep, spawnDaemon } from './helpers.js';

/** A group round trip on @fx: inject one group on @device, answer it on a fresh stream, see the response. */
async function roundTrip(api: Api, wsBase: string, fx: FaultFixture, device: string, grpid: number): Promise<void> {
  const s = await StreamClient.open(wsBase, fx.stream, { token: fx.token });
  await s.json();
  await injectGroup(api, device, grpid, 0x40000n + BigInt(grpid) * 0x1000n);
  const frame = await s.reply('faults');
  assert.equal((await s.respond([{ cookie: frame.groups[0].cookie, code: 0 }])).ok, 1);
  await s.close();
}

describe('limits: a stream peer that writes without reading', () => {
  test('its frames stop being read while the replies to it are backed up; the daemon does not buffer without bound', { timeout: 60_000 }, async () => {
    const d = await spawnDaemon(['--log-level', 'warn']);
    try {
      const api = new Api(d.base);
      const fx = await faultFixture({ api }, { device: 'nic0' });
      const rss = async (): Promise<number> => metricValue((await api.get('/metrics')).text, 'iopfd_process_resident_memory_bytes');
      const before = await rss();
      const s = await StreamClient.open(d.wsBase, fx.stream, { token: fx.token });
      await s.json();
      // Never read: each `responses` frame of bogus cookies (~0.9 MiB) gets a `results` frame ~4 times its size.
      (s.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      const entries = Array.from({ length: 30000 }, (_, i) => ({ cookie: 4_000_000_000 + i, code: 0 }));
      const frame = JSON.stringify({ type: 'responses', responses: entries });
      const FRAMES = 24;
      for (let i = 0; i < FRAMES; i++) s.ws.send(frame);
      await sleep(1500);
      const grown = (await rss()) - before;
      // Unthrottled, the daemon would hold every reply: FRAMES × ~3.6 MB ≈ 90 MB.
      assert.ok(grown < 48e6, `the daemon's RSS grew by ${(grown / 1e6).toFixed(1)} MB`);
      // Reading again, the peer gets one results frame per frame, and the stream works normally.
      (s.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      for (let i = 0; i < FRAMES; i++) {
        const r = await s.reply('results', 10000);
        assert.equal(r.errors.length, entries.length);
      }
      await injectGroup(api, 'nic0', 9, 0x9000n);
      const f = await s.reply('faults');
      assert.equal((await s.respond([{ cookie: f.groups[0].cookie, code: 0 }])).ok, 1);
      await s.close();
    } finally {
      d.child.kill('SIGKILL');
      await d.exited;
    }
  });
});
