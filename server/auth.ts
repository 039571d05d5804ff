/**
 * DOC: tokens
 *
 * Two kinds of bearer token (docs/protocol.md, authentication): the admin token for
 * /v1/platform, and one token per context returned by POST /v1/contexts.
 * Only the SHA-256 digest of a token is kept; a presented token is hashed
 * and compared with crypto.timingSafeEqual, so neither the content nor the
 * length of the secret leaks through timing. Tokens are never logged.
 * A request without a token is refused before anything else is looked at.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { HttpError } from './errors.js';

/**
 * tokenDigest() - the SHA-256 digest under which a token is stored.
 * @token: the token.
 *
 * Return: 32 bytes.
 */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * newToken() - a fresh context token: 32 random bytes, base64url, never
 * starting with `-` (a command line would take `--token -…` for an option).
 *
 * A token that would start with `-` (1 in 64) is drawn again, so every
 * other token stays equally likely.
 *
 * Return: the token (43 characters of `A-Z a-z 0-9 - _`, the first not `-`).
 */
export function newToken(): string {
  for (;;) {
    const token = randomBytes(32).toString('base64url');
    if (!token.startsWith('-')) return token;
  }
}

/**
 * bearerToken() - the token of an `authorization: Bearer <token>` header.
 * @header: the header value, if any.
 *
 * Return: the token, or undefined if the header is absent or of another
 * scheme (the scheme name is case-insensitive).
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer +(\S+) *$/i.exec(header);
  return m ? m[1] : undefined;
}

/**
 * requireToken() - refuse a request that carries no token at all.
 * @presented: the token from the request, if any.
 * @what: which token is expected (`admin`, `context`).
 *
 * Return: @presented.
 * Throws: HttpError EACCES (401) if there is none.
 */
export function requireToken(presented: string | undefined, what: string): string {
  if (presented === undefined) throw new HttpError('EACCES', `missing ${what} token (authorization: Bearer <token>)`);
  return presented;
}

/**
 * checkToken() - refuse a request whose token is not the expected one.
 * @presented: the token from the request.
 * @digest: tokenDigest() of the expected token.
 * @refusal: the message of the refusal.
 *
 * The comparison is constant-time on the two SHA-256 digests.
 *
 * Throws: HttpError EACCES (401) unless @presented matches.
 */
export function checkToken(presented: string, digest: Buffer, refusal: string): void {
  if (!timingSafeEqual(tokenDigest(presented), digest)) throw new HttpError('EACCES', refusal);
}
