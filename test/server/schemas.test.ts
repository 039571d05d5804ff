// The JSON Schema files for clients in other languages, and the route table
// against the command table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS, jsonSchemas } from '../../protocol/index.js';
import { DEFAULT_SCHEMA_DIR, exportSchemas, schemaFiles } from '../../server/export-schemas.js';
import Fastify from 'fastify';
import type { ContextRegistry } from '../../server/contexts.js';
import { buildApp } from '../../server/app.js';
import { registerCommands } from '../../server/rest.js';
import type { RouteTable } from '../../server/routes/types.js';

test('export-schemas writes one file per schema plus openapi.json and asyncapi.json, and removes stale ones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'iopfd-schemas-'));
  writeFileSync(join(dir, 'stale.json'), '{}');
  const names = exportSchemas(dir);
  assert.deepEqual(readdirSync(dir).sort(), [...names].sort());
  assert.equal(names.length, Object.keys(jsonSchemas()).length + 2);
  for (const name of names) JSON.parse(readFileSync(join(dir, name), 'utf8'));
  assert.ok(names.includes('ioas.map.body.json') && names.includes('stream.server.json') && names.includes('openapi.json') && names.includes('asyncapi.json'));
});

test('docs/schemas is up to date (regenerate: node dist/server/export-schemas.js)', () => {
  const files = schemaFiles();
  assert.deepEqual(
    readdirSync(DEFAULT_SCHEMA_DIR)
      .filter((n) => n.endsWith('.json'))
      .sort(),
    [...files.keys()].sort(),
  );
  for (const [name, text] of files) assert.equal(readFileSync(join(DEFAULT_SCHEMA_DIR, name), 'utf8'), text, name);
});

test('every command of the table is a route; a missing or unknown implementation is refused at start-up', async () => {
  const { app, shutdown } = buildApp();
  await app.ready();
  for (const c of COMMANDS) assert.ok(app.hasRoute({ method: c.method, url: c.url }), `${c.method} ${c.url}`);
  await shutdown();
  const opts = { adminDigest: undefined, contexts: undefined as unknown as ContextRegistry };
  // Tables the types refuse (see route-types.test.ts), as a JavaScript caller could still pass them.
  assert.throws(() => registerCommands(Fastify(), { ...opts, routes: {} as RouteTable }), /has no implementation/);
  assert.throws(() => registerCommands(Fastify(), { ...opts, routes: { 'no.such': () => ({}) } as unknown as RouteTable }), /no.such matches no command/);
});
