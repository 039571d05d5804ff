/**
 * Fuzzing with fast-check against a real daemon on 127.0.0.1: REST paths,
 * queries, tokens, bodies (random JSON, mutated valid bodies with wrong
 * types, huge, negative and 2^53+ numbers, `__proto__` and `constructor`
 * keys, deep nesting, long strings), raw bodies (invalid UTF-8, random
 * bytes, wrong content types), malformed HTTP; and stream frames in both
 * modes (random JSON, mutated `responses` frames, invalid UTF-8 text,
 * truncated, odd-length and random binary writes, frames of the wrong kind).
 *
 * Every reply is checked: never a 500, every error is exactly
 * `{errno, message}` with the status of the protocol's table, every stream
 * frame gets exactly one `results`, `write` or `error` reply with an errno
 * where it failed, nothing is logged at error level, and afterwards the
 * daemon still serves a normal request and a normal group round trip, and
 * the groups injected before the stream fuzz were each answered exactly once.
 *
 * The fast-check seed is printed on failure; replay with IOPFD_SEED=<seed>.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { COMMANDS, HWPT_FLAGS, zServerMessage, type Command } from '../../protocol/index.js';
import { faultFixture, injectGroup, StreamClient, startServer, type FaultFixture, type Json, type TestServer } from '../server/helpers.js';
import {
  assertErrnoBody,
  captureLog,
  parseRawResponse,
  rawHttp,
  rawSocket,
  testSeed,
  unexpectedErrors,
  withSeed,
  type LogCapture,
  type RawReply,
} from './helpers.js';

const ADMIN = 'fuzz-admin-token';
const RUNS = 350;

let server: TestServer;
let log: LogCapture;
let fx: FaultFixture;
/** Replies by command, status and errno (printed with IOPFD_FUZZ_STATS=1, to see what the fuzz reaches). */
const tally = new Map<string, number>();
/** Contexts created by fuzzed requests (released at the end, so the context limit does not leak into later checks). */
const created: Array<{ ctx: number; token: string }> = [];

/* ------------------------------------------------------------------ values */

/** Numbers and strings that break naive parsers; `"__BIG__"` becomes the literal 9007199254740993 in the JSON text. */
const NASTY: readonly unknown[] = [
  null,
  true,
  false,
  -1,
  -0,
  0.5,
  2 ** 32,
  2 ** 53,
  '__BIG__',
  1e308,
  -1e308,
  '',
  ' ',
  '0x',
  '0x-1',
  '0X10',
  ' 0x10',
  '0x10000000000000000',
  '0xffffffffffffffff',
  '1e3',
  'NaN',
  'x'.repeat(70000),
  '\u0000',
  '\ud800',
  '𝕏',
  [],
  [[[[[[]]]]]],
  {},
  { __proto__: null },
  { constructor: { prototype: { polluted: true } } },
];

/** A valid body of each command that takes one (ids from the fixture), for mutation. */
function validBodies(): Record<string, Json> {
  return {
    'platform.device.add': { name: 'fz-new', caps: { pasid_bits: 8, pri_outstanding: 4 } },
    'platform.device.dma': { iova: '0x1000', length: '0x10', access: 'read', timeout_ms: 50 },
    'platform.device.page-request': { grpid: 3, addr: '0x1000', perm: 1, last: true },
    'platform.sva.bind': { pasid: 3, vmas: [{ start: '0x1000', length: '0x1000' }] },
    'platform.traffic.start': { count: 3, in_flight: 1 },
    'device.bind': { name: 'fz0' },
    'ioas.map': { iova: '0x10000', length: '0x2000' },
    'ioas.unmap': { iova: '0x10000', length: '0x2000' },
    'ioas.memory.write': { writes: [{ iova: '0x10000', data: '00ff' }] },
    'ioas.memory.read': { iova: '0x10000', length: '0x10' },
    'hwpt.alloc': { dev_id: fx.devId, pt_id: fx.ioas, flags: HWPT_FLAGS.FAULT_ID_VALID | HWPT_FLAGS.PASID, fault_id: fx.fault },
    'hwpt.invalidate': { entries: [{ addr: '0x0', npages: 1 }] },
    'device.attach': { pt_id: fx.hwpt, pasid: 1 },
    'device.replace': { pt_id: fx.hwpt, pasid: 1 },
    'device.detach': { pasid: 1 },
    'fault.alloc': { depth: 2, overflow: 'invalid', response_timeout_ms: 100 },
  };
}

/** Path parameter values: valid ones of the fixture, and nasty ones (already URL-safe or deliberately not). */
function paramValues(name: string): fc.Arbitrary<string> {
  const valid: string[] =
    name === 'ctx'
      ? [String(fx.ctx)]
      : name === 'name'
        ? ['fz0', 'fz1']
        : name === 'pasid'
          ? ['1', '3']
          : [String(fx.devId), String(fx.ioas), String(fx.fault), String(fx.hwpt)];
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...valid) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        '0',
        '-1',
        '4294967295',
        '4294967296',
        '9007199254740993',
        '1e3',
        '0x10',
        '%20',
        '%00',
        '%ff',
        '%',
        '..',
        '__proto__',
        'constructor',
        'prototype',
        'a'.repeat(5000),
        '',
        '%E2%80%AE',
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }).map((s) => encodeURIComponent(s)) },
  );
}

/** A request target from a command's URL template, with random parameters and query. */
function pathArb(c: Command): fc.Arbitrary<string> {
  const names = [...c.url.matchAll(/:(\w+)/g)].map((m) => m[1]!);
  const query = fc.oneof(
    { weight: 6, arbitrary: fc.constant('') },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        '?since=0',
        '?since=99999999999',
        '?since=-1',
        '?since=1&since=2',
        '?__proto__=1',
        '?constructor=x',
        '?token=abc',
        '?since=%ff',
        '?&&&',
        '?since',
      ),
    },
    { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((s) => `?${encodeURIComponent(s)}=${encodeURIComponent(s)}`) },
  );
  return fc.tuple(fc.tuple(...names.map(paramValues)), query, fc.constantFrom('', '', '', '/', '/x', '//')).map(([vals, q, tail]) => {
    let url = c.url;
    names.forEach((n, i) => {
      url = url.replace(`:${n}`, vals[i]!);
    });
    return url + tail + q;
  });
}

/** authorization headers: the right ones, wrong ones, malformed ones. */
function authArb(): fc.Arbitrary<string | undefined> {
  return fc.constantFrom(
    undefined,
    `Bearer ${ADMIN}`,
    `Bearer ${fx.token}`,
    `Bearer ${fx.token}`,
    'Bearer wrong',
    'Basic Zm9vOmJhcg==',
    'Bearer',
    'Bearer  ',
    `Bearer ${'t'.repeat(4000)}`,
    `bearer ${ADMIN}`,
    `Bearer ${ADMIN}x`,
  );
}

/** JSON text of @v, with the 2^53+ placeholder turned into a bare literal. */
function jsonText(v: unknown): string {
  return JSON.stringify(v).replaceAll('"__BIG__"', '9007199254740993');
}

/** Set @value at a random existing path of @body (or add/delete a key). */
function mutate(body: Json, pathPick: number, op: number, value: unknown, extraKey: string): Json {
  const copy = structuredClone(body);
  const paths: Array<Array<string | number>> = [];
  (function walk(v: Json, p: Array<string | number>) {
    if (v && typeof v === 'object') {
      for (const k of Object.keys(v)) {
        const q = [...p, Array.isArray(v) ? Number(k) : k];
        paths.push(q);
        walk(v[k], q);
      }
    }
  })(copy, []);
  if (paths.length === 0 || op === 2) {
    Object.defineProperty(copy, extraKey, { value, enumerable: true, configurable: true, writable: true });
    return copy;
  }
  const p = paths[pathPick % paths.length]!;
  let parent = copy;
  for (const k of p.slice(0, -1)) parent = parent[k];
  const last = p[p.length - 1]!;
  if (op === 1 && !Array.isArray(parent)) delete parent[last];
  else parent[last] = value;
  return copy;
}

/** Deeply nested JSON text (arrays or objects). */
function deep(n: number, obj: boolean): string {
  return obj ? `${'{"a":'.repeat(n)}1${'}'.repeat(n)}` : '['.repeat(n) + ']'.repeat(n);
}

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'application/json; charset=latin1',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/jsonp',
  'application/json, text/plain',
  '',
];

/** Raw bodies: invalid UTF-8, random bytes, truncated JSON, deep nesting, prototype keys, huge literals. */
function rawBodyArb(): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    fc.constantFrom(
      Buffer.from([0xff, 0xfe, 0x7b, 0x7d]),
      Buffer.from('{"name":"\xff\xfe"}', 'latin1'),
      Buffer.from([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from('{"count":'),
      Buffer.from('{"count":1'),
      Buffer.from('{"__proto__":{"polluted":true},"count":1}'),
      Buffer.from('{"constructor":{"prototype":{"polluted":true}}}'),
      Buffer.from('{"count":9007199254740993}'),
      Buffer.from('{"count":1e400}'),
      Buffer.from('{"count":-1e400}'),
      Buffer.from('{"count":1,"count":2}'),
      Buffer.from('null'),
      Buffer.from('"str"'),
      Buffer.from('[]'),
      Buffer.from('\u0000'),
      Buffer.from(deep(50000, false)),
      Buffer.from(deep(20000, true)),
      Buffer.from(`{"name":"${'a'.repeat(500000)}"}`),
      Buffer.alloc((1 << 20) + 10, 0x20),
    ),
  );
}

/* ------------------------------------------------------------------ checks */

/** checkReply() - one REST reply: never a 500; an error is exactly {errno, message}; a success matches its command's schema. */
function checkReply(r: RawReply, what: string, command: Command | undefined): void {
  assert.ok(r.status !== 0, `${what}: no reply (${r.text})`);
  assert.ok(r.status >= 200 && r.status < 600, `${what}: status ${r.status}`);
  if (r.status >= 400) {
    assertErrnoBody(r.status, r.body, what);
    if (command && r.status !== 404)
      assert.ok((command.errnos as readonly string[]).includes(r.body.errno), `${what}: ${command.name} does not list ${r.body.errno}`);
    return;
  }
  if (command?.response && r.text !== '') {
    const v = command.response.safeParse(r.body);
    assert.ok(v.success, `${what}: ${command.name} answered ${r.text.slice(0, 200)}`);
  }
}

/** after a fuzzed request succeeded: undo what would slow the rest of the run down (a traffic run, a context). */
async function tidy(c: Command | undefined, path: string, r: RawReply): Promise<void> {
  if (!c || r.status >= 300) return;
  if (c.name === 'context.create') created.push(r.body);
  const admin = server.api.withToken(ADMIN);
  if (c.name === 'platform.device.remove' && ['fz0', 'fz1'].includes(decodeURIComponent(path.split('/')[4]!))) {
    // Keep the fuzz on a live fixture: put an unplugged fixture device back.
    await admin.post('/v1/platform/devices', { name: decodeURIComponent(path.split('/')[4]!), caps: { pri_outstanding: 8 } });
  }
  if (c.name === 'context.destroy' && path.startsWith(`/v1/contexts/${fx.ctx}`)) {
    if (!(await admin.get('/v1/platform/devices/fz0/responses')).status) return;
    fx = await faultFixture({ api: admin }, { device: 'fz0', faultBody: { response_timeout_ms: 200 }, pasid: 1 });
  }
  if (c.name === 'platform.traffic.start') {
    // A fuzzed count may be 4 billion: unplug the device (stops the run), then put it back.
    const name = decodeURIComponent(path.split('/')[4]!);
    await rawHttp(server.base, { method: 'DELETE', path: `/v1/platform/devices/${encodeURIComponent(name)}`, headers: { authorization: `Bearer ${ADMIN}` } });
    await rawHttp(server.base, {
      method: 'POST',
      path: '/v1/platform/devices',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
  }
}

/** commandOf() - the command of the table a method and path select (fastify picks the same one). */
function commandOf(method: string, path: string): Command | undefined {
  const pathname = path.split('?')[0]!;
  return COMMANDS.find((c) => c.method === method && new RegExp(`^${c.url.replace(/:\w+/g, '[^/]+')}$`).test(pathname));
}

async function send(method: string, path: string, auth: string | undefined, body: Buffer | string | undefined, contentType: string | undefined): Promise<void> {
  const headers: Record<string, string> = {};
  if (auth !== undefined) headers.authorization = auth;
  if (contentType !== undefined) headers['content-type'] = contentType;
  const r = await rawHttp(server.base, { method, path, headers, ...(body === undefined ? {} : { body }), timeoutMs: 4000 });
  const command = commandOf(method, path);
  const key = `${command?.name ?? `${method} (no route)`} ${r.status} ${r.body?.errno ?? ''}`;
  tally.set(key, (tally.get(key) ?? 0) + 1);
  const what = `${method} ${path.slice(0, 120)} [${contentType ?? '-'}] ${typeof body === 'string' ? body.slice(0, 200) : body ? `<${body.length} bytes>` : ''}`;
  // A DMA waits for its page requests to be answered (up to its timeout_ms): not answering within 4 s is allowed there only.
  if (r.status === 0 && command?.name === 'platform.device.dma') return;
  checkReply(r, what, command);
  await tidy(command, path, r);
}

/* ------------------------------------------------------------------- tests */

describe('fuzz', { timeout: 90_000 }, () => {
  before(async () => {
    log = captureLog('warn');
    server = await startServer({
      adminToken: ADMIN,
      logger: log.logger,
      limits: { maxMappedPages: 4096, maxContexts: 200 },
      stream: { errorFramesPerSecond: 1_000_000 },
    });
    const admin = server.api.withToken(ADMIN);
    for (const name of ['fz0', 'fz1']) await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name, caps: { pri_outstanding: 8 } });
    fx = await faultFixture({ api: admin }, { device: 'fz0', faultBody: { response_timeout_ms: 200 }, pasid: 1 });
  });
  after(async () => {
    if (process.env.IOPFD_FUZZ_STATS)
      process.stderr.write(
        `${[...tally]
          .sort()
          .map(([k, n]) => `${n}\t${k}`)
          .join('\n')}\n`,
      );
    await server.close();
    assert.deepEqual(unexpectedErrors(log), [], 'nothing was logged at error level (no 500, no failed deferred work, no failed stream handler)');
  });

  test('REST: random methods, paths, queries, tokens and JSON bodies', async () => {
    const seed = testSeed();
    await withSeed('REST fuzz', seed, async () => {
      const commandArb = fc.constantFrom(...COMMANDS);
      const reqArb = commandArb.chain((c) =>
        fc.record({
          method: fc.oneof(
            { weight: 8, arbitrary: fc.constant(c.method) },
            { weight: 2, arbitrary: fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS') },
          ),
          path: pathArb(c),
          auth: authArb(),
          body: fc.oneof(
            { weight: 2, arbitrary: fc.constant(undefined) },
            { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => jsonText(v)) },
            { weight: 1, arbitrary: fc.constantFrom(...NASTY).map((v) => jsonText(v)) },
          ),
        }),
      );
      await fc.assert(
        fc.asyncProperty(reqArb, async (q) => send(q.method, q.path, q.auth, q.body, q.body === undefined ? undefined : 'application/json')),
        { numRuns: RUNS, seed, endOnFailure: true },
      );
    });
  });

  test('REST: valid bodies with one field mutated (wrong types, huge, negative, 2^53+, __proto__, constructor)', async () => {
    const seed = testSeed();
    await withSeed('REST mutation fuzz', seed, async () => {
      const bodies = validBodies();
      const withBody = COMMANDS.filter((c) => bodies[c.name] !== undefined);
      const reqArb = fc.record({
        c: fc.constantFrom(...withBody),
        pathPick: fc.nat(50),
        op: fc.nat(4),
        value: fc.oneof(fc.constantFrom(...NASTY), fc.jsonValue({ maxDepth: 2 })),
        extraKey: fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'x', ''),
        auth: fc.constantFrom(`Bearer ${ADMIN}`, `Bearer ${fx.token}`),
      });
      await fc.assert(
        fc.asyncProperty(reqArb, async (q) => {
          let path = q.c.url.replace(':ctx', String(fx.ctx)).replace(':name', 'fz1').replace(':pasid', '3');
          path = path.replace(':dev_id', String(fx.devId)).replace(':id', String(q.c.name.startsWith('hwpt') ? fx.hwpt : fx.ioas));
          const auth = q.c.auth === 'ctx' ? `Bearer ${fx.token}` : q.auth;
          await send(q.c.method, path, auth, jsonText(mutate(bodies[q.c.name], q.pathPick, q.op, q.value, q.extraKey)), 'application/json');
        }),
        { numRuns: RUNS, seed, endOnFailure: true },
      );
    });
  });

  test('REST: well-typed random bodies reach the core (ENOENT, EBUSY, EEXIST, EOVERFLOW, ENOSPC, ...)', async () => {
    const seed = testSeed();
    await withSeed('REST typed fuzz', seed, async () => {
      const u32 = fc.oneof(fc.nat(12), fc.constantFrom(0, 1, 8, 511, 512, 2 ** 20, 2 ** 31, 0xffffffff));
      const id = fc.oneof(fc.integer({ min: 1, max: 10 }), fc.constantFrom(0, 0xffffffff));
      const hex = (b: bigint): string => `0x${b.toString(16)}`;
      const u64 = fc.oneof(
        fc.constantFrom(
          '0x0',
          '0x1000',
          '0xfff',
          '0x10000',
          '0x100000000',
          '0x8000000000000000',
          '0xfffffffffffff000',
          '0xffffffffffffffff',
          '0xffff800000000000',
        ),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(hex),
        fc.integer({ min: 0, max: 64 }).map((p) => hex(BigInt(p) * 0x1000n)),
      );
      const len = fc.oneof(
        fc.constantFrom('0x0', '0x1', '0x10', '0x1000', '0x2000', '0x100000', '0x100001', '0x10000000', '0xffffffffffffffff'),
        fc.integer({ min: 1, max: 8 }).map((p) => hex(BigInt(p) * 0x1000n)),
      );
      const data = fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('hex'));
      const pasid = fc.option(fc.oneof(fc.constantFrom(0, 1, 2, 3, 255, 2 ** 20 - 1, 2 ** 20), u32), { nil: undefined });
      const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined });
      const bodies: Record<string, fc.Arbitrary<Json>> = {
        'platform.device.add': fc.record({
          name: fc.constantFrom('fz0', 'fz1', 'fz2', 'fz3'),
          iommu: opt(fc.constantFrom('dmar0', 'nope')),
          bdf: opt(fc.constantFrom('00:02.0', '00:1f.7', '0000:00:09.0', 'ff:1f.7')),
          caps: opt(
            fc.record(
              {
                pasid_bits: fc.nat(22),
                pri: fc.boolean(),
                pri_outstanding: fc.nat(600),
                ats: fc.boolean(),
                is_vf: fc.boolean(),
                prg_response_needs_pasid: fc.boolean(),
              },
              { requiredKeys: [] },
            ),
          ),
        }),
        'platform.device.dma': fc.record({
          pasid,
          iova: u64,
          length: len,
          access: fc.constantFrom('read', 'write'),
          data: opt(data),
          priv: opt(fc.boolean()),
          exec: opt(fc.boolean()),
          timeout_ms: fc.constantFrom(0, 1, 50),
        }),
        'platform.device.page-request': fc.record({
          pasid,
          grpid: fc.oneof(fc.nat(20), fc.constantFrom(511, 512)),
          addr: u64,
          perm: fc.nat(31),
          last: fc.boolean(),
        }),
        'platform.sva.bind': fc.record({
          pasid: u32,
          vmas: fc.array(fc.record({ start: u64, length: len, read: opt(fc.boolean()), write: opt(fc.boolean()), exec: opt(fc.boolean()) }), { maxLength: 3 }),
        }),
        'platform.traffic.start': fc.record({
          count: fc.integer({ min: 0, max: 40 }),
          pages_per_group: opt(fc.nat(600)),
          in_flight: opt(fc.nat(600)),
          pasid,
          base: opt(u64),
          perm: opt(fc.nat(31)),
        }),
        'device.bind': fc.record({ name: fc.constantFrom('fz0', 'fz1', 'fz2', 'nope') }),
        'ioas.map': fc.record({ iova: u64, length: len, read: opt(fc.boolean()), write: opt(fc.boolean()) }),
        'ioas.unmap': fc.record({ iova: u64, length: len }),
        'ioas.memory.write': fc.record({ writes: fc.array(fc.record({ iova: u64, data }), { maxLength: 3 }) }),
        'ioas.memory.read': fc.record({ iova: u64, length: len }),
        'hwpt.alloc': fc.record({
          dev_id: id,
          pt_id: id,
          flags: fc.oneof(fc.nat(15), u32),
          data_type: opt(fc.constantFrom('none', 'vtd_s1')),
          data: opt(fc.record({ flags: fc.constantFrom(0, 1), pgtbl_addr: u64, addr_width: fc.constantFrom(48, 57) })),
          fault_id: opt(id),
          __reserved: opt(fc.constantFrom(0, 1)),
        }),
        'hwpt.invalidate': fc.record({ entries: fc.array(fc.record({ addr: u64, npages: u32, flags: opt(fc.constantFrom(0, 1)) }), { maxLength: 3 }) }),
        'device.attach': fc.record({ pt_id: id, pasid }),
        'device.replace': fc.record({ pt_id: id, pasid }),
        'device.detach': fc.record({ pasid }),
        'fault.alloc': fc.record({
          flags: opt(fc.constantFrom(0, 1)),
          depth: opt(fc.nat(10)),
          overflow: opt(fc.constantFrom('success', 'invalid')),
          response_timeout_ms: opt(fc.nat(200)),
        }),
      };
      const reqArb = fc
        .record({
          c: fc.constantFrom(...COMMANDS),
          name: fc.constantFrom('fz0', 'fz1', 'fz2'),
          objId: id,
          pasidParam: fc.constantFrom('1', '3', '0'),
          since: fc.constantFrom('', '?since=0', '?since=3'),
        })
        .chain((q) => (bodies[q.c.name] ?? fc.constant(undefined)).map((body) => ({ ...q, body })));
      await fc.assert(
        fc.asyncProperty(reqArb, async (q) => {
          let path = q.c.url.replace(':ctx', String(fx.ctx)).replace(':name', q.name).replace(':pasid', q.pasidParam);
          path = path.replace(':dev_id', String(q.objId)).replace(':id', String(q.objId));
          if (q.c.name === 'platform.device.responses') path += q.since;
          const auth = q.c.auth === 'ctx' ? `Bearer ${fx.token}` : `Bearer ${ADMIN}`;
          // Never release the fixture context here: the property is about reaching the core.
          if (q.c.name === 'context.destroy') return;
          await send(q.c.method, path, auth, q.body === undefined ? undefined : JSON.stringify(q.body), q.body === undefined ? undefined : 'application/json');
        }),
        { numRuns: 600, seed, endOnFailure: true },
      );
    });
  });

  test('REST: raw bodies (invalid UTF-8, random bytes, truncated, deeply nested, oversized) and content types', async () => {
    const seed = testSeed();
    await withSeed('REST raw fuzz', seed, async () => {
      const targets = [
        { method: 'POST', path: '/v1/contexts' },
        { method: 'POST', path: `/v1/contexts/${fx.ctx}/faults` },
        { method: 'POST', path: `/v1/contexts/${fx.ctx}/ioas/${fx.ioas}/map` },
        { method: 'POST', path: '/v1/platform/devices' },
        { method: 'POST', path: '/v1/platform/devices/fz1/page-requests' },
        { method: 'DELETE', path: `/v1/contexts/${fx.ctx}/objects/999` },
        { method: 'GET', path: '/healthz' },
      ];
      const reqArb = fc.record({
        t: fc.constantFrom(...targets),
        body: rawBodyArb(),
        ct: fc.constantFrom(...CONTENT_TYPES),
        auth: fc.constantFrom(`Bearer ${ADMIN}`, `Bearer ${fx.token}`),
      });
      await fc.assert(
        fc.asyncProperty(reqArb, async (q) => {
          const auth = q.t.path.startsWith('/v1/contexts/') ? `Bearer ${fx.token}` : q.auth;
          await send(q.t.method, q.t.path, auth, q.body, q.ct === '' ? undefined : q.ct);
        }),
        { numRuns: 150, seed, endOnFailure: true },
      );
    });
  });

  test('HTTP: malformed requests get {errno, message} too', async () => {
    const bad = [
      'GARBAGE\r\n\r\n',
      'GET / HTTP/9.9\r\n\r\n',
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`,
      'POST /v1/contexts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n',
      'POST /v1/contexts HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      'POST /v1/contexts HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n',
      'GET /%E0%A4%A HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /v1/contexts/1/faults/1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
      'GET /v1/contexts/1/faults/1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n',
    ];
    for (const req of bad) {
      const text = await rawSocket(server.base, req);
      const r = parseRawResponse(text);
      assert.ok(r, `no HTTP response to ${JSON.stringify(req.slice(0, 60))}: ${JSON.stringify(text.slice(0, 200))}`);
      assertErrnoBody(r.status, r.body, JSON.stringify(req.slice(0, 60)));
    }
  });

  test('stream upgrades: bad handshakes are refused with {errno, message} before any socket, never 500', async () => {
    const seed = testSeed();
    await withSeed('upgrade fuzz', seed, async () => {
      // A fixture of its own: the REST fuzz above may have destroyed the shared one's objects.
      const admin = server.api.withToken(ADMIN);
      await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'fz-up' });
      const up = await faultFixture({ api: admin }, { device: 'fz-up' });
      const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
      const reqArb = fc.record({
        method: fc.constantFrom('GET', 'GET', 'POST', 'PUT', 'DELETE'),
        path: fc.constantFrom(
          up.stream,
          `${up.stream}?window=2`,
          `${up.stream}?window=0`,
          `${up.stream}?x=1`,
          `/v1/contexts/${up.ctx}/faults/99/stream`,
          '/v1/contexts/x/faults/1/stream',
          '/nope',
          '/%ff',
          'http://[/',
        ),
        auth: fc.constantFrom(`Bearer ${up.token}`, `Bearer ${up.token}`, 'Bearer wrong', ''),
        upgrade: fc.constantFrom('websocket', 'websocket', 'WebSocket', 'h2c', ''),
        key: fc.constantFrom(KEY, KEY, 'abc', '', `${KEY}x`),
        version: fc.constantFrom('13', '13', '8', '12', '', 'x'),
        protocol: fc.constantFrom(undefined, 'iopf.v1.json', 'iopf.v1.uapi', 'iopf.v1.json, iopf.v1.json', 'iopf.v1.json, ,x', 'bogus', 'a b', '\u00e9'),
      });
      await fc.assert(
        fc.asyncProperty(reqArb, async (q) => {
          let head = `${q.method} ${q.path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n`;
          if (q.upgrade) head += `Upgrade: ${q.upgrade}\r\n`;
          if (q.auth) head += `Authorization: ${q.auth}\r\n`;
          if (q.key) head += `Sec-WebSocket-Key: ${q.key}\r\n`;
          if (q.version) head += `Sec-WebSocket-Version: ${q.version}\r\n`;
          if (q.protocol !== undefined) head += `Sec-WebSocket-Protocol: ${q.protocol}\r\n`;
          // Done at the hello of an accepted stream, or at the end of a JSON reply (a refused upgrade, or a plain request).
          const text = await rawSocket(server.base, `${head}\r\n`, 1000, /"type":"hello"|\r\n\r\n\{[\s\S]*\}$/);
          if (text.startsWith('HTTP/1.1 101')) {
            assert.match(text, /"type":"hello"/);
            return;
          }
          const r = parseRawResponse(text);
          assert.ok(r, `no HTTP reply to ${JSON.stringify(head)}: ${JSON.stringify(text.slice(0, 200))}`);
          assertErrnoBody(r.status, r.body, head.split('\r\n').join(' | '));
        }),
        { numRuns: 150, seed, endOnFailure: true },
      );
      // Every accepted stream above was closed by its client: no connection left behind.
      for (let t = 0; (await up.api.ok('fault.get', 'GET', `${up.prefix}/faults/${up.fault}`)).connections !== 0; t++) {
        assert.ok(t < 100, 'a connection was left open');
        await new Promise((r) => setTimeout(r, 10));
      }
    });
  });

  test('stream: random JSON and binary frames in both modes, then nothing lost', async () => {
    const seed = testSeed();
    await withSeed('stream fuzz', seed, async () => {
      const admin = server.api.withToken(ADMIN);
      await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'fzs' });
      const sfx = await faultFixture({ api: admin }, { device: 'fzs', pasid: 2 });
      const GROUPS = 24;
      for (let g = 0; g < GROUPS; g++) await injectGroup(admin, 'fzs', g, BigInt(g) * 0x10000n, 1 + (g % 3), g % 2 ? 2 : undefined);
      const json = await StreamClient.open(server.wsBase, sfx.stream, { token: sfx.token, window: 8 });
      const uapi = await StreamClient.open(server.wsBase, sfx.stream, { token: sfx.token, protocol: 'iopf.v1.uapi', window: 8 });
      assert.equal((await json.json()).type, 'hello');
      assert.equal((await uapi.json()).type, 'hello');

      /** The reply to one frame: the next text frame that is a results, write or error frame. */
      const replyOf = async (s: StreamClient): Promise<Json> => {
        const f = await s.take((f) => !f.binary && ['results', 'write', 'error'].includes(JSON.parse(f.data.toString('utf8')).type), 3000);
        const msg = JSON.parse(f.data.toString('utf8'));
        const v = zServerMessage.safeParse(msg);
        assert.ok(v.success, `a server frame outside the protocol: ${f.data.toString('utf8').slice(0, 200)}`);
        return msg;
      };

      const cookie = fc.oneof(fc.integer({ min: 0, max: 30 }), fc.constantFrom(-1, 0.5, 2 ** 32, 2 ** 53, 1e308, -0));
      const code = fc.oneof(fc.constantFrom(0, 1, 'success', 'invalid', 2, -1, 0.5, 'SUCCESS', '', 2 ** 53, null, true), fc.string({ maxLength: 5 }));
      const entry = fc.oneof(
        { weight: 5, arbitrary: fc.record({ cookie, code }) },
        { weight: 1, arbitrary: fc.record({ cookie, code, __proto__: fc.constant(1) }) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
      );
      const textFrame = fc.oneof(
        { weight: 5, arbitrary: fc.array(entry, { maxLength: 6 }).map((responses) => jsonText({ type: 'responses', responses })) },
        { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => jsonText(v)) },
        {
          weight: 2,
          arbitrary: fc.constantFrom(
            '',
            'null',
            '{"type":"responses"}',
            '{"type":"responses","responses":{}}',
            '{"__proto__":{"type":"responses"},"responses":[]}',
            '{"type":"responses","responses":[],"constructor":1}',
            '{"type":"responses","responses":[{"cookie":1,"code":0,"__proto__":{}}]}',
            '{"type":"responses","responses":[{"cookie":9007199254740993,"code":0}]}',
            '{"type":"responses","responses":[{"cookie":1e400,"code":0}]}',
            '{"type":"responses","responses":[',
            deep(30000, false),
            '{"type":"hello","protocol":"iopf.v1.json","fault_id":1,"window":1}',
          ),
        },
        { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
      );
      const invalidUtf8 = fc.constantFrom(
        Buffer.from([0xff]),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('{"type":"responses","responses":[]}\xff', 'latin1'),
        Buffer.from([0xed, 0xa0, 0x80]),
      );
      const binary = fc.oneof(
        { weight: 3, arbitrary: fc.uint8Array({ maxLength: 41 }).map((b) => Buffer.from(b)) },
        {
          weight: 3,
          arbitrary: fc
            .array(fc.tuple(fc.oneof(fc.integer({ min: 0, max: 30 }), fc.constant(0xffffffff)), fc.constantFrom(0, 1, 2, 0xffffffff)), { maxLength: 5 })
            .map((rs) => {
              const b = Buffer.alloc(rs.length * 8);
              rs.forEach(([c, k], i) => {
                b.writeUInt32LE(c >>> 0, i * 8);
                b.writeUInt32LE(k >>> 0, i * 8 + 4);
              });
              return b;
            }),
        },
      );
      const op = fc.oneof(
        {
          weight: 4,
          arbitrary: fc.record({ to: fc.constant('json' as const), kind: fc.constant('text' as const), data: textFrame.map((s) => Buffer.from(s, 'utf8')) }),
        },
        { weight: 1, arbitrary: fc.record({ to: fc.constantFrom('json' as const, 'uapi' as const), kind: fc.constant('text' as const), data: invalidUtf8 }) },
        { weight: 4, arbitrary: fc.record({ to: fc.constant('uapi' as const), kind: fc.constant('binary' as const), data: binary }) },
        { weight: 1, arbitrary: fc.record({ to: fc.constant('json' as const), kind: fc.constant('binary' as const), data: binary }) },
        {
          weight: 1,
          arbitrary: fc.record({ to: fc.constant('uapi' as const), kind: fc.constant('text' as const), data: textFrame.map((s) => Buffer.from(s, 'utf8')) }),
        },
      );

      await fc.assert(
        fc.asyncProperty(op, async (o) => {
          const s = o.to === 'json' ? json : uapi;
          s.ws.send(o.data, { binary: o.kind === 'binary' });
          const reply = await replyOf(s);
          if (o.to === 'uapi' && o.kind === 'binary') {
            assert.equal(reply.type, 'write', JSON.stringify(reply));
            if (o.data.length % 8 !== 0) assert.deepEqual(reply, { type: 'write', bytes: 0, errno: 'ESPIPE', index: 0 });
            else assert.ok(reply.bytes <= o.data.length && reply.bytes % 8 === 0 && (reply.errno === undefined || reply.errno === 'EINVAL'));
          } else if (o.to === 'json' && o.kind === 'text' && reply.type === 'results') {
            const parsed = JSON.parse(o.data.toString('utf8'));
            assert.equal(reply.ok + reply.errors.length, parsed.responses.length, 'one verdict per entry');
            for (const e of reply.errors) assert.equal(e.errno, 'EINVAL');
          } else {
            assert.equal(reply.type, 'error', `${o.to}/${o.kind} ${o.data.toString('utf8').slice(0, 80)} → ${JSON.stringify(reply)}`);
            assert.equal(reply.errno, 'EINVAL');
          }
          assert.equal(s.ws.readyState, s.ws.OPEN, 'the stream stays open');
        }),
        { numRuns: 500, seed, endOnFailure: true },
      );

      // Nothing lost: close the fuzzed streams, answer every group on a fresh one; each group got exactly one response.
      await json.close();
      await uapi.close();
      const clean = await StreamClient.open(server.wsBase, sfx.stream, { token: sfx.token });
      await clean.json();
      const status = async (): Promise<Json> => sfx.api.ok('fault.get', 'GET', `${sfx.prefix}/faults/${sfx.fault}`);
      for (;;) {
        const st = await status();
        if (st.queued === 0 && st.outstanding === 0) break;
        const frame = await clean.reply('faults');
        const r = await clean.respond(frame.groups.map((g: Json) => ({ cookie: g.cookie, code: 0 })));
        assert.equal(r.ok, frame.groups.length);
      }
      await clean.close();
      const fn = server.daemon.platform.function('fzs');
      assert.equal(fn.responses.length, GROUPS, 'every injected group answered exactly once');
      assert.equal(fn.unexpectedResponses, 0);
      assert.equal(fn.outstandingGroups, 0);
      assert.deepEqual(
        [...new Set(fn.responses.map((r) => r.grpid))].sort((a, b) => a - b),
        Array.from({ length: GROUPS }, (_, i) => i),
      );
    });
  });

  test('oversized frames close with 1009', async () => {
    const admin = server.api.withToken(ADMIN);
    await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'fz-big' });
    const big = await faultFixture({ api: admin }, { device: 'fz-big' });
    const s = await StreamClient.open(server.wsBase, big.stream, { token: big.token });
    await s.json();
    s.ws.send(Buffer.alloc((1 << 20) + 1), { binary: true });
    assert.equal((await s.closed).code, 1009);
  });

  test('afterwards: a normal request and a normal group round trip work', async () => {
    for (const c of created.splice(0))
      await rawHttp(server.base, { method: 'DELETE', path: `/v1/contexts/${c.ctx}`, headers: { authorization: `Bearer ${c.token}` } });
    assert.equal((await server.api.get('/healthz')).status, 200);
    const admin = server.api.withToken(ADMIN);
    await admin.ok('platform.device.add', 'POST', '/v1/platform/devices', { name: 'fz-after' });
    const f = await faultFixture({ api: admin }, { device: 'fz-after' });
    const s = await StreamClient.open(server.wsBase, f.stream, { token: f.token });
    await s.json();
    await injectGroup(admin, 'fz-after', 5, 0x5000n, 2);
    const frame = await s.reply('faults');
    assert.deepEqual(await s.respond([{ cookie: frame.groups[0].cookie, code: 0 }]), { type: 'results', ok: 1, errors: [] });
    assert.deepEqual(
      server.daemon.platform.responses('fz-after').map((r) => [r.grpid, r.code]),
      [[5, 'success']],
    );
    await s.close();
  });
});
