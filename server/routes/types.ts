/**
 * DOC: route implementations
 *
 * One function per command of the protocol's %COMMANDS table, keyed by the
 * command's name. The generic registration (server/rest.ts) authenticates,
 * validates params, query and body with the command's zod schemas and calls
 * the function with the parsed values; the function returns the success
 * body (wire form: u64 as "0x…" strings), or nothing for a 204, and throws
 * IommuError/HttpError for everything else.
 *
 * The types come from the table itself: a command's implementation gets
 * ParamsOf/QueryOf/BodyOf of its name and must return ResultOf of it, so an
 * implementation under the wrong name, or returning the wrong shape, does
 * not compile.
 */
import type { Readable } from 'node:stream';
import type { Platform } from '../../core/index.js';
import type { AuthOf, BodyOf, CommandName, CommandOf, ParamsOf, QueryOf, ResultOf } from '../../protocol/index.js';
import type { ContextEntry, ContextRegistry } from '../contexts.js';
import type { ObserveFeed } from '../observe.js';

/**
 * struct RouteDeps - what route implementations work on.
 * @platform: the simulated machine.
 * @contexts: the open contexts and their tokens.
 * @observe: the observation feed.
 */
export interface RouteDeps {
  readonly platform: Platform;
  readonly contexts: ContextRegistry;
  readonly observe: ObserveFeed;
}

/**
 * struct RouteInput - one validated request.
 * @params: the parsed path parameters.
 * @query: the parsed query string.
 * @body: the parsed body (an absent body is parsed as `{}`).
 * @context: the authenticated context, on routes whose auth is `ctx`.
 */
export interface RouteInput<P = unknown, Q = unknown, B = unknown, C extends ContextEntry | undefined = ContextEntry | undefined> {
  readonly params: P;
  readonly query: Q;
  readonly body: B;
  readonly context: C;
}

/** CommandInput - the validated request of command @K (its context present when its auth is `ctx`). */
export type CommandInput<K extends CommandName> = RouteInput<
  ParamsOf<K>,
  QueryOf<K>,
  BodyOf<K>,
  AuthOf<K> extends 'ctx' ? ContextEntry : ContextEntry | undefined
>;

/**
 * CommandResult - what command @K's implementation returns: its wire result
 * (or a promise of it), nothing for a 204, the event stream for an `sse` command.
 */
export type CommandResult<K extends CommandName> =
  CommandOf<K> extends { readonly stream: 'sse' } ? Readable : [ResultOf<K>] extends [void] ? void | Promise<void> : ResultOf<K> | Promise<ResultOf<K>>;

/** CommandHandler - the implementation of command @K. */
export type CommandHandler<K extends CommandName> = (input: CommandInput<K>) => CommandResult<K>;

/** RouteTable - the implementation of every command, by name. */
export type RouteTable = { readonly [K in CommandName]: CommandHandler<K> };

/** RoutesOf - the part of the route table for the commands @K. */
export type RoutesOf<K extends CommandName> = Pick<RouteTable, K>;

/** RouteHandler - any implementation, as the generic registration calls it. */
export type RouteHandler = (input: RouteInput) => unknown;
