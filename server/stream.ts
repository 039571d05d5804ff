/**
 * DOC: the fault stream (the protocol reference, docs/protocol.md)
 *
 * `GET /v1/contexts/:ctx/faults/:id/stream` is the fault fd over WebSocket.
 * The upgrade is handled on the HTTP server's 'upgrade' event with `ws` in
 * noServer mode, so that everything is checked before a socket exists:
 * stream-admission.ts checks the token of the context (401), the path and
 * query (400), the WebSocket handshake headers (400), the fault queue (404)
 * and the subprotocol (400); opening the core connection checks the
 * per-queue stream limit (503). A refusal is a plain HTTP response carrying
 * `{errno, message}`. This file is the stream session itself.
 *
 * A connection is one IommufdFaultConn of the core: the core decides which
 * groups it may take (window, FIFO, cookies) and tells it when groups are
 * waiting (readable); the stream turns that into frames:
 *
 * - delivery: the core's readable() schedules one flush, run when the
 *   current batch of work is done (a tick, so every group that batch
 *   reported is there); it reads whole groups in batches and sends several
 *   groups per frame, frames kept under MAX_FRAME and encoded straight into
 *   a buffer; sending pauses while the socket's buffered amount is above a
 *   high-water mark and resumes on the socket's 'drain';
 * - writes: the socket is corked from the first frame of an event-loop turn
 *   to the end of the turn, so a `results` frame and the `faults` frame that
 *   follows it leave in one write;
 * - responses: JSON `responses` frames are judged entry by entry and get one
 *   `results` frame; binary frames are write()s of 8-byte responses and get
 *   one `write` frame; a frame of the wrong kind (or a text frame that is not
 *   UTF-8) gets one `error` frame and the connection stays open, unless the
 *   peer exceeds the error-frame rate (close 1008);
 * - input back-pressure: while the replies to a peer are backed up on its
 *   socket (above the high-water mark), its frames are not read, so a peer
 *   that writes without reading cannot grow the daemon's memory;
 * - notices: `expired` as the core reports them, `overflow` counts summed
 *   per event-loop turn; extensions: `revoked` (detach, replace, unplug,
 *   destroy answered groups that held cookies) as the core reports them, and
 *   in uapi mode a `redelivered` notice before a binary frame holding
 *   redelivered groups;
 * - pings and heartbeat (stream-keepalive.ts, shared with the vEVENTQ
 *   stream): each ping is answered with its pong; a peer with
 *   MAX_PENDING_PONGS pongs unwritten (it pings without reading) is closed
 *   1008 "ping flood"; a ping every heartbeatMs, and a peer that has not
 *   answered the previous ping is terminated, which closes its connection
 *   in the core, so its unanswered groups are redelivered elsewhere;
 * - close: the core re-queues the connection's unanswered groups; releasing
 *   the context (or shutdown) closes the stream with 1001.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import {
  faultGroupDevId,
  RESPOND_OK,
  respondErrorMessage,
  type FaultListener,
  type IommufdFault,
  type IommufdFaultConn,
  type IopfGroup,
  type RevokeCause,
} from '../core/index.js';
import {
  CLOSE,
  encodeRecord,
  FaultsJsonWriter,
  MAX_FRAME,
  parseClientJsonFrame,
  RECORD_SIZE,
  RESPONSE_SIZE,
  ResponseBatch,
  responseCodeOf,
  scanResponsesFrame,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_UAPI,
  type ErrorMessage,
  type HelloMessage,
  type IommuHwptPgfault,
  type ResultError,
  type RedeliveredMessage,
  type ResultsMessage,
  type RevokedMessage,
  type Subprotocol,
  type WriteMessage,
} from '../protocol/index.js';
import type { ContextRegistry } from './contexts.js';
import type { Metrics } from './metrics.js';
import { admitStream, chooseSubprotocol, completeUpgrade, refuseUpgrade } from './stream-admission.js';
import { ErrorFrameBudget, SendGate, StreamKeepalive, startHeartbeat } from './stream-keepalive.js';

export { MAX_PENDING_PONGS } from './stream-keepalive.js';

/**
 * struct StreamOptions - tunables of the fault stream.
 * @heartbeatMs: ping interval; a peer silent for a whole interval is dropped.
 * @errorFramesPerSecond: `error` frames a connection may provoke per second;
 *   one more closes it with 1008.
 * @highWaterMark: bytes buffered on the socket above which sending pauses.
 * @groupsPerFrame: the most groups in one `faults` frame or binary frame.
 * @closeGraceMs: at shutdown, how long a peer has to complete the close
 *   handshake before its socket is destroyed.
 * @maxFrame: the largest frame a client may send (bytes); a larger one
 *   closes its connection with 1009.
 */
export interface StreamOptions {
  heartbeatMs: number;
  maxFrame: number;
  errorFramesPerSecond: number;
  highWaterMark: number;
  groupsPerFrame: number;
  closeGraceMs: number;
}

/** DEFAULT_STREAM_OPTIONS - the daemon's defaults. */
export const DEFAULT_STREAM_OPTIONS: Readonly<StreamOptions> = Object.freeze({
  heartbeatMs: 15000,
  maxFrame: MAX_FRAME,
  errorFramesPerSecond: 20,
  highWaterMark: 1 << 20,
  groupsPerFrame: 256,
  closeGraceMs: 1000,
});

/**
 * Records per frame, by mode, so that a frame stays under MAX_FRAME (a JSON
 * record is at most ~190 bytes). A single group larger than that still goes
 * out, alone in its frame.
 */
const MAX_RECORDS: Readonly<Record<Subprotocol, number>> = {
  [SUBPROTOCOL_JSON]: 4096,
  [SUBPROTOCOL_UAPI]: Math.floor(MAX_FRAME / RECORD_SIZE),
};

/** Frames this long (bytes, or characters of ASCII text) are not held back by the per-turn cork. */
const CORK_LIMIT = 64 * 1024;

/** A response code the core refuses, for JSON codes that are not 0/1/"success"/"invalid". */
const BAD_CODE = -1;

/**
 * FaultStream - one WebSocket on a fault queue: the listener of its core
 * connection and the handler of its socket.
 */
class FaultStream implements FaultListener {
  private readonly conn: IommufdFaultConn;
  private ws: WebSocket | undefined;
  private socket: Duplex | undefined;
  private flushPending = false;
  private corked = false;
  private sendGate: SendGate | undefined;
  private overflowCount = 0;
  private inputPaused = false;
  private readonly errorBudget: ErrorFrameBudget;
  private keepalive: StreamKeepalive | undefined;
  /** One record reused for every binary record written (no allocation per record). */
  private readonly scratch: IommuHwptPgfault = { flags: 0, dev_id: 0, pasid: 0, grpid: 0, perm: 0, addr: 0n, length: 0, cookie: 0 };
  /** The groups of one read, reused for every read. */
  private readonly groups: IopfGroup[] = [];
  /** The entries of one responses frame, reused for every frame. */
  private readonly batch = new ResponseBatch();

  /**
   * Opens the core connection at once (ENOSPC beyond the stream limit).
   * The WebSocket comes later, with attach().
   */
  constructor(
    private readonly server: FaultStreamServer,
    private readonly fault: IommufdFault,
    readonly protocol: Subprotocol,
    readonly window: number,
    readonly log: Logger,
  ) {
    this.errorBudget = new ErrorFrameBudget(server.options.errorFramesPerSecond);
    this.conn = fault.open(window, this);
  }

  /**
   * attach() - the upgrade completed: say hello and start delivering.
   * @ws: the WebSocket.
   * @socket: its socket, whose 'drain' resumes a paused delivery.
   */
  attach(ws: WebSocket, socket: Duplex): void {
    this.ws = ws;
    this.socket = socket;
    this.sendGate = new SendGate(ws, socket, this.server.options.highWaterMark, () => this.scheduleFlush());
    ws.on('message', (data, isBinary) => this.guard('response handling', () => this.onMessage(data, isBinary)));
    this.keepalive = new StreamKeepalive(ws, this.log, this.server.options.closeGraceMs);
    ws.on('error', (err) => this.log.debug({ err }, 'stream error'));
    ws.on('close', (code) => this.onClose(code));
    const hello: HelloMessage = { type: 'hello', protocol: this.protocol, fault_id: this.fault.id, window: this.window };
    this.sendText(hello);
    this.log.info({ protocol: this.protocol, window: this.window }, 'stream open');
    this.scheduleFlush();
  }

  /** abandon() - the upgrade failed after the core connection was opened. */
  abandon(): void {
    this.fault.close(this.conn);
  }

  // ---- FaultListener (called by the core) ----------------------------------

  /** readable() - groups are waiting and this connection has window space. */
  readable(): void {
    this.scheduleFlush();
  }

  /** expired() - groups answered INVALID by the response timeout. */
  expired(cookies: number[]): void {
    this.sendText({ type: 'expired', cookies });
  }

  /** revoked() - extension: groups holding cookies answered INVALID by detach, replace, unplug or destroy. */
  revoked(cookies: number[], cause: RevokeCause): void {
    const msg: RevokedMessage = { type: 'revoked', cause, cookies };
    this.sendText(msg);
  }

  /** overflow() - groups answered by the depth policy; one notice per turn. */
  overflow(count: number): void {
    if (this.overflowCount === 0) {
      setImmediate(() => {
        this.sendText({ type: 'overflow', count: this.overflowCount });
        this.overflowCount = 0;
      });
    }
    this.overflowCount += count;
  }

  /** kill() - the fault queue is going away (context released, shutdown). */
  kill(): void {
    this.close(CLOSE.GOING_AWAY, 'fault queue destroyed');
  }

  // ---- socket side ----------------------------------------------------------

  /** heartbeat() - one heartbeat tick (StreamKeepalive.heartbeat). */
  heartbeat(): void {
    this.keepalive?.heartbeat();
  }

  /** close() - close the WebSocket (if open) with @code and @reason. */
  close(code: number, reason: string): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.close(code, reason);
  }

  /** terminate() - destroy the socket without a close handshake. */
  terminate(): void {
    this.ws?.terminate();
  }

  /**
   * One flush, once the current batch of work is done: readable() comes on
   * the first group of a batch (the core's deferred work runs in batches),
   * and a tick later every group of that batch is waiting, so they share
   * frames; the socket stays corked to the end of the turn.
   */
  private scheduleFlush(): void {
    if (this.flushPending) return;
    this.flushPending = true;
    process.nextTick(this.flush);
  }

  /**
   * send() - one frame. A small frame waits in the corked socket until the
   * end of this event-loop turn (so the turn's frames leave in one write); a
   * large one flushes what waits and goes at once, since it gains nothing
   * from company and would only be held in the daemon's memory.
   */
  private send(data: string | Buffer, binary: boolean): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (data.length >= CORK_LIMIT) {
      if (this.corked) this.uncork();
    } else if (!this.corked && this.socket) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    ws.send(data, { binary });
  }

  /** End of the turn (or a large frame): write what the cork holds. Idempotent. */
  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.socket?.uncork();
  };

  /** Send whole groups while the core has some for us and the socket is not full. */
  private readonly flush = (): void => {
    this.flushPending = false;
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.conn.open) return;
    this.guard('delivery', () => {
      for (;;) {
        if (this.sendGate?.full()) return;
        const groups = this.groups;
        this.fault.read(this.conn, MAX_RECORDS[this.protocol], this.server.options.groupsPerFrame, groups);
        if (groups.length === 0) this.fault.read(this.conn, Infinity, 1, groups);
        if (groups.length === 0) return;
        const json = this.protocol === SUBPROTOCOL_JSON;
        this.send(json ? this.encodeJson(groups) : this.encodeUapi(groups), !json);
        groups.length = 0;
      }
    });
  };

  /** Run @fn; an unexpected error is logged and closes the stream with 1011 (the daemon goes on). */
  private guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err }, `${what} failed`);
      this.close(CLOSE.INTERNAL, `${what} failed`);
    }
  }

  /** A `faults` frame, written from the groups straight into bytes. */
  private encodeJson(groups: readonly IopfGroup[]): Buffer {
    const w = this.server.jsonWriter;
    w.begin();
    for (const g of groups) {
      const devId = faultGroupDevId(g);
      w.group(g.cookie, g.redelivered);
      for (let i = 0, n = g.faultCount; i < n; i++) {
        const prm = g.faultAt(i).prm;
        w.record(prm.flags, devId, prm.pasid, prm.grpid, prm.perm, prm.addr, 0);
      }
    }
    return w.finish();
  }

  /**
   * A binary frame of whole groups. Extension: if some of them are
   * redelivered, a `redelivered` text notice naming their cookies goes first
   * (the 40-byte records cannot say it).
   */
  private encodeUapi(groups: readonly IopfGroup[]): Buffer {
    let n = 0;
    let redelivered: number[] | undefined;
    for (const g of groups) {
      n += g.faultCount;
      if (g.redelivered) {
        redelivered ??= [];
        redelivered.push(g.cookie);
      }
    }
    if (redelivered) {
      const msg: RedeliveredMessage = { type: 'redelivered', cookies: redelivered };
      this.sendText(msg);
    }
    const buf = Buffer.allocUnsafe(n * RECORD_SIZE);
    const r = this.scratch;
    let offset = 0;
    for (const g of groups) {
      r.dev_id = faultGroupDevId(g);
      r.cookie = g.cookie;
      for (let i = 0, k = g.faultCount; i < k; i++) {
        const prm = g.faultAt(i).prm;
        r.flags = prm.flags;
        r.pasid = prm.pasid;
        r.grpid = prm.grpid;
        r.perm = prm.perm;
        r.addr = prm.addr;
        encodeRecord(buf, offset, r);
        offset += RECORD_SIZE;
      }
    }
    return buf;
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    // binaryType is 'nodebuffer': every message arrives as one Buffer.
    const buf = data as Buffer;
    if (this.protocol === SUBPROTOCOL_JSON) {
      if (isBinary) this.sendError(`binary frame on an ${SUBPROTOCOL_JSON} stream: send JSON text frames`);
      // ws leaves UTF-8 to us (skipUTF8Validation): a bad text frame is an error frame, not a 1007 close.
      else this.respondJson(buf);
    } else if (!isBinary) {
      this.sendError(`text frame on an ${this.protocol} stream: send binary ${RESPONSE_SIZE}-byte responses`);
    } else {
      this.respondUapi(buf);
    }
    this.throttleInput();
  }

  /**
   * Stop reading the peer's frames while our replies to it are backed up
   * (results frames can be several times the size of the frame they answer);
   * resume on the socket's 'drain'. A peer that never reads then blocks its
   * own writes instead of growing the daemon's memory. Deliveries alone stop
   * at the high-water mark plus one frame (at most 1 MiB), so the threshold,
   * four high-water marks, is only reached by unread replies: a peer that
   * sends its answers before it reads the next deliveries is never paused.
   */
  private throttleInput(): void {
    const ws = this.ws;
    if (this.inputPaused || !ws || !this.socket || ws.bufferedAmount <= 4 * this.server.options.highWaterMark) return;
    this.inputPaused = true;
    ws.pause();
    this.socket.once('drain', () => {
      this.inputPaused = false;
      if (ws.readyState === WebSocket.OPEN) ws.resume();
    });
  }

  /**
   * A JSON text frame: a `responses` frame gets each entry judged on its own
   * and one `results` frame; anything else one `error` frame. The common
   * frame is decoded from its bytes (scanResponsesFrame); any other goes
   * through the UTF-8 check and parseClientJsonFrame(), for the verdict and
   * the error message.
   */
  private respondJson(buf: Buffer): void {
    let errors: ResultError[] | undefined;
    let ok = 0;
    const batch = this.batch;
    if (scanResponsesFrame(buf, batch)) {
      const { cookies, codes } = batch;
      for (let i = 0; i < batch.count; i++) {
        const cookie = cookies[i]!;
        const st = this.fault.respondOne(cookie, codes[i]!);
        if (st === RESPOND_OK) ok++;
        else {
          errors ??= [];
          errors.push({ index: i, cookie, errno: 'EINVAL', message: respondErrorMessage(st, cookie, codes[i]!) });
        }
      }
    } else {
      // ws leaves UTF-8 to us (skipUTF8Validation): a bad text frame is an error frame, not a 1007 close.
      if (!isUtf8(buf)) {
        this.sendError('text frame is not valid UTF-8');
        return;
      }
      const parsed = parseClientJsonFrame(buf.toString('utf8'));
      if (!parsed.ok) {
        this.sendError(parsed.message);
        return;
      }
      const entries = parsed.responses;
      for (let i = 0; i < entries.length; i++) {
        const { cookie, code } = entries[i]!;
        const st = this.fault.respondOne(cookie, responseCodeOf(code) ?? BAD_CODE);
        if (st === RESPOND_OK) ok++;
        else {
          errors ??= [];
          errors.push({ index: i, cookie, errno: 'EINVAL', message: respondErrorMessage(st, cookie, code) });
        }
      }
    }
    if (errors === undefined) {
      this.send(`{"type":"results","ok":${ok},"errors":[]}`, false);
    } else {
      const results: ResultsMessage = { type: 'results', ok, errors };
      this.sendText(results);
    }
  }

  /** A binary frame: one write() of 8-byte responses, stopping at the first bad one. */
  private respondUapi(buf: Buffer): void {
    if (buf.length % RESPONSE_SIZE !== 0) {
      const reply: WriteMessage = { type: 'write', bytes: 0, errno: 'ESPIPE', index: 0 };
      this.sendText(reply);
      return;
    }
    const n = buf.length / RESPONSE_SIZE;
    for (let i = 0; i < n; i++) {
      const o = i * RESPONSE_SIZE;
      if (this.fault.respondOne(buf.readUInt32LE(o), buf.readUInt32LE(o + 4)) !== RESPOND_OK) {
        const reply: WriteMessage = { type: 'write', bytes: o, errno: 'EINVAL', index: i };
        this.sendText(reply);
        return;
      }
    }
    this.send(`{"type":"write","bytes":${buf.length}}`, false);
  }

  /** One `error` frame, within the connection's error-frame budget (else close 1008). */
  private sendError(message: string): void {
    if (!this.errorBudget.take()) {
      this.log.info('too many bad frames: closing');
      this.close(CLOSE.POLICY, 'too many bad frames');
      return;
    }
    const frame: ErrorMessage = { type: 'error', errno: 'EINVAL', message };
    this.sendText(frame);
  }

  private sendText(message: object): void {
    this.send(JSON.stringify(message), false);
  }

  private onClose(code: number): void {
    this.fault.close(this.conn);
    this.server.forget(this);
    this.log.info({ code }, 'stream closed');
  }
}

/**
 * struct StreamDeps - what the stream server works with.
 * @contexts: the open contexts, to authenticate and find fault queues.
 * @metrics: the open-streams gauge.
 * @log: the daemon's logger (streams log through their context's child).
 * @options: the tunables.
 */
export interface StreamDeps {
  readonly contexts: ContextRegistry;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly options: StreamOptions;
}

/**
 * FaultStreamServer - the fault stream endpoint: upgrade admission, the set
 * of open streams, their heartbeat, and closing them all at shutdown.
 */
export class FaultStreamServer {
  readonly options: StreamOptions;
  /** Writes every stream's JSON `faults` frames (each frame its own slice, never reused). */
  readonly jsonWriter = new FaultsJsonWriter();
  private readonly wss: WebSocketServer;
  private readonly streams = new Set<FaultStream>();
  private readonly heartbeat: NodeJS.Timeout;
  private nextId = 1;

  constructor(private readonly deps: StreamDeps) {
    this.options = deps.options;
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: this.options.maxFrame,
      // Text frames are checked in onMessage, to answer a bad one with an error frame.
      skipUTF8Validation: true,
      handleProtocols: (protocols) => chooseSubprotocol(protocols) ?? false,
      // Pongs are sent by FaultStream.onPing, which bounds the unwritten ones.
      autoPong: false,
    });
    this.heartbeat = startHeartbeat(this.streams, this.options.heartbeatMs);
  }

  /**
   * handleUpgrade() - the HTTP server's 'upgrade' listener.
   * @req: the upgrade request.
   * @socket: its socket.
   * @head: bytes read past the request head.
   *
   * Admits the request (admitStream(), stream-admission.ts) and opens the
   * core connection before completing the WebSocket handshake; a refused upgrade gets an
   * HTTP error response and no WebSocket.
   */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    let stream: FaultStream;
    try {
      const { entry, fault, protocol, window } = admitStream(req, this.deps.contexts);
      const log = entry.log.child({ fault: fault.id, stream: this.nextId++ });
      // Opening the core connection is the last check: ENOSPC beyond the stream limit.
      stream = new FaultStream(this, fault, protocol, window, log);
    } catch (err) {
      refuseUpgrade(req, socket, err, this.deps.log);
      return;
    }
    completeUpgrade(
      this.wss,
      req,
      socket,
      head,
      (ws) => {
        this.streams.add(stream);
        this.deps.metrics.streamsOpen.inc();
        stream.attach(ws, socket);
      },
      () => stream.abandon(),
    );
  };

  /** forget() - a stream closed. */
  forget(stream: FaultStream): void {
    if (this.streams.delete(stream)) this.deps.metrics.streamsOpen.dec();
  }

  /**
   * close() - stop the heartbeat and close every open stream with @code;
   * peers that do not complete the close handshake within closeGraceMs are
   * cut off.
   * @code: the close code (1001 at shutdown).
   * @reason: the close reason.
   */
  close(code: number, reason: string): void {
    clearInterval(this.heartbeat);
    const open = [...this.streams];
    for (const s of open) s.close(code, reason);
    if (open.length > 0)
      setTimeout(() => {
        for (const s of open) s.terminate();
      }, this.options.closeGraceMs).unref();
  }
}
