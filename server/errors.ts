/**
 * DOC: errors on the wire
 *
 * Every failure the daemon reports, on a REST route or on a refused stream
 * upgrade, goes through wireErrorOf(): core errors keep their errno, the
 * server's own refusals (tokens, validation, body size) are HttpErrors,
 * fastify's request errors become EINVAL or EMSGSIZE, and anything else is
 * EIO (500) and is logged. The HTTP status always comes from the protocol's
 * one errno table.
 */
import { IommuError } from '../core/index.js';
import { httpStatusOf, type Errno } from '../protocol/index.js';

/**
 * HttpError - a refusal decided by the server itself (not by the core).
 * @errno: the wire errno; the status follows from it.
 * @message: one line for the `message` field.
 */
export class HttpError extends Error {
  constructor(
    readonly errno: Errno,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/**
 * struct WireError - an error as it goes on the wire.
 * @status: the HTTP status (from the protocol's errno table).
 * @body: the `{errno, message}` body.
 * @unexpected: true for EIO, i.e. a bug worth logging at error level.
 */
export interface WireError {
  status: number;
  body: { errno: Errno; message: string; done?: number };
  unexpected: boolean;
}

/** Messages clearer than fastify's for the client errors seen most. */
const FASTIFY_MESSAGE: Readonly<Record<string, string>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'request body is larger than 1 MiB',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported content-type: send application/json',
};

/**
 * wireErrorOf() - map any thrown value to its wire form.
 * @err: what a route, a hook, fastify itself or the stream upgrade threw.
 *
 * Return: the status and `{errno, message}` body (plus `done` when the
 * core error carries it). A fastify client error
 * (4xx with an FST_ code) is EMSGSIZE for a body over the limit, else
 * EINVAL; a request the client aborted is EINVAL; anything else unknown is EIO with a generic message (the details
 * go to the log only).
 */
export function wireErrorOf(err: unknown): WireError {
  // EIO from the core is the kernel's own answer to bad input (a guest STE, an
  // invalidation command): a client error, unlike an unexpected failure.
  if (err instanceof IommuError) {
    const w = wire(err.errno, err.message, false);
    if (err.errno === 'EIO') w.status = 400;
    if (err.done !== undefined) w.body.done = err.done;
    return w;
  }
  if (err instanceof HttpError) return wire(err.errno, err.message, false);
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown } | null;
  // fastify's own request errors (body size, media type, content-length, URL).
  if (typeof e?.code === 'string' && e.code.startsWith('FST_') && typeof e.statusCode === 'number' && e.statusCode < 500) {
    const errno: Errno = e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'EMSGSIZE' : 'EINVAL';
    return wire(errno, FASTIFY_MESSAGE[e.code] ?? String(e.message), false);
  }
  // The client went away while its body was being read (Node's 'aborted'):
  // nobody will read the reply, and it is not the daemon's fault.
  if (e?.code === 'ECONNRESET' && typeof e.statusCode === 'number' && e.statusCode < 500) return wire('EINVAL', 'the client aborted the request', false);
  return wire('EIO', 'internal error', true);
}

function wire(errno: Errno, message: string, unexpected: boolean): WireError {
  return { status: httpStatusOf(errno), body: { errno, message }, unexpected };
}
