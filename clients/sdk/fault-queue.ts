/**
 * DOC: FaultQueue - a client of the fault stream (the fault fd)
 *
 * One WebSocket on `/v1/contexts/:ctx/faults/:id/stream`, in JSON
 * (`iopf.v1.json`) or binary (`iopf.v1.uapi`) mode, the context token in the
 * authorization header. Delivered groups come out of an async iterator as
 * `{cookie, redelivered, records}`; respond() and respondMany() queue answers
 * that go out batched, one frame per event-loop turn, and the daemon's
 * `results` / `write` frames settle them.
 *
 * Reconnection. When the connection drops (anything but a close by us or
 * 1001, which means the queue is gone), the client reconnects with
 * exponential backoff and jitter, and relies on the daemon's redelivery:
 * groups delivered on the lost connection and still unanswered come again,
 * with the same cookie and `redelivered: true`. The client remembers every
 * group it has delivered and not seen settled (the "held" groups) and the
 * connection that last delivered each one, so that across a reconnect it
 * never sends an answer whose cookie may have gone stale:
 *
 * - an answer for a group delivered on an earlier connection waits until the
 *   daemon delivers that group again on the current one, and only then goes
 *   out (an answer sent on the lost connection and never acknowledged is
 *   sent again only then too);
 * - a group announced `expired` or `revoked` (the extension notice for
 *   detach, replace, unplug, destroy), or whose cookie comes back naming
 *   another group (it was answered without us: timeout while disconnected,
 *   detach, replace, against a daemon without the notice), is forgotten and any answer still queued for it is dropped
 *   with a 'stale' event;
 * - a redelivered group the consumer already has is not yielded twice.
 *
 * In JSON mode a redelivery is told by its `redelivered` flag; the binary
 * records have no such flag, so in uapi mode the daemon sends a
 * `redelivered` text notice (an extension) naming the redelivered cookies of
 * the next binary frame. Against a daemon that never sends it, a group that
 * comes back with the same cookie and the same records (dev_id, pasid,
 * grpid, perm, flags, addr) is taken for a redelivery.
 *
 * As with the kernel, an answer identifies its group by cookie only, and a
 * cookie is reused once answered. respond() accepts the FaultGroup object
 * itself, which lets the client refuse an answer meant for a group whose
 * cookie now names another one; with a bare cookie it cannot tell.
 *
 * Events: 'open' (hello), 'close' (each connection, ours included), 'reconnecting',
 * 'results', 'write', 'error' (a daemon `error` frame, or the fatal error
 * that ended the queue; emitted only when someone listens), 'expired',
 * 'revoked', 'overflow', 'stale' (an answer not sent, and why).
 */
import { EventEmitter } from 'node:events';
import WebSocket, { type RawData } from 'ws';
import {
  CLOSE,
  decodeRecords,
  encodeResponses,
  parseU64,
  RESPONSE_SIZE,
  responseCodeOf,
  STREAM_URL,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_UAPI,
  type HelloMessage,
  type IommuHwptPgfault,
  type ResultsMessage,
  type RevokedMessage,
  type ServerMessage,
  type WireRecord,
  type WriteMessage,
} from '../../protocol/index.js';
import { IopfdConnectionError, IopfdError } from './errors.js';

/** FaultQueueMode - `json` (iopf.v1.json) or `uapi` (iopf.v1.uapi, binary records). */
export type FaultQueueMode = 'json' | 'uapi';

/**
 * struct ReconnectOptions - the reconnect policy.
 * @initialDelayMs: the first delay.
 * @maxDelayMs: the largest delay.
 * @factor: each failed attempt multiplies the delay by this.
 * @jitter: 0..1, the part of each delay taken off at random.
 * @retries: attempts in a row before giving up (the iterator then throws).
 */
export interface ReconnectOptions {
  initialDelayMs: number;
  maxDelayMs: number;
  factor: number;
  jitter: number;
  retries: number;
}

/** DEFAULT_RECONNECT - 100 ms doubling up to 5 s, half jitter, never give up. */
export const DEFAULT_RECONNECT: Readonly<ReconnectOptions> = Object.freeze({
  initialDelayMs: 100,
  maxDelayMs: 5000,
  factor: 2,
  jitter: 0.5,
  retries: Infinity,
});

/**
 * struct FaultQueueOptions - what to connect to and how.
 * @url: the daemon's base URL (http://…).
 * @ctx: the context id.
 * @faultId: the fault queue's object id.
 * @token: the context token.
 * @mode: `json` (default) or `uapi`.
 * @window: the stream's `window` (default: the daemon's, 1024).
 * @reconnect: the reconnect policy (merged with DEFAULT_RECONNECT), or
 *   false to end the queue when the connection drops.
 */
export interface FaultQueueOptions {
  url: string;
  ctx: number;
  faultId: number;
  token: string;
  mode?: FaultQueueMode | undefined;
  window?: number | undefined;
  reconnect?: Partial<ReconnectOptions> | false | undefined;
}

/**
 * struct FaultGroup - one delivered page request group.
 * @cookie: the group's cookie, the handle of its answer.
 * @redelivered: first delivered on a connection that closed unanswered.
 * @records: the group's page requests in order, LAST_PAGE on the last.
 */
export interface FaultGroup {
  readonly cookie: number;
  readonly redelivered: boolean;
  readonly records: readonly IommuHwptPgfault[];
}

/** ResponseCode - SUCCESS (0, "success") or INVALID (1, "invalid"). */
export type ResponseCode = 0 | 1 | 'success' | 'invalid';

/**
 * ResponseEntry - one answer of respondMany(): by cookie, or by the group
 * itself (which protects against cookie reuse, see the DOC above).
 */
export type ResponseEntry = { cookie: number; code: ResponseCode } | { group: FaultGroup; code: ResponseCode };

/**
 * StaleReason - why an answer was not sent: `unknown` (no such group held:
 * never delivered here, already answered, expired), `repeated` (the group
 * was answered already), `reused` (the cookie names another group now),
 * `expired` (the response timeout answered the group), `revoked` (detach,
 * replace, unplug or destroy answered the group), `closed` (the queue
 * closed before the answer could go out).
 */
export type StaleReason = 'unknown' | 'repeated' | 'reused' | 'expired' | 'revoked' | 'closed';

/** struct StaleResponse - an answer the client did not send. */
export interface StaleResponse {
  cookie: number;
  code: 0 | 1;
  reason: StaleReason;
}

/** struct CloseInfo - a connection closed: its code and reason, and whether a reconnect follows. */
export interface CloseInfo {
  code: number;
  reason: string;
  reconnecting: boolean;
}

/** FaultQueueEvents - the events of a FaultQueue and their arguments. */
export interface FaultQueueEvents {
  open: [hello: HelloMessage];
  close: [info: CloseInfo];
  reconnecting: [info: { attempt: number; delayMs: number }];
  results: [message: ResultsMessage];
  write: [message: WriteMessage];
  error: [error: Error];
  expired: [cookies: number[]];
  revoked: [cookies: number[], cause: RevokedMessage['cause']];
  overflow: [count: number];
  stale: [response: StaleResponse];
}

/** The most answers in one frame (about 300 KiB of JSON; 128 KiB binary). */
const MAX_RESPONSES_PER_FRAME = 16384;

/**
 * struct Held - a group delivered to this client and not known to be settled.
 * @group: the group as yielded.
 * @gen: the connection that delivered it last.
 * @answer: the consumer's answer, once given.
 * @sentGen: the connection the answer was sent on, while unacknowledged.
 */
interface Held {
  readonly group: FaultGroup;
  gen: number;
  answer: 0 | 1 | undefined;
  sentGen: number | undefined;
}

type State = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed';

/** recordOf() - a JSON-mode record as the binary codec returns it. */
function recordOf(r: WireRecord): IommuHwptPgfault {
  return { flags: r.flags, dev_id: r.dev_id, pasid: r.pasid, grpid: r.grpid, perm: r.perm, addr: parseU64(r.addr), length: r.length, cookie: r.cookie };
}

/** sameRecords() - whether two groups hold the same page requests. */
function sameRecords(a: readonly IommuHwptPgfault[], b: readonly IommuHwptPgfault[]): boolean {
  return (
    a.length === b.length &&
    a.every((r, i) => {
      const s = b[i]!;
      return r.dev_id === s.dev_id && r.pasid === s.pasid && r.grpid === s.grpid && r.perm === s.perm && r.flags === s.flags && r.addr === s.addr;
    })
  );
}

/** isFatal() - an error that reconnecting will not cure (a 4xx refusal of the upgrade). */
function isFatal(e: unknown): boolean {
  return e instanceof IopfdError && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429;
}

/**
 * FaultQueue - the stream client of one fault queue. Create it with
 * IopfdContext.faultQueue() (or directly), then connect().
 */
export class FaultQueue extends EventEmitter<FaultQueueEvents> implements AsyncIterable<FaultGroup> {
  /** The subprotocol mode. */
  readonly mode: FaultQueueMode;
  readonly #opts: FaultQueueOptions;
  readonly #reconnect: ReconnectOptions | undefined;
  #state: State = 'idle';
  #ws: WebSocket | undefined;
  #gen = 0;
  /** uapi mode: the cookies the daemon's `redelivered` notice names for the next binary frame. */
  #redeliveredNext: Set<number> | undefined;
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #held = new Map<number, Held>();
  readonly #outbox = new Set<number>();
  #inflight: Held[][] = [];
  #flushScheduled = false;
  #idleWaiters: Array<() => void> = [];
  readonly #buffer: FaultGroup[] = [];
  #waiters: Array<{ resolve: (r: IteratorResult<FaultGroup>) => void; reject: (e: Error) => void }> = [];
  #fatal: Error | undefined;
  #closed: Promise<void>;
  #resolveClosed!: () => void;

  constructor(opts: FaultQueueOptions) {
    super();
    this.#opts = opts;
    this.mode = opts.mode ?? 'json';
    this.#reconnect = opts.reconnect === false ? undefined : { ...DEFAULT_RECONNECT, ...opts.reconnect };
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** The stream's ws:// URL. */
  get streamUrl(): string {
    const path = STREAM_URL.replace(':ctx', String(this.#opts.ctx)).replace(':id', String(this.#opts.faultId));
    const query = this.#opts.window === undefined ? '' : `?window=${this.#opts.window}`;
    return `${this.#opts.url.replace(/\/+$/, '').replace(/^http/, 'ws')}${path}${query}`;
  }

  /** Whether a connection is open (hello received). */
  get connected(): boolean {
    return this.#state === 'open' || (this.#state === 'closing' && this.#ws !== undefined);
  }

  /** How many connections have been opened so far. */
  get connections(): number {
    return this.#gen;
  }

  /** Groups delivered to this client and not yet known to be settled. */
  get outstanding(): number {
    return this.#held.size;
  }

  /**
   * connect() - open the stream (once).
   *
   * Return: the daemon's hello.
   * Throws: IopfdError when the upgrade is refused (401 token, 404 no such
   * queue, 503 stream limit), IopfdConnectionError when the daemon cannot
   * be reached; the queue is closed then.
   */
  async connect(): Promise<HelloMessage> {
    if (this.#state !== 'idle') throw new Error('FaultQueue.connect() may be called once');
    this.#state = 'connecting';
    try {
      return await this.#openSocket();
    } catch (e) {
      this.#finish(undefined);
      throw e;
    }
  }

  /**
   * respond() - answer one group; the answer goes out with the others of
   * this event-loop turn. An answer that must not be sent (see StaleReason)
   * is dropped with a 'stale' event.
   * @target: the group's cookie, or the group itself.
   * @code: SUCCESS or INVALID.
   *
   * Throws: RangeError for a code other than 0, 1, "success", "invalid".
   */
  respond(target: number | FaultGroup, code: ResponseCode): void {
    if (typeof target === 'number') this.#queue(target, undefined, code);
    else this.#queue(target.cookie, target, code);
  }

  /** respondMany() - respond() for each entry, in order (they share a frame). */
  respondMany(responses: readonly ResponseEntry[]): void {
    for (const r of responses) {
      if ('group' in r) this.#queue(r.group.cookie, r.group, r.code);
      else this.#queue(r.cookie, undefined, r.code);
    }
  }

  /**
   * close() - send the answers queued for the current connection, wait (up
   * to @timeoutMs) for the daemon to acknowledge them, close the stream
   * with 1000 and end the iterator. Unanswered groups stay with the daemon,
   * which delivers them again to another stream.
   */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'closing') return this.#closed;
    this.#state = 'closing';
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const ws = this.#ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      this.#flush();
      const deadline = setTimeout(() => this.#wakeIdle(), timeoutMs);
      if (this.#inflight.length > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
      clearTimeout(deadline);
      const gone = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      const cut = setTimeout(() => ws.terminate(), timeoutMs);
      ws.close(CLOSE.NORMAL, 'client closing');
      await gone;
      clearTimeout(cut);
    }
    this.#finish(undefined);
    return this.#closed;
  }

  [Symbol.asyncIterator](): AsyncIterator<FaultGroup> {
    return {
      next: () => this.#next(),
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  /* ------------------------------------------------------------ internals */

  #next(): Promise<IteratorResult<FaultGroup>> {
    const g = this.#buffer.shift();
    if (g) return Promise.resolve({ done: false, value: g });
    if (this.#state === 'closed') {
      const e = this.#fatal;
      this.#fatal = undefined;
      return e ? Promise.reject(e) : Promise.resolve({ done: true, value: undefined });
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #push(group: FaultGroup): void {
    const w = this.#waiters.shift();
    if (w) w.resolve({ done: false, value: group });
    else this.#buffer.push(group);
  }

  #emitError(e: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  /** Open one WebSocket; resolves on its hello, which makes it the current connection. */
  #openSocket(): Promise<HelloMessage> {
    return new Promise((resolve, reject) => {
      const protocol = this.mode === 'uapi' ? SUBPROTOCOL_UAPI : SUBPROTOCOL_JSON;
      const ws = new WebSocket(this.streamUrl, [protocol], {
        headers: { authorization: `Bearer ${this.#opts.token}` },
        perMessageDeflate: false,
      });
      let opened = false;
      let failed = false;
      const fail = (e: Error): void => {
        if (opened || failed) return;
        failed = true;
        reject(e);
      };
      ws.on('unexpected-response', (_req, res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          fail(IopfdError.fromResponse(res.statusCode ?? 0, text));
          ws.terminate();
        });
      });
      ws.on('error', (err) => {
        if (!opened) fail(new IopfdConnectionError(`${this.streamUrl}: ${err.message}`, { cause: err }));
      });
      ws.on('message', (data, isBinary) => {
        if (opened) return this.#onMessage(data, isBinary);
        let msg: ServerMessage | undefined;
        try {
          msg = isBinary ? undefined : (JSON.parse(data.toString()) as ServerMessage);
        } catch {
          msg = undefined;
        }
        if (msg?.type !== 'hello') {
          fail(new IopfdError('EIO', 0, 'the stream did not start with a hello'));
          ws.terminate();
          return;
        }
        opened = true;
        this.#attach(ws, msg);
        resolve(msg);
      });
      ws.on('close', (code, reason) => {
        if (!opened) fail(new IopfdConnectionError(`${this.streamUrl}: closed before hello (${code})`));
        else this.#onClose(ws, code, reason.toString());
      });
    });
  }

  /** A connection said hello: it becomes the current one. */
  #attach(ws: WebSocket, hello: HelloMessage): void {
    if (this.#state === 'closing' || this.#state === 'closed') {
      ws.close(CLOSE.NORMAL, 'client closing');
      return;
    }
    this.#ws = ws;
    this.#gen++;
    this.#redeliveredNext = undefined;
    this.#attempt = 0;
    this.#state = 'open';
    this.emit('open', hello);
    this.#scheduleFlush();
  }

  #onClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.#ws) return;
    this.#ws = undefined;
    // Unacknowledged answers stay `sent` on the lost connection: they are
    // sent again only if their group is delivered again.
    this.#inflight = [];
    this.#wakeIdle();
    const ending = this.#state === 'closing' || this.#state === 'closed';
    const reconnecting = !ending && this.#reconnect !== undefined && code !== CLOSE.GOING_AWAY;
    this.emit('close', { code, reason, reconnecting });
    if (ending) return;
    if (!reconnecting) {
      this.#finish(code === CLOSE.GOING_AWAY ? undefined : new IopfdConnectionError(`stream closed (${code}${reason ? `: ${reason}` : ''})`));
      return;
    }
    this.#state = 'reconnecting';
    this.#scheduleReconnect(undefined);
  }

  #scheduleReconnect(lastError: Error | undefined): void {
    const r = this.#reconnect!;
    if (this.#attempt >= r.retries) {
      this.#finish(lastError ?? new IopfdConnectionError('gave up reconnecting'));
      return;
    }
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * r.factor ** this.#attempt);
    const delayMs = Math.round(base * (1 - r.jitter * Math.random()));
    this.#attempt++;
    this.emit('reconnecting', { attempt: this.#attempt, delayMs });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#openSocket().then(
        () => {},
        (e: Error) => {
          if (this.#state !== 'reconnecting') return;
          if (isFatal(e)) this.#finish(e);
          else this.#scheduleReconnect(e);
        },
      );
    }, delayMs);
  }

  /** The queue is over: end the iterator (with @error if fatal), drop what cannot be sent. */
  #finish(error: Error | undefined): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const [cookie, h] of this.#held) {
      if (h.answer !== undefined && h.sentGen === undefined) this.emit('stale', { cookie, code: h.answer, reason: 'closed' });
    }
    this.#held.clear();
    this.#outbox.clear();
    this.#ws?.terminate();
    this.#ws = undefined;
    if (error) this.#emitError(error);
    const waiters = this.#waiters;
    this.#waiters = [];
    if (waiters.length > 0) {
      for (const w of waiters) {
        if (error) w.reject(error);
        else w.resolve({ done: true, value: undefined });
        error = undefined;
      }
    } else {
      this.#fatal = error;
    }
    this.#resolveClosed();
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    const buf = data as Buffer;
    if (isBinary) {
      const redelivered = this.#redeliveredNext;
      this.#redeliveredNext = undefined;
      this.#onRecords(decodeRecords(buf), redelivered);
      return;
    }
    let msg: ServerMessage;
    try {
      msg = JSON.parse(buf.toString('utf8')) as ServerMessage;
    } catch {
      this.#emitError(new IopfdError('EIO', 0, 'the daemon sent a text frame that is not JSON'));
      return;
    }
    switch (msg.type) {
      case 'faults':
        for (const g of msg.groups) this.#onGroup(g.cookie, g.redelivered, g.records.map(recordOf));
        break;
      case 'results':
        this.#onResults(msg);
        break;
      case 'write':
        this.#onWrite(msg);
        break;
      case 'error':
        // The answer to one of our frames, which was refused whole.
        this.#settleFrame();
        this.#emitError(IopfdError.fromStream(msg.errno, msg.message));
        break;
      case 'expired':
        for (const c of msg.cookies) {
          const h = this.#held.get(c);
          if (h) this.#drop(c, h, 'expired');
        }
        this.emit('expired', msg.cookies);
        break;
      case 'revoked':
        for (const c of msg.cookies) {
          const h = this.#held.get(c);
          if (h) this.#drop(c, h, 'revoked');
        }
        this.emit('revoked', msg.cookies, msg.cause);
        break;
      case 'redelivered':
        this.#redeliveredNext = new Set(msg.cookies);
        break;
      case 'overflow':
        this.emit('overflow', msg.count);
        break;
      case 'hello':
        break;
    }
  }

  /**
   * A binary frame: whole groups, consecutive records sharing a cookie.
   * @redelivered: the cookies of the `redelivered` notice that preceded it;
   *   without one, the records tell a redelivery (an older daemon).
   */
  #onRecords(records: IommuHwptPgfault[], redelivered: Set<number> | undefined): void {
    let start = 0;
    for (let i = 1; i <= records.length; i++) {
      if (i === records.length || records[i]!.cookie !== records[start]!.cookie) {
        const cookie = records[start]!.cookie;
        this.#onGroup(cookie, redelivered?.has(cookie), records.slice(start, i));
        start = i;
      }
    }
  }

  /**
   * One delivered group. @redelivered is the JSON flag (in uapi mode, from
   * the `redelivered` notice), undefined in uapi mode without a notice
   * (where the records tell a redelivery).
   */
  #onGroup(cookie: number, redelivered: boolean | undefined, records: IommuHwptPgfault[]): void {
    const h = this.#held.get(cookie);
    if (h) {
      if (redelivered ?? sameRecords(h.group.records, records)) {
        // The same group again, on this connection now: its answer may go out here.
        h.gen = this.#gen;
        if (h.answer !== undefined && h.sentGen !== this.#gen) {
          h.sentGen = undefined;
          this.#outbox.add(cookie);
          this.#scheduleFlush();
        }
        return;
      }
      // The cookie names another group: the one held was answered without us.
      this.#drop(cookie, h, 'reused');
    }
    const group: FaultGroup = { cookie, redelivered: redelivered ?? false, records };
    this.#held.set(cookie, { group, gen: this.#gen, answer: undefined, sentGen: undefined });
    this.#push(group);
  }

  /** Forget a held group; an answer that never went out is reported stale. */
  #drop(cookie: number, h: Held, reason: StaleReason): void {
    this.#held.delete(cookie);
    this.#outbox.delete(cookie);
    const i = this.#buffer.indexOf(h.group);
    if (i >= 0) this.#buffer.splice(i, 1);
    if (h.answer !== undefined && h.sentGen === undefined) this.emit('stale', { cookie, code: h.answer, reason });
  }

  #queue(cookie: number, group: FaultGroup | undefined, code: ResponseCode): void {
    const c = responseCodeOf(code);
    if (c === undefined) throw new RangeError(`response code ${JSON.stringify(code)} is not 0, 1, "success" or "invalid"`);
    const h = this.#held.get(cookie);
    if (this.#state === 'closed' || this.#state === 'closing') {
      this.emit('stale', { cookie, code: c, reason: 'closed' });
    } else if (!h || (group !== undefined && h.group !== group)) {
      this.emit('stale', { cookie, code: c, reason: h ? 'reused' : 'unknown' });
    } else if (h.answer !== undefined) {
      this.emit('stale', { cookie, code: c, reason: 'repeated' });
    } else {
      h.answer = c;
      this.#outbox.add(cookie);
      this.#scheduleFlush();
    }
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Send every queued answer whose group the current connection delivered. */
  #flush(): void {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    let batch: Held[] = [];
    for (const cookie of this.#outbox) {
      const h = this.#held.get(cookie);
      if (!h || h.answer === undefined) {
        this.#outbox.delete(cookie);
        continue;
      }
      if (h.gen !== this.#gen) continue; // waits for its group to be delivered again
      this.#outbox.delete(cookie);
      h.sentGen = this.#gen;
      batch.push(h);
      if (batch.length === MAX_RESPONSES_PER_FRAME) {
        this.#send(ws, batch);
        batch = [];
      }
    }
    if (batch.length > 0) this.#send(ws, batch);
  }

  #send(ws: WebSocket, batch: Held[]): void {
    this.#inflight.push(batch);
    const responses = batch.map((h) => ({ cookie: h.group.cookie, code: h.answer! }));
    if (this.mode === 'json') ws.send(JSON.stringify({ type: 'responses', responses }));
    else ws.send(encodeResponses(responses));
  }

  /** The oldest unacknowledged frame, now answered. */
  #settleFrame(): Held[] {
    const frame = this.#inflight.shift() ?? [];
    if (this.#inflight.length === 0) this.#wakeIdle();
    return frame;
  }

  #wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * An accepted answer consumed whatever group held its cookie when the
   * daemon read it; a refused one leaves a newer group with that cookie alone.
   */
  #settle(h: Held, accepted: boolean): void {
    const cookie = h.group.cookie;
    const cur = this.#held.get(cookie);
    if (cur === h) this.#drop(cookie, h, 'repeated');
    else if (cur && accepted) this.#drop(cookie, cur, 'reused');
  }

  #onResults(msg: ResultsMessage): void {
    const frame = this.#settleFrame();
    const refused = new Set(msg.errors.map((e) => e.index));
    frame.forEach((h, i) => {
      this.#settle(h, !refused.has(i));
    });
    this.emit('results', msg);
  }

  /** write() semantics: the answers before `index` were taken, the one at it refused, the rest not read. */
  #onWrite(msg: WriteMessage): void {
    const frame = this.#settleFrame();
    const taken = Math.floor(msg.bytes / RESPONSE_SIZE);
    const refusedAt = 'errno' in msg ? msg.index : frame.length;
    frame.forEach((h, i) => {
      if (i < taken) this.#settle(h, true);
      else if (i === refusedAt) this.#settle(h, false);
      else if (this.#held.get(h.group.cookie) === h) {
        h.sentGen = undefined;
        this.#outbox.add(h.group.cookie);
        this.#scheduleFlush();
      }
    });
    this.emit('write', msg);
  }
}
