// The stream's hot-path codecs: FaultsJsonWriter (faults frames as bytes)
// and scanResponsesFrame (responses frames from bytes), against the
// reference behaviour (JSON.stringify, parseClientJsonFrame).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  encodeFaultsFrameJson,
  FaultsJsonWriter,
  parseClientJsonFrame,
  ResponseBatch,
  scanResponsesFrame,
  type FaultsFrameGroup,
} from '../../protocol/stream-codec.js';
import { responseCodeOf } from '../../protocol/stream.js';

/** What scanResponsesFrame() must agree with: parseClientJsonFrame() and responseCodeOf(). */
function agree(text: string): boolean {
  const batch = new ResponseBatch();
  const scanned = scanResponsesFrame(Buffer.from(text, 'utf8'), batch);
  if (!scanned) return false;
  const parsed = parseClientJsonFrame(text);
  assert.ok(parsed.ok, `scanned but refused: ${text}`);
  assert.equal(batch.count, parsed.responses.length, text);
  parsed.responses.forEach((e, i) => {
    assert.equal(batch.cookies[i], e.cookie, text);
    assert.equal(batch.codes[i], responseCodeOf(e.code), text);
  });
  return true;
}

const ws = fc.constantFrom('', ' ', '\n', '\t', '\r\n ', '  ');
// biome-ignore lint/correctness/noPrecisionLoss: 1e400 is deliberately Infinity (JSON.stringify writes null; the wire text 1e400 parses to it)
const arbCode = fc.constantFrom<unknown>(0, 1, 'success', 'invalid', 2, -1, 1.5, '0', 'SUCCESS', null, 1e400);
const arbCookie = fc.oneof(fc.nat({ max: 0xffffffff }), fc.constantFrom<unknown>(-1, 0.5, 1e15, 1e16, 2 ** 53, '1', null));
/** A responses frame as a client might spell it: whitespace, key order, odd values. */
const arbFrameText = fc
  .tuple(fc.array(fc.tuple(arbCookie, arbCode, fc.boolean(), ws, ws), { maxLength: 6 }), fc.boolean(), ws, ws)
  .map(([entries, typeFirst, a, b]) => {
    const list = entries
      .map(([cookie, code, cookieFirst, w1, w2]) => {
        const c = `${w1}"cookie"${w2}:${w1}${JSON.stringify(cookie) ?? 'null'}`;
        // biome-ignore lint/correctness/noPrecisionLoss: the deliberately overflowing literal of arbCode (Infinity), written as its wire text
        const k = `"code"${w2}:${w1}${code === 1e400 ? '1e400' : JSON.stringify(code)}`;
        return `{${cookieFirst ? `${c},${w2}${k}` : `${k},${w1}${c}`}${w2}}`;
      })
      .join(`${a},${b}`);
    const type = `"type"${a}:${b}"responses"`;
    const responses = `"responses"${b}:${a}[${a}${list}${b}]`;
    return `${a}{${b}${typeFirst ? `${type},${responses}` : `${responses},${type}`}${a}}${b}`;
  });

test('scanResponsesFrame: the frames clients send are scanned, with the entries the full parser finds', () => {
  assert.ok(agree('{"type":"responses","responses":[]}'));
  assert.ok(agree('{"type":"responses","responses":[{"cookie":1,"code":0},{"cookie":22,"code":"invalid"}]}'));
  assert.ok(agree(' { "responses" : [ { "code" : "success" , "cookie" : 4294967295 } ] , "type" : "responses" } \n'));
  assert.ok(agree('{"type":"responses","responses":[{"cookie":0,"code":1}]}'), 'cookie 0: scanned (and refused later, as a cookie)');
});

test('scanResponsesFrame: anything unusual is left to the full parser', () => {
  for (const text of [
    '{"type":"responses","responses":[{"cookie":1,"code":2}]}', // a bad code: its own error message
    '{"type":"responses","responses":[{"cookie":01,"code":0}]}', // not JSON
    '{"type":"responses","responses":[{"cookie":1.0,"code":0}]}',
    '{"type":"responses","responses":[{"cookie":1e3,"code":0}]}',
    '{"type":"responses","responses":[{"cookie":-1,"code":0}]}',
    '{"type":"responses","responses":[{"cookie":1234567890123456,"code":0}]}', // 16 digits
    '{"type":"responses","responses":[{"cookie":1,"code":0,"x":1}]}',
    '{"type":"responses","responses":[{"cookie":1,"cookie":2,"code":0}]}',
    '{"type":"responses","responses":[{"cookie":1}]}',
    '{"type":"responses","type":"responses","responses":[]}',
    '{"type":"responses","responses":[],"x":0}',
    '{"type":"respons\\u0065s","responses":[]}',
    '{"type":"responses","responses":[]}x',
    '{"type":"responses","responses":[],}',
    '{"type":"responses","responses":[{"cookie":1,"code":0},]}',
    '\ufeff{"type":"responses","responses":[]}',
    '{"type":"responses"}',
    '[]',
    '',
  ]) {
    assert.equal(scanResponsesFrame(Buffer.from(text, 'utf8'), new ResponseBatch()), false, text);
  }
});

test('scanResponsesFrame: never disagrees with parseClientJsonFrame (property)', () => {
  let scanned = 0;
  fc.assert(
    fc.property(arbFrameText, (text) => {
      if (agree(text)) scanned++;
    }),
    { numRuns: 3000 },
  );
  assert.ok(scanned > 100, `only ${scanned} frames took the fast path`);
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 120 }), (text) => void agree(text)),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.json({ maxDepth: 4 }), (text) => void agree(text)),
    { numRuns: 2000 },
  );
});

test('scanResponsesFrame: a batch is reused from frame to frame', () => {
  const batch = new ResponseBatch();
  assert.ok(scanResponsesFrame(Buffer.from('{"type":"responses","responses":[{"cookie":1,"code":0},{"cookie":2,"code":1}]}'), batch));
  assert.equal(batch.count, 2);
  assert.ok(scanResponsesFrame(Buffer.from('{"type":"responses","responses":[{"cookie":9,"code":1}]}'), batch));
  assert.equal(batch.count, 1);
  assert.deepEqual([batch.cookies[0], batch.codes[0]], [9, 1]);
});

const record = (cookie: number, i: number): FaultsFrameGroup['records'][number] => ({
  flags: 2,
  dev_id: 1,
  pasid: i,
  grpid: i & 511,
  perm: 1,
  addr: 0x1000n * BigInt(i) + (1n << 63n) * BigInt(i & 1),
  length: 0,
  cookie,
});

test('FaultsJsonWriter: frames stay intact while later frames are written (they are never overwritten)', () => {
  const w = new FaultsJsonWriter();
  const frames: Array<[Buffer, string]> = [];
  for (let f = 0; f < 3000; f++) {
    const groups: FaultsFrameGroup[] = [];
    for (let g = 0; g < 1 + (f % 5); g++) groups.push({ cookie: f * 8 + g + 1, redelivered: g === 1, records: [record(f * 8 + g + 1, f + g)] });
    w.begin();
    for (const g of groups) {
      w.group(g.cookie, g.redelivered);
      for (const r of g.records) w.record(r.flags, r.dev_id, r.pasid, r.grpid, r.perm, r.addr, r.length);
    }
    frames.push([w.finish(), encodeFaultsFrameJson(groups)]);
  }
  for (const [bytes, text] of frames) assert.equal(bytes.toString('latin1'), text);
});

test('FaultsJsonWriter: a frame larger than a slab, and a frame abandoned by a RangeError', () => {
  const w = new FaultsJsonWriter();
  const big: FaultsFrameGroup[] = Array.from({ length: 4096 }, (_, i) => ({
    cookie: i + 1,
    redelivered: false,
    records: [record(i + 1, i), record(i + 1, i + 1)],
  }));
  const text = encodeFaultsFrameJson(big);
  assert.ok(text.length > 1 << 18);
  assert.deepEqual(JSON.parse(text).groups.length, 4096);
  w.begin();
  w.group(1, false);
  assert.throws(() => w.record(2, 1, 0, 0, 1, -1n, 0), RangeError);
  assert.equal(
    encodeFaultsFrameJson([{ cookie: 5, redelivered: false, records: [record(5, 3)] }]),
    encodeFaultsFrameJson([{ cookie: 5, redelivered: false, records: [record(5, 3)] }]),
  );
  w.begin();
  w.group(7, true);
  w.record(2, 1, 0, 3, 1, 0n, 0);
  assert.equal(
    w.finish().toString('latin1'),
    '{"type":"faults","groups":[{"cookie":7,"redelivered":true,"records":[{"flags":2,"dev_id":1,"pasid":0,"grpid":3,"perm":1,"__reserved":0,"addr":"0x0","length":0,"cookie":7}]}]}',
  );
});
