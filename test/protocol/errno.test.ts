import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERRNOS, ERRNO_DESCRIPTIONS, ERRNO_HTTP, httpStatusOf, isErrno } from '../../protocol/errno.js';

test('errno: the mapping table of the contract', () => {
  const expected: Record<string, number> = {
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
  };
  assert.deepEqual({ ...ERRNO_HTTP }, expected);
  for (const e of ERRNOS) assert.equal(httpStatusOf(e), expected[e]);
});

test('errno: every errno has a one-line description', () => {
  assert.deepEqual(Object.keys(ERRNO_DESCRIPTIONS).sort(), [...ERRNOS].sort());
  for (const e of ERRNOS) {
    assert.ok(ERRNO_DESCRIPTIONS[e].length > 10, e);
    assert.ok(!ERRNO_DESCRIPTIONS[e].includes('\n'), e);
  }
});

test('errno: isErrno knows the list and nothing else', () => {
  for (const e of ERRNOS) assert.ok(isErrno(e));
  for (const s of ['EFOO', 'toString', '__proto__', 'einval', '']) assert.equal(isErrno(s), false, s);
});
