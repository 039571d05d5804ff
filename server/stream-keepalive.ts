/**
 * DOC: stream keepalive (the fault stream and the vEVENTQ stream alike)
 *
 * - sending: a stream takes entries off its core queue only while the
 *   socket's buffered amount is at most the high-water mark (SendGate), and
 *   resumes on the socket's 'drain', so a peer that does not read leaves
 *   them in the core queue, where its limits apply;
 * - pings: each peer ping is answered with its pong; a peer with
 *   MAX_PENDING_PONGS pongs unwritten (it pings without reading) is closed
 *   1008 "ping flood" with a warn line, and its socket destroyed if the
 *   close handshake has not ended after the close grace;
 * - heartbeat: the server pings every stream each heartbeat interval; a peer
 *   that has not answered the previous ping is terminated (close 1006 on
 *   its side), which ends the stream as a close does.
 *
 * The WebSocketServer of a stream must be made with `autoPong: false`: the
 * pongs are sent here, which bounds the unwritten ones.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import { CLOSE } from '../protocol/index.js';

/**
 * MAX_PENDING_PONGS - pongs a peer's pings may have waiting to be written;
 * one more ping closes the stream 1008 "ping flood" (a peer that pings
 * without reading would grow the daemon's memory).
 */
export const MAX_PENDING_PONGS = 64;

/**
 * StreamKeepalive - the ping/pong side of one stream's WebSocket: answers
 * the peer's pings within the pending-pong bound, and the heartbeat.
 */
export class StreamKeepalive {
  /** Cleared by each heartbeat ping, set by each pong. */
  private alive = true;
  /** Pongs answering the peer's pings not yet written to its socket. */
  private pendingPongs = 0;

  /**
   * @ws: the stream's WebSocket (its 'ping' and 'pong' events are taken here).
   * @log: the stream's logger.
   * @closeGraceMs: how long a flooding peer has to complete the close handshake.
   */
  constructor(
    private readonly ws: WebSocket,
    private readonly log: Logger,
    private readonly closeGraceMs: number,
  ) {
    ws.on('pong', () => (this.alive = true));
    ws.on('ping', (data) => this.onPing(data));
  }

  /**
   * heartbeat() - one heartbeat tick: drop the peer if it did not answer the
   * previous ping, else ping again.
   */
  heartbeat(): void {
    const ws = this.ws;
    if (ws.readyState !== WebSocket.OPEN) return;
    if (!this.alive) {
      this.log.info('peer missed a heartbeat: terminating');
      ws.terminate();
      return;
    }
    this.alive = false;
    ws.ping();
  }

  /** onPing() - answer a peer's ping with its pong, unless MAX_PENDING_PONGS are unwritten (then close 1008). */
  private onPing(data: Buffer): void {
    const ws = this.ws;
    if (ws.readyState !== WebSocket.OPEN) return;
    if (this.pendingPongs >= MAX_PENDING_PONGS) {
      this.log.warn({ pending: this.pendingPongs }, 'ping flood: closing');
      ws.close(CLOSE.POLICY, 'ping flood');
      setTimeout(() => ws.terminate(), this.closeGraceMs).unref();
      return;
    }
    this.pendingPongs++;
    ws.pong(data, false, () => this.pendingPongs--);
  }
}

/**
 * startHeartbeat() - tick every stream of @streams (read at each tick)
 * every @ms; the timer does not keep the process alive. Stop it with
 * clearInterval().
 */
export function startHeartbeat(streams: Iterable<{ heartbeat(): void }>, ms: number): NodeJS.Timeout {
  const timer = setInterval(() => {
    for (const s of streams) s.heartbeat();
  }, ms);
  timer.unref();
  return timer;
}

/**
 * ErrorFrameBudget - the `error` frames one stream may send per second (a
 * peer that keeps sending bad frames gets one error frame each, up to
 * @perSecond in a one-second window; the caller closes it 1008 beyond).
 */
export class ErrorFrameBudget {
  private count = 0;
  private windowStart = 0;

  constructor(private readonly perSecond: number) {}

  /** take() - count one error frame; false when the budget of this second is spent. */
  take(): boolean {
    const now = performance.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.count = 0;
    }
    return ++this.count <= this.perSecond;
  }
}

/**
 * SendGate - the send side's back-pressure of one stream: closed while more
 * than the high-water mark waits on the socket; the first check that finds
 * it closed arms one resume on the socket's next 'drain'.
 */
export class SendGate {
  private waitingDrain = false;

  /**
   * @ws: the stream's WebSocket (its bufferedAmount).
   * @socket: its socket, whose 'drain' resumes the stream.
   * @highWaterMark: bytes buffered above which the stream stops sending.
   * @resume: called once per closing, on the 'drain' that reopens the gate.
   */
  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    private readonly highWaterMark: number,
    private readonly resume: () => void,
  ) {}

  /**
   * full() - whether the stream must stop taking entries off its queue now
   * (resume() follows the next 'drain'). Only while the socket awaits a
   * 'drain' (a write found its own buffer full): a high-water mark below
   * that buffer's size never stalls the stream.
   */
  full(): boolean {
    if (this.ws.bufferedAmount <= this.highWaterMark || !this.socket.writableNeedDrain) return false;
    if (!this.waitingDrain) {
      this.waitingDrain = true;
      this.socket.once('drain', () => {
        this.waitingDrain = false;
        this.resume();
      });
    }
    return true;
  }
}
