/**
 * DOC: errno vocabulary of the wire contract
 *
 * Every error the daemon returns carries one of these Linux errno names, in
 * the REST body `{"errno", "message"}` and in the stream's `error`, `results`
 * and `write` frames. Each errno maps to exactly one HTTP status (one table,
 * used by the server for every route).
 */

/**
 * Errno - the errno names the daemon can return.
 *
 * The kernel names are used with the kernel's meaning. EACCES stands for a
 * missing or wrong token, EIO for an unexpected internal failure, EAGAIN for a
 * rate limit, ETIMEDOUT for a server-side deadline and EMSGSIZE for a request
 * body over the size limit (the last three are extensions of the contract).
 */
export type Errno =
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
  | 'EACCES'
  | 'ENOSPC'
  | 'ENOMEM'
  | 'EIO'
  | 'EAGAIN'
  | 'ETIMEDOUT'
  | 'EMSGSIZE';

/**
 * ERRNO_HTTP - the HTTP status of each errno (the one mapping table).
 *
 * ENOENT, ENODEV → 404; EINVAL, EOPNOTSUPP, EOVERFLOW, E2BIG, ESPIPE, EFAULT →
 * 400; EBUSY, EEXIST → 409; EPERM → 403; EACCES (missing or wrong token) →
 * 401; ENOSPC, ENOMEM → 503; EIO (anything unexpected) → 500. Extensions:
 * EAGAIN → 429, ETIMEDOUT → 504, EMSGSIZE (body over 1 MiB) → 413.
 */
export const ERRNO_HTTP: Readonly<Record<Errno, number>> = Object.freeze({
  ENOENT: 404,
  ENODEV: 404,
  EINVAL: 400,
  EOPNOTSUPP: 400,
  EOVERFLOW: 400,
  E2BIG: 400,
  ESPIPE: 400,
  EFAULT: 400,
  EBUSY: 409,
  EEXIST: 409,
  EPERM: 403,
  EACCES: 401,
  ENOSPC: 503,
  ENOMEM: 503,
  EIO: 500,
  EAGAIN: 429,
  ETIMEDOUT: 504,
  EMSGSIZE: 413,
});

/**
 * ERRNOS - every errno, in the order of the mapping table.
 */
export const ERRNOS: readonly Errno[] = Object.freeze(Object.keys(ERRNO_HTTP) as Errno[]);

/**
 * ERRNO_DESCRIPTIONS - one line on what each errno means on this wire.
 */
export const ERRNO_DESCRIPTIONS: Readonly<Record<Errno, string>> = Object.freeze({
  ENOENT: 'No such object: an id, platform device or IOMMU named that does not exist (or is of the wrong type), or nothing mapped to unmap',
  ENODEV: 'No such platform device to bind (the name in a device bind body)',
  EINVAL: 'Malformed request: schema violation, unknown key, bad value, unknown or stale cookie, bad response code',
  EOPNOTSUPP: 'A flags or __reserved field holds a bit that must be 0, or the operation is not supported by this object',
  EOVERFLOW: 'An address range wraps past 2^64',
  E2BIG: 'A length or count exceeds what the daemon accepts in one request',
  ESPIPE: 'A binary write whose length is not a whole number of 8-byte responses (the fault fd write() rule)',
  EFAULT: 'Guest memory access touched an unmapped byte; nothing was done',
  EBUSY: 'The object is in use (attached, referenced, streamed, bound elsewhere, or a run is already going)',
  EEXIST: 'The name, bdf, binding or IOVA range already exists',
  EPERM: 'The operation is not permitted in the current state',
  EACCES: 'Missing or wrong token (admin token on /v1/platform, context token on /v1/contexts/:ctx)',
  ENOSPC: 'An id space or a fixed-size table is exhausted',
  ENOMEM: 'The daemon is out of memory for this request (simulated memory or queue limit)',
  EIO: 'Unexpected internal error; the daemon keeps running',
  EAGAIN: 'Rate limited; retry later',
  ETIMEDOUT: 'The daemon gave up waiting on an internal deadline',
  EMSGSIZE: 'Request body larger than 1 MiB',
});

/**
 * httpStatusOf() - HTTP status for an errno.
 * @e: the errno.
 *
 * Return: the status from %ERRNO_HTTP.
 */
export function httpStatusOf(e: Errno): number {
  return ERRNO_HTTP[e];
}

/**
 * isErrno() - tell whether a string is one of the errno names.
 * @s: any string, e.g. an `errno` field read from the wire.
 *
 * Return: true if @s is an Errno.
 */
export function isErrno(s: string): s is Errno {
  return Object.hasOwn(ERRNO_HTTP, s);
}
