/**
 * DOC: contexts and their tokens
 *
 * The server's side of an iommufd context: the core's IommufdCtx, the
 * digest of its token and its child logger. A context route or a stream is
 * refused with 401 EACCES when it carries no token (requireToken(), before
 * anything else), or a token that is not the token of the context named in
 * the path: another context's, a wrong one, or any token at all for a
 * context that does not exist (or no longer does), with the same message,
 * as docs/protocol.md's authentication section has it (authenticate()).
 */
import type { Logger } from 'pino';
import type { IommufdCtx, Platform } from '../core/index.js';
import { checkToken, newToken, tokenDigest } from './auth.js';
import { HttpError } from './errors.js';

/** The refusal for a token that does not open the context in the path. */
const WRONG_CONTEXT_TOKEN = 'wrong context token';

/**
 * struct ContextEntry - one open context.
 * @ctx: the core's context (the iommufd file).
 * @digest: SHA-256 of its token.
 * @log: its child logger (`ctx` bound); streams derive theirs from it.
 * @created: performance.now() when it was opened (its age, for the admin).
 */
export interface ContextEntry {
  readonly ctx: IommufdCtx;
  readonly digest: Buffer;
  readonly log: Logger;
  readonly created: number;
}

/**
 * ContextRegistry - the open contexts of the daemon.
 * @platform: where contexts are created and released.
 * @log: the daemon's logger.
 */
export class ContextRegistry {
  private readonly entries = new Map<number, ContextEntry>();

  constructor(
    private readonly platform: Platform,
    private readonly log: Logger,
  ) {}

  /**
   * create() - open a context (iommufd open) and mint its token.
   *
   * Return: the context id and its token, which is not kept anywhere.
   * Throws: IommuError ENOSPC beyond the context limit.
   */
  create(): { ctx: number; token: string } {
    const ctx = this.platform.createContext();
    const token = newToken();
    const log = this.log.child({ ctx: ctx.id });
    this.entries.set(ctx.id, { ctx, digest: tokenDigest(token), log, created: performance.now() });
    log.info('context created');
    return { ctx: ctx.id, token };
  }

  /**
   * authenticate() - the context @id, if @presented is its token.
   * @id: the context id from the URL.
   * @presented: the token from the request.
   *
   * Return: the context's entry.
   * Throws: HttpError EACCES (401) unless @presented is the token of an
   * open context @id.
   */
  authenticate(id: number, presented: string): ContextEntry {
    const entry = this.entries.get(id);
    if (!entry) throw new HttpError('EACCES', WRONG_CONTEXT_TOKEN);
    checkToken(presented, entry.digest, WRONG_CONTEXT_TOKEN);
    return entry;
  }

  /**
   * release() - release a context (iommufd release): every object is
   * destroyed, outstanding groups are answered INVALID, its streams close
   * with 1001. The owner's DELETE and the admin's force-release both end here.
   * @id: an open context.
   * @by: who released it, for the log: its owner, or the admin (force-release).
   *
   * Throws: IommuError ENOENT if no context @id is open.
   */
  release(id: number, by: 'owner' | 'admin' = 'owner'): void {
    const entry = this.entries.get(id);
    this.entries.delete(id);
    this.platform.releaseContext(id);
    entry?.log.info({ by }, 'context released');
  }

  /** all() - every open context. */
  all(): IterableIterator<ContextEntry> {
    return this.entries.values();
  }

  /** forgetAll() - drop every entry, after Platform.shutdown() released the contexts. */
  forgetAll(): void {
    this.entries.clear();
  }
}
