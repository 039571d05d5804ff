/**
 * The examples run as their READMEs say: examples/c-handler (libiopfd) and
 * examples/python-handler (the binary stream with `websockets`) serve
 * injected groups, answer those at or above --invalid-above INVALID, and
 * every group gets exactly one response. Each skips, saying why, without a
 * C toolchain or a Python with `websockets`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { deviceResponses, faultFixture, injectGroup, startServer, waitFor, type Json, type TestServer } from '../server/helpers.js';
import { buildNative, NATIVE_BUILD, NativeProgram } from './helpers.js';

const DEVICE = 'accel0';
const HANDLER_PY = fileURLToPath(new URL('../../../examples/python-handler/handler.py', import.meta.url));

/** A Python 3 that imports `websockets`: `python3` on the PATH, else the system's. */
function pythonWithWebsockets(): string | undefined {
  for (const py of [process.env.PYTHON ?? 'python3', '/usr/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import websockets'], { stdio: 'ignore' });
    if (!r.error && r.status === 0) return py;
  }
  return undefined;
}
const python = pythonWithWebsockets();

/** Groups below and above the INVALID line, some of several pages. */
const ABOVE = 0x200000000n;
const GROUPS = Array.from({ length: 10 }, (_, i) => ({ grpid: 300 + i, addr: (i % 2 ? ABOVE : 0x100000000n) + BigInt(i) * 0x4000n, pages: 1 + (i % 3) }));

/** Inject GROUPS and check the device got exactly one response each, with the expected code. */
async function injectAndCheck(server: TestServer): Promise<void> {
  const since = (await deviceResponses(server.api, DEVICE)).length;
  for (const g of GROUPS) await injectGroup(server.api, DEVICE, g.grpid, g.addr, g.pages);
  let rs: Json[] = [];
  await waitFor(
    async () => {
      rs = await deviceResponses(server.api, DEVICE, since);
      return rs.length >= GROUPS.length;
    },
    10000,
    'responses',
  );
  assert.equal(rs.length, GROUPS.length, JSON.stringify(rs));
  const got = new Map(rs.map((r) => [r.grpid as number, r.code as string]));
  for (const g of GROUPS) assert.equal(got.get(g.grpid), g.addr >= ABOVE ? 'invalid' : 'success', `group ${g.grpid}`);
}

describe('examples', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.close();
  });

  it('c-handler serves a fault queue through libiopfd; Ctrl-C ends it cleanly', { skip: buildNative() }, async () => {
    const f = await faultFixture(server, { device: DEVICE });
    const p = new NativeProgram(`${NATIVE_BUILD}c-handler`, [String(f.ctx), f.token, String(f.fault), `0x${ABOVE.toString(16)}`], {
      ...process.env,
      IOPFD_URL: server.base,
    });
    try {
      await waitFor(() => p.stderr.includes('serving fault queue'), 10000, 'c-handler to open its fd');
      await injectAndCheck(server);
      p.child.kill('SIGINT');
      assert.equal(await p.exited, 0, p.stderr);
      assert.match(p.stderr, new RegExp(`answered ${GROUPS.length} groups \\(${GROUPS.length / 2} INVALID\\)`));
      assert.equal(p.matching(/^group /).length, GROUPS.length);
    } finally {
      await p.kill();
      await f.api.delete(f.prefix);
    }
  });

  it('handler.py serves the binary stream', {
    skip: python ? false : 'no Python 3 with the `websockets` package (apt-get install python3-websockets)',
  }, async () => {
    const f = await faultFixture(server, { device: DEVICE });
    const p = new NativeProgram(python!, [
      HANDLER_PY,
      '--url',
      server.base,
      '--ctx',
      String(f.ctx),
      '--token',
      f.token,
      '--fault',
      String(f.fault),
      '--invalid-above',
      `0x${ABOVE.toString(16)}`,
      '--count',
      String(GROUPS.length),
    ]);
    try {
      await p.waitLines(/^ready$/);
      await injectAndCheck(server);
      assert.equal(await p.exited, 0, p.stderr);
      assert.ok(p.lines.includes(`done groups=${GROUPS.length} invalid=${GROUPS.length / 2}`), p.lines.join('\n'));
    } finally {
      await p.kill();
      await f.api.delete(f.prefix);
    }
  });
});
