// The route implementations are typed from the command table: each gets the
// parsed params, query and body of its own command and must return that
// command's wire result. The @ts-expect-error lines are the test: the build
// (which `npm test` runs first) fails if any of them starts to compile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandByName, type CommandName } from '../../protocol/index.js';
import type { ContextEntry } from '../../server/contexts.js';
import { routeTable } from '../../server/routes/index.js';
import type { CommandHandler, CommandInput, RouteDeps, RouteTable } from '../../server/routes/types.js';

/** An ioas.unmap implementation as the table wants it: numbers for ids, bigints for u64 in, "0x…" out. */
const unmap: CommandHandler<'ioas.unmap'> = ({ params, body, context }) => {
  const id: number = params.id;
  const length: bigint = body.length;
  void context.ctx; // a `ctx` command always has its context
  return { unmapped: `0x${(length + BigInt(id)).toString(16)}` };
};

// @ts-expect-error: ioas.unmap has no :dev_id
export const wrongParam: CommandHandler<'ioas.unmap'> = ({ params }) => ({ unmapped: String(params.dev_id) });

// @ts-expect-error: ioas.unmap answers {unmapped}, not an empty object
export const wrongResult: CommandHandler<'ioas.unmap'> = () => ({});

// @ts-expect-error: a u64 leaves as a "0x…" string, not a bigint
export const bigintResult: CommandHandler<'ioas.unmap'> = () => ({ unmapped: 1n });

// @ts-expect-error: device.attach's implementation (body.pt_id) under fault.get's name
export const wrongCommand: CommandHandler<'fault.get'> = ({ body }) => ({ id: body.pt_id, queued: 0, outstanding: 0, connections: 0, counters: {} });

// @ts-expect-error: an `admin` command is not given a context
export const noContext: CommandHandler<'platform.get'> = ({ context }) => ({ iommus: [], devices: [context.ctx.id] });

// @ts-expect-error: a 204 command returns nothing
export const bodyOn204: CommandHandler<'object.destroy'> = () => ({ ok: true });

/** A table with one implementation under the wrong name does not compile either. */
export function swapped(table: RouteTable): RouteTable {
  // @ts-expect-error: ioas.map's implementation where ioas.unmap's belongs
  return { ...table, 'ioas.unmap': table['ioas.map'] };
}

test('route types: a typed implementation runs on what its own schemas parse', () => {
  const c = commandByName('ioas.unmap');
  const input: CommandInput<'ioas.unmap'> = {
    params: c.params!.parse({ ctx: '1', id: '2' }) as CommandInput<'ioas.unmap'>['params'],
    query: {},
    body: c.body!.parse({ iova: '0x1000', length: '0x2000' }) as CommandInput<'ioas.unmap'>['body'],
    context: { ctx: {} } as ContextEntry,
  };
  const result = unmap(input);
  assert.deepEqual(result, { unmapped: '0x2002' });
  assert.ok(c.response!.safeParse(result).success, 'the result is what the response schema takes');
});

test('route types: the route table has one implementation per command name', () => {
  const table = routeTable({} as RouteDeps);
  const names: CommandName[] = Object.keys(table) as CommandName[];
  for (const name of names) assert.equal(commandByName(name).name, name);
  assert.equal(typeof table.healthz, 'function');
  assert.deepEqual(table.healthz({ params: {}, query: {}, body: {}, context: undefined }), { status: 'ok' });
});
