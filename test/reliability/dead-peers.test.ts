/**
 * Dead peers: a stream client that goes away without a close frame. Either
 * the TCP connection drops (the daemon sees the close at once), or the peer
 * vanishes with the connection still up: a black-hole proxy that stops
 * forwarding both ways (even in the middle of a frame), or a client that
 * stops reading. The heartbeat must find those out; in every case the
 * groups the peer held and did not answer go back to the queue with their
 * cookies and are redelivered (`redelivered: true`) to a live connection,
 * and nothing is answered because a connection died: each group gets
 * exactly one response, from the live client.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { decodeBinaryRecords, faultFixture, inject, StreamClient, startServer, type FaultFixture, type Json, type TestServer } from '../server/helpers.js';
import { sleep } from './helpers.js';

// Short enough to keep the suite quick, long enough that the few REST and
// stream round trips a test makes before it expects the heartbeat's verdict
// fit well inside one period on a loaded machine.
const HEARTBEAT_MS = 500;

/** A TCP proxy to the daemon that can go silent: no byte forwarded either way, no close propagated. */
class BlackHoleProxy {
  private readonly server: Server;
  private readonly sockets: Socket[] = [];
  private silent = false;
  port = 0;

  constructor(private readonly target: number) {
    this.server = createServer((client) => {
      const upstream = connect(this.target, '127.0.0.1');
      this.sockets.push(client, upstream);
      client.on('data', (d) => void (this.silent || upstream.write(d)));
      upstream.on('data', (d) => void (this.silent || client.write(d)));
      client.on('close', () => this.silent || upstream.destroy());
      upstream.on('close', () => this.silent || client.destroy());
      client.on('error', () => {});
      upstream.on('error', () => {});
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** vanish() - from now on nothing passes, and nobody is told. */
  vanish(): void {
    this.silent = true;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

/** The fault queue's status. */
async function status(fx: FaultFixture): Promise<Json> {
  return fx.api.ok('fault.get', 'GET', `${fx.prefix}/faults/${fx.fault}`);
}

/** Read `faults` frames until @n groups arrived. */
async function groups(s: StreamClient, n: number, timeoutMs = 3000): Promise<Json[]> {
  const out: Json[] = [];
  while (out.length < n) out.push(...(await s.reply('faults', timeoutMs)).groups);
  return out;
}

describe('dead peers', { timeout: 60_000 }, () => {
  let server: TestServer;
  let n = 0;
  before(async () => (server = await startServer({ stream: { heartbeatMs: HEARTBEAT_MS } })));
  after(() => server.close());

  /** A fresh device and fixture on @srv, and @count groups injected on it. */
  async function setup(count: number, srv: TestServer = server): Promise<FaultFixture & { device: string }> {
    const device = `dp${n++}`;
    await srv.api.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: device });
    const fx = await faultFixture(srv, { device, pasid: 4 });
    for (let g = 0; g < count; g++) await inject(srv.api, device, { grpid: 10 + g, addr: BigInt(g + 1) * 0x1000n, ...(g % 2 ? { pasid: 4 } : {}) });
    return { ...fx, device };
  }

  /** The live client answers every redelivered group; then each group got exactly one response. */
  async function finish(fx: FaultFixture & { device: string }, live: StreamClient, held: Json[], count: number, srv: TestServer = server): Promise<void> {
    const again = await groups(live, held.length);
    assert.deepEqual(
      again.map((g) => [g.cookie, g.redelivered]).sort(),
      held.map((g) => [g.cookie, true]).sort(),
      "the dead peer's groups come back with their cookies, marked redelivered",
    );
    assert.deepEqual(srv.daemon.platform.responses(fx.device), [], 'nothing answered because a peer died');
    const r = await live.respond(again.map((g) => ({ cookie: g.cookie, code: 0 })));
    assert.equal(r.ok, held.length);
    const log = srv.daemon.platform.responses(fx.device);
    assert.equal(log.length, count);
    assert.deepEqual(
      log.map((x) => x.code),
      Array(count).fill('success'),
    );
    assert.equal(srv.daemon.platform.function(fx.device).unexpectedResponses, 0);
    const st = await status(fx);
    assert.deepEqual([st.queued, st.outstanding, st.counters.redelivered >= held.length], [0, 0, true]);
  }

  test('a TCP connection dropped without a close frame: groups redelivered at once', async () => {
    // A daemon whose heartbeat would take 10 s: the redelivery must come from the TCP close.
    const slow = await startServer({ stream: { heartbeatMs: 10_000 } });
    try {
      const fx = await setup(4, slow);
      const dying = await StreamClient.open(slow.wsBase, fx.stream, { token: fx.token });
      await dying.json();
      const held = await groups(dying, 4);
      assert.ok(held.every((g) => g.redelivered === false));
      (dying.ws as unknown as { _socket: Socket })._socket.destroy();
      const t0 = Date.now();
      const live = await StreamClient.open(slow.wsBase, fx.stream, { token: fx.token });
      await live.json();
      await finish(fx, live, held, 4, slow);
      assert.ok(Date.now() - t0 < 5000, 'found out by the TCP close, not by the heartbeat');
      await live.close();
    } finally {
      await slow.close();
    }
  });

  test('a peer that vanishes with its connection up (black-hole proxy) is dropped by the heartbeat', async () => {
    const fx = await setup(5);
    const proxy = new BlackHoleProxy(Number(new URL(server.base).port));
    await proxy.listen();
    try {
      const ghost = await StreamClient.open(`ws://127.0.0.1:${proxy.port}`, fx.stream, { token: fx.token, window: 3 });
      await ghost.json();
      const held = await groups(ghost, 3);
      proxy.vanish();
      const t0 = Date.now();
      // Meanwhile the cookies stay valid: a live connection may answer one of them.
      const live = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
      await live.json();
      const rest = await groups(live, 2);
      assert.deepEqual(await live.respond([{ cookie: held[0].cookie, code: 0 }]), { type: 'results', ok: 1, errors: [] });
      assert.equal((await status(fx)).connections, 2, 'the ghost still counts as connected until the heartbeat');
      await live.respond(rest.map((g: Json) => ({ cookie: g.cookie, code: 0 })));
      const again = await groups(live, 2, HEARTBEAT_MS * 10);
      const waited = Date.now() - t0;
      assert.ok(waited >= HEARTBEAT_MS / 2 && waited < HEARTBEAT_MS * 6, `detected after ${waited} ms`);
      assert.deepEqual(
        again.map((g) => [g.cookie, g.redelivered]).sort(),
        held
          .slice(1)
          .map((g) => [g.cookie, true])
          .sort(),
      );
      assert.equal((await status(fx)).connections, 1);
      assert.equal((await live.respond(again.map((g) => ({ cookie: g.cookie, code: 1 })))).ok, 2);
      const log = server.daemon.platform.responses(fx.device);
      assert.equal(log.length, 5, 'exactly one response per group');
      assert.deepEqual(log.map((x) => x.code).sort(), ['invalid', 'invalid', 'success', 'success', 'success']);
      await live.close();
    } finally {
      proxy.close();
    }
  });

  test('a peer that vanishes in the middle of a frame is dropped by the heartbeat (uapi mode: same cookies)', async () => {
    const fx = await setup(3);
    const proxy = new BlackHoleProxy(Number(new URL(server.base).port));
    await proxy.listen();
    try {
      const ghost = await StreamClient.open(`ws://127.0.0.1:${proxy.port}`, fx.stream, { token: fx.token, protocol: 'iopf.v1.uapi' });
      await ghost.json();
      let buf = Buffer.alloc(0);
      while (buf.length < 3 * 40) buf = Buffer.concat([buf, await ghost.binary()]);
      const cookies = [...new Set(decodeBinaryRecords(buf).map((r) => r.cookie))].sort();
      // The first bytes of a masked binary frame of 16 bytes (FIN, opcode 2, MASK, length 16), then silence.
      const socket = (ghost.ws as unknown as { _socket: Socket })._socket;
      socket.write(Buffer.from([0x82, 0x90, 1, 2, 3, 4, 0, 0]));
      await sleep(20);
      proxy.vanish();
      const live = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token, protocol: 'iopf.v1.uapi' });
      await live.json();
      let again = Buffer.alloc(0);
      const noticed: number[] = [];
      while (again.length < 3 * 40) {
        // Each binary frame of redelivered groups follows a `redelivered` notice naming them (an extension).
        const notice = await live.json(HEARTBEAT_MS * 10);
        assert.equal(notice.type, 'redelivered');
        noticed.push(...notice.cookies);
        again = Buffer.concat([again, await live.binary(HEARTBEAT_MS * 10)]);
      }
      assert.deepEqual([...new Set(decodeBinaryRecords(again).map((r) => r.cookie))].sort(), cookies, 'redelivered with the same cookies');
      assert.deepEqual(noticed.sort(), cookies, 'the notices name them');
      const b = Buffer.alloc(cookies.length * 8);
      cookies.forEach((c, i) => {
        b.writeUInt32LE(c, i * 8);
      });
      live.ws.send(b);
      assert.deepEqual(await live.reply('write'), { type: 'write', bytes: cookies.length * 8 });
      assert.equal(server.daemon.platform.responses(fx.device).length, 3);
      await live.close();
    } finally {
      proxy.close();
    }
  });

  test('a client that stops reading (socket paused) is dropped by the heartbeat', async () => {
    const fx = await setup(2);
    const stuck = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
    await stuck.json();
    const held = await groups(stuck, 2);
    (stuck.ws as unknown as { _socket: Socket })._socket.pause();
    const live = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
    await live.json();
    await finish(fx, live, held, 2);
    await live.close();
    stuck.ws.terminate();
  });

  test('a live but idle client is not dropped: it answers pings', async () => {
    const fx = await setup(1);
    const idle = await StreamClient.open(server.wsBase, fx.stream, { token: fx.token });
    await idle.json();
    const [g] = await groups(idle, 1);
    await sleep(HEARTBEAT_MS * 5);
    assert.equal(idle.ws.readyState, idle.ws.OPEN);
    assert.equal((await idle.respond([{ cookie: g.cookie, code: 0 }])).ok, 1);
    await idle.close();
  });
});
