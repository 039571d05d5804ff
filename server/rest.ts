/**
 * DOC: REST routes from the command table
 *
 * One loop registers every command of the protocol's %COMMANDS table with
 * one generic handler. For each request, in this order:
 *
 * 1. the token: the admin token on `admin` routes (when one is set); on
 *    `ctx` routes a request without any token is refused first (401);
 * 2. the path parameters (400 EINVAL);
 * 3. on `ctx` routes, the token must be the one of the context `:ctx` (401);
 * 4. the query string and the body (400 EINVAL), validated with the
 *    command's zod schemas; a command without a query schema ignores the
 *    query string, one without a body schema takes no body (an absent body
 *    is `{}` everywhere);
 * 5. the implementation; its result is sent with the command's status.
 *
 * Errors are thrown and leave through the app's one error handler.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { COMMANDS, formatZodError, objectMessage, type Command } from '../protocol/index.js';
import { bearerToken, checkToken, requireToken } from './auth.js';
import type { ContextRegistry } from './contexts.js';
import { HttpError } from './errors.js';
import type { RouteHandler, RouteInput, RouteTable } from './routes/types.js';

/** What a command without a params or body schema accepts: nothing. */
const NOTHING = z.strictObject({}, { error: objectMessage('an empty object') });

/**
 * parseWith() - validate one part of a request.
 * @schema: the command's schema for that part.
 * @value: the raw part.
 * @where: `params`, `query` or `body`, for the message.
 *
 * Return: the parsed value (u64 strings become bigints, defaults applied).
 * Throws: HttpError EINVAL with formatZodError()'s one-line message.
 */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new HttpError('EINVAL', formatZodError(r.error, where));
  return r.data;
}

/**
 * struct RestOptions - what the generic handler needs.
 * @adminDigest: digest of the admin token, or undefined when platform routes are open.
 * @contexts: the open contexts, to authenticate `ctx` routes.
 * @routes: the implementation of every command, by name.
 */
export interface RestOptions {
  readonly adminDigest: Buffer | undefined;
  readonly contexts: ContextRegistry;
  readonly routes: RouteTable;
}

/**
 * validateRequest() - steps 1 to 4 above for one request.
 * @command: the command the request matched.
 * @request: the fastify request.
 * @opts: tokens and contexts.
 *
 * Return: the validated input for the command's implementation.
 * Throws: HttpError (EACCES, EINVAL).
 */
function validateRequest(command: Command, request: FastifyRequest, opts: RestOptions): RouteInput {
  const token = bearerToken(request.headers.authorization);
  if (command.auth === 'admin' && opts.adminDigest) checkToken(requireToken(token, 'admin'), opts.adminDigest, 'wrong admin token');
  const ctxToken = command.auth === 'ctx' ? requireToken(token, 'context') : undefined;
  const params = parseWith(command.params ?? NOTHING, request.params ?? {}, 'params');
  const context = ctxToken === undefined ? undefined : opts.contexts.authenticate((params as { ctx: number }).ctx, ctxToken);
  const query = command.query ? parseWith(command.query, request.query ?? {}, 'query') : {};
  const body = parseWith(command.body ?? NOTHING, request.body ?? {}, 'body');
  return { params, query, body, context };
}

/**
 * registerCommands() - register every command of %COMMANDS on @app.
 * @app: the fastify instance.
 * @opts: tokens, contexts and the implementations.
 *
 * Throws: Error if a command has no implementation or an implementation
 * names no command (a programming error, caught at start-up).
 */
export function registerCommands(app: FastifyInstance, opts: RestOptions): void {
  const names = new Set(COMMANDS.map((c) => c.name));
  // By name, as the generic handler calls them: validateRequest() gives each
  // the shapes its command's schemas promise (the one place that becomes a cast).
  const routes = opts.routes as Readonly<Record<string, RouteHandler | undefined>>;
  for (const name of Object.keys(routes)) {
    if (!names.has(name)) throw new Error(`route implementation ${name} matches no command`);
  }
  for (const command of COMMANDS) {
    const implementation = routes[command.name];
    if (!implementation) throw new Error(`command ${command.name} has no implementation`);
    app.route({
      method: command.method,
      url: command.url,
      handler: async (request, reply) => {
        const result = await implementation(validateRequest(command, request, opts));
        if (command.stream === 'sse') {
          // An event stream: no caching, no proxy buffering; it ends when either side closes it.
          void reply.header('cache-control', 'no-store').header('x-accel-buffering', 'no').type('text/event-stream; charset=utf-8');
        }
        return command.status === 204 ? reply.code(204).send() : reply.code(command.status).send(result);
      },
    });
  }
}
