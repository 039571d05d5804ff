/**
 * DOC: the vEVENTQ stream (the vEVENTQ fd's read() over WebSocket)
 *
 * `GET /v1/contexts/:ctx/veventq/:id/stream`: admission in the fault
 * stream's order (request target, token, path parameters, handshake headers,
 * subprotocol, the queue), then a `hello` text frame and the queue's entries
 * as they are reported, oldest first, whole, each read once
 * (iommufd_veventq_fops_read): JSON `vevents` frames (`vevent.v1.json`) or
 * binary records (`vevent.v1.uapi`, protocol/vevent.ts). The server reads
 * from the queue only while the socket's buffered amount is at most the
 * fault stream's high-water mark (SendGate, stream-keepalive.ts) and
 * resumes on the socket's 'drain', so a slow reader leaves the events in
 * the queue, where the depth and the LOST_EVENTS header apply: the daemon
 * holds at most the high-water mark and one frame for it. A client frame
 * gets an `error` frame
 * (EOPNOTSUPP), within the fault stream's error-frame rate (beyond it:
 * close 1008); the queue going away (context release) closes with 1001.
 *
 * Limits as the fault stream's: the per-queue stream limit (the core's,
 * checked before the handshake completes: 503 ENOSPC), the heartbeat and
 * the ping-flood bound (stream-keepalive.ts: a peer silent for a heartbeat
 * interval is terminated, one that pings without reading is closed 1008).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { IommufdVeventq, IommufdVevent, VeventqListener } from '../core/index.js';
import {
  CLOSE,
  MAX_FRAME,
  VEVENT_STREAM_URL,
  VEVENT_SUBPROTOCOL_JSON,
  VEVENT_SUBPROTOCOLS,
  VEVENTQ_FLAG_LOST_EVENTS,
  encodeVevents,
  veventToJson,
  zObjectParams,
  type Vevent,
  type VeventSubprotocol,
} from '../protocol/index.js';
import { bearerToken, requireToken } from './auth.js';
import type { ContextRegistry } from './contexts.js';
import { HttpError } from './errors.js';
import { parseWith } from './rest.js';
import { checkHandshake, completeUpgrade, refuseUpgrade } from './stream-admission.js';
import { ErrorFrameBudget, SendGate, StreamKeepalive, startHeartbeat } from './stream-keepalive.js';
import type { StreamOptions } from './stream.js';

/** The vEVENTQ stream path as a regular expression. */
const VEVENT_PATH = new RegExp(`^${VEVENT_STREAM_URL.replace(/:\w+/g, '([^/]+)')}$`);
/** Entries per frame at most. */
const BATCH = 512;

/** The fault stream's tunables the vEVENTQ stream shares. */
export type VeventStreamOptions = Pick<StreamOptions, 'heartbeatMs' | 'closeGraceMs' | 'errorFramesPerSecond' | 'maxFrame' | 'highWaterMark'>;

/** chooseVeventSubprotocol() - `vevent.v1.json` when none is offered, else the first offered one spoken, else undefined. */
export function chooseVeventSubprotocol(offered: Iterable<string> | undefined): VeventSubprotocol | undefined {
  if (offered === undefined) return VEVENT_SUBPROTOCOL_JSON;
  for (const p of offered) if ((VEVENT_SUBPROTOCOLS as readonly string[]).includes(p)) return p as VeventSubprotocol;
  return undefined;
}

function toWire(e: IommufdVevent): Vevent {
  if (e.flags & VEVENTQ_FLAG_LOST_EVENTS || !e.data) return { sequence: e.sequence, lost: true };
  const [a = 0n, b = 0n, c = 0n, d = 0n] = e.data;
  return { sequence: e.sequence, lost: false, evt: [a, b, c, d] };
}

/** One open vEVENTQ stream. */
class VeventStream implements VeventqListener {
  private ws: WebSocket | undefined;
  private keepalive: StreamKeepalive | undefined;
  private sendGate: SendGate | undefined;
  private readonly errorBudget: ErrorFrameBudget;
  private scheduled = false;
  private closed = false;

  /** Takes its place among the queue's readers at once (ENOSPC beyond the stream limit); the WebSocket comes with attach(). */
  constructor(
    private readonly server: VeventStreamServer,
    readonly queue: IommufdVeventq,
    readonly protocol: VeventSubprotocol,
    private readonly log: Logger,
  ) {
    this.errorBudget = new ErrorFrameBudget(server.options.errorFramesPerSecond);
    queue.addListener(this);
  }

  /**
   * attach() - the upgrade completed: say hello and start reading the queue.
   * @ws: the WebSocket.
   * @socket: its socket, whose 'drain' resumes reading.
   */
  attach(ws: WebSocket, socket: Duplex): void {
    this.ws = ws;
    this.sendGate = new SendGate(ws, socket, this.server.options.highWaterMark, () => this.readable());
    this.keepalive = new StreamKeepalive(ws, this.log, this.server.options.closeGraceMs);
    ws.send(JSON.stringify({ type: 'hello', protocol: this.protocol, veventq_id: this.queue.id }));
    ws.on('message', () => {
      if (this.errorBudget.take()) {
        ws.send(JSON.stringify({ type: 'error', errno: 'EOPNOTSUPP', message: 'the vEVENTQ stream is read-only: nothing is answered' }));
        return;
      }
      this.log.info('too many client frames: closing');
      this.close(CLOSE.POLICY, 'too many bad frames');
    });
    ws.on('close', () => this.detach());
    ws.on('error', (err) => this.log.debug({ err }, 'vEVENTQ stream socket error'));
    this.readable();
  }

  /** Something was queued: send it soon (one flush per turn of the event loop). */
  readable(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  kill(): void {
    this.close(CLOSE.GOING_AWAY, 'vEVENTQ destroyed');
  }

  /** heartbeat() - one heartbeat tick (StreamKeepalive.heartbeat). */
  heartbeat(): void {
    if (!this.closed) this.keepalive?.heartbeat();
  }

  /** abandon() - the handshake failed after the stream took its place: give it back. */
  abandon(): void {
    this.detach();
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.ws?.close(code, reason);
    this.detach();
  }

  terminate(): void {
    this.ws?.terminate();
  }

  /**
   * flush() - read() and send while the socket takes them; past the
   * high-water mark the rest stays queued (where depth applies) and the
   * socket's 'drain' brings the next flush.
   */
  private flush(): void {
    const ws = this.ws;
    const gate = this.sendGate;
    if (!ws || !gate || this.closed || ws.readyState !== ws.OPEN) return;
    const json = this.protocol === VEVENT_SUBPROTOCOL_JSON;
    while (this.queue.queued > 0 && !gate.full()) {
      const batch = this.queue.read(BATCH).map(toWire);
      ws.send(json ? JSON.stringify({ type: 'vevents', events: batch.map(veventToJson) }) : encodeVevents(batch), { binary: !json });
    }
  }

  private detach(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.removeListener(this);
    this.server.forget(this);
  }
}

/**
 * VeventStreamServer - the vEVENTQ stream endpoint: upgrade admission, the
 * open streams, closing them all at shutdown.
 */
export class VeventStreamServer {
  readonly options: VeventStreamOptions;
  private readonly wss: WebSocketServer;
  private readonly streams = new Set<VeventStream>();
  private readonly heartbeat: NodeJS.Timeout;

  /** @deps: the contexts, the daemon's logger, and the fault stream's tunables this stream shares. */
  constructor(private readonly deps: { readonly contexts: ContextRegistry; readonly log: Logger; readonly options: VeventStreamOptions }) {
    this.options = deps.options;
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: Math.min(MAX_FRAME, this.options.maxFrame),
      handleProtocols: (protocols) => chooseVeventSubprotocol(protocols) ?? false,
      // Pongs are sent by StreamKeepalive, which bounds the unwritten ones.
      autoPong: false,
    });
    this.heartbeat = startHeartbeat(this.streams, this.options.heartbeatMs);
  }

  /** Whether @req asks for a vEVENTQ stream (the 'upgrade' listener routes by path). */
  matches(req: IncomingMessage): boolean {
    const q = req.url?.indexOf('?') ?? -1;
    return VEVENT_PATH.test(q < 0 ? (req.url ?? '') : req.url!.slice(0, q));
  }

  /** handleUpgrade() - admit the upgrade (else an HTTP error and no WebSocket), then open the stream. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    let stream: VeventStream;
    try {
      const url = new URL(req.url ?? '/', 'http://iopfd');
      const path = VEVENT_PATH.exec(url.pathname);
      if (!path) throw new HttpError('ENOENT', `no WebSocket endpoint at ${url.pathname}`);
      const token = requireToken(bearerToken(req.headers.authorization) ?? url.searchParams.get('token') ?? undefined, 'context');
      const params = parseWith(zObjectParams, { ctx: path[1], id: path[2] }, 'params') as { ctx: number; id: number };
      const entry = this.deps.contexts.authenticate(params.ctx, token);
      checkHandshake(req);
      for (const k of url.searchParams.keys()) if (k !== 'token') throw new HttpError('EINVAL', `unknown query parameter ${JSON.stringify(k)}`);
      const protocol = chooseVeventSubprotocol(req.headers['sec-websocket-protocol']?.split(',').map((p) => p.trim()));
      if (!protocol) throw new HttpError('EINVAL', `unsupported subprotocol: this stream speaks ${VEVENT_SUBPROTOCOLS.join(', ')}`);
      const queue = entry.ctx.get<IommufdVeventq>(params.id, 'veventq');
      stream = new VeventStream(this, queue, protocol, entry.log.child({ veventq: queue.id }));
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
        stream.attach(ws, socket);
      },
      () => stream.abandon(),
    );
  };

  forget(stream: VeventStream): void {
    this.streams.delete(stream);
  }

  /** close() - stop the heartbeat and close every open stream with @code (1001 at shutdown); cut off peers that do not answer within closeGraceMs. */
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
