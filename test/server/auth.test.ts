// Context tokens: never starting with '-' (a command line would read
// `--token -x…` as an option), 43 base64url characters, all distinct.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newToken } from '../../server/auth.js';

test('newToken(): 43 base64url characters, never a leading "-", over many generations', () => {
  // With the leading '-' possible (1 in 64), 20000 draws would all avoid it
  // with probability (63/64)^20000 < 1e-130: this test cannot pass by luck.
  const seen = new Set<string>();
  const first = new Set<string>();
  for (let i = 0; i < 20_000; i++) {
    const t = newToken();
    assert.match(t, /^[A-Za-z0-9_][A-Za-z0-9_-]{42}$/, t);
    first.add(t[0]!);
    seen.add(t);
  }
  assert.equal(seen.size, 20_000, 'every token is new');
  // The first character still ranges over the other 63 symbols.
  assert.equal(first.size, 63);
});
