/**
 * DOC: logging
 *
 * pino, to stderr by default (stdout carries only the `listening` line).
 * Tokens never reach a log line: authorization headers are redacted and
 * requests are logged by path, without the query string that may hold
 * `?token=`. Child loggers carry `ctx`, `fault` and `stream` ids.
 */
import { pino, type DestinationStream, type Level, type Logger } from 'pino';

/** LOG_LEVELS - the accepted `--log-level` values. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** LogLevel - one of %LOG_LEVELS. */
export type LogLevel = Level | 'silent';

/** What the request serializer reads from a fastify Request or a Node IncomingMessage. */
interface LoggedRequest {
  method?: string;
  url?: string;
  ip?: string;
  socket?: { remoteAddress?: string | undefined } | null;
}

/**
 * pathOf() - a request URL without its query string.
 * @url: the request target.
 *
 * Return: the path only, which is safe to log.
 */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/**
 * createLogger() - the daemon's pino logger.
 * @level: the least severe level logged.
 * @destination: where lines go (default stderr, written synchronously so
 *   nothing is lost when the process exits).
 *
 * Return: a logger whose `req` serializer drops the query string and which
 * redacts authorization headers and `token` fields anywhere they appear.
 */
export function createLogger(level: LogLevel = 'info', destination: DestinationStream = pino.destination({ dest: 2, sync: true })): Logger {
  return pino(
    {
      level,
      redact: {
        paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'token', '*.token'],
        censor: '[redacted]',
      },
      serializers: {
        req: (req: LoggedRequest) => ({
          method: req.method,
          url: pathOf(req.url ?? ''),
          remoteAddress: req.ip ?? req.socket?.remoteAddress,
        }),
      },
    },
    destination,
  );
}
