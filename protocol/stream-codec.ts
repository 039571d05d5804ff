/**
 * DOC: the fault stream codec
 *
 * Frames to bytes and back for the messages stream.ts defines: the client
 * frame's shape check (parseClientJsonFrame), the allocation-free decoder of
 * the common `responses` frame (scanResponsesFrame into a ResponseBatch), and
 * the writer of JSON-mode `faults` frames straight into Buffer slabs
 * (FaultsJsonWriter, encodeFaultsFrameJson). Unlike the contract, this file
 * uses Node's Buffer.
 */
import { RESP_CODE, type IommuHwptPgfault } from './records.js';
import { U64_MAX } from './u64.js';

/**
 * struct ClientResponseEntry - one entry of a client `responses` frame as the
 * shape check leaves it: the values are judged later, entry by entry.
 */
export interface ClientResponseEntry {
  cookie: number;
  code: number | string;
}

/** ClientFrameResult - outcome of parseClientJsonFrame(). */
export type ClientFrameResult = { ok: true; responses: ClientResponseEntry[] } | { ok: false; message: string };

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/**
 * parseClientJsonFrame() - shape-check one client text frame (JSON mode).
 * @text: the frame's text.
 *
 * The frame must be a JSON object with exactly the keys `type` ("responses")
 * and `responses` (an array); each entry an object with exactly the keys
 * `cookie` (a number) and `code` (a number or a string). Any other key,
 * including `__proto__` and `constructor`, is refused. An entry of the wrong
 * shape makes the whole frame an error frame (nothing in it is processed);
 * the values (is the cookie outstanding, is the code 0/1/"success"/"invalid")
 * are for the caller to judge entry by entry (see responseCodeOf()). An empty
 * `responses` array is valid. Never throws; no zod on this hot path.
 *
 * Return: the entries, or a one-line reason for the `error` frame (EINVAL).
 */
export function parseClientJsonFrame(text: string): ClientFrameResult {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: deliberate: control characters (and U+2028/9) in a parser message become spaces
    const why = (e instanceof Error ? e.message : String(e)).replace(/[\u0000-\u001f\u2028\u2029]/g, ' ');
    return { ok: false, message: `not valid JSON: ${why.slice(0, 120)}` };
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
    return { ok: false, message: `expected a JSON object, got ${describe(msg)}` };
  }
  const obj = msg as Record<string, unknown>;
  let type: unknown;
  let responses: unknown;
  let sawType = false;
  let sawResponses = false;
  for (const k in obj) {
    if (k === 'type') {
      sawType = true;
      type = obj[k];
    } else if (k === 'responses') {
      sawResponses = true;
      responses = obj[k];
    } else {
      return { ok: false, message: `unknown key ${JSON.stringify(k).slice(0, 64)}` };
    }
  }
  if (!sawType) return { ok: false, message: 'type: required' };
  if (type !== 'responses') {
    return {
      ok: false,
      message: typeof type === 'string' ? `type: unknown message type ${JSON.stringify(type).slice(0, 64)}` : `type: expected a string, got ${describe(type)}`,
    };
  }
  if (!sawResponses) return { ok: false, message: 'responses: required' };
  if (!Array.isArray(responses)) return { ok: false, message: `responses: expected an array, got ${describe(responses)}` };
  for (let i = 0; i < responses.length; i++) {
    const bad = entryShapeError(responses[i] as unknown);
    if (bad !== undefined) return { ok: false, message: `responses[${i}]${bad}` };
  }
  return { ok: true, responses: responses as ClientResponseEntry[] };
}

/**
 * struct ResponseBatch - the responses of one client frame, decoded by
 * scanResponsesFrame() into arrays reused from frame to frame.
 * @count: entries decoded.
 * @cookies: the entries' cookies (safe non-negative integers).
 * @codes: the entries' RESP_CODE values (0 or 1).
 */
export class ResponseBatch {
  count = 0;
  cookies: number[] = [];
  codes: number[] = [];
}

const CH_COMMA = 0x2c;
const CH_COLON = 0x3a;
const CH_LBRACKET = 0x5b;
const CH_RBRACKET = 0x5d;
const CH_LBRACE = 0x7b;
const CH_RBRACE = 0x7d;
const CH_0 = 0x30;
const CH_9 = 0x39;
const KEY_TYPE = [...'"type"'].map((c) => c.charCodeAt(0));
const KEY_RESPONSES = [...'"responses"'].map((c) => c.charCodeAt(0));
const KEY_COOKIE = [...'"cookie"'].map((c) => c.charCodeAt(0));
const KEY_CODE = [...'"code"'].map((c) => c.charCodeAt(0));
const CODE_SUCCESS = [...'"success"'].map((c) => c.charCodeAt(0));
const CODE_INVALID = [...'"invalid"'].map((c) => c.charCodeAt(0));

/** A cursor over the bytes of one frame for scanResponsesFrame(); -1 once the scan gave up. */
class Scan {
  pos = 0;
  constructor(readonly b: Uint8Array) {}

  /** Skip JSON whitespace; the byte there, or -1 at the end. */
  peek(): number {
    const b = this.b;
    let p = this.pos;
    while (p < b.length) {
      const c = b[p]!;
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      p++;
    }
    this.pos = p;
    return p < b.length ? b[p]! : -1;
  }

  /** Skip whitespace and take @c if it is next. */
  take(c: number): boolean {
    if (this.peek() !== c) return false;
    this.pos++;
    return true;
  }

  /** Skip whitespace and take the bytes of @lit (a quoted key or string) if they are next. */
  literal(lit: readonly number[]): boolean {
    this.peek();
    const b = this.b;
    const p = this.pos;
    if (p + lit.length > b.length) return false;
    for (let i = 0; i < lit.length; i++) if (b[p + i] !== lit[i]) return false;
    this.pos = p + lit.length;
    return true;
  }

  /** A JSON non-negative integer of at most 15 digits (so exact), or -1. */
  integer(): number {
    this.peek();
    const b = this.b;
    let p = this.pos;
    const first = p;
    let v = 0;
    while (p < b.length && b[p]! >= CH_0 && b[p]! <= CH_9 && p - first < 16) v = v * 10 + (b[p++]! - CH_0);
    const n = p - first;
    // None, a leading zero (invalid JSON) or too long: let the full parser decide.
    if (n === 0 || n > 15 || (n > 1 && b[first] === CH_0)) return -1;
    this.pos = p;
    return v;
  }
}

/** One `{"cookie":N,"code":C}` entry (keys in either order) into @out, or false. */
function scanEntry(s: Scan, out: ResponseBatch): boolean {
  if (!s.take(CH_LBRACE)) return false;
  let cookie = -1;
  let code = -1;
  for (let k = 0; k < 2; k++) {
    if (k === 1 && !s.take(CH_COMMA)) return false;
    if (cookie < 0 && s.literal(KEY_COOKIE)) {
      if (!s.take(CH_COLON)) return false;
      cookie = s.integer();
      if (cookie < 0) return false;
    } else if (code < 0 && s.literal(KEY_CODE)) {
      if (!s.take(CH_COLON)) return false;
      const c = s.peek();
      if ((c === CH_0 || c === CH_0 + 1) && s.integer() === c - CH_0) code = c - CH_0;
      else if (s.literal(CODE_SUCCESS)) code = RESP_CODE.SUCCESS;
      else if (s.literal(CODE_INVALID)) code = RESP_CODE.INVALID;
      else return false;
    } else return false;
  }
  if (!s.take(CH_RBRACE)) return false;
  const i = out.count++;
  out.cookies[i] = cookie;
  out.codes[i] = code;
  return true;
}

/** The `[entry, ...]` array of a responses frame into @out, or false. */
function scanEntries(s: Scan, out: ResponseBatch): boolean {
  if (!s.take(CH_LBRACKET)) return false;
  if (s.take(CH_RBRACKET)) return true;
  do {
    if (!scanEntry(s, out)) return false;
  } while (s.take(CH_COMMA));
  return s.take(CH_RBRACKET);
}

/**
 * scanResponsesFrame() - decode the common client frame without JSON.parse.
 * @bytes: the frame's bytes (a text frame, not yet checked as UTF-8).
 * @out: where the entries go (overwritten; @out.count is set).
 *
 * Recognises exactly `{"type":"responses","responses":[...]}` (the two keys
 * in either order, JSON whitespace anywhere between tokens) whose entries
 * are `{"cookie":N,"code":C}` (keys in either order) with N a JSON integer
 * of at most 15 digits and C one of 0, 1, "success", "invalid". Such a frame
 * is ASCII, so valid UTF-8, and parseClientJsonFrame() would accept it with
 * the same entries; anything else (other values, escapes, duplicate keys,
 * numbers with a fraction or exponent, non-ASCII) returns false without a
 * verdict: the caller then falls back to parseClientJsonFrame() for the
 * answer and its error message. Allocates nothing but @out's arrays' growth.
 *
 * Return: true if @bytes is such a frame and @out holds its entries.
 */
export function scanResponsesFrame(bytes: Uint8Array, out: ResponseBatch): boolean {
  out.count = 0;
  const s = new Scan(bytes);
  if (!s.take(CH_LBRACE)) return false;
  let sawType = false;
  let sawResponses = false;
  for (let k = 0; k < 2; k++) {
    if (k === 1 && !s.take(CH_COMMA)) return false;
    if (!sawType && s.literal(KEY_TYPE)) {
      if (!s.take(CH_COLON) || !s.literal(KEY_RESPONSES)) return false;
      sawType = true;
    } else if (!sawResponses && s.literal(KEY_RESPONSES)) {
      if (!s.take(CH_COLON) || !scanEntries(s, out)) return false;
      sawResponses = true;
    } else return false;
  }
  return s.take(CH_RBRACE) && s.peek() === -1;
}

/** entryShapeError() - why @e is not {cookie: number, code: number|string}, or undefined. */
function entryShapeError(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return `: expected an object, got ${describe(e)}`;
  const entry = e as Record<string, unknown>;
  let n = 0;
  for (const k in entry) {
    if (k !== 'cookie' && k !== 'code') return `: unknown key ${JSON.stringify(k).slice(0, 64)}`;
    n++;
  }
  if (n !== 2) return entry.cookie === undefined ? '.cookie: required' : '.code: required';
  if (typeof entry.cookie !== 'number') return `.cookie: expected a number, got ${describe(entry.cookie)}`;
  // JSON.parse turns an overflowing literal such as 1e400 into Infinity, which no reply could echo.
  if (!Number.isFinite(entry.cookie)) return '.cookie: expected a finite number';
  const code = entry.code;
  if (typeof code !== 'number' && typeof code !== 'string') {
    return `.code: expected a number or a string, got ${describe(code)}`;
  }
  return undefined;
}

/**
 * struct FaultsFrameGroup - a delivered group as the server holds it.
 * @cookie: the group's cookie.
 * @redelivered: whether the group was delivered before on a closed connection.
 * @records: the group's records (their own cookie field is not read).
 */
export interface FaultsFrameGroup {
  cookie: number;
  redelivered: boolean;
  records: readonly IommuHwptPgfault[];
}

/** The ASCII byte of each fragment of a `faults` frame, in one array (see {@link FaultsJsonWriter}). */
const FRAGMENT_TEXT = [
  '{"type":"faults","groups":[',
  '{"cookie":',
  ',{"cookie":',
  ',"redelivered":true,"records":[',
  ',"redelivered":false,"records":[',
  '{"flags":',
  ',{"flags":',
  ',"dev_id":',
  ',"pasid":',
  ',"grpid":',
  ',"perm":',
  ',"__reserved":0,"addr":"0x',
  '","length":',
  ',"cookie":',
  '}',
  ']}',
] as const;
const FRAGMENT_BYTES = new Uint8Array(FRAGMENT_TEXT.reduce((n, t) => n + t.length, 0));
/** Each fragment as offset | length << 16 in FRAGMENT_BYTES (one array keeps the copy loop monomorphic). */
const FRAGMENT: readonly number[] = (() => {
  const out: number[] = [];
  let o = 0;
  for (const t of FRAGMENT_TEXT) {
    out.push(o | (t.length << 16));
    for (let i = 0; i < t.length; i++) FRAGMENT_BYTES[o++] = t.charCodeAt(i);
  }
  return out;
})();
const [
  F_OPEN,
  F_GROUP0,
  F_GROUP,
  F_REDELIVERED,
  F_FIRST,
  F_RECORD0,
  F_RECORD,
  F_DEV_ID,
  F_PASID,
  F_GRPID,
  F_PERM,
  F_ADDR,
  F_LENGTH,
  F_COOKIE,
  F_END_RECORD,
  F_CLOSE,
] = FRAGMENT as [number, number, number, number, number, number, number, number, number, number, number, number, number, number, number, number];
const HEX_DIGITS = new Uint8Array([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102]);
/** Room one record needs at most (fragments, six u32 fields, 16 hex digits, the cookie). */
const RECORD_ROOM = 256;
/** Size of the slabs frames are written into. */
const SLAB_SIZE = 1 << 18;

function u32(name: string, v: number): number {
  if (v >>> 0 !== v) throw new RangeError(`${name} is not a u32: ${v}`);
  return v;
}

/**
 * FaultsJsonWriter - builds JSON-mode `faults` frames as bytes, straight
 * into one buffer: no intermediate objects, no strings.
 *
 * Frames are written one after another into a large slab and returned as
 * slices of it; a slab is never written twice, so a returned frame stays
 * valid while a socket still holds it, and the slab is freed with its last
 * frame. The text is ASCII, equal to JSON.stringify() of the FaultsMessage.
 *
 * Use: begin(); then group(cookie, redelivered) and its record()s for each
 * group in delivery order; then finish(). A RangeError (a field out of
 * range) abandons the frame; the next begin() starts afresh.
 */
export class FaultsJsonWriter {
  private slab: Buffer = Buffer.allocUnsafe(SLAB_SIZE);
  private pos = 0;
  private start = 0;
  private groups = 0;
  private records = 0;
  private cookie = 0;

  /** begin() - start a frame. */
  begin(): void {
    if (this.slab.length - this.pos < RECORD_ROOM * 4) {
      this.slab = Buffer.allocUnsafe(SLAB_SIZE);
      this.pos = 0;
    }
    this.start = this.pos;
    this.groups = 0;
    this.records = 0;
    this.fragment(F_OPEN);
  }

  /**
   * group() - start the next group.
   * @cookie: the group's cookie (u32), also written on each of its records.
   * @redelivered: whether it was delivered before on a closed connection.
   */
  group(cookie: number, redelivered: boolean): void {
    u32('cookie', cookie);
    this.room(RECORD_ROOM);
    if (this.groups++ > 0) this.fragment(F_CLOSE);
    this.fragment(this.groups === 1 ? F_GROUP0 : F_GROUP);
    this.decimal(cookie);
    this.fragment(redelivered ? F_REDELIVERED : F_FIRST);
    this.cookie = cookie;
    this.records = 0;
  }

  /**
   * record() - one record of the current group (struct iommu_hwpt_pgfault
   * field for field; u32 fields must be u32, @addr a u64).
   */
  record(flags: number, devId: number, pasid: number, grpid: number, perm: number, addr: bigint, length: number): void {
    u32('flags', flags);
    u32('dev_id', devId);
    u32('pasid', pasid);
    u32('grpid', grpid);
    u32('perm', perm);
    u32('length', length);
    if (addr < 0n || addr > U64_MAX) throw new RangeError(`not a u64: ${addr}`);
    this.room(RECORD_ROOM);
    this.fragment(this.records++ === 0 ? F_RECORD0 : F_RECORD);
    this.decimal(flags);
    this.fragment(F_DEV_ID);
    this.decimal(devId);
    this.fragment(F_PASID);
    this.decimal(pasid);
    this.fragment(F_GRPID);
    this.decimal(grpid);
    this.fragment(F_PERM);
    this.decimal(perm);
    this.fragment(F_ADDR);
    const hi = Number(addr >> 32n);
    const lo = Number(addr & 0xffff_ffffn);
    if (hi !== 0) {
      this.hex(hi, false);
      this.hex(lo, true);
    } else {
      this.hex(lo, false);
    }
    this.fragment(F_LENGTH);
    this.decimal(length);
    this.fragment(F_COOKIE);
    this.decimal(this.cookie);
    this.fragment(F_END_RECORD);
  }

  /**
   * finish() - close the frame.
   *
   * Return: the frame's bytes (a slice of the slab; do not write to it).
   */
  finish(): Buffer {
    this.room(8);
    if (this.groups > 0) this.fragment(F_CLOSE);
    this.fragment(F_CLOSE);
    const out = this.slab.subarray(this.start, this.pos);
    this.pos = (this.pos + 7) & ~7;
    this.start = this.pos;
    return out;
  }

  /** Make room for @n more bytes: a frame that outgrows the slab moves to a new one. */
  private room(n: number): void {
    if (this.pos + n <= this.slab.length) return;
    const used = this.pos - this.start;
    const next = Buffer.allocUnsafe(Math.max(SLAB_SIZE, 2 * (used + n)));
    this.slab.copy(next, 0, this.start, this.pos);
    this.slab = next;
    this.start = 0;
    this.pos = used;
  }

  private fragment(f: number): void {
    const b = this.slab;
    let p = this.pos;
    const end = (f & 0xffff) + (f >>> 16);
    for (let i = f & 0xffff; i < end; i++) b[p++] = FRAGMENT_BYTES[i]!;
    this.pos = p;
  }

  /** A u32 in decimal. */
  private decimal(v: number): void {
    const b = this.slab;
    let n = v < 10 ? 1 : v < 100 ? 2 : v < 1e3 ? 3 : v < 1e4 ? 4 : v < 1e5 ? 5 : v < 1e6 ? 6 : v < 1e7 ? 7 : v < 1e8 ? 8 : v < 1e9 ? 9 : 10;
    let p = this.pos + n;
    this.pos = p;
    while (n-- > 0) {
      const q = (v / 10) >>> 0;
      b[--p] = 48 + v - q * 10;
      v = q;
    }
  }

  /** A u32 in lowercase hex: all 8 digits with @pad, else without leading zeros. */
  private hex(v: number, pad: boolean): void {
    const b = this.slab;
    let n = 8;
    if (!pad) for (n = 1; n < 8 && v >>> (4 * n) !== 0; n++);
    let p = this.pos + n;
    this.pos = p;
    while (n-- > 0) {
      b[--p] = HEX_DIGITS[v & 15]!;
      v >>>= 4;
    }
  }
}

let sharedWriter: FaultsJsonWriter | undefined;

/**
 * encodeFaultsFrameJson() - the text of one JSON-mode `faults` frame.
 * @groups: whole groups in delivery order (at least one).
 *
 * Every record carries its group's cookie; `__reserved` is 0 and `addr` a
 * lowercase `"0x…"`. The same bytes as {@link FaultsJsonWriter}, as a string.
 *
 * Return: the frame text, equal to JSON.stringify() of a FaultsMessage.
 * Throws: RangeError if a field is out of range.
 */
export function encodeFaultsFrameJson(groups: readonly FaultsFrameGroup[]): string {
  sharedWriter ??= new FaultsJsonWriter();
  const w = sharedWriter;
  w.begin();
  for (const g of groups) {
    w.group(g.cookie, g.redelivered);
    for (const r of g.records) w.record(r.flags, r.dev_id, r.pasid, r.grpid, r.perm, r.addr, r.length);
  }
  return w.finish().toString('latin1');
}
