/**
 * DOC: the observation feed, client side
 *
 * IopfdClient.observe() returns an ObserveStream: the Server-Sent Events of
 * GET /v1/platform/observe (docs/protocol.md 4.2) as an async iterable of
 * parsed messages. It only reads: the feed never takes or answers a group.
 */
import type { ObserveGroupEvent, ObserveSnapshot } from '../../protocol/index.js';

/** ObserveMessage - one message of the feed: a snapshot, or a batch of sampled group events. */
export type ObserveMessage = { event: 'snapshot'; data: ObserveSnapshot } | { event: 'groups'; data: { events: ObserveGroupEvent[] } };

/**
 * ObserveStream - an open feed. Iterate it for its messages (the iteration
 * ends when the daemon ends the feed or close() is called); close() when done.
 */
export class ObserveStream implements AsyncIterable<ObserveMessage> {
  readonly #res: Response;
  readonly #abort: AbortController;

  constructor(res: Response, abort: AbortController) {
    this.#res = res;
    this.#abort = abort;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ObserveMessage> {
    const body = this.#res.body;
    if (!body) return;
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = '';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if ((event === 'snapshot' || event === 'groups') && data !== '') yield { event, data: JSON.parse(data) } as ObserveMessage;
        }
      }
    } catch (e) {
      if (this.#abort.signal.aborted) return;
      throw e;
    } finally {
      reader.releaseLock();
    }
  }

  /** close() - stop reading and close the connection. */
  close(): void {
    this.#abort.abort();
  }
}
