/**
 * DOC: VEventQueue - a client of the vEVENTQ stream (the vEVENTQ fd)
 *
 * One WebSocket on `/v1/contexts/:ctx/veventq/:id/stream`, in JSON
 * (`vevent.v1.json`) or binary (`vevent.v1.uapi`) mode, the context token in
 * the authorization header. Events come out of an async iterator, oldest
 * first, each once; there is nothing to answer.
 *
 * Loss is always told. Every entry carries `missed`: how many sequence
 * numbers were skipped since the entry before it (sequences wrap at 2^31).
 * A LOST_EVENTS header (`lost: true`) stands for events the daemon dropped at
 * the queue's depth; its own sequence is that of the last one dropped, so the
 * gap before it plus one is the number lost. Across a reconnect (anything but
 * a close by us or 1001, which means the queue is gone) the client connects
 * again with backoff; events read by the daemon for the lost connection and
 * never received are gone (the kernel's read() consumed them), and the first
 * entry after the reconnect reports them in `missed`. `lostTotal` counts
 * every event known lost.
 */
import WebSocket, { type RawData } from 'ws';
import {
  CLOSE,
  VEVENT_STREAM_URL,
  VEVENT_SUBPROTOCOL_JSON,
  VEVENT_SUBPROTOCOL_UAPI,
  decodeVevents,
  zVeventServerMessage,
  type Errno,
  type Vevent,
  type VeventSubprotocol,
} from '../../protocol/index.js';
import { IopfdConnectionError, IopfdError } from './errors.js';

/** Sequence numbers wrap at 2^31. */
const SEQ_MOD = 0x8000_0000;

/**
 * struct VEventQueueOptions - where and how to read.
 * @url: the daemon's base URL (http://…).
 * @ctx: the context id. @veventqId: the vEVENTQ's object id. @token: the context token.
 * @mode: 'json' (default) or 'uapi'.
 * @reconnect: reconnect after a dropped connection (default true), with
 *   delays from @initialDelayMs doubling up to @maxDelayMs, at most
 *   @maxAttempts times in a row.
 */
export interface VEventQueueOptions {
  url: string;
  ctx: number;
  veventqId: number;
  token: string;
  mode?: 'json' | 'uapi';
  reconnect?: boolean;
  initialDelayMs?: number;
  maxDelayMs?: number;
  maxAttempts?: number;
}

/**
 * struct VEventItem - one entry as the iterator yields it.
 * @sequence: the daemon's sequence number.
 * @lost: a LOST_EVENTS header (no @evt).
 * @evt: the arm_smmuv3 event record (four u64 words).
 * @missed: sequence numbers skipped since the previous entry (0 normally).
 */
export interface VEventItem {
  sequence: number;
  lost: boolean;
  evt?: [bigint, bigint, bigint, bigint];
  missed: number;
}

/** The options with their defaults filled in. */
type Settings = Required<Omit<VEventQueueOptions, 'mode'>> & { protocol: VeventSubprotocol };

/** VEventQueue - an async iterator over a vEVENTQ stream. */
export class VEventQueue implements AsyncIterable<VEventItem> {
  readonly #opts: Settings;
  #ws: WebSocket | undefined;
  readonly #items: VEventItem[] = [];
  #waiter: (() => void) | undefined;
  #ended = false;
  #error: Error | undefined;
  #closing = false;
  #attempts = 0;
  /** The sequence the next entry should carry (undefined before the first). */
  #expected: number | undefined;
  /** Events known lost: LOST_EVENTS headers and sequence gaps. */
  lostTotal = 0;
  /** Connections opened (reconnects included). */
  connections = 0;

  constructor(opts: VEventQueueOptions) {
    this.#opts = {
      url: opts.url,
      ctx: opts.ctx,
      veventqId: opts.veventqId,
      token: opts.token,
      reconnect: opts.reconnect ?? true,
      initialDelayMs: opts.initialDelayMs ?? 100,
      maxDelayMs: opts.maxDelayMs ?? 5000,
      maxAttempts: opts.maxAttempts ?? 10,
      protocol: opts.mode === 'uapi' ? VEVENT_SUBPROTOCOL_UAPI : VEVENT_SUBPROTOCOL_JSON,
    };
  }

  /** The stream URL (ws://…). */
  get streamUrl(): string {
    const path = VEVENT_STREAM_URL.replace(':ctx', String(this.#opts.ctx)).replace(':id', String(this.#opts.veventqId));
    return this.#opts.url.replace(/^http/, 'ws') + path;
  }

  /** connect() - open the stream; resolves on the daemon's hello. Rejects with IopfdError for a refused upgrade. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.streamUrl, [this.#opts.protocol], { headers: { authorization: `Bearer ${this.#opts.token}` }, perMessageDeflate: false });
      this.#ws = ws;
      let hello = false;
      ws.on('unexpected-response', (_req, res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: { errno?: string; message?: string } = {};
          try {
            body = JSON.parse(text) as typeof body;
          } catch {
            // not JSON: keep the status only
          }
          reject(new IopfdError((body.errno ?? 'EIO') as Errno, res.statusCode ?? 0, body.message ?? `upgrade refused with ${String(res.statusCode)}`));
        });
      });
      ws.on('error', (err) => {
        if (!hello) reject(new IopfdConnectionError(`vEVENTQ stream ${this.streamUrl}: ${err.message}`));
      });
      ws.on('message', (data: RawData, binary: boolean) => {
        if (!binary) {
          const msg = zVeventServerMessage.safeParse(JSON.parse(data.toString()));
          if (!msg.success) return;
          if (msg.data.type === 'hello') {
            hello = true;
            this.#attempts = 0;
            this.connections++;
            resolve();
          } else if (msg.data.type === 'vevents') {
            for (const e of msg.data.events) this.#push({ sequence: e.sequence, lost: e.lost, ...(e.evt ? { evt: e.evt as [bigint, bigint, bigint, bigint] } : {}) });
          }
          return;
        }
        for (const e of decodeVevents(new Uint8Array(data as Buffer))) this.#push(e);
      });
      ws.on('close', (code) => {
        if (!hello) return;
        this.#closed(code);
      });
    });
  }

  /** close() - close the stream; the iterator ends once the entries already received are taken. */
  close(): void {
    this.#closing = true;
    this.#ws?.close(CLOSE.NORMAL);
    this.#end(undefined);
  }

  #push(e: Vevent): void {
    let missed = 0;
    if (this.#expected !== undefined) missed = (e.sequence - this.#expected + SEQ_MOD) % SEQ_MOD;
    this.#expected = (e.sequence + 1) % SEQ_MOD;
    this.lostTotal += missed + (e.lost ? 1 : 0);
    this.#items.push({ ...e, missed });
    this.#wake();
  }

  #closed(code: number): void {
    if (this.#closing || this.#ended) return;
    if (code === CLOSE.GOING_AWAY || !this.#opts.reconnect) {
      this.#end(undefined);
      return;
    }
    const retry = (): void => {
      if (this.#closing || this.#ended) return;
      if (++this.#attempts > this.#opts.maxAttempts) {
        this.#end(new IopfdConnectionError('vEVENTQ stream: gave up reconnecting'));
        return;
      }
      const delay = Math.min(this.#opts.maxDelayMs, this.#opts.initialDelayMs * 2 ** (this.#attempts - 1));
      setTimeout(() => {
        this.connect().catch((err: unknown) => {
          if (err instanceof IopfdError) this.#end(err);
          else retry();
        });
      }, delay).unref();
    };
    retry();
  }

  #end(err: Error | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = err;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<VEventItem> {
    for (;;) {
      const item = this.#items.shift();
      if (item) {
        yield item;
        continue;
      }
      if (this.#ended) {
        if (this.#error) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }
}
