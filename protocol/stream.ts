/**
 * DOC: the fault stream (the fault fd over WebSocket)
 *
 * `GET /v1/contexts/:ctx/faults/:id/stream` upgrades to a WebSocket that
 * behaves like the iommufd fault fd. Two subprotocols: `iopf.v1.json` (text
 * frames, the default) and `iopf.v1.uapi` (binary records as read() returns
 * them, binary responses as write() takes them; hello, notices and write
 * results are text frames). This file is the one place that defines the
 * messages, limits and close codes, for the server and for clients: the
 * contract, plain data and zod schemas. The codecs that turn frames into
 * bytes and back (Buffer-based, for Node) are in stream-codec.ts.
 */
import { z } from 'zod';
import type { Errno } from './errno.js';
import { RESP_CODE } from './records.js';
import { zDecimalU32, zU32, zU64 } from './u64.js';
import { expectMessage, objectMessage } from './zod-errors.js';

/** SUBPROTOCOL_JSON - JSON text frames; the default when none is asked for. */
export const SUBPROTOCOL_JSON = 'iopf.v1.json';

/** SUBPROTOCOL_UAPI - binary records and responses, as the fault fd. */
export const SUBPROTOCOL_UAPI = 'iopf.v1.uapi';

/** Subprotocol - a stream subprotocol name. */
export type Subprotocol = typeof SUBPROTOCOL_JSON | typeof SUBPROTOCOL_UAPI;

/** SUBPROTOCOLS - the subprotocols the daemon speaks; any other → 400. */
export const SUBPROTOCOLS: readonly Subprotocol[] = Object.freeze([SUBPROTOCOL_JSON, SUBPROTOCOL_UAPI]);

/** STREAM_URL - the stream route, fastify style. */
export const STREAM_URL = '/v1/contexts/:ctx/faults/:id/stream';

/**
 * STREAM_ERRNOS - why the upgrade can be refused (as an HTTP error with the
 * usual `{errno, message}` body; no socket is opened): EACCES (401, missing
 * or wrong token), EINVAL (400, unknown subprotocol, bad `window` or unknown
 * query parameter), ENOENT (404, no such fault queue), ENOSPC (503, the
 * fault queue already has its maximum of open streams), EIO (500).
 */
export const STREAM_ERRNOS: readonly Errno[] = Object.freeze(['EACCES', 'EINVAL', 'ENOENT', 'ENOSPC', 'EIO'] satisfies Errno[]);

/** DEFAULT_WINDOW - delivered-unanswered groups a connection may hold by default. */
export const DEFAULT_WINDOW = 1024;

/** MIN_WINDOW - the smallest `window` query value. */
export const MIN_WINDOW = 1;

/** MAX_WINDOW - the largest `window` query value. */
export const MAX_WINDOW = 65536;

/** MAX_FRAME - the largest frame the daemon accepts (bytes); larger → close 1009. */
export const MAX_FRAME = 1 << 20;

/**
 * CLOSE - WebSocket close codes, as used by the stream.
 *
 * NO_STATUS and ABNORMAL are never sent: a WebSocket library reports them
 * locally (no code received, connection lost without a close frame).
 */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED: 1003,
  NO_STATUS: 1005,
  ABNORMAL: 1006,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
} as const);

/** CloseCode - one of the %CLOSE values. */
export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];

/** CLOSE_DESCRIPTIONS - when each close code happens on this stream. */
export const CLOSE_DESCRIPTIONS: Readonly<Record<CloseCode, string>> = Object.freeze({
  1000: 'Normal closure: either side is done; nothing is answered because a connection closed, its unanswered groups are redelivered',
  1001: 'Going away: the context was released (DELETE /v1/contexts/:ctx) or the daemon is shutting down (SIGINT/SIGTERM)',
  1002: 'Protocol error: a WebSocket-level violation (bad framing, unmasked client frame); wrong messages get an error frame instead',
  1003: 'Unsupported data: not used for wrong frame types, which get an error frame and keep the connection open',
  1005: 'No status received: never sent; reported locally when a close frame carried no code',
  1006: 'Abnormal closure: never sent; reported locally when the connection dropped without a close frame',
  1008: 'Policy violation: the daemon ends a connection that breaks a rule no other code covers',
  1009: 'Message too big: a frame over 1 MiB (MAX_FRAME)',
  1011: 'Internal error: the daemon hit an unexpected error on this connection (the stream counterpart of EIO)',
});

/**
 * zStreamQuery - the stream's query string: `token` (the context token, for
 * clients that cannot set an authorization header) and `window`
 * (MIN_WINDOW..MAX_WINDOW, default DEFAULT_WINDOW). Unknown parameters → 400.
 */
export const zStreamQuery = z.strictObject(
  {
    token: z.string({ error: expectMessage('a token string') }).optional(),
    window: zDecimalU32
      .pipe(
        z
          .number()
          .min(MIN_WINDOW, { error: `expected a window of ${MIN_WINDOW}..${MAX_WINDOW}` })
          .max(MAX_WINDOW, { error: `expected a window of ${MIN_WINDOW}..${MAX_WINDOW}` }),
      )
      .optional(),
  },
  { error: objectMessage('query') },
);

/**
 * struct WireRecord - one record in JSON mode: struct iommu_hwpt_pgfault field
 * for field, in layout order, `addr` as a `"0x…"` string, `__reserved` 0.
 */
export interface WireRecord {
  flags: number;
  dev_id: number;
  pasid: number;
  grpid: number;
  perm: number;
  __reserved: 0;
  addr: string;
  length: number;
  cookie: number;
}

/**
 * struct WireGroup - one delivered group in a `faults` frame.
 * @cookie: the group's cookie (also on every record).
 * @redelivered: true if the group was first delivered on a connection that
 *   closed before it was answered (it keeps its cookie).
 * @records: the group's records in arrival order, LAST_PAGE on the last.
 */
export interface WireGroup {
  cookie: number;
  redelivered: boolean;
  records: WireRecord[];
}

/** struct HelloMessage - first frame on every connection (text, both modes). */
export interface HelloMessage {
  type: 'hello';
  protocol: Subprotocol;
  fault_id: number;
  window: number;
}

/** struct FaultsMessage - one or more whole groups (JSON mode). */
export interface FaultsMessage {
  type: 'faults';
  groups: WireGroup[];
}

/**
 * struct ResultError - one refused entry of a client `responses` frame.
 * @index: the entry's index in the frame.
 * @cookie: the entry's cookie, as sent.
 * @errno: why (EINVAL: unknown, stale or repeated cookie, or bad code).
 * @message: a human-readable reason.
 */
export interface ResultError {
  index: number;
  cookie: number;
  errno: Errno;
  message: string;
}

/**
 * struct ResultsMessage - the answer to one client `responses` frame (JSON
 * mode): @ok entries were accepted, @errors lists the others in order.
 */
export interface ResultsMessage {
  type: 'results';
  ok: number;
  errors: ResultError[];
}

/**
 * WriteMessage - the answer to one binary frame (uapi mode), like write()'s
 * return: @bytes consumed; on a refused response also the errno and the
 * refused response's index (ESPIPE, for a length not a multiple of 8, comes
 * with bytes 0 and index 0).
 */
export type WriteMessage =
  | { type: 'write'; bytes: number }
  | { type: 'write'; bytes: number; errno: 'EINVAL' | 'ESPIPE'; index: number };

/**
 * struct ErrorMessage - a client frame that is not valid JSON, not a known
 * message, or of the wrong kind for the mode. Sent once for that frame (and
 * no `results`); the connection stays open.
 */
export interface ErrorMessage {
  type: 'error';
  errno: Errno;
  message: string;
}

/** struct ExpiredMessage - groups answered INVALID by the response timeout. */
export interface ExpiredMessage {
  type: 'expired';
  cookies: number[];
}

/** struct OverflowMessage - @count new groups were answered by the depth policy. */
export interface OverflowMessage {
  type: 'overflow';
  count: number;
}

/**
 * struct RevokedMessage - extension: groups that held a cookie (delivered, or
 * returned to the queue with it) were answered INVALID by @cause (detach,
 * replace, unplug = hot-unplug, destroy = the fault queue destroyed, just
 * before its streams close); their @cookies are free and may name other
 * groups later. Sent to every open stream of the fault queue, once per
 * operation.
 */
export interface RevokedMessage {
  type: 'revoked';
  cause: 'detach' | 'replace' | 'unplug' | 'destroy';
  cookies: number[];
}

/**
 * struct RedeliveredMessage - extension, uapi mode: the next binary frame
 * holds the groups with these @cookies redelivered (a closed connection's
 * unanswered groups; JSON mode says `"redelivered": true` per group instead).
 */
export interface RedeliveredMessage {
  type: 'redelivered';
  cookies: number[];
}

/** ServerMessage - every text frame the daemon sends. */
export type ServerMessage =
  | HelloMessage
  | FaultsMessage
  | ResultsMessage
  | WriteMessage
  | ErrorMessage
  | ExpiredMessage
  | OverflowMessage
  | RevokedMessage
  | RedeliveredMessage;

/** WireResponseCode - the response codes a client may send in JSON mode. */
export type WireResponseCode = 0 | 1 | 'success' | 'invalid';

/** struct ResponsesMessage - the only client message (JSON mode). */
export interface ResponsesMessage {
  type: 'responses';
  responses: Array<{ cookie: number; code: WireResponseCode }>;
}

/** ClientMessage - every text frame a client may send. */
export type ClientMessage = ResponsesMessage;

const zErrnoString = z.string({ error: expectMessage('an errno name') }).regex(/^E[A-Z0-9]+$/, {
  error: 'expected an errno name',
});

/** zWireRecord - schema of a JSON-mode record (`addr` parses to a bigint). */
export const zWireRecord = z.strictObject(
  {
    flags: zU32,
    dev_id: zU32,
    pasid: zU32,
    grpid: zU32,
    perm: zU32,
    __reserved: z.literal(0, { error: 'expected 0' }),
    addr: zU64,
    length: zU32,
    cookie: zU32,
  },
  { error: objectMessage('a record object') },
);

/** zWireGroup - schema of one group of a `faults` frame. */
export const zWireGroup = z.strictObject(
  {
    cookie: zU32,
    redelivered: z.boolean({ error: expectMessage('a boolean') }),
    records: z.array(zWireRecord, { error: expectMessage('an array of records') }).min(1),
  },
  { error: objectMessage('a group object') },
);

/** zHelloMessage - schema of the `hello` frame. */
export const zHelloMessage = z.strictObject(
  {
    type: z.literal('hello'),
    protocol: z.enum([SUBPROTOCOL_JSON, SUBPROTOCOL_UAPI]),
    fault_id: zU32,
    window: zU32,
  },
  { error: objectMessage('a hello message') },
);

/** zFaultsMessage - schema of a `faults` frame. */
export const zFaultsMessage = z.strictObject(
  { type: z.literal('faults'), groups: z.array(zWireGroup).min(1) },
  { error: objectMessage('a faults message') },
);

/** zResultsMessage - schema of a `results` frame. */
export const zResultsMessage = z.strictObject(
  {
    type: z.literal('results'),
    ok: zU32,
    errors: z.array(
      z.strictObject(
        { index: zU32, cookie: z.number(), errno: zErrnoString, message: z.string() },
        { error: objectMessage('a result error object') },
      ),
    ),
  },
  { error: objectMessage('a results message') },
);

/** zWriteMessage - schema of a `write` frame (errno and index go together). */
export const zWriteMessage = z
  .strictObject(
    {
      type: z.literal('write'),
      bytes: zU32,
      errno: z.enum(['EINVAL', 'ESPIPE']).optional(),
      index: zU32.optional(),
    },
    { error: objectMessage('a write message') },
  )
  .refine((m) => (m.errno === undefined) === (m.index === undefined), {
    error: 'errno and index go together',
  });

/** zErrorMessage - schema of an `error` frame. */
export const zErrorMessage = z.strictObject(
  { type: z.literal('error'), errno: zErrnoString, message: z.string() },
  { error: objectMessage('an error message') },
);

/** zExpiredMessage - schema of an `expired` notice. */
export const zExpiredMessage = z.strictObject(
  { type: z.literal('expired'), cookies: z.array(zU32).min(1) },
  { error: objectMessage('an expired message') },
);

/** zOverflowMessage - schema of an `overflow` notice. */
export const zOverflowMessage = z.strictObject(
  { type: z.literal('overflow'), count: zU32 },
  { error: objectMessage('an overflow message') },
);

/** zRevokedMessage - schema of a `revoked` notice (extension). */
export const zRevokedMessage = z.strictObject(
  { type: z.literal('revoked'), cause: z.enum(['detach', 'replace', 'unplug', 'destroy']), cookies: z.array(zU32).min(1) },
  { error: objectMessage('a revoked message') },
);

/** zRedeliveredMessage - schema of a `redelivered` notice (extension, uapi mode). */
export const zRedeliveredMessage = z.strictObject(
  { type: z.literal('redelivered'), cookies: z.array(zU32).min(1) },
  { error: objectMessage('a redelivered message') },
);

/** zServerMessage - schema of any daemon text frame, by `type`. */
export const zServerMessage = z.discriminatedUnion('type', [
  zHelloMessage,
  zFaultsMessage,
  zResultsMessage,
  zWriteMessage,
  zErrorMessage,
  zExpiredMessage,
  zOverflowMessage,
  zRevokedMessage,
  zRedeliveredMessage,
]);

/**
 * zResponsesMessage - schema of a valid client `responses` frame (for
 * clients and docs; the daemon uses parseClientJsonFrame()).
 */
export const zResponsesMessage = z.strictObject(
  {
    type: z.literal('responses'),
    responses: z.array(
      z.strictObject(
        { cookie: zU32, code: z.union([z.literal(0), z.literal(1), z.literal('success'), z.literal('invalid')]) },
        { error: objectMessage('a response object') },
      ),
    ),
  },
  { error: objectMessage('a responses message') },
);

/** zClientMessage - schema of any client text frame. */
export const zClientMessage = zResponsesMessage;

/**
 * responseCodeOf() - the RESP_CODE a client's JSON `code` stands for.
 * @code: the entry's code: 0, 1, "success" or "invalid" are valid.
 *
 * Return: RESP_CODE.SUCCESS or RESP_CODE.INVALID, or undefined for anything
 * else (the caller reports EINVAL for that entry and the cookie stays valid).
 */
export function responseCodeOf(code: number | string): 0 | 1 | undefined {
  if (code === 0 || code === 'success') return RESP_CODE.SUCCESS;
  if (code === 1 || code === 'invalid') return RESP_CODE.INVALID;
  return undefined;
}
