import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { z } from 'zod';
import type { IommuHwptPgfault } from '../../protocol/records.js';
import {
  CLOSE,
  CLOSE_DESCRIPTIONS,
  DEFAULT_WINDOW,
  MAX_FRAME,
  MAX_WINDOW,
  responseCodeOf,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_UAPI,
  zClientMessage,
  zFaultsMessage,
  zServerMessage,
  zStreamQuery,
  zWriteMessage,
  type ServerMessage,
} from '../../protocol/stream.js';
import { encodeFaultsFrameJson, parseClientJsonFrame, type FaultsFrameGroup } from '../../protocol/stream-codec.js';

test('stream: names and limits of the contract', () => {
  assert.equal(SUBPROTOCOL_JSON, 'iopf.v1.json');
  assert.equal(SUBPROTOCOL_UAPI, 'iopf.v1.uapi');
  assert.equal(DEFAULT_WINDOW, 1024);
  assert.equal(MAX_WINDOW, 65536);
  assert.equal(MAX_FRAME, 1048576);
  assert.equal(CLOSE.GOING_AWAY, 1001);
  assert.equal(CLOSE.TOO_BIG, 1009);
  assert.deepEqual(Object.keys(CLOSE_DESCRIPTIONS).map(Number).sort(), Object.values(CLOSE).sort());
});

test('stream: window query is 1..65536', () => {
  assert.deepEqual(zStreamQuery.parse({}), {});
  assert.deepEqual(zStreamQuery.parse({ window: '65536', token: 't' }), { window: 65536, token: 't' });
  for (const w of ['0', '65537', '-1', 'x', '']) assert.equal(zStreamQuery.safeParse({ window: w }).success, false, w);
  assert.equal(zStreamQuery.safeParse({ foo: '1' }).success, false);
});

const valid = '{"type":"responses","responses":[{"cookie":1,"code":0},{"cookie":2,"code":"invalid"},{"cookie":3,"code":"failure"},{"cookie":1.5,"code":7}]}';

test('stream: parseClientJsonFrame passes well-shaped entries through unjudged', () => {
  assert.deepEqual(parseClientJsonFrame(valid), {
    ok: true,
    responses: [
      { cookie: 1, code: 0 },
      { cookie: 2, code: 'invalid' },
      { cookie: 3, code: 'failure' },
      { cookie: 1.5, code: 7 },
    ],
  });
  assert.deepEqual(parseClientJsonFrame('{"responses":[],"type":"responses"}'), { ok: true, responses: [] });
});

test('stream: parseClientJsonFrame refuses every malformed frame with a reason', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /not valid JSON/],
    ['{"type":"responses"', /not valid JSON/],
    ['null', /expected a JSON object, got null/],
    ['[]', /expected a JSON object, got an array/],
    ['42', /expected a JSON object, got number/],
    ['"responses"', /got string/],
    ['{"responses":[]}', /^type: required$/],
    ['{"type":"responses"}', /^responses: required$/],
    ['{"type":"hello","responses":[]}', /unknown message type "hello"/],
    ['{"type":1,"responses":[]}', /type: expected a string/],
    ['{"type":"responses","responses":{}}', /responses: expected an array, got object/],
    ['{"type":"responses","responses":[],"extra":1}', /unknown key "extra"/],
    ['{"type":"responses","responses":[],"__proto__":{}}', /unknown key "__proto__"/],
    ['{"type":"responses","responses":[],"constructor":{}}', /unknown key "constructor"/],
    ['{"type":"responses","responses":[1]}', /responses\[0\]: expected an object, got number/],
    ['{"type":"responses","responses":[[1,0]]}', /responses\[0\]: expected an object, got an array/],
    ['{"type":"responses","responses":[null]}', /got null/],
    ['{"type":"responses","responses":[{"cookie":1}]}', /responses\[0\]\.code: required/],
    ['{"type":"responses","responses":[{"code":1}]}', /responses\[0\]\.cookie: required/],
    ['{"type":"responses","responses":[{}]}', /cookie: required/],
    ['{"type":"responses","responses":[{"cookie":1,"code":0,"x":1}]}', /responses\[0\]: unknown key "x"/],
    ['{"type":"responses","responses":[{"cookie":1,"code":0},{"__proto__":1,"cookie":1,"code":0}]}', /responses\[1\]: unknown key "__proto__"/],
    ['{"type":"responses","responses":[{"cookie":1,"constructor":0}]}', /unknown key "constructor"/],
    ['{"type":"responses","responses":[{"cookie":"1","code":0}]}', /cookie: expected a number, got string/],
    ['{"type":"responses","responses":[{"cookie":1,"code":true}]}', /code: expected a number or a string, got boolean/],
    ['{"type":"responses","responses":[{"cookie":1,"code":null}]}', /code: expected a number or a string, got null/],
    ['{"type":"responses","responses":[{"cookie":1,"code":{}}]}', /code: expected a number or a string, got object/],
  ];
  for (const [text, why] of bad) {
    const r = parseClientJsonFrame(text);
    assert.equal(r.ok, false, text);
    if (!r.ok) assert.match(r.message, why, text);
  }
  assert.equal(({} as Record<string, unknown>).cookie, undefined, 'Object.prototype untouched');
});

/** The shape rule of parseClientJsonFrame, written with zod, as the reference model. */
const reference = z.strictObject({
  type: z.literal('responses'),
  responses: z.array(z.strictObject({ cookie: z.number(), code: z.union([z.number(), z.string()]) })),
});

function agreesWithReference(text: string): void {
  const r = parseClientJsonFrame(text);
  let expected: boolean;
  try {
    expected = reference.safeParse(JSON.parse(text)).success;
  } catch {
    expected = false;
  }
  assert.equal(r.ok, expected, text);
  if (r.ok) assert.deepEqual(r.responses, (JSON.parse(text) as { responses: unknown }).responses);
  else assert.ok(r.message.length > 0 && !r.message.includes('\n'));
}

test('stream: parseClientJsonFrame never throws on arbitrary text (fuzz)', () => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), agreesWithReference), { numRuns: 2000 });
  fc.assert(fc.property(fc.json({ maxDepth: 4 }), agreesWithReference), { numRuns: 2000 });
});

const arbKey = fc.constantFrom('type', 'responses', 'cookie', 'code', '__proto__', 'constructor', 'toString', 'x');
const arbLeaf = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom('responses', 'success', 'invalid', 'x'),
  fc.boolean(),
  fc.constant(null),
);
const arbEntry = fc.oneof(fc.record({ cookie: arbLeaf, code: arbLeaf }, { noNullPrototype: true }), fc.dictionary(arbKey, arbLeaf, { maxKeys: 4 }), arbLeaf);

/** Near-valid frames, with dangerous keys spliced in as raw text. */
const arbFrame = fc
  .tuple(fc.array(arbEntry, { maxLength: 5 }), fc.constantFrom('responses', 'hello', 'faults'), fc.option(fc.tuple(arbKey, arbLeaf)), fc.boolean())
  .map(([entries, type, extra, dropType]) => {
    const parts = [`"responses":${JSON.stringify(entries)}`];
    if (!dropType) parts.push(`"type":${JSON.stringify(type)}`);
    if (extra) parts.push(`${JSON.stringify(extra[0])}:${JSON.stringify(extra[1])}`);
    return `{${parts.join(',')}}`;
  });

test('stream: parseClientJsonFrame agrees with the zod reference on near-valid frames (fuzz)', () => {
  fc.assert(fc.property(arbFrame, agreesWithReference), { numRuns: 3000 });
  fc.assert(
    fc.property(arbFrame, (text) => {
      if (/"__proto__"|"constructor"/.test(text)) assert.equal(parseClientJsonFrame(text).ok, false, text);
    }),
    { numRuns: 1000 },
  );
});

test('stream: responseCodeOf accepts exactly 0, 1, "success", "invalid"', () => {
  assert.equal(responseCodeOf(0), 0);
  assert.equal(responseCodeOf('success'), 0);
  assert.equal(responseCodeOf(1), 1);
  assert.equal(responseCodeOf('invalid'), 1);
  for (const c of [2, -1, 0.5, 'failure', 'SUCCESS', '0', '']) assert.equal(responseCodeOf(c), undefined, String(c));
});

const arbU32 = fc.nat({ max: 0xffffffff });
const arbRecord: fc.Arbitrary<IommuHwptPgfault> = fc.record(
  {
    flags: arbU32,
    dev_id: arbU32,
    pasid: arbU32,
    grpid: arbU32,
    perm: arbU32,
    addr: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    length: arbU32,
    cookie: arbU32,
  },
  { noNullPrototype: true },
);
const arbGroups: fc.Arbitrary<FaultsFrameGroup[]> = fc.array(
  fc.record({ cookie: arbU32, redelivered: fc.boolean(), records: fc.array(arbRecord, { minLength: 1, maxLength: 4 }) }, { noNullPrototype: true }),
  { minLength: 1, maxLength: 4 },
);

test('stream: encodeFaultsFrameJson equals JSON.stringify of the message (property)', () => {
  fc.assert(
    fc.property(arbGroups, (groups) => {
      const text = encodeFaultsFrameJson(groups);
      const expected = {
        type: 'faults',
        groups: groups.map((g) => ({
          cookie: g.cookie,
          redelivered: g.redelivered,
          records: g.records.map((r) => ({
            flags: r.flags,
            dev_id: r.dev_id,
            pasid: r.pasid,
            grpid: r.grpid,
            perm: r.perm,
            __reserved: 0,
            addr: `0x${r.addr.toString(16)}`,
            length: r.length,
            cookie: g.cookie,
          })),
        })),
      };
      assert.equal(text, JSON.stringify(expected));
      const parsed = zFaultsMessage.parse(JSON.parse(text));
      assert.equal(parsed.groups[0]!.records[0]!.addr, groups[0]!.records[0]!.addr);
    }),
  );
});

test('stream: encodeFaultsFrameJson refuses values that are not u32 or u64', () => {
  const r: IommuHwptPgfault = { flags: 2, dev_id: 1, pasid: 0, grpid: 0, perm: 1, addr: 0x1000n, length: 0, cookie: 1 };
  assert.throws(() => encodeFaultsFrameJson([{ cookie: -1, redelivered: false, records: [r] }]), RangeError);
  assert.throws(() => encodeFaultsFrameJson([{ cookie: 1, redelivered: false, records: [{ ...r, flags: NaN }] }]), RangeError);
  assert.throws(() => encodeFaultsFrameJson([{ cookie: 1, redelivered: false, records: [{ ...r, addr: -1n }] }]), RangeError);
});

test('stream: every server message parses with zServerMessage', () => {
  const messages: ServerMessage[] = [
    { type: 'hello', protocol: 'iopf.v1.json', fault_id: 3, window: 1024 },
    JSON.parse(
      encodeFaultsFrameJson([
        { cookie: 1, redelivered: true, records: [{ flags: 7, dev_id: 1, pasid: 5, grpid: 9, perm: 3, addr: 0xabcn, length: 0, cookie: 1 }] },
      ]),
    ) as ServerMessage,
    { type: 'results', ok: 1, errors: [{ index: 1, cookie: 42, errno: 'EINVAL', message: 'unknown cookie' }] },
    { type: 'write', bytes: 16 },
    { type: 'write', bytes: 0, errno: 'ESPIPE', index: 0 },
    { type: 'error', errno: 'EINVAL', message: 'not valid JSON' },
    { type: 'expired', cookies: [1, 2] },
    { type: 'overflow', count: 3 },
  ];
  for (const m of messages) assert.equal(zServerMessage.safeParse(m).success, true, JSON.stringify(m));
  assert.equal(zWriteMessage.safeParse({ type: 'write', bytes: 8, errno: 'EINVAL' }).success, false);
  assert.equal(zServerMessage.safeParse({ type: 'hello', protocol: 'x', fault_id: 1, window: 1 }).success, false);
  assert.equal(zServerMessage.safeParse({ type: 'overflow', count: 1, x: 1 }).success, false);
  assert.equal(zClientMessage.safeParse(JSON.parse(valid)).success, false, 'zClientMessage only takes valid codes and u32 cookies');
  assert.equal(zClientMessage.safeParse({ type: 'responses', responses: [{ cookie: 1, code: 'success' }] }).success, true);
});
