/**
 * DOC: fault stream admission
 *
 * Everything an upgrade to `GET /v1/contexts/:ctx/faults/:id/stream` must
 * pass before a WebSocket exists, in this order: the request target (a URL
 * on the stream path, else 400/404), the token of the context (401), the
 * path parameters (400), the WebSocket handshake headers (400, checked here
 * rather than by ws), the query (400), the subprotocol (400) and the fault
 * queue (404). The per-queue stream limit (503) is the core's, when the
 * stream opens its connection. A refusal is a plain HTTP response carrying
 * `{errno, message}` (see the protocol reference, docs/protocol.md), and the
 * socket closes.
 */
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { WebSocket, WebSocketServer } from 'ws';
import type { IommufdFault } from '../core/index.js';
import { DEFAULT_WINDOW, STREAM_URL, SUBPROTOCOL_JSON, SUBPROTOCOLS, zObjectParams, zStreamQuery, type Subprotocol } from '../protocol/index.js';
import { bearerToken, requireToken } from './auth.js';
import type { ContextEntry, ContextRegistry } from './contexts.js';
import { HttpError, wireErrorOf } from './errors.js';
import { parseWith } from './rest.js';

/** The stream path as a regular expression, from the protocol's route. */
const STREAM_PATH = new RegExp(`^${STREAM_URL.replace(/:\w+/g, '([^/]+)')}$`);

/**
 * chooseSubprotocol() - the subprotocol for an upgrade.
 * @offered: the subprotocols the client offers, in its order, or undefined
 *   when it sent no Sec-WebSocket-Protocol header.
 *
 * Return: `iopf.v1.json` when none is offered, else the first offered one
 * the daemon speaks, or undefined if it speaks none of them.
 */
export function chooseSubprotocol(offered: Iterable<string> | undefined): Subprotocol | undefined {
  if (offered === undefined) return SUBPROTOCOL_JSON;
  for (const p of offered) if ((SUBPROTOCOLS as readonly string[]).includes(p)) return p as Subprotocol;
  return undefined;
}

/** A handshake refused for its WebSocket version: the reply names the one the daemon speaks (RFC 6455 §4.4). */
class VersionError extends HttpError {}

/** A Sec-WebSocket-Key: 16 bytes in base64. */
const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;
/** An HTTP token (RFC 9110), what a subprotocol name must be. */
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * checkHandshake() - the checks `ws` makes on a WebSocket handshake, made
 * here first so that a refusal carries `{errno, message}` like every other
 * (ws would answer with a text/html body, and 405 for a method).
 * @req: the upgrade request.
 *
 * Throws: HttpError EINVAL (VersionError for the version).
 */
export function checkHandshake(req: IncomingMessage): void {
  if (req.method !== 'GET') throw new HttpError('EINVAL', `the fault stream is opened with GET, not ${String(req.method)}`);
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') throw new HttpError('EINVAL', 'the fault stream needs Upgrade: websocket');
  const key = req.headers['sec-websocket-key'];
  if (key === undefined || !WS_KEY.test(key)) throw new HttpError('EINVAL', 'missing or invalid Sec-WebSocket-Key header');
  const version = Number(req.headers['sec-websocket-version']);
  if (version !== 13 && version !== 8) throw new VersionError('EINVAL', 'missing or unsupported Sec-WebSocket-Version header: this stream speaks 13');
  const offered = req.headers['sec-websocket-protocol'];
  if (offered !== undefined) {
    const names = offered.split(',').map((p) => p.trim());
    if (!names.every((p) => HTTP_TOKEN.test(p)) || new Set(names).size !== names.length) throw new HttpError('EINVAL', 'invalid Sec-WebSocket-Protocol header');
  }
}

/**
 * struct StreamTarget - what the request target and its token name.
 * @entry: the authenticated context.
 * @faultId: the fault queue id from the path (not looked up yet).
 * @query: the query string's parameters (the token among them, if sent there).
 */
export interface StreamTarget {
  entry: ContextEntry;
  faultId: number;
  query: Record<string, string>;
}

/**
 * streamTarget() - parse the request target of a stream request and
 * authenticate its context: the token first (from the Authorization header
 * when there is one, even malformed, else the `token` query parameter), then
 * the path parameters.
 * @req: the request (an upgrade, or a plain GET).
 * @contexts: the open contexts.
 *
 * Throws: HttpError EINVAL (bad URL or path parameters), ENOENT (no stream
 * endpoint at that path), EACCES (no token, or not this context's).
 */
export function streamTarget(req: IncomingMessage, contexts: ContextRegistry): StreamTarget {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://iopfd');
  } catch {
    throw new HttpError('EINVAL', 'the request target is not a valid URL');
  }
  const path = STREAM_PATH.exec(url.pathname);
  if (!path) throw new HttpError('ENOENT', `no WebSocket endpoint at ${url.pathname}`);
  const query: Record<string, string> = Object.fromEntries(url.searchParams);
  // An Authorization header wins over ?token=, even a malformed one (then no token opens the context).
  const header = req.headers.authorization;
  const token = requireToken(header !== undefined ? (bearerToken(header) ?? '') : query.token, 'context');
  const params = parseWith(zObjectParams, { ctx: path[1], id: path[2] }, 'params');
  const entry = contexts.authenticate(params.ctx, token);
  return { entry, faultId: params.id, query };
}

/**
 * struct StreamAdmission - an admitted upgrade, before its connection opens.
 * @entry: the authenticated context (its logger is the stream's parent).
 * @fault: the fault queue.
 * @protocol: the chosen subprotocol.
 * @window: the connection's window.
 */
export interface StreamAdmission {
  entry: ContextEntry;
  fault: IommufdFault;
  protocol: Subprotocol;
  window: number;
}

/**
 * admitStream() - every check of an upgrade request, in the order of the
 * DOC above, up to (not including) opening the core connection.
 * @req: the upgrade request.
 * @contexts: the open contexts.
 *
 * Throws: HttpError EACCES, EINVAL or ENOENT (no stream endpoint there);
 * IommuError ENOENT (no such fault queue).
 */
export function admitStream(req: IncomingMessage, contexts: ContextRegistry): StreamAdmission {
  const { entry, faultId, query } = streamTarget(req, contexts);
  checkHandshake(req);
  const { window = DEFAULT_WINDOW } = parseWith(zStreamQuery, query, 'query');
  const protocol = chooseSubprotocol(req.headers['sec-websocket-protocol']?.split(',').map((p) => p.trim()));
  if (!protocol) throw new HttpError('EINVAL', `unsupported subprotocol: this stream speaks ${SUBPROTOCOLS.join(', ')}`);
  const fault = entry.ctx.get<IommufdFault>(faultId, 'fault');
  return { entry, fault, protocol, window };
}

/**
 * refuseUpgrade() - answer a refused upgrade with a plain HTTP error and
 * close the socket (no WebSocket exists yet). An unexpected error (not an
 * errno) is logged.
 * @req: the upgrade request.
 * @socket: its socket.
 * @err: why it was refused (what admission or opening the connection threw).
 * @log: the daemon's logger.
 */
export function refuseUpgrade(req: IncomingMessage, socket: Duplex, err: unknown, log: Logger): void {
  const w = wireErrorOf(err);
  if (w.unexpected) log.error({ err, req }, 'stream upgrade failed');
  const headers = err instanceof VersionError ? 'Sec-WebSocket-Version: 13\r\n' : '';
  const text = JSON.stringify(w.body);
  socket.on('error', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${w.status} ${STATUS_CODES[w.status] ?? ''}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(text)}\r\n` +
      headers +
      'Connection: close\r\n\r\n' +
      text,
  );
}

/**
 * completeUpgrade() - hand an admitted upgrade to ws. @accept runs with the
 * WebSocket once the handshake is done; when ws refuses the handshake itself
 * (bad WebSocket headers: it answers and closes the socket) @abandon runs
 * instead, so the stream gives back what admission took (a reader slot, a
 * core connection).
 */
export function completeUpgrade(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  accept: (ws: WebSocket) => void,
  abandon: () => void,
): void {
  let accepted = false;
  wss.handleUpgrade(req, socket, head, (ws) => {
    accepted = true;
    accept(ws);
  });
  if (!accepted) abandon();
}
