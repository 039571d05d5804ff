/**
 * The one error class of the core. Commands throw it with an errno and a
 * message; the server maps the errno to HTTP in one table. The IOPF path never
 * throws outward: it always answers the device.
 */
export type CoreErrno =
  | 'ENOENT'
  | 'ENODEV'
  | 'EINVAL'
  | 'EOPNOTSUPP'
  | 'EOVERFLOW'
  | 'E2BIG'
  | 'ESPIPE'
  | 'EFAULT'
  | 'EBUSY'
  | 'EEXIST'
  | 'EPERM'
  | 'ENOSPC'
  | 'ENOMEM';

export class IommuError extends Error {
  constructor(
    readonly errno: CoreErrno,
    message: string,
  ) {
    super(message);
    this.name = 'IommuError';
  }
}

/** Negative errno numbers returned by the report path (kernel style int returns). */
export const EINVAL_N = -22;
export const ENOMEM_N = -12;
export const ENODEV_N = -19;
