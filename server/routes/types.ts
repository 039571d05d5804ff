/**
 * DOC: route implementations
 *
 * One function per command of the protocol's %COMMANDS table, keyed by the
 * command's name. The generic registration (server/rest.ts) authenticates,
 * validates params, query and body with the command's zod schemas and calls
 * the function with the parsed values; the function returns the success
 * body (wire form: u64 as "0x…" strings), or nothing for a 204, and throws
 * IommuError/HttpError for everything else.
 */
import type { Platform } from '../../core/index.js';
import type { ContextEntry, ContextRegistry } from '../contexts.js';

/**
 * struct RouteDeps - what route implementations work on.
 * @platform: the simulated machine.
 * @contexts: the open contexts and their tokens.
 */
export interface RouteDeps {
  readonly platform: Platform;
  readonly contexts: ContextRegistry;
}

/**
 * struct RouteInput - one validated request.
 * @params: the parsed path parameters.
 * @query: the parsed query string.
 * @body: the parsed body (an absent body is parsed as `{}`).
 * @context: the authenticated context, on routes whose auth is `ctx`.
 */
export interface RouteInput<P = unknown, Q = unknown, B = unknown> {
  readonly params: P;
  readonly query: Q;
  readonly body: B;
  readonly context: ContextEntry | undefined;
}

/** RouteHandler - a command's implementation, as the registration calls it. */
export type RouteHandler = (input: RouteInput) => unknown;

/** RouteTable - implementations by command name. */
export type RouteTable = Readonly<Record<string, RouteHandler>>;

/**
 * route() - type a command's implementation with its parsed shapes.
 * @fn: the implementation.
 *
 * The registration validates every part with the command's schemas before
 * calling, so the parsed values have the declared shapes; this is the one
 * place where that promise becomes a cast.
 *
 * Return: @fn as a RouteHandler.
 */
export function route<P = unknown, Q = unknown, B = unknown>(fn: (input: RouteInput<P, Q, B>) => unknown): RouteHandler {
  return fn as RouteHandler;
}

/**
 * ctxRoute() - like route(), for a command whose auth is `ctx`: @fn gets
 * the authenticated context.
 * @fn: the implementation.
 *
 * Return: a RouteHandler.
 */
export function ctxRoute<P = unknown, B = unknown>(fn: (input: RouteInput<P, unknown, B> & { context: ContextEntry }) => unknown): RouteHandler {
  return fn as RouteHandler;
}
