/**
 * DOC: wire scalars
 *
 * Addresses and byte lengths are u64 and travel as `"0x…"` strings (hex,
 * case-insensitive, 1 to 16 digits); a JSON number there is refused. Ids,
 * pasid, grpid, perm, flags, codes, counts and times are JSON numbers in u32
 * range. Byte data is a hex string without `0x` (the daemon emits lowercase).
 * u64 values are `bigint` in TypeScript.
 */
import { z } from 'zod';
import { expectMessage } from './zod-errors.js';

/** U64_MAX - the largest u64, 2^64 - 1. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** U32_MAX - the largest u32, 2^32 - 1. */
export const U32_MAX = 0xffff_ffff;

/** U64_PATTERN - the accepted spelling of a u64 on the wire. */
export const U64_PATTERN = /^0[xX][0-9a-fA-F]{1,16}$/;

/** HEX_DATA_PATTERN - the accepted spelling of byte data on the wire. */
export const HEX_DATA_PATTERN = /^(?:[0-9a-fA-F]{2})*$/;

/**
 * parseU64() - parse a wire u64.
 * @s: `"0x"` or `"0X"` followed by 1 to 16 hex digits (any case).
 *
 * Return: the value.
 * Throws: RangeError if @s is not a wire u64.
 */
export function parseU64(s: string): bigint {
  if (!U64_PATTERN.test(s)) throw new RangeError(`not a "0x…" u64 string: ${JSON.stringify(s).slice(0, 40)}`);
  return BigInt(s);
}

/**
 * formatU64() - spell a u64 for the wire.
 * @v: 0 ≤ @v ≤ 2^64 - 1.
 *
 * Return: lowercase `"0x…"` without leading zeros (`0x0` for zero).
 * Throws: RangeError if @v is out of range.
 */
export function formatU64(v: bigint): string {
  if (v < 0n || v > U64_MAX) throw new RangeError(`not a u64: ${v}`);
  return '0x' + v.toString(16);
}

/**
 * zU64 - zod schema of a wire u64 string, parsed to a bigint.
 *
 * Refuses JSON numbers, `"0x"` alone, more than 16 digits, and anything
 * without the `0x` prefix (EINVAL).
 */
export const zU64 = z
  .string({ error: expectMessage('a "0x…" u64 string') })
  .regex(U64_PATTERN, { error: 'expected a "0x…" u64 string (0x and 1 to 16 hex digits)' })
  .transform((s) => BigInt(s));

/**
 * zU32 - zod schema of a u32 JSON number (an integer 0..0xffffffff).
 */
export const zU32 = z
  .number({ error: expectMessage('a u32 JSON number') })
  .int({ error: 'expected a u32 JSON number (an integer)' })
  .min(0, { error: 'expected a u32 JSON number (≥ 0)' })
  .max(U32_MAX, { error: 'expected a u32 JSON number (≤ 0xffffffff)' });

const HEX_DIGITS = '0123456789abcdef';
/** The ASCII codes of each byte's high and low hex digit. */
const HEX_HI = Uint8Array.from({ length: 256 }, (_, i) => HEX_DIGITS.charCodeAt(i >> 4));
const HEX_LO = Uint8Array.from({ length: 256 }, (_, i) => HEX_DIGITS.charCodeAt(i & 15));
const ASCII = new TextDecoder();

/**
 * hexOf() - spell bytes as wire data.
 * @bytes: the bytes.
 *
 * The digits are written into one buffer and decoded once: concatenating a
 * string per byte made a 1 MiB DMA read hold the event loop for ~0.5 s,
 * mostly in the garbage collector.
 *
 * Return: lowercase hex, two digits per byte, no `0x` (empty for no bytes).
 */
export function hexOf(bytes: Uint8Array): string {
  const out = new Uint8Array(bytes.length * 2);
  for (let i = 0, j = 0; i < bytes.length; i++, j += 2) {
    const b = bytes[i]!;
    out[j] = HEX_HI[b]!;
    out[j + 1] = HEX_LO[b]!;
  }
  return ASCII.decode(out);
}

/** nibble() - value of one hex digit's char code (input already validated). */
function nibble(c: number): number {
  // '0'-'9' → 0-9; 'A'-'F' and 'a'-'f' → 10-15 (bit 5 folds the case).
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57;
}

/**
 * bytesOfHex() - parse wire data.
 * @s: an even number of hex digits, any case, no `0x`.
 *
 * Return: the bytes.
 * Throws: RangeError if @s is not wire data.
 */
export function bytesOfHex(s: string): Uint8Array {
  if (!HEX_DATA_PATTERN.test(s)) throw new RangeError('not an even-length hex string');
  const out = new Uint8Array(s.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = (nibble(s.charCodeAt(2 * i)) << 4) | nibble(s.charCodeAt(2 * i + 1));
  return out;
}

/**
 * zHexData - zod schema of wire byte data, parsed to a Uint8Array.
 *
 * Accepts an even-length hex string without `0x`, either case (the empty
 * string is zero bytes).
 */
export const zHexData = z
  .string({ error: expectMessage('a hex data string') })
  .regex(HEX_DATA_PATTERN, { error: 'expected a hex data string (an even number of hex digits, no 0x)' })
  .transform(bytesOfHex);

/**
 * zDecimalU32 - zod schema of a u32 spelled in decimal in a URL path segment
 * or query parameter (which are strings), parsed to a number.
 *
 * Accepts 1 to 10 decimal digits with a value ≤ 0xffffffff; no sign, no
 * exponent, no blank.
 */
export const zDecimalU32 = z
  .string({ error: expectMessage('a decimal u32') })
  .regex(/^\d{1,10}$/, { error: 'expected a decimal u32' })
  .transform(Number)
  .pipe(z.number().max(U32_MAX, { error: 'expected a decimal u32 (≤ 4294967295)' }));
