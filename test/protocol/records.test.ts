import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeRecords,
  decodeResponse,
  encodeRecord,
  encodeResponses,
  RECORD_FIELDS,
  RECORD_SIZE,
  RESPONSE_SIZE,
  type IommuHwptPgfault,
} from '../../protocol/records.js';

const sample: IommuHwptPgfault = { flags: 3, dev_id: 7, pasid: 1, grpid: 2, perm: 3, addr: 0xdeadbeafn, length: 0, cookie: 1 };

test('records: layout table is struct iommu_hwpt_pgfault', () => {
  assert.equal(RECORD_SIZE, 40);
  assert.equal(RESPONSE_SIZE, 8);
  assert.deepEqual(
    RECORD_FIELDS.map((f) => [f.name, f.offset, f.size]),
    [
      ['flags', 0, 4],
      ['dev_id', 4, 4],
      ['pasid', 8, 4],
      ['grpid', 12, 4],
      ['perm', 16, 4],
      ['__reserved', 20, 4],
      ['addr', 24, 8],
      ['length', 32, 4],
      ['cookie', 36, 4],
    ],
  );
  const last = RECORD_FIELDS[RECORD_FIELDS.length - 1]!;
  assert.equal(last.offset + last.size, RECORD_SIZE);
});

test('records: encodeRecord writes each field little-endian at its offset', () => {
  const buf = new Uint8Array(RECORD_SIZE).fill(0xee);
  encodeRecord(buf, 0, sample);
  const dv = new DataView(buf.buffer);
  assert.equal(dv.getUint32(0, true), 3);
  assert.equal(dv.getUint32(4, true), 7);
  assert.equal(dv.getUint32(8, true), 1);
  assert.equal(dv.getUint32(12, true), 2);
  assert.equal(dv.getUint32(16, true), 3);
  assert.equal(dv.getUint32(20, true), 0);
  assert.equal(dv.getBigUint64(24, true), 0xdeadbeafn);
  assert.equal(dv.getUint32(32, true), 0);
  assert.equal(dv.getUint32(36, true), 1);
  assert.deepEqual([...buf.subarray(24, 32)], [0xaf, 0xbe, 0xad, 0xde, 0, 0, 0, 0]);
  assert.deepEqual([...buf.subarray(0, 4)], [3, 0, 0, 0]);
});

test('records: Uint8Array, Buffer and DataView targets give the same bytes', () => {
  const big: IommuHwptPgfault = { ...sample, flags: 0xffffffff, addr: 0xfedcba9876543210n, cookie: 0x80000001 };
  const a = new Uint8Array(RECORD_SIZE * 2);
  const b = Buffer.alloc(RECORD_SIZE * 2);
  const c = new DataView(new ArrayBuffer(RECORD_SIZE * 2));
  encodeRecord(a, RECORD_SIZE, big);
  encodeRecord(b, RECORD_SIZE, big);
  encodeRecord(c, RECORD_SIZE, big);
  assert.deepEqual([...a], [...b]);
  assert.deepEqual([...a], [...new Uint8Array(c.buffer)]);
  assert.deepEqual(decodeRecords(a), [{ flags: 0, dev_id: 0, pasid: 0, grpid: 0, perm: 0, addr: 0n, length: 0, cookie: 0 }, big]);
});

test('records: encodeRecord refuses out-of-range fields and offsets', () => {
  const buf = new Uint8Array(RECORD_SIZE);
  assert.throws(() => encodeRecord(buf, 1, sample), RangeError);
  assert.throws(() => encodeRecord(buf, -1, sample), RangeError);
  assert.throws(() => encodeRecord(buf, 0, { ...sample, cookie: -1 }), RangeError);
  assert.throws(() => encodeRecord(buf, 0, { ...sample, pasid: 2 ** 32 }), RangeError);
  assert.throws(() => encodeRecord(buf, 0, { ...sample, perm: 1.5 }), RangeError);
  assert.throws(() => encodeRecord(buf, 0, { ...sample, addr: -1n }), RangeError);
  assert.throws(() => encodeRecord(buf, 0, { ...sample, addr: 1n << 64n }), RangeError);
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

test('records: encode/decode round trip (property)', () => {
  fc.assert(
    fc.property(fc.array(arbRecord, { maxLength: 16 }), (records) => {
      const buf = new Uint8Array(records.length * RECORD_SIZE);
      records.forEach((r, i) => {
        encodeRecord(buf, i * RECORD_SIZE, r);
      });
      assert.deepEqual(decodeRecords(buf), records);
      for (let i = 0; i < records.length; i++) assert.equal(new DataView(buf.buffer).getUint32(i * RECORD_SIZE + 20, true), 0);
    }),
  );
});

test('records: decodeRecords refuses a partial record', () => {
  assert.deepEqual(decodeRecords(new Uint8Array(0)), []);
  assert.throws(() => decodeRecords(new Uint8Array(39)), RangeError);
  assert.throws(() => decodeRecords(new Uint8Array(41)), RangeError);
});

test('records: responses encode at offsets 0 (cookie) and 4 (code)', () => {
  const bytes = encodeResponses([
    { cookie: 1, code: 0 },
    { cookie: 0x01020304, code: 1 },
  ]);
  assert.deepEqual([...bytes], [1, 0, 0, 0, 0, 0, 0, 0, 4, 3, 2, 1, 1, 0, 0, 0]);
  assert.deepEqual(decodeResponse(bytes, 1), { cookie: 0x01020304, code: 1 });
  assert.throws(() => decodeResponse(bytes, 2), RangeError);
  assert.throws(() => decodeResponse(bytes, -1), RangeError);
  assert.throws(() => encodeResponses([{ cookie: -1, code: 0 }]), RangeError);
  fc.assert(
    fc.property(fc.array(fc.record({ cookie: arbU32, code: arbU32 }, { noNullPrototype: true }), { maxLength: 16 }), (rs) => {
      const b = encodeResponses(rs);
      assert.equal(b.length, rs.length * RESPONSE_SIZE);
      rs.forEach((r, i) => {
        assert.deepEqual(decodeResponse(b, i), r);
      });
    }),
  );
});
