/**
 * DOC: SDK errors
 *
 * Two classes, so that callers (and `iopfctl`'s exit codes) can tell a
 * refusal by the daemon from a daemon that could not be reached:
 *
 * - IopfdError: the daemon answered with an error: a REST `{errno, message}`
 *   body, a refused stream upgrade, or a stream `error` frame. Carries the
 *   errno and the HTTP status of the contract's mapping table.
 * - IopfdConnectionError: no answer at all: connection refused or reset,
 *   DNS failure, a request timeout.
 */
import { httpStatusOf, isErrno, zErrorBody, type Errno } from '../../protocol/index.js';

/**
 * IopfdError - the daemon refused a request.
 * @errno: the errno name the daemon sent (EIO when its body was not an
 *   `{errno, message}` object).
 * @status: the HTTP status (for stream errors, the status the mapping table
 *   gives the errno).
 * @message: the daemon's message.
 */
export class IopfdError extends Error {
  override readonly name = 'IopfdError';

  constructor(
    readonly errno: Errno,
    readonly status: number,
    message: string,
  ) {
    super(message);
  }

  /**
   * fromResponse() - the error an HTTP error response stands for.
   * @status: its HTTP status.
   * @text: its body.
   *
   * Return: an IopfdError with the body's errno and message, or EIO with
   * the status and a piece of the body when it is not an error body.
   */
  static fromResponse(status: number, text: string): IopfdError {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const parsed = zErrorBody.safeParse(body);
    if (parsed.success) return new IopfdError(parsed.data.errno, status, parsed.data.message);
    return new IopfdError('EIO', status, `HTTP ${status}: ${text.slice(0, 200) || '(empty body)'}`);
  }

  /**
   * fromStream() - the error of a stream frame (`error`, a `results` entry,
   * a `write` refusal).
   * @errno: the frame's errno (anything not in the errno list becomes EIO).
   * @message: the frame's message.
   */
  static fromStream(errno: string, message: string): IopfdError {
    const e: Errno = isErrno(errno) ? errno : 'EIO';
    return new IopfdError(e, httpStatusOf(e), message);
  }
}

/**
 * IopfdConnectionError - the daemon could not be reached (or did not answer
 * in time); @cause holds the underlying error.
 */
export class IopfdConnectionError extends Error {
  override readonly name = 'IopfdConnectionError';
}
