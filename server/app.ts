/**
 * DOC: the daemon's fastify app
 *
 * buildApp() assembles the daemon without listening, so tests can inject()
 * or listen on port 0: the simulated platform on the event-loop scheduler,
 * the REST routes generated from the protocol's command table, the fault
 * stream on the HTTP server's 'upgrade' event, /metrics, /openapi.json,
 * /asyncapi.json, /docs, the console (/ui, where / leads), one error handler, and the shutdown sequence.
 */
import type { Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Platform, type IommufdFault, type KernelProfile, type PlatformDesc, type PlatformOptions } from '../core/index.js';
import { asyncApiDocument, CLOSE, httpStatusOf, openApiDocument, STREAM_URL, VEVENT_STREAM_URL } from '../protocol/index.js';
import { bearerToken, requireToken, tokenDigest } from './auth.js';
import { ContextRegistry } from './contexts.js';
import { DOCS_CSP, DOCS_SCRIPT, docsHtml } from './docs.js';
import { HttpError, wireErrorOf } from './errors.js';
import { defaultMemoryLimit } from './config.js';
import { createLogger, pathOf, type LogLevel } from './logger.js';
import { Metrics } from './metrics.js';
import { DEFAULT_OBSERVE_OPTIONS, ObserveFeed, type ObserveOptions } from './observe.js';
import { registerCommands } from './rest.js';
import { routeTable } from './routes/index.js';
import { EventLoopScheduler } from './scheduler.js';
import { registerUi } from './ui.js';
import { DEFAULT_STREAM_OPTIONS, FaultStreamServer, type StreamOptions } from './stream.js';
import { VeventStreamServer } from './vevent-stream.js';
import { streamTarget } from './stream-admission.js';

/** BODY_LIMIT - the default largest request body accepted (bytes); larger → 413 EMSGSIZE. */
export const BODY_LIMIT = 1 << 20;
/**
 * LINGER_MS, LINGER_BYTES - after a 413 the daemon half-closes and goes on
 * reading (and discarding) what the client still sends, this long and this
 * much at most, then closes (RFC 9112 §9.6): closing at once would make the
 * client's TCP stack answer its unsent body with a reset that loses the 413.
 */
export const LINGER_MS = 2000;
export const LINGER_BYTES = 8 << 20;
/** A path under one context: `/v1/contexts/:ctx` and below. */
const CTX_PATH = /^\/v1\/contexts\/([^/]+)(?:\/|$)/;
/** Default cap on open TCP connections (HTTP and fault streams together). */
export const MAX_CONNECTIONS = 1024;

/**
 * struct AppOptions - how to build the daemon.
 * @platform: the platform description (default: the embedded one).
 * @adminToken: guards /v1/platform when set.
 * @logger: a pino logger, or the level of a new one on stderr (default silent).
 * @limits: resource limits (maxContexts, maxDevices, maxObjects per context,
 *   maxStreamsPerFault, maxMappedPages per context, maxPartials per device,
 *   memoryLimit bytes); absent ones are the core's LIMITS, the memory limit
 *   defaultMemoryLimit().
 * @bodyLimit: the largest request body (bytes, default BODY_LIMIT).
 * @profile: the kernel release whose behaviour runs (default `latest`).
 * @stream: fault stream tunables (heartbeat, error-frame rate, ...).
 * @maxConnections: open TCP connections at most (default MAX_CONNECTIONS);
 *   one more is closed as it is accepted, and counted.
 * @observe: the observation feed's bounds (server/observe.ts).
 */
export interface AppOptions {
  platform?: PlatformDesc;
  adminToken?: string;
  logger?: Logger | LogLevel;
  limits?: PlatformOptions['limits'];
  bodyLimit?: number;
  profile?: KernelProfile;
  stream?: Partial<StreamOptions>;
  maxConnections?: number;
  observe?: Partial<ObserveOptions>;
}

/**
 * struct ShutdownSummary - what shutdown answered, from the devices' side.
 * @outstandingBefore: page request groups outstanding at the devices when
 *   shutdown began (Platform.audit().outstandingGroups): each needs a response.
 * @heldByFaultQueues: of those, the groups fault queues held (queued, or
 *   delivered and unanswered).
 * @answered: responses the devices received since shutdown began, by code
 *   (from their response logs).
 * @audit: Platform.audit() now: all zeros once every group was answered.
 */
export interface ShutdownSummary {
  outstandingBefore: number;
  heldByFaultQueues: number;
  answered: { success: number; invalid: number; failure: number };
  audit: ReturnType<Platform['audit']>;
}

/**
 * struct IopfdApp - a built daemon.
 * @app: the fastify instance (not listening).
 * @platform: the simulated machine.
 * @metrics: the Prometheus registry.
 * @observe: the observation feed.
 * @shutdown: stop accepting, answer every outstanding group INVALID, close
 *   every stream with 1001, close the server; idempotent.
 * @shutdownSummary: after shutdown began, what it answered (computed when
 *   called, so call it once deferred responses have run); undefined before.
 */
export interface IopfdApp {
  readonly app: FastifyInstance;
  readonly platform: Platform;
  readonly metrics: Metrics;
  readonly observe: ObserveFeed;
  shutdown(): Promise<void>;
  shutdownSummary(): ShutdownSummary | undefined;
}

/**
 * lingerClose() - close the connection of @request after its reply without
 * losing the reply: half-close once the reply is out instead of destroying
 * the socket, discard what still arrives up to LINGER_BYTES, and destroy the
 * socket LINGER_MS later, or sooner past LINGER_BYTES or when the client
 * closes.
 * @request: a request whose body was refused unread.
 */
function lingerClose(request: FastifyRequest): void {
  const socket = request.raw.socket as (Socket & { destroySoon?: () => void }) | null;
  if (!socket || socket.destroyed) return;
  // Node ends a `Connection: close` reply with socket.destroySoon(): end,
  // then destroy as soon as the reply is flushed. Only end here.
  socket.destroySoon = () => {
    if (socket.writable) socket.end();
  };
  let seen = 0;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  request.raw.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > LINGER_BYTES) socket.destroy();
  });
  request.raw.resume();
}

/**
 * hostProblem() - why a request's Host headers are refused (RFC 9112 §3.2:
 * an HTTP/1.1 request needs exactly one; HTTP/1.0 may have none), or
 * undefined when they are fine.
 * @httpVersion: the request's version, e.g. `1.1`.
 * @rawHeaders: its headers as received, names and values alternating.
 */
export function hostProblem(httpVersion: string, rawHeaders: readonly string[]): string | undefined {
  let hosts = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'host') hosts++;
  if (hosts > 1) return `the request has ${hosts} Host headers; HTTP/1.1 allows one`;
  if (hosts === 0 && httpVersion !== '1.0') return 'the request has no Host header; HTTP/1.1 requires one';
  return undefined;
}

/**
 * replyClientError() - answer a request Node's HTTP parser refused (bad
 * request line, broken chunking, headers over 16 KiB, a request that took
 * too long) with 400 EINVAL and the usual `{errno, message}` body, then
 * close; fastify's default would send a body of its own format. Logged at
 * debug level by code only: the error's raw packet may hold a token.
 * @err: the parser's error.
 * @socket: the client's socket.
 * @log: the daemon's logger.
 */
function replyClientError(err: NodeJS.ErrnoException, socket: Socket, log: Logger): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  log.debug({ code: err.code }, 'malformed HTTP request');
  const why =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? 'request headers are too large'
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? 'the request was not received in time'
        : `malformed HTTP request (${err.code ?? 'parse error'})`;
  const text = JSON.stringify({ errno: 'EINVAL', message: why });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${httpStatusOf('EINVAL')} Bad Request\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  }
  socket.destroy();
}

/** stripUndefinedLimits() - @limits without its undefined entries (they must not hide a default). */
function stripUndefinedLimits(limits: NonNullable<AppOptions['limits']>): NonNullable<AppOptions['limits']> {
  return Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined));
}

/**
 * tableSizes() - what every table of the daemon holds: contexts, objects,
 * groups held by fault queues (queued, delivered and unanswered, holding a
 * cookie), mapped pages and host frames, response-log entries, and the
 * hardware side of Platform.audit() (device PRGs outstanding, IOPF groups
 * pending, partials, PRQ entries, stalls). None may grow without bound.
 */
function tableSizes(platform: Platform, contexts: ContextRegistry): Record<string, number> {
  let nctx = 0;
  let objects = 0;
  let mappedPages = 0;
  let queued = 0;
  let outstanding = 0;
  let cookies = 0;
  for (const { ctx } of contexts.all()) {
    nctx++;
    objects += ctx.objectCount;
    mappedPages += ctx.mappedPages;
    for (const o of ctx.objects()) {
      if (o.type !== 'fault') continue;
      const f = o as IommufdFault;
      queued += f.queued;
      outstanding += f.outstanding;
      cookies += f.cookiesInUse;
    }
  }
  let responseLog = 0;
  for (const d of platform.listDevices()) responseLog += platform.function(d.name).responses.retained;
  const a = platform.audit();
  return {
    contexts: nctx,
    objects,
    fault_queued: queued,
    fault_outstanding: outstanding,
    fault_cookies: cookies,
    mapped_pages: mappedPages,
    host_frames: platform.frames.inUse,
    device_outstanding_prgs: a.outstandingGroups,
    iopf_pending: a.iopfPending,
    partials: a.partials,
    prq: a.prq,
    stalls: a.stalls,
    response_log: responseLog,
  };
}

/**
 * buildApp() - assemble the daemon.
 * @opts: see AppOptions.
 *
 * Return: the app, not listening.
 * Throws: IommuError if the platform description is inconsistent (duplicate
 * names or bdfs, unknown IOMMU).
 */
export function buildApp(opts: AppOptions = {}): IopfdApp {
  const log = typeof opts.logger === 'object' ? opts.logger : createLogger(opts.logger ?? 'silent');
  const metrics = new Metrics();
  // The observation feed sees every group after the metrics do (read-only).
  const observe = new ObserveFeed(metrics.observer, { ...DEFAULT_OBSERVE_OPTIONS, ...opts.observe });
  const sched = new EventLoopScheduler((err) => log.error({ err }, 'deferred work threw'));
  const platform = new Platform({
    sched,
    ...(opts.platform ? { desc: opts.platform } : {}),
    ...(opts.profile ? { profile: opts.profile } : {}),
    limits: { memoryLimit: defaultMemoryLimit(), ...stripUndefinedLimits(opts.limits ?? {}) },
    observer: observe.observer,
  });
  const contexts = new ContextRegistry(platform, log);
  observe.attach(platform, contexts);
  metrics.tableSizes = () => tableSizes(platform, contexts);
  metrics.memoryBudget = () => ({ inUse: platform.budget.inUse, limit: platform.budget.limit });
  const streamOptions: StreamOptions = { ...DEFAULT_STREAM_OPTIONS, ...opts.stream };
  const streams = new FaultStreamServer({ contexts, metrics, log, options: streamOptions });
  const vevents = new VeventStreamServer({ contexts, log, options: streamOptions });

  // The one error reply: route errors, 404s, body parsing and bad URLs.
  const bodyLimit = opts.bodyLimit ?? BODY_LIMIT;
  const replyError = (err: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    const w = wireErrorOf(err);
    if (w.body.errno === 'EMSGSIZE') {
      w.body.message = `request body is larger than ${bodyLimit === BODY_LIMIT ? '1 MiB' : `${bodyLimit} bytes`}`;
      void reply.header('connection', 'close');
      lingerClose(request);
    }
    if (w.unexpected) request.log.error({ err, req: request }, 'unexpected error');
    void reply.code(w.status).send(w.body);
  };
  // Requests are logged at debug level only (onResponse below), by path.
  const app = Fastify({
    loggerInstance: log,
    bodyLimit,
    logController: new LogController({ disableRequestLogging: true }),
    frameworkErrors: replyError,
    clientErrorHandler: (err, socket) => replyClientError(err, socket, log),
    // Node's own check answers a request without Host with a bare 400; the
    // onRequest hook below answers it (and two Host headers) with a body.
    http: { requireHostHeader: false },
    // fastify's closing-time 503 has a body of its own; a request that still
    // arrives on an open connection during shutdown is served as usual.
    return503OnClosing: false,
  }) as unknown as FastifyInstance;
  app.setErrorHandler(replyError);
  // Under /v1/contexts/:ctx the context's token is checked first (401), as
  // on every route there: no route's existence is told to a stranger.
  app.setNotFoundHandler(async (request) => {
    const m = CTX_PATH.exec(pathOf(request.url));
    if (m) contexts.authenticate(Number(m[1]), requireToken(bearerToken(request.headers.authorization), 'context'));
    throw new HttpError('ENOENT', `no route ${request.method} ${pathOf(request.url)}`);
  });
  app.addHook('onRequest', async (request) => {
    const why = hostProblem(request.raw.httpVersion, request.raw.rawHeaders);
    if (why !== undefined) throw new HttpError('EINVAL', why);
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug({ req: request, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
  });

  // JSON bodies only: an empty body is no body (validated as {}), bad JSON
  // is EINVAL, JSON that is not an object (null, an array, a number, a
  // string) is EINVAL, any other content-type is EINVAL too.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, text, done) => {
    if (text === '') return done(null, undefined);
    let body: unknown;
    try {
      body = JSON.parse(text as string);
    } catch (e) {
      return done(new HttpError('EINVAL', `body is not valid JSON: ${(e as Error).message}`), undefined);
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return done(
        new HttpError('EINVAL', `body must be a JSON object, not ${body === null ? 'null' : Array.isArray(body) ? 'an array' : `a ${typeof body}`}`),
        undefined,
      );
    }
    done(null, body);
  });

  registerCommands(app, {
    adminDigest: opts.adminToken === undefined ? undefined : tokenDigest(opts.adminToken),
    contexts,
    routes: routeTable({ platform, contexts, observe }),
  });

  const openapi = openApiDocument();
  const docs = docsHtml(openapi);
  const asyncapi = asyncApiDocument();
  app.get('/openapi.json', async () => openapi);
  app.get('/asyncapi.json', async () => asyncapi);
  app.get('/docs', async (_request, reply) =>
    reply.type('text/html; charset=utf-8').header('content-security-policy', DOCS_CSP).header('x-content-type-options', 'nosniff').send(docs),
  );
  app.get('/docs/docs.js', async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').header('x-content-type-options', 'nosniff').send(DOCS_SCRIPT),
  );
  registerUi(app);
  // The console is the front page; it links to /docs.
  app.get('/', async (_request, reply) => reply.redirect('/ui'));
  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  // Without an upgrade: the token is checked first, as for the upgrade.
  app.get(STREAM_URL, async (request) => {
    streamTarget(request.raw, contexts);
    throw new HttpError('EINVAL', 'the fault stream needs a WebSocket upgrade');
  });
  app.get(VEVENT_STREAM_URL, async () => {
    throw new HttpError('EINVAL', 'the vEVENTQ stream needs a WebSocket upgrade');
  });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    vevents.matches(req) ? vevents.handleUpgrade(req, socket, head) : streams.handleUpgrade(req, socket, head),
  );
  // Beyond the cap node closes a new connection as it accepts it ('drop'):
  // no HTTP reply is possible without taking the connection on.
  app.server.maxConnections = opts.maxConnections ?? MAX_CONNECTIONS;
  app.server.on('drop', (data?: { remoteAddress?: string; remotePort?: number }) => {
    metrics.connectionsRefused.inc();
    log.debug({ remote: data?.remoteAddress, port: data?.remotePort, max: app.server.maxConnections }, 'connection refused: at the connection limit');
  });

  // fastify runs preClose after it stopped routing new requests and before
  // the server stops accepting connections and waits for open ones.
  let atShutdown: { seqs: Map<string, number>; outstanding: number; held: number } | undefined;
  app.addHook('preClose', async () => {
    log.info('shutting down');
    const seqs = new Map(platform.listDevices().map((d) => [d.name, platform.function(d.name).responses.length]));
    const t = tableSizes(platform, contexts);
    atShutdown = { seqs, outstanding: platform.audit().outstandingGroups, held: (t.fault_queued ?? 0) + (t.fault_outstanding ?? 0) };
    platform.shutdown();
    contexts.forgetAll();
    streams.close(CLOSE.GOING_AWAY, 'daemon shutting down');
    observe.close();
    vevents.close(CLOSE.GOING_AWAY, 'daemon shutting down');
  });

  const shutdownSummary = (): ShutdownSummary | undefined => {
    if (!atShutdown) return undefined;
    const answered = { success: 0, invalid: 0, failure: 0 };
    for (const [name, seq] of atShutdown.seqs) for (const r of platform.responses(name, seq)) answered[r.code]++;
    return { outstandingBefore: atShutdown.outstanding, heldByFaultQueues: atShutdown.held, answered, audit: platform.audit() };
  };

  let closing: Promise<void> | undefined;
  return { app, platform, metrics, observe, shutdown: () => (closing ??= app.close()), shutdownSummary };
}
