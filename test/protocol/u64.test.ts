import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bytesOfHex, formatU64, hexOf, parseU64, U64_MAX, zDecimalU32, zHexData, zU32, zU64 } from '../../protocol/u64.js';

test('u64: parseU64 accepts 0x with 1..16 hex digits, any case', () => {
  assert.equal(parseU64('0x0'), 0n);
  assert.equal(parseU64('0x1000'), 0x1000n);
  assert.equal(parseU64('0xDEADbeef'), 0xdeadbeefn);
  assert.equal(parseU64('0XAB'), 0xabn);
  assert.equal(parseU64('0xffffffffffffffff'), U64_MAX);
  assert.equal(parseU64('0x0000000000000001'), 1n);
});

test('u64: parseU64 refuses everything else with RangeError', () => {
  for (const s of ['0x', '', '1000', '0x10000000000000000', '0x-1', ' 0x1', '0x1 ', '0xg', '0b1', '-0x1', '0x1_0', '4096']) {
    assert.throws(() => parseU64(s), RangeError, s);
  }
});

test('u64: formatU64 is lowercase and round-trips', () => {
  assert.equal(formatU64(0n), '0x0');
  assert.equal(formatU64(0xdeadbeefn), '0xdeadbeef');
  assert.equal(formatU64(U64_MAX), '0xffffffffffffffff');
  assert.throws(() => formatU64(-1n), RangeError);
  assert.throws(() => formatU64(U64_MAX + 1n), RangeError);
  fc.assert(fc.property(fc.bigInt({ min: 0n, max: U64_MAX }), (v) => parseU64(formatU64(v)) === v));
});

test('u64: zU64 refuses a JSON number, "0x" alone, 17 digits; accepts uppercase', () => {
  assert.equal(zU64.parse('0xABCDEF'), 0xabcdefn);
  assert.equal(zU64.parse('0X10'), 16n);
  for (const bad of [4096, '0x', '0x10000000000000000', '4096', null, undefined, 4096n]) {
    const r = zU64.safeParse(bad);
    assert.equal(r.success, false, String(bad));
    assert.match(r.error!.issues[0]!.message, bad === undefined ? /required/ : /"0x…" u64 string/);
  }
});

test('u64: zU32 is an integer JSON number 0..0xffffffff', () => {
  for (const ok of [0, 1, 0xffffffff]) assert.equal(zU32.parse(ok), ok);
  for (const bad of [-1, 0x100000000, 1.5, '1', NaN, Infinity, null, true]) assert.equal(zU32.safeParse(bad).success, false, String(bad));
});

test('u64: zDecimalU32 parses path and query numbers', () => {
  assert.equal(zDecimalU32.parse('0'), 0);
  assert.equal(zDecimalU32.parse('4294967295'), 0xffffffff);
  for (const bad of ['', '-1', '1e3', '0x10', '4294967296', ' 1', '1.0', '12345678901']) {
    assert.equal(zDecimalU32.safeParse(bad).success, false, bad);
  }
});

test('u64: hex data round-trips, either case, even length only', () => {
  assert.deepEqual(zHexData.parse('00ffA5'), new Uint8Array([0, 255, 0xa5]));
  assert.deepEqual(zHexData.parse(''), new Uint8Array(0));
  assert.equal(hexOf(new Uint8Array([0, 1, 0xab, 0xff])), '0001abff');
  for (const bad of ['0', 'abc', '0x00', 'zz', 12]) assert.equal(zHexData.safeParse(bad).success, false, String(bad));
  assert.throws(() => bytesOfHex('0g'), RangeError);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      const h = hexOf(b);
      assert.equal(h, Buffer.from(b).toString('hex'));
      assert.deepEqual(bytesOfHex(h), b);
      assert.deepEqual(bytesOfHex(h.toUpperCase()), b);
    }),
  );
});
