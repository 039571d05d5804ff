/**
 * DOC: fault fd records
 *
 * The binary layouts of the kernel's iommufd fault fd, used as is by the
 * `iopf.v1.uapi` stream and field for field by the JSON stream:
 * `struct iommu_hwpt_pgfault` (40 bytes, read() side) and
 * `struct iommu_hwpt_page_response` (8 bytes, write() side). All fields are
 * little-endian.
 */
import { U64_MAX } from './u64.js';

/** RECORD_SIZE - sizeof(struct iommu_hwpt_pgfault). */
export const RECORD_SIZE = 40;

/** RESPONSE_SIZE - sizeof(struct iommu_hwpt_page_response). */
export const RESPONSE_SIZE = 8;

/**
 * PGFAULT_FLAGS - bits of iommu_hwpt_pgfault.flags.
 *
 * PASID_VALID and LAST_PAGE are the uAPI's IOMMU_PGFAULT_FLAGS_*; NEEDS_PASID
 * is the kernel's internal IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID, which a
 * VT-d-model IOMMU passes through as the kernel does.
 */
export const PGFAULT_FLAGS = Object.freeze({ PASID_VALID: 1, LAST_PAGE: 2, NEEDS_PASID: 4 } as const);

/** PERM - bits of iommu_hwpt_pgfault.perm (IOMMU_PGFAULT_PERM_*). */
export const PERM = Object.freeze({ READ: 1, WRITE: 2, EXEC: 4, PRIV: 8 } as const);

/**
 * RESP_CODE - iommu_hwpt_page_response.code values (IOMMUFD_PAGE_RESP_*).
 *
 * Nothing else is accepted: Response Failure is not expressible by user space.
 */
export const RESP_CODE = Object.freeze({ SUCCESS: 0, INVALID: 1 } as const);

/**
 * HWPT_FLAGS - bits of the hwpt allocation flags (enum iommufd_hwpt_alloc_flags).
 *
 * DIRTY_TRACKING is defined by the uAPI but not supported (EOPNOTSUPP).
 */
export const HWPT_FLAGS = Object.freeze({ NEST_PARENT: 1, DIRTY_TRACKING: 2, FAULT_ID_VALID: 4, PASID: 8 } as const);

/**
 * struct RecordField - one field of struct iommu_hwpt_pgfault.
 * @name: the kernel field name.
 * @offset: byte offset in the record.
 * @size: 4 (u32) or 8 (u64).
 */
export interface RecordField {
  readonly name: 'flags' | 'dev_id' | 'pasid' | 'grpid' | 'perm' | '__reserved' | 'addr' | 'length' | 'cookie';
  readonly offset: number;
  readonly size: 4 | 8;
}

/** RECORD_FIELDS - the layout of struct iommu_hwpt_pgfault, in offset order. */
export const RECORD_FIELDS: readonly RecordField[] = Object.freeze([
  { name: 'flags', offset: 0, size: 4 },
  { name: 'dev_id', offset: 4, size: 4 },
  { name: 'pasid', offset: 8, size: 4 },
  { name: 'grpid', offset: 12, size: 4 },
  { name: 'perm', offset: 16, size: 4 },
  { name: '__reserved', offset: 20, size: 4 },
  { name: 'addr', offset: 24, size: 8 },
  { name: 'length', offset: 32, size: 4 },
  { name: 'cookie', offset: 36, size: 4 },
] as const);

/**
 * struct IommuHwptPgfault - one page request as user space reads it.
 * @flags: PGFAULT_FLAGS bits.
 * @dev_id: the device's object id in the context.
 * @pasid: valid iff PASID_VALID.
 * @grpid: the Page Request Group index.
 * @perm: PERM bits.
 * @addr: the page address (u64).
 * @length: length hint, always 0 today.
 * @cookie: the group's cookie, the same on every record of a group.
 *
 * __reserved is not carried: it is 0 on the wire.
 */
export interface IommuHwptPgfault {
  flags: number;
  dev_id: number;
  pasid: number;
  grpid: number;
  perm: number;
  addr: bigint;
  length: number;
  cookie: number;
}

/**
 * struct IommuHwptPageResponse - one response as user space writes it.
 * @cookie: the cookie of the group answered.
 * @code: RESP_CODE value (any u32 can be encoded; the daemon refuses others).
 */
export interface IommuHwptPageResponse {
  cookie: number;
  code: number;
}

// One scratch word for u64 <-> bytes without allocating per record.
const scratch = new DataView(new ArrayBuffer(8));
const scratchBytes = new Uint8Array(scratch.buffer);

function checkU32(name: string, v: number): void {
  if (v >>> 0 !== v) throw new RangeError(`${name} is not a u32: ${v}`);
}

function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

function get32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/**
 * encodeRecord() - write one struct iommu_hwpt_pgfault.
 * @buf: destination bytes (a Buffer is a Uint8Array) or a DataView.
 * @offset: byte offset of the record in @buf.
 * @r: the record; u32 fields must be u32, @r.addr a u64.
 *
 * Writes the 40 bytes little-endian with __reserved = 0. Allocates nothing,
 * so a caller can fill one buffer with many records.
 *
 * Throws: RangeError if the record does not fit in @buf at @offset or a field
 * is out of range (nothing useful is written then).
 */
export function encodeRecord(buf: Uint8Array | DataView, offset: number, r: IommuHwptPgfault): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + RECORD_SIZE > buf.byteLength) {
    throw new RangeError(`record at offset ${offset} does not fit in ${buf.byteLength} bytes`);
  }
  checkU32('flags', r.flags);
  checkU32('dev_id', r.dev_id);
  checkU32('pasid', r.pasid);
  checkU32('grpid', r.grpid);
  checkU32('perm', r.perm);
  checkU32('length', r.length);
  checkU32('cookie', r.cookie);
  if (r.addr < 0n || r.addr > U64_MAX) throw new RangeError(`addr is not a u64: ${r.addr}`);
  if (buf instanceof DataView) {
    buf.setUint32(offset, r.flags, true);
    buf.setUint32(offset + 4, r.dev_id, true);
    buf.setUint32(offset + 8, r.pasid, true);
    buf.setUint32(offset + 12, r.grpid, true);
    buf.setUint32(offset + 16, r.perm, true);
    buf.setUint32(offset + 20, 0, true);
    buf.setBigUint64(offset + 24, r.addr, true);
    buf.setUint32(offset + 32, r.length, true);
    buf.setUint32(offset + 36, r.cookie, true);
    return;
  }
  put32(buf, offset, r.flags);
  put32(buf, offset + 4, r.dev_id);
  put32(buf, offset + 8, r.pasid);
  put32(buf, offset + 12, r.grpid);
  put32(buf, offset + 16, r.perm);
  put32(buf, offset + 20, 0);
  scratch.setBigUint64(0, r.addr, true);
  for (let i = 0; i < 8; i++) buf[offset + 24 + i] = scratchBytes[i]!;
  put32(buf, offset + 32, r.length);
  put32(buf, offset + 36, r.cookie);
}

/**
 * decodeRecords() - read the records of one read() (or one binary frame).
 * @buf: a whole number of 40-byte records.
 *
 * __reserved is not checked (user space ignores it).
 *
 * Return: the records in order.
 * Throws: RangeError if @buf.length is not a multiple of RECORD_SIZE.
 */
export function decodeRecords(buf: Uint8Array): IommuHwptPgfault[] {
  if (buf.length % RECORD_SIZE !== 0) {
    throw new RangeError(`${buf.length} bytes is not a whole number of ${RECORD_SIZE}-byte records`);
  }
  const out: IommuHwptPgfault[] = [];
  for (let o = 0; o < buf.length; o += RECORD_SIZE) {
    for (let i = 0; i < 8; i++) scratchBytes[i] = buf[o + 24 + i]!;
    out.push({
      flags: get32(buf, o),
      dev_id: get32(buf, o + 4),
      pasid: get32(buf, o + 8),
      grpid: get32(buf, o + 12),
      perm: get32(buf, o + 16),
      addr: scratch.getBigUint64(0, true),
      length: get32(buf, o + 32),
      cookie: get32(buf, o + 36),
    });
  }
  return out;
}

/**
 * encodeResponses() - build the bytes of one write() of page responses.
 * @rs: the responses in order; cookie and code must be u32.
 *
 * Return: @rs.length × 8 bytes, little-endian.
 * Throws: RangeError if a cookie or code is not a u32.
 */
export function encodeResponses(rs: readonly IommuHwptPageResponse[]): Uint8Array {
  const out = new Uint8Array(rs.length * RESPONSE_SIZE);
  rs.forEach((r, i) => {
    checkU32(`responses[${i}].cookie`, r.cookie);
    checkU32(`responses[${i}].code`, r.code);
    put32(out, i * RESPONSE_SIZE, r.cookie);
    put32(out, i * RESPONSE_SIZE + 4, r.code);
  });
  return out;
}

/**
 * decodeResponse() - read one struct iommu_hwpt_page_response.
 * @buf: the bytes of one write().
 * @index: which response (0-based).
 *
 * The caller checks first that @buf.length is a multiple of RESPONSE_SIZE
 * (else the write is ESPIPE).
 *
 * Return: the response at @index.
 * Throws: RangeError if @index is not a whole response inside @buf.
 */
export function decodeResponse(buf: Uint8Array, index: number): IommuHwptPageResponse {
  const o = index * RESPONSE_SIZE;
  if (!Number.isInteger(index) || index < 0 || o + RESPONSE_SIZE > buf.length) {
    throw new RangeError(`response ${index} is outside ${buf.length} bytes`);
  }
  return { cookie: get32(buf, o), code: get32(buf, o + 4) };
}
