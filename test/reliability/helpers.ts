/**
 * Helpers for the reliability suite: a seeded PRNG whose seed is printed
 * when a test fails, a raw HTTP client (arbitrary bytes, headers and
 * content types, which fetch() refuses to send), a log capture, and small
 * waiting utilities. The daemon itself is started with test/server's
 * startServer() (a real server on 127.0.0.1, an ephemeral port).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { isErrno, httpStatusOf } from '../../protocol/index.js';
import { createLogger, type LogLevel } from '../../server/logger.js';
import type { Json } from '../server/helpers.js';

/**
 * struct Rng - a small seeded PRNG (mulberry32): the same seed gives the
 * same run of choices, so a failure can be replayed with IOPFD_SEED=<seed>.
 */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  /** next() - a float in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** int() - an integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** chance() - true with probability @p. */
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** pick() - one element of @xs. */
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  /** fork() - an independent generator derived from this one (one per actor). */
  fork(): Rng {
    return new Rng(Math.floor(this.next() * 0xffffffff));
  }
}

/**
 * testSeed() - the seed of a randomized test: IOPFD_SEED when set (to replay
 * a failure), else a fresh one.
 */
export function testSeed(): number {
  const env = process.env['IOPFD_SEED'];
  if (env !== undefined && /^\d+$/.test(env)) return Number(env) >>> 0;
  return Math.floor(Math.random() * 0xffffffff) >>> 0;
}

/**
 * withSeed() - run @fn; if it throws, say which seed reproduces it (on
 * stderr and in the error message) and rethrow.
 */
export async function withSeed<T>(name: string, seed: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const note = `${name} failed with seed ${seed}: replay with IOPFD_SEED=${seed} npm test -- --test-name-pattern="${name}"`;
    process.stderr.write(`\n*** ${note}\n`);
    // fast-check prints whole counterexamples: keep a megabyte body out of the report.
    if (e instanceof Error) e.message = `[seed ${seed}] ${clip(e.message)}`;
    const cause = (e as { cause?: unknown }).cause;
    if (cause instanceof Error) cause.message = clip(cause.message);
    throw e;
  }
}

/** clip() - @s cut to a readable length. */
function clip(s: string, max = 3000): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length - max} more characters)`;
}

/** sleep() - wait @ms milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The outcome of one raw HTTP request. */
export interface RawReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: Json;
}

/** Options of a raw request. */
export interface RawRequest {
  method: string;
  /** The request target exactly as sent (no normalisation, no encoding). */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Give up after this long (the reply is then status 0). Default 5000 ms. */
  timeoutMs?: number;
}

/**
 * rawHttp() - one HTTP/1.1 request with node:http, bytes as given: invalid
 * UTF-8, any content-type, any path. Never throws for an HTTP status; a
 * connection that fails or times out resolves with status 0.
 */
export function rawHttp(base: string, req: RawRequest): Promise<RawReply> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, 'utf8');
    const headers: Record<string, string> = { ...req.headers };
    if (body !== undefined) headers['content-length'] = String(body.length);
    const r = request(
      { host: url.hostname, port: url.port, method: req.method, path: req.path, headers, agent: false, timeout: req.timeoutMs ?? 5000 },
      (res) => {
        const chunks: Buffer[] = [];
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          // An event stream never ends: its reply is its first message's data (then it is closed).
          let text = '';
          res.on('data', (c: Buffer) => {
            text += c.toString('utf8');
            const data = /^data: (.*)$/m.exec(text);
            if (!data || !text.includes('\n\n', data.index)) return;
            let parsed: Json;
            try {
              parsed = JSON.parse(data[1]!);
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text: data[1]!, body: parsed });
            res.destroy();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: undefined }));
          res.on('error', () => resolve({ status: 0, headers: {}, text: '', body: undefined }));
          return;
        }
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Json;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
        });
        res.on('error', () => resolve({ status: 0, headers: {}, text: '', body: undefined }));
      },
    );
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', (e) => resolve({ status: 0, headers: {}, text: e.message, body: undefined }));
    r.end(body);
  });
}

/**
 * rawSocket() - write @data on a fresh TCP connection and collect what comes
 * back until the server closes, @ms pass, or what came back matches @until:
 * for requests node:http cannot even form (bad request lines, broken
 * chunking, oversized headers, hand-made upgrades).
 */
export function rawSocket(base: string, data: Buffer | string, ms = 500, until?: RegExp): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const s = connect(Number(url.port), url.hostname);
    let out = '';
    const done = (): void => {
      clearTimeout(t);
      s.destroy();
      resolve(out);
    };
    const t = setTimeout(done, ms);
    s.on('data', (c) => {
      out += c.toString('latin1');
      if (until?.test(out)) done();
    });
    s.on('end', done);
    s.on('error', done);
    s.write(data);
  });
}

/**
 * parseRawResponse() - status and JSON body of a raw HTTP/1.1 response
 * (Content-Length framing, as the daemon's error replies use).
 */
export function parseRawResponse(text: string): { status: number; body: Json } | undefined {
  const m = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(text);
  if (!m) return undefined;
  let body: Json;
  try {
    body = JSON.parse(m[3]!);
  } catch {
    body = undefined;
  }
  return { status: Number(m[1]), body };
}

/**
 * assertErrnoBody() - @status and @body are one of the daemon's errors:
 * exactly `{errno, message}`, a known errno, and the status of the
 * protocol's table for it; never a 500.
 */
export function assertErrnoBody(status: number, body: Json, what: string): void {
  assert.notEqual(status, 500, `${what}: a 500 (${JSON.stringify(body)})`);
  assert.ok(body !== null && typeof body === 'object' && !Array.isArray(body), `${what}: the error body is not an object: ${JSON.stringify(body)}`);
  assert.deepEqual(Object.keys(body).sort(), ['errno', 'message'], `${what}: ${JSON.stringify(body)}`);
  assert.ok(typeof body.errno === 'string' && isErrno(body.errno), `${what}: unknown errno ${JSON.stringify(body.errno)}`);
  assert.equal(typeof body.message, 'string', what);
  assert.equal(status, httpStatusOf(body.errno), `${what}: status ${status} for ${body.errno}`);
}

/** A pino logger writing into memory, and what it wrote. */
export interface LogCapture {
  logger: Logger;
  lines: string[];
  /** text() - everything logged so far. */
  text(): string;
}

/** captureLog() - a logger at @level whose lines are kept in memory. */
export function captureLog(level: LogLevel = 'trace'): LogCapture {
  const lines: string[] = [];
  const logger = createLogger(level, { write: (line: string) => void lines.push(line) });
  return { logger, lines, text: () => lines.join('') };
}

/**
 * unexpectedErrors() - the log lines of unexpected errors (level ≥ 50:
 * error, fatal), which a 500 EIO, a throwing deferred function or a failed
 * stream handler would write.
 */
export function unexpectedErrors(log: LogCapture): string[] {
  return log.lines.filter((l) => {
    try {
      return (JSON.parse(l) as { level: number }).level >= 50;
    } catch {
      return true;
    }
  });
}

/** metricValue() - the value of one sample of the Prometheus text @text (0 if absent). */
export function metricValue(text: string, name: string, labels = ''): number {
  const re = new RegExp(`^${name}${labels ? `\\{${labels.replace(/[{}]/g, '')}\\}` : ''} (\\S+)$`, 'm');
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

/** A daemon process started from dist/server/main.js. */
export interface DaemonProcess {
  readonly child: ChildProcess;
  /** `http://127.0.0.1:PORT` */
  readonly base: string;
  /** `ws://127.0.0.1:PORT` */
  readonly wsBase: string;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Everything written on stdout and stderr so far. */
  stdout(): string;
  stderr(): string;
}

const MAIN = fileURLToPath(new URL('../../server/main.js', import.meta.url));

/**
 * spawnDaemon() - start `node dist/server/main.js --port 0 @args` and wait
 * for its `listening` line.
 */
export async function spawnDaemon(args: readonly string[], env: Record<string, string> = {}): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [MAIN, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '', ...env } });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const line = await new Promise<string>((resolve, reject) => {
    const onData = (): void => {
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    };
    child.stdout!.on('data', onData);
    void exited.then((code) => reject(new Error(`daemon exited with ${code}: ${err}`)));
  });
  const m = /listening.*(http:\/\/127\.0\.0\.1:(\d+))/.exec(line);
  assert.ok(m, line);
  return { child, base: m[1]!, wsBase: m[1]!.replace('http', 'ws'), exited, stdout: () => out, stderr: () => err };
}
