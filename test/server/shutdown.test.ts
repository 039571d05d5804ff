// Shutdown (docs/server.md, Running): stop accepting, answer every outstanding group
// INVALID, close streams with 1001, exit 0. Checked in process (where the
// device's response log can still be read afterwards) and on the real
// process with SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLOSE } from '../../protocol/index.js';
import { Api, faultFixture, inject, startServer, StreamClient } from './helpers.js';

const MAIN = fileURLToPath(new URL('../../server/main.js', import.meta.url));

test('shutdown() answers every outstanding group INVALID, closes streams 1001, lets in-flight requests finish', async () => {
  const server = await startServer();
  const fx = await faultFixture(server, { device: 'nic0' });
  const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token, window: 2 });
  await s.json();
  for (let g = 0; g < 3; g++) await inject(server.api, 'nic0', { grpid: 20 + g, addr: BigInt(g) * 0x1000n });
  let delivered = 0;
  while (delivered < 2) delivered += (await s.json()).groups.length;
  // A DMA of accel0 waiting on a group that no stream reads.
  const fx2 = await faultFixture(server, { device: 'accel0' });
  const dma = server.api.post('/v1/platform/devices/accel0/dma', { iova: '0x5000', length: '0x8', access: 'read' });
  const status = async () => (await fx2.api.get(`${fx2.prefix}/faults/${fx2.fault}`)).body;
  while ((await status()).queued === 0) await new Promise((r) => setTimeout(r, 5));

  await server.close();
  assert.equal((await s.closed).code, CLOSE.GOING_AWAY);
  const dmaReply = await dma;
  assert.equal(dmaReply.status, 200);
  assert.equal(dmaReply.body.status, 'invalid');
  const platform = server.daemon.platform;
  assert.deepEqual(
    platform
      .responses('nic0')
      .map((r) => [r.grpid, r.code])
      .sort(),
    [
      [20, 'invalid'],
      [21, 'invalid'],
      [22, 'invalid'],
    ],
  );
  assert.deepEqual(
    platform.responses('accel0').map((r) => r.code),
    ['invalid'],
  );
  assert.equal(platform.audit().outstandingGroups, 0);
  await assert.rejects(fetch(`${server.base}/healthz`), 'no longer accepting');
});

test('the daemon process: one listening line, SIGTERM closes streams 1001 and exits 0', async () => {
  const child = spawn(process.execPath, [MAIN, '--port', '0', '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.setEncoding('utf8');
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes('\n')) resolve(stdout.split('\n')[0]!);
    });
    child.once('exit', (code) => reject(new Error(`daemon exited with ${code}`)));
  });
  const m = /listening.*(http:\/\/127\.0\.0\.1:(\d+))/.exec(line);
  assert.ok(m, line);
  const base = m[1]!;
  assert.notEqual(Number(m[2]), 0, 'the bound port, not 0');
  const api = new Api(base);
  assert.equal((await api.get('/healthz')).status, 200);

  const fx = await faultFixture({ api }, { device: 'nic0' });
  const s = await StreamClient.open(base.replace('http', 'ws'), fx.stream, { token: fx.token });
  await s.json();
  await inject(api, 'nic0', { grpid: 1, addr: 0x1000n });
  await inject(api, 'nic0', { grpid: 2, addr: 0x2000n });
  let delivered = 0;
  while (delivered < 2) delivered += (await s.json()).groups.length;

  child.kill('SIGTERM');
  assert.equal((await s.closed).code, CLOSE.GOING_AWAY);
  assert.equal(await exited, 0);
  assert.equal(stdout.trim().split('\n').length, 1, `exactly one line on stdout: ${stdout}`);
});
