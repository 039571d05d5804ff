// Keeps protocol/README.md in step with the code: every route with its auth,
// status and errnos, every errno with its HTTP status, every close code, the
// record layout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERRNO_HTTP, ERRNOS } from '../../protocol/errno.js';
import { PERM, PGFAULT_FLAGS, RECORD_FIELDS, RESP_CODE } from '../../protocol/records.js';
import { COMMANDS } from '../../protocol/schemas.js';
import { CLOSE, DEFAULT_WINDOW, MAX_WINDOW, STREAM_ERRNOS, STREAM_URL, SUBPROTOCOLS } from '../../protocol/stream.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const readme = readFileSync(resolve(repo, 'protocol', 'README.md'), 'utf8');
const lines = readme.split('\n');

/** The cells of the one table row whose first cell is `route`. */
function routeRow(route: string): string[] {
  const rows = lines.filter((l) => l.startsWith(`| \`${route}\` |`));
  assert.equal(rows.length, 1, `exactly one README row for ${route}`);
  return rows[0]!.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
}

function errnosIn(cell: string): string[] {
  return [...new Set(cell.match(/\bE[A-Z0-9]+\b/g) ?? [])].sort();
}

test('docs: every command url appears in protocol/README.md', () => {
  for (const c of COMMANDS) assert.ok(readme.includes(c.url), c.url);
  assert.ok(readme.includes(STREAM_URL));
});

test('docs: every route row has the auth, status and errnos of its command', () => {
  for (const c of COMMANDS) {
    const [, auth, , result, errnos] = routeRow(`${c.method} ${c.url}`);
    assert.equal(auth, c.auth, `${c.name} auth`);
    assert.ok(result!.startsWith(String(c.status)), `${c.name} status ${c.status}`);
    assert.deepEqual(errnosIn(errnos!), [...c.errnos].sort(), `${c.name} errnos`);
  }
  const [, , , result, errnos] = routeRow(`GET ${STREAM_URL}`);
  assert.ok(result!.startsWith('101'));
  assert.deepEqual(errnosIn(errnos!), [...STREAM_ERRNOS].sort());
});

test('docs: no route row without a command', () => {
  const known = new Set([...COMMANDS.map((c) => `${c.method} ${c.url}`), `GET ${STREAM_URL}`]);
  for (const l of lines) {
    const m = /^\| `((?:GET|POST|DELETE) [^`]+)` \|/.exec(l);
    if (m) assert.ok(known.has(m[1]!), `README documents ${m[1]} but COMMANDS has no such route`);
  }
});

test('docs: every errno appears with its HTTP status', () => {
  for (const e of ERRNOS) {
    assert.ok(lines.some((l) => l.startsWith(`| ${e} | ${ERRNO_HTTP[e]} |`)), `${e} → ${ERRNO_HTTP[e]}`);
  }
});

test('docs: every close code appears with its name', () => {
  for (const [name, code] of Object.entries(CLOSE)) {
    assert.ok(lines.some((l) => l.startsWith(`| ${code} | ${name} |`)), `${code} ${name}`);
  }
});

test('docs: record layout, flags, perm bits, response codes, stream names and limits', () => {
  for (const f of RECORD_FIELDS) {
    const type = f.size === 8 ? 'u64' : 'u32';
    assert.ok(lines.some((l) => l.startsWith(`| ${f.name} | ${type} | ${f.offset} | ${f.size} |`)), f.name);
  }
  for (const table of [PGFAULT_FLAGS, PERM, RESP_CODE]) {
    for (const [name, v] of Object.entries(table)) assert.ok(readme.includes(`${name} ${v}`), `${name} ${v}`);
  }
  for (const p of SUBPROTOCOLS) assert.ok(readme.includes(p), p);
  assert.ok(readme.includes(String(DEFAULT_WINDOW)) && readme.includes(String(MAX_WINDOW)));
});
