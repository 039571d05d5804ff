/**
 * The one error class of the core. Commands throw it with an errno and a
 * message; the server maps the errno to HTTP in one table. The IOPF path never
 * throws outward: it always answers the device.
 */
import type { Errno } from '../../protocol/errno.js';

/**
 * The errnos a core command may throw: the wire's vocabulary (one list, in
 * protocol/errno.ts) minus what only the shell produces (tokens, rate
 * limits, body size). EIO is the kernel's own answer to bad driver data (a
 * guest STE, a vIOMMU invalidation command), a client error.
 */
export type CoreErrno = Exclude<Errno, 'EACCES' | 'EAGAIN' | 'ETIMEDOUT' | 'EMSGSIZE'>;

export class IommuError extends Error {
  /**
   * @errno: the errno.
   * @message: one line for the wire.
   * @done: for a command that processes an array (an invalidation), the
   *   entries handled before the bad one (the kernel's updated entry_num).
   */
  constructor(
    readonly errno: CoreErrno,
    message: string,
    readonly done?: number,
  ) {
    super(message);
    this.name = 'IommuError';
  }
}

/** Negative errno numbers returned by the report path (kernel style int returns). */
export const EINVAL_N = -22;
export const ENOMEM_N = -12;
export const ENODEV_N = -19;
