/**
 * DOC: export the wire schemas as files
 *
 * Writes the JSON Schema (draft 2020-12) of every wire shape to
 * `docs/schemas/<key>.json` (keys as jsonSchemas() names them, e.g.
 * `ioas.map.body.json`, `stream.server.json`) and the OpenAPI document to
 * `docs/schemas/openapi.json` and the streams' AsyncAPI document to
 * `docs/schemas/asyncapi.json`, for clients written in other languages.
 * Stale files are removed. Run after building:
 *
 *   node dist/server/export-schemas.js [OUTDIR]
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { asyncApiDocument, jsonSchemas, openApiDocument } from '../protocol/index.js';

/**
 * schemaFiles() - the files to write: name → content.
 *
 * Return: one pretty-printed JSON file per schema, plus openapi.json and
 * asyncapi.json.
 */
export function schemaFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const [key, schema] of Object.entries(jsonSchemas())) files.set(`${key}.json`, `${JSON.stringify(schema, null, 2)}\n`);
  files.set('openapi.json', `${JSON.stringify(openApiDocument(), null, 2)}\n`);
  files.set('asyncapi.json', `${JSON.stringify(asyncApiDocument(), null, 2)}\n`);
  return files;
}

/** DEFAULT_SCHEMA_DIR - docs/schemas of the repository (from dist/server/). */
export const DEFAULT_SCHEMA_DIR = resolve(fileURLToPath(import.meta.url), '../../../docs/schemas');

/**
 * exportSchemas() - write schemaFiles() into @dir, removing other .json files.
 * @dir: the output directory (created if needed).
 *
 * Return: the names written.
 */
export function exportSchemas(dir: string): string[] {
  const files = schemaFiles();
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(dir)) if (name.endsWith('.json') && !files.has(name)) rmSync(join(dir, name));
  for (const [name, text] of files) writeFileSync(join(dir, name), text);
  return [...files.keys()];
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = resolve(process.argv[2] ?? DEFAULT_SCHEMA_DIR);
  const names = exportSchemas(dir);
  process.stdout.write(`wrote ${names.length} files to ${dir}\n`);
}
