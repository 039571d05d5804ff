/**
 * Hostile input over loopback, each case with its decided answer: a body
 * over the limit still gets its 413 (the daemon reads and discards what the
 * client goes on sending, then closes), Host header problems and a `null`
 * body are EINVAL with a body, over-long u64 strings and a traffic run past
 * 2^64 are refused; on the fault stream the token is checked first even
 * without an upgrade, the Authorization header wins over ?token=, a mixed
 * subprotocol offer gets the first known one, and a ping flood is closed
 * 1008.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { WebSocket } from 'ws';
import { CLOSE } from '../../protocol/index.js';
import { LINGER_MS } from '../../server/app.js';
import { MAX_PENDING_PONGS } from '../../server/stream.js';
import {
  assertError,
  faultFixture,
  inject,
  pingFlood,
  refusedUpgrade,
  StreamClient,
  startServer,
  waitFor,
  type FaultFixture,
  type TestServer,
} from '../server/helpers.js';
import { captureLog, parseRawResponse, rawSocket, type LogCapture } from './helpers.js';

/**
 * slowUpload() - send a request announcing @bytes of body, then the body in
 * 64 KiB writes, each after the previous one was taken by the kernel and a
 * 2 ms pause, and read nothing until the whole body was sent: the client a
 * reset would hurt. Resolves with everything the server sent, or the error
 * code and what had arrived.
 */
function slowUpload(base: string, bytes: number): Promise<{ text: string; error: string | undefined }> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const s = connect(Number(url.port), url.hostname);
    let text = '';
    let error: string | undefined;
    s.pause();
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('close', () => resolve({ text, error }));
    s.write(`POST /v1/contexts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${bytes}\r\n\r\n`);
    const chunk = Buffer.alloc(64 << 10, 0x20);
    let sent = 0;
    const step = (): void => {
      if (s.destroyed) return;
      if (sent >= bytes) return void s.resume();
      const n = Math.min(chunk.length, bytes - sent);
      sent += n;
      s.write(chunk.subarray(0, n), () => setTimeout(step, 2));
    };
    step();
  });
}

describe('hostile input', { timeout: 60_000 }, () => {
  let server: TestServer;

  before(async () => {
    server = await startServer({});
  });
  after(() => server.close());

  test('a 2 MiB body: the 413 EMSGSIZE arrives whole, 10 times out of 10, with a slow uploader that reads last', async () => {
    for (let i = 0; i < 10; i++) {
      const { text, error } = await slowUpload(server.base, 2 << 20);
      const r = parseRawResponse(text);
      assert.ok(r, `try ${i}: no response (error ${error ?? 'none'}, got ${JSON.stringify(text.slice(0, 80))})`);
      assert.equal(r.status, 413);
      assert.deepEqual(r.body, { errno: 'EMSGSIZE', message: 'request body is larger than 1 MiB' });
      assert.match(text, /\r\nconnection: close\r\n/i);
    }
    // fetch gets the same answer, and the daemon serves the next request.
    const r = await fetch(`${server.base}/v1/contexts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.alloc(2 << 20, 0x20) });
    assert.equal(r.status, 413);
    assert.equal(((await r.json()) as { errno: string }).errno, 'EMSGSIZE');
    await server.api.ok('platform.get', 'GET', '/v1/platform');
  });

  test('after a 413 the daemon does not wait for a client that never finishes: it closes within its linger time', async () => {
    const url = new URL(server.base);
    // Half-open allowed: the client goes on sending after the daemon's FIN.
    const s = connect({ port: Number(url.port), host: url.hostname, allowHalfOpen: true });
    let text = '';
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('error', () => {});
    const closed = new Promise<number>((resolve) => s.on('close', () => resolve(Date.now())));
    const start = Date.now();
    // Announces 100 MiB, sends 1.5 MiB, then a byte every 100 ms: the daemon
    // reads them until the linger time is over, then closes, and the next
    // byte meets a reset.
    s.write(`POST /v1/contexts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${100 << 20}\r\n\r\n`);
    s.write(Buffer.alloc(3 << 19, 0x20));
    const trickle = setInterval(() => s.writable && s.write(' '), 100);
    const end = await closed;
    clearInterval(trickle);
    assert.equal(parseRawResponse(text)?.status, 413);
    assert.ok(end - start >= LINGER_MS - 100, `closed after ${end - start} ms, before the linger time`);
    assert.ok(end - start < LINGER_MS + 20_000, `closed after ${end - start} ms`);
  });

  test('Host: none (HTTP/1.1) and two are 400 EINVAL with a body; HTTP/1.0 without Host is served', async () => {
    const none = parseRawResponse(await rawSocket(server.base, 'GET /v1/platform HTTP/1.1\r\n\r\n', 2000, /\}$/));
    assert.deepEqual(none, { status: 400, body: { errno: 'EINVAL', message: 'the request has no Host header; HTTP/1.1 requires one' } });
    const two = parseRawResponse(await rawSocket(server.base, 'GET /v1/platform HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 2000, /\}$/));
    assert.deepEqual(two, { status: 400, body: { errno: 'EINVAL', message: 'the request has 2 Host headers; HTTP/1.1 allows one' } });
    const old = await rawSocket(server.base, 'GET /v1/platform HTTP/1.0\r\n\r\n', 2000);
    assert.match(old, /^HTTP\/1\.1 200 /);
  });

  test('a JSON null (or array, number, string) body is EINVAL naming what it got; an empty body is still no body', async () => {
    for (const [body, what] of [
      ['null', 'null'],
      ['[]', 'an array'],
      ['7', 'a number'],
      ['"x"', 'a string'],
    ] as const) {
      const r = await server.api.call('POST', '/v1/contexts', { raw: body, contentType: 'application/json' });
      assertError(r, 400, 'EINVAL', new RegExp(`^body must be a JSON object, not ${what}$`));
    }
    await server.api.ok('context.create', 'POST', '/v1/contexts');
  });

  test('u64 strings: 1 to 16 hex digits after 0x; 17 digits are refused even when they are leading zeros', async () => {
    const c = await server.api.ok('context.create', 'POST', '/v1/contexts');
    const api = server.api.withToken(c.token);
    const prefix = `/v1/contexts/${c.ctx}`;
    const { id } = await api.ok('ioas.alloc', 'POST', `${prefix}/ioas`, {});
    await api.ok('ioas.map', 'POST', `${prefix}/ioas/${id}/map`, { iova: `0x${'0'.repeat(11)}10000`, length: '0x1000' });
    assertError(await api.post(`${prefix}/ioas/${id}/map`, { iova: `0x${'0'.repeat(12)}20000`, length: '0x1000' }), 400, 'EINVAL', /1 to 16 hex digits/);
    assertError(await api.post(`${prefix}/ioas/${id}/map`, { iova: `0x${'0'.repeat(100_000)}`, length: '0x1000' }), 400, 'EINVAL', /1 to 16 hex digits/);
  });

  test('a traffic run whose pages would pass 2^64 is EOVERFLOW; one that ends at 2^64 runs', async () => {
    assertError(
      await server.api.post('/v1/platform/devices/nic0/traffic', { count: 2, pages_per_group: 2, base: '0xffffffffffffe000' }),
      400,
      'EOVERFLOW',
      /would pass 2\^64/,
    );
    assertError(await server.api.post('/v1/platform/devices/nic0/traffic', { count: 4294967295, base: '0xffffff0000000000' }), 400, 'EOVERFLOW');
    await server.api.ok('platform.traffic.start', 'POST', '/v1/platform/devices/nic0/traffic', { count: 1, pages_per_group: 2, base: '0xffffffffffffe000' });
    await server.api.ok('platform.traffic.stop', 'DELETE', '/v1/platform/devices/nic0/traffic');
  });
});

describe('hostile input: the fault stream', { timeout: 60_000 }, () => {
  let server: TestServer;
  let log: LogCapture;
  let fx: FaultFixture;

  before(async () => {
    log = captureLog('debug');
    server = await startServer({ logger: log.logger });
    fx = await faultFixture(server);
  });
  after(() => server.close());

  test('the stream path without an upgrade checks the token first: 401 without or with a wrong one, 400 with the right one; unknown routes under a context too', async () => {
    const path = `${fx.prefix}/faults/${fx.fault}/stream`;
    assertError(await server.api.call('GET', path), 401, 'EACCES');
    assertError(await server.api.withToken('wrong').call('GET', path), 401, 'EACCES');
    assertError(await server.api.call('GET', `${path}?token=wrong`), 401, 'EACCES');
    assertError(await fx.api.call('GET', path), 400, 'EINVAL', /needs a WebSocket upgrade/);
    assertError(await server.api.call('GET', `${fx.prefix}/no-such-route`), 401, 'EACCES');
    assertError(await server.api.call('PUT', `${fx.prefix}/ioas`), 401, 'EACCES');
    assertError(await server.api.call('GET', '/v1/contexts/999999/x'), 401, 'EACCES');
    assertError(await fx.api.call('GET', `${fx.prefix}/no-such-route`), 404, 'ENOENT');
  });

  test('Authorization header over ?token=: a wrong or malformed header with the right query token is 401', async () => {
    const url = `${server.wsBase}${fx.stream}?token=${encodeURIComponent(fx.token)}`;
    for (const authorization of ['Bearer wrong', 'Basic abc', 'Bearer']) {
      const r = await new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(url, [], { headers: { authorization } });
        ws.once('open', () => reject(new Error(`${authorization}: the upgrade was accepted`)));
        ws.once('error', () => {});
        ws.once('unexpected-response', (_req, res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
      });
      assert.equal(r, 401, authorization);
    }
    const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token, tokenInQuery: true });
    assert.equal((await s.json()).type, 'hello');
    await s.close();
  });

  test('a mixed subprotocol offer: the first one the daemon speaks is chosen', async () => {
    for (const [offer, chosen] of [
      [['iopf.v1.json', 'foo'], 'iopf.v1.json'],
      [['foo', 'iopf.v1.uapi', 'iopf.v1.json'], 'iopf.v1.uapi'],
    ] as const) {
      const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token, protocol: [...offer] });
      assert.equal(s.ws.protocol, chosen);
      assert.equal((await s.json()).protocol, chosen);
      await s.close();
    }
    assert.equal((await refusedUpgrade(server.wsBase, fx.stream, { token: fx.token, protocol: ['foo', 'bar'] })).status, 400);
  });

  test(`a ping flood (${MAX_PENDING_PONGS} pongs unwritten) closes that stream 1008 "ping flood" with a warn line; another stream and pings at a sane pace are untouched`, async () => {
    const other = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
    await other.json();
    // A sane peer: 200 pings, each after the previous pong.
    for (let i = 0; i < 200; i++) {
      const pong = new Promise((resolve) => other.ws.once('pong', resolve));
      other.ws.ping();
      await pong;
    }
    const flood = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
    await flood.json();
    const closed = await pingFlood(flood);
    assert.ok([CLOSE.POLICY, 1006].includes(closed.code), `closed ${closed.code}`);
    await waitFor(() => log.lines.some((l) => l.includes('"ping flood: closing"') && l.includes('"level":40')), 5000, 'the warn line');
    // The other stream still works: a group goes to it and is answered.
    await inject(server.api, 'nic0', { grpid: 4, addr: 0x4000n });
    const f = await other.json();
    assert.equal((await other.respond([{ cookie: f.groups[0].cookie, code: 'success' }])).ok, 1);
    await other.close();
  });

  test('a peer that reads its pongs may send bursts below the bound', async () => {
    const s = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
    await s.json();
    for (let round = 0; round < 20; round++) {
      let pongs = 0;
      const all = new Promise<void>((resolve) => s.ws.on('pong', () => ++pongs === 16 && resolve()));
      for (let i = 0; i < 16; i++) s.ws.ping();
      await all;
      s.ws.removeAllListeners('pong');
    }
    assert.equal(s.ws.readyState, WebSocket.OPEN);
    await s.close();
  });
});
