// The stream's extension notices end to end: `revoked` after a detach over
// REST, and in uapi mode `redelivered` before a binary frame holding
// redelivered groups.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { zServerMessage } from '../../protocol/index.js';
import { deviceResponses, faultFixture, inject, startServer, StreamClient, waitFor, type FaultFixture, type Json, type TestServer } from './helpers.js';

let nextDevice = 0;

async function fixture(server: TestServer): Promise<FaultFixture & { device: string }> {
  const device = `n${nextDevice++}`;
  await server.api.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: device });
  return { ...(await faultFixture(server, { device })), device };
}

async function open(server: TestServer, fx: FaultFixture, opts: { protocol?: string; window?: number } = {}): Promise<StreamClient> {
  const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token, ...opts });
  assert.equal((await s.json()).type, 'hello');
  return s;
}

async function connections(fx: FaultFixture): Promise<number> {
  return (await fx.api.ok('fault.get', 'GET', `${fx.prefix}/faults/${fx.fault}`)).connections;
}

describe('fault stream notices (extensions)', () => {
  let server: TestServer;
  before(async () => (server = await startServer()));
  after(() => server.close());

  test('revoked: a detach over REST names the delivered cookies only, on every open stream', async () => {
    const fx = await fixture(server);
    const s = await open(server, fx, { window: 1 });
    const t = await open(server, fx, { protocol: 'iopf.v1.uapi', window: 1 });
    await inject(server.api, fx.device, { grpid: 1, addr: 0x1000n });
    await inject(server.api, fx.device, { grpid: 2, addr: 0x2000n });
    await inject(server.api, fx.device, { grpid: 3, addr: 0x3000n }); // queued: both windows are full
    const g = (await s.json()).groups[0];
    const recs = await t.binary();
    const other = recs.readUInt32LE(36);
    await s.quiet();
    await fx.api.ok('device.detach', 'POST', `${fx.prefix}/devices/${fx.devId}/detach`, {});
    const expected = { type: 'revoked', cause: 'detach', cookies: [g.cookie, other].sort((a, b) => a - b) };
    const got = (await s.reply('revoked')) as Json;
    got.cookies.sort((a: number, b: number) => a - b);
    assert.deepEqual(got, expected);
    assert.ok(zServerMessage.safeParse(got).success);
    const gotT = (await t.reply('revoked')) as Json;
    gotT.cookies.sort((a: number, b: number) => a - b);
    assert.deepEqual(gotT, expected);
    assert.equal((await deviceResponses(server.api, fx.device)).length, 3);
    assert.deepEqual((await s.respond([{ cookie: g.cookie, code: 0 }])).errors.length, 1, 'the revoked cookie is stale');
    await s.close();
    await t.close();
  });

  test('redelivered (uapi): a reconnecting stream gets the notice, then the binary frame with the same cookie', async () => {
    const fx = await fixture(server);
    const a = await open(server, fx, { protocol: 'iopf.v1.uapi' });
    await inject(server.api, fx.device, { grpid: 4, addr: 0x4000n });
    const first = await a.binary(); // a first delivery has no notice before it
    const cookie = first.readUInt32LE(36);
    await a.close();
    await waitFor(async () => (await connections(fx)) === 0, 2000, 'the close');
    const b = await open(server, fx, { protocol: 'iopf.v1.uapi' });
    const notice = await b.json();
    assert.deepEqual(notice, { type: 'redelivered', cookies: [cookie] });
    assert.ok(zServerMessage.safeParse(notice).success);
    const again = await b.binary();
    assert.ok(again.equals(first), 'the same records, the same cookie');
    // A new group afterwards: no notice.
    await inject(server.api, fx.device, { grpid: 5, addr: 0x5000n });
    assert.equal((await b.binary()).readUInt32LE(12), 5);
    await b.close();
  });
});
