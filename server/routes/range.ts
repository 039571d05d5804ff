/**
 * DOC: address ranges on the wire
 */
import { U64_MAX } from '../../protocol/index.js';
import { HttpError } from '../errors.js';

/**
 * checkNoWrap() - refuse a range that wraps past 2^64.
 * @start: the first address.
 * @length: the length in bytes (0 is an empty range, which never wraps).
 *
 * Throws: HttpError EOVERFLOW if @start + @length - 1 > U64_MAX.
 */
export function checkNoWrap(start: bigint, length: bigint): void {
  if (length > 0n && start + length - 1n > U64_MAX) throw new HttpError('EOVERFLOW', 'address + length wraps past 2^64');
}
