/**
 * libiopfd end to end: the C programs of test/native against a real daemon
 * on 127.0.0.1.
 *
 * - fd-semantics: read()/write()/poll() on a libiopfd fd behave as the
 *   kernel's fault fd (iommufd_fault_fops_read/write): whole groups, ESPIPE,
 *   EAGAIN, POLLIN exactly when a group waits, bytes consumed up to the
 *   first bad response, the errno when none was;
 * - lib-handler: an epoll loop (fault-loop.h) serves injected groups and
 *   answers some INVALID; the device's response log has exactly one
 *   response per group with the code the handler chose;
 * - killed handlers lose nothing: a handler killed while holding groups,
 *   a second one served the redelivered groups, then context release
 *   answered the rest INVALID; every group answered exactly once;
 * - write() paths (write-paths): pipelined answers then an immediate
 *   close() lose nothing; EINVAL after good entries, a double answer, a
 *   cookie answered through another fd, a pipelined entry the daemon
 *   refuses (the rest sent again, a sticky EIO once), an expired or
 *   revoked cookie;
 * - opening fails with ECONNREFUSED, EACCES, ENOENT, EPROTO.
 *
 * Skips (saying why) when there is no C compiler or make.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { deviceResponses, faultFixture, injectGroup, startServer, waitFor, type FaultFixture, type Json, type TestServer } from '../server/helpers.js';
import { buildNative, NATIVE_BUILD, NativeProgram, parseLoopLines } from './helpers.js';

const skip = buildNative();
const DEVICE = 'nic0';
/** Addresses with this bit are answered INVALID by the handler (--invalid-mask). */
const INVALID_BIT = 0x100000n;

/** A group to inject: its grpid, address, pages and PASID. */
interface Injected {
  grpid: number;
  addr: bigint;
  pages: number;
  pasid?: number;
}

/** The key of a response or group: PASID (or none) and grpid. */
function key(pasid: number | undefined, grpid: number): string {
  return `${pasid ?? '-'}:${grpid}`;
}

/** lib-handler on @f with extra @args. */
function handler(server: TestServer, f: FaultFixture, ...args: string[]): NativeProgram {
  return new NativeProgram(`${NATIVE_BUILD}lib-handler`, [server.base, String(f.ctx), f.token, String(f.fault), ...args]);
}

/** One response per injected group, each exactly once: the codes by key. */
async function responsesByKey(server: TestServer, count: number, since: number): Promise<Map<string, string>> {
  let rs: Json[] = [];
  await waitFor(
    async () => {
      rs = await deviceResponses(server.api, DEVICE, since);
      return rs.length >= count;
    },
    10000,
    `${count} responses`,
  );
  const m = new Map<string, string>();
  for (const r of rs) {
    const k = key(r.pasid, r.grpid);
    assert.ok(!m.has(k), `group ${k} answered twice: ${JSON.stringify(rs)}`);
    m.set(k, r.code);
  }
  assert.equal(rs.length, count, JSON.stringify(rs));
  return m;
}

describe('native: libiopfd', { skip }, () => {
  let server: TestServer;

  before(async () => {
    // A short heartbeat: the bridge must answer pings (a missed pong drops the stream and fails the tests).
    server = await startServer({ stream: { heartbeatMs: 1000 } });
  });
  after(async () => {
    await server?.close();
  });

  it('a libiopfd fd has the fault fd semantics (read, write, poll, errnos)', async () => {
    const f = await faultFixture(server, { device: DEVICE });
    const since = (await deviceResponses(server.api, DEVICE)).length;
    const p = new NativeProgram(`${NATIVE_BUILD}fd-semantics`, [server.base, String(f.ctx), f.token, String(f.fault)]);
    try {
      await p.waitLines(/^step inject$/);
      await injectGroup(server.api, DEVICE, 1, 0x10000n, 1);
      await injectGroup(server.api, DEVICE, 2, 0x20000n, 2);
      p.send('go');
      assert.equal(await p.exited, 0, `${p.lines.join('\n')}\n${p.stderr}`);
      assert.deepEqual(p.matching(/^FAIL/), []);
      assert.ok(p.lines.includes('end'));
      const codes = await responsesByKey(server, 2, since);
      assert.deepEqual(
        [...codes],
        [
          [key(undefined, 1), 'success'],
          [key(undefined, 2), 'invalid'],
        ],
      );
    } finally {
      await p.kill();
      await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
    }
  });

  it('lib-handler serves groups in an epoll loop and answers some INVALID; one response per group', async () => {
    const f = await faultFixture(server, { device: DEVICE, pasid: 7 });
    const since = (await deviceResponses(server.api, DEVICE)).length;
    const p = handler(server, f, '--invalid-mask', `0x${INVALID_BIT.toString(16)}`);
    try {
      await p.waitLines(/^ready$/);
      const groups: Injected[] = [];
      for (let i = 0; i < 24; i++) {
        const addr = 0x40000000n + BigInt(i) * 0x10000n + (i % 3 === 0 ? INVALID_BIT : 0n);
        groups.push({ grpid: i, addr, pages: 1 + (i % 4), ...(i % 2 ? { pasid: 7 } : {}) });
      }
      await Promise.all(groups.map((g) => injectGroup(server.api, DEVICE, g.grpid, g.addr, g.pages, g.pasid)));
      const lines = parseLoopLines(await p.waitLines(/^group /, groups.length));
      let rs: Json[] = [];
      await waitFor(
        async () => {
          rs = await deviceResponses(server.api, DEVICE, since);
          return rs.length >= groups.length;
        },
        10000,
        'responses',
      );
      assert.equal(rs.length, groups.length, JSON.stringify(rs));
      const got = new Map(rs.map((r) => [key(r.pasid, r.grpid), r.code]));
      assert.equal(got.size, groups.length, 'a group answered twice');
      for (const g of groups) {
        const want = g.addr & INVALID_BIT ? 'invalid' : 'success';
        assert.equal(got.get(key(g.pasid, g.grpid)), want, `group ${key(g.pasid, g.grpid)}`);
        const seen = lines.find((l) => l.grpid === g.grpid && l.pasid === (g.pasid ?? 0));
        assert.ok(seen, `the handler never saw group ${key(g.pasid, g.grpid)}`);
        assert.equal(seen.pages, g.pages);
        assert.equal(seen.addr, g.addr);
        assert.equal(seen.code, want);
      }
    } finally {
      await p.kill();
      await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
    }
  });

  it('a killed handler loses nothing: redelivered to the next, the rest answered INVALID on release, none twice', async () => {
    const f = await faultFixture(server, { device: DEVICE });
    const since = (await deviceResponses(server.api, DEVICE)).length;
    const groups: Injected[] = [0, 1, 2, 3, 4, 5].map((i) => ({ grpid: 100 + i, addr: 0x800000n + BigInt(i) * 0x1000n, pages: 1 + (i % 2) }));
    const first = handler(server, f, '--answer', '3');
    let second: NativeProgram | undefined;
    try {
      await first.waitLines(/^ready$/);
      for (const g of groups) await injectGroup(server.api, DEVICE, g.grpid, g.addr, g.pages);
      await first.waitLines(/^group /, 3);
      await first.waitLines(/^held /, 3);
      const firstLines = parseLoopLines(first.lines);
      assert.notEqual(await first.kill(), 0);
      // The three held groups go back to the queue; a second handler gets them.
      second = handler(server, f, '--answer', '1');
      await second.waitLines(/^ready$/);
      await second.waitLines(/^group /, 1);
      await second.waitLines(/^held /, 2);
      const secondLines = parseLoopLines(second.lines);
      const heldFirst = firstLines
        .filter((l) => l.kind === 'held')
        .map((l) => l.grpid)
        .sort();
      assert.deepEqual(secondLines.map((l) => l.grpid).sort(), heldFirst, 'the second handler got exactly the held groups');
      // Releasing the context answers the two still held INVALID and ends the stream.
      const r = await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
      assert.equal(r.status, 204);
      await second.waitLines(/^eof$/);
      assert.equal(await second.exited, 0, second.stderr);
      let rs: Json[] = [];
      await waitFor(
        async () => {
          rs = await deviceResponses(server.api, DEVICE, since);
          return rs.length >= groups.length;
        },
        10000,
        'responses',
      );
      await new Promise((res) => setTimeout(res, 200)); // a duplicate would show up after the count is reached
      rs = await deviceResponses(server.api, DEVICE, since);
      assert.equal(rs.length, groups.length, JSON.stringify(rs));
      const got = new Map(rs.map((x) => [x.grpid as number, x.code as string]));
      assert.equal(got.size, groups.length, 'a group answered twice');
      const answered = [...firstLines, ...secondLines].filter((l) => l.kind === 'group');
      assert.equal(answered.length, 4);
      for (const l of answered) assert.equal(got.get(l.grpid), 'success', `group ${l.grpid}`);
      for (const l of secondLines.filter((x) => x.kind === 'held')) assert.equal(got.get(l.grpid), 'invalid', `held group ${l.grpid}`);
    } finally {
      await first.kill();
      await second?.kill();
    }
  });

  it('a handler that falls behind: the bridge queues what the socket cannot hold; every group answered once', async () => {
    const f = await faultFixture(server, { device: DEVICE });
    const count = 1500;
    // A tiny socket buffer: a few groups fill it, the rest wait in the bridge's own queue.
    const p = new NativeProgram(
      `${NATIVE_BUILD}lib-handler`,
      [server.base, String(f.ctx), f.token, String(f.fault), '--quiet', '--sleep-ms', '800', '--stop-after', String(count)],
      {
        ...process.env,
        IOPFD_SNDBUF: '4096',
      },
    );
    try {
      await p.waitLines(/^ready$/);
      await server.api.ok('platform.traffic.start', 'POST', `/v1/platform/devices/${DEVICE}/traffic`, { count, in_flight: 512 });
      let st: Json;
      await waitFor(
        async () => {
          st = (await server.api.get(`/v1/platform/devices/${DEVICE}/traffic`)).body;
          return !st.running;
        },
        20000,
        'the traffic run',
      );
      assert.deepEqual(st.by_code, { success: count, invalid: 0, failure: 0 });
      assert.equal(st.answered, count);
      const [done] = await p.waitLines(/^done /);
      assert.match(done!, new RegExp(`^done groups=${count} invalid=0 held=0 records=${count} writes=\\d+$`));
      assert.equal(await p.exited, 0, p.stderr);
    } finally {
      await p.kill();
      await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
    }
  });

  /** write-paths @args on a fresh queue (@faultBody); injects @count one-page groups (grpids 1..) on "step inject". */
  async function writePaths(
    faultBody: object,
    count: number,
    args: string[],
    mid?: (p: NativeProgram, since: number, f: FaultFixture) => Promise<void>,
  ): Promise<{ f: FaultFixture; p: NativeProgram; since: number }> {
    const f = await faultFixture(server, { device: DEVICE, faultBody });
    const since = (await deviceResponses(server.api, DEVICE)).length;
    const p = new NativeProgram(`${NATIVE_BUILD}write-paths`, [server.base, String(f.ctx), f.token, String(f.fault), ...args]);
    try {
      await p.waitLines(/^step inject$/);
      for (let g = 1; g <= count; g++) await injectGroup(server.api, DEVICE, g, 0x3000000n + BigInt(g) * 0x1000n, 1);
      p.send('go');
      if (mid) await mid(p, since, f);
      assert.equal(await p.exited, 0, `${p.lines.join('\n')}\n${p.stderr}`);
      assert.deepEqual(p.matching(/^FAIL/), []);
      assert.ok(p.lines.includes('end'));
    } catch (e) {
      await p.kill();
      await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
      throw e;
    }
    return { f, p, since };
  }

  for (const [mode, how] of [
    ['burst', 'close() at once'],
    ['burst-exit', 'exit() without close()'],
  ] as const)
    it(`pipelined writes then ${how}: every answer reaches the device, exactly once`, async () => {
      const count = 200;
      const { f, since } = await writePaths({}, count, [mode, String(count)]);
      try {
        // Nothing else answers this queue: a group whose answer close() dropped would stay unanswered.
        const codes = await responsesByKey(server, count, since);
        await new Promise((res) => setTimeout(res, 200)); // a duplicate would show up after the count is reached
        assert.equal((await deviceResponses(server.api, DEVICE, since)).length, count);
        for (let g = 1; g <= count; g++) assert.equal(codes.get(key(undefined, g)), 'success', `group ${g}`);
      } finally {
        await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
      }
    });

  it('write() paths: EINVAL after good entries (an unknown cookie: the daemon decides; a bad code, a cookie twice: local), a double answer, another fd, a refused pipelined entry sent again with a sticky EIO, redelivery', async () => {
    const { f, p, since } = await writePaths({}, 7, ['paths']);
    try {
      for (const name of [
        'bad-cookie-after-good',
        'good-then-bad-code',
        'twice-in-one-write',
        'double-answer',
        'other-fd',
        'refused-later',
        'sticky-eio',
        'sticky-once',
        'after-redelivery',
      ])
        assert.ok(p.lines.includes(`ok ${name}`), name);
      const codes = await responsesByKey(server, 7, since);
      await new Promise((res) => setTimeout(res, 200));
      assert.equal((await deviceResponses(server.api, DEVICE, since)).length, 7, 'a group answered twice');
      // 3 was answered INVALID through the other fd; A's later SUCCESS for it was refused, and 4 (after it) sent again.
      assert.deepEqual(
        [1, 2, 3, 4, 5, 6, 7].map((g) => codes.get(key(undefined, g))),
        ['success', 'success', 'invalid', 'success', 'success', 'success', 'success'],
      );
    } finally {
      await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
    }
  });

  for (const [how, faultBody] of [
    ['expired (response timeout)', { response_timeout_ms: 200 }],
    ['revoked (detach)', {}],
  ] as const)
    it(`a cookie ${how}: the notice takes it out of the map, the late answer gets EINVAL at once and no sticky error`, async () => {
      const { f, since } = await writePaths(faultBody, 1, ['expire'], async (p, from, fx) => {
        await p.waitLines(/^step expired$/);
        if (!('response_timeout_ms' in faultBody)) await fx.api.ok('device.detach', 'POST', `${fx.prefix}/devices/${fx.devId}/detach`, {});
        await responsesByKey(server, 1, from);
        await new Promise((res) => setTimeout(res, 300)); // the notice went out with the response: wide margin
        p.send('go');
      });
      try {
        const codes = await responsesByKey(server, 1, since);
        assert.equal(codes.get(key(undefined, 1)), 'invalid');
      } finally {
        await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
      }
    });

  it('a group larger than the socket holds arrives in parts and is read whole; one response per group', async () => {
    const f = await faultFixture(server, { device: DEVICE });
    const since = (await deviceResponses(server.api, DEVICE)).length;
    // 4096 → the kernel's 8 KiB buffer: a 260-page group (10,400 bytes) cannot be in the socket at once.
    const p = new NativeProgram(`${NATIVE_BUILD}lib-handler`, [server.base, String(f.ctx), f.token, String(f.fault)], {
      ...process.env,
      IOPFD_SNDBUF: '4096',
    });
    try {
      await p.waitLines(/^ready$/);
      await injectGroup(server.api, DEVICE, 1, 0x5000000n, 260);
      await injectGroup(server.api, DEVICE, 2, 0x6000000n, 2);
      const lines = parseLoopLines(await p.waitLines(/^group /, 2, 20000));
      assert.deepEqual(
        lines.map((l) => [l.grpid, l.pages, l.code]),
        [
          [1, 260, 'success'],
          [2, 2, 'success'],
        ],
      );
      const codes = await responsesByKey(server, 2, since);
      assert.deepEqual([...codes.values()], ['success', 'success']);
    } finally {
      await p.kill();
      await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
    }
  });

  it('opening fails with ECONNREFUSED, EACCES, ENOENT and EPROTO', async () => {
    const f = await faultFixture(server, { device: DEVICE });
    const plain = createServer((_req, res) => res.writeHead(404, { 'content-type': 'text/plain' }).end('no such thing'));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    try {
      const open = async (url: string, token: string, fault: number): Promise<string> => {
        const p = new NativeProgram(`${NATIVE_BUILD}lib-handler`, [url, String(f.ctx), token, String(fault)]);
        const [line] = await p.waitLines(/^(open failed|ready)/);
        await p.kill();
        return line!;
      };
      assert.equal(await open(`http://127.0.0.1:${closedPort}`, f.token, f.fault), 'open failed: ECONNREFUSED');
      assert.equal(await open(server.base, 'not-the-token', f.fault), 'open failed: EACCES');
      assert.equal(await open(server.base, f.token, f.fault + 1000), 'open failed: ENOENT');
      assert.equal(await open(`http://127.0.0.1:${(plain.address() as AddressInfo).port}`, f.token, f.fault), 'open failed: EPROTO');
      assert.equal(await open('https://127.0.0.1:1', f.token, f.fault), 'open failed: EINVAL');
    } finally {
      await new Promise<void>((r) => plain.close(() => r()));
      await server.api.withToken(f.token).delete(`/v1/contexts/${f.ctx}`);
    }
  });
});
