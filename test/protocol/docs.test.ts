// Keeps docs/protocol.md, the project's wire reference, in step with the
// code: every route with its auth, status, errnos and kernel analogue, nothing
// documented as a route that the command table lacks, every errno with its
// HTTP status, every close code, the record and response layouts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERRNO_HTTP, ERRNOS } from '../../protocol/errno.js';
import { PERM, PGFAULT_FLAGS, RECORD_FIELDS, RECORD_SIZE, RESP_CODE, RESPONSE_SIZE } from '../../protocol/records.js';
import { COMMANDS } from '../../protocol/schemas.js';
import { CLOSE, DEFAULT_WINDOW, MAX_FRAME, MAX_WINDOW, MIN_WINDOW, STREAM_ERRNOS, STREAM_URL, SUBPROTOCOLS } from '../../protocol/stream.js';
import { VEVENT_STREAM_URL } from '../../protocol/vevent.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const readme = readFileSync(resolve(repo, 'docs', 'protocol.md'), 'utf8');
const lines = readme.split('\n');

/** The cells of the one table row whose first cell is `route`. */
function routeRow(route: string): string[] {
  const rows = lines.filter((l) => l.startsWith(`| \`${route}\` |`));
  assert.equal(rows.length, 1, `exactly one docs/protocol.md row for ${route}`);
  return rows[0]!.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
}

function errnosIn(cell: string): string[] {
  return [...new Set(cell.match(/\bE[A-Z0-9]+\b/g) ?? [])].sort();
}

test('docs: every command url appears in docs/protocol.md', () => {
  for (const c of COMMANDS) assert.ok(readme.includes(c.url), c.url);
  assert.ok(readme.includes(STREAM_URL));
});

test('docs: every route row has the auth, status and errnos of its command', () => {
  for (const c of COMMANDS) {
    const [, auth, , result, errnos, kernel] = routeRow(`${c.method} ${c.url}`);
    assert.equal(auth, c.auth, `${c.name} auth`);
    assert.ok(result!.startsWith(String(c.status)), `${c.name} status ${c.status}`);
    assert.deepEqual(errnosIn(errnos!), [...c.errnos].sort(), `${c.name} errnos`);
    if (c.kernel) assert.ok(kernel!.includes(c.kernel), `${c.name} kernel analogue ${c.kernel}`);
  }
  const [, , , result, errnos] = routeRow(`GET ${STREAM_URL}`);
  assert.ok(result!.startsWith('101'));
  assert.deepEqual(errnosIn(errnos!), [...STREAM_ERRNOS].sort());
  const [, , , vresult, verrnos] = routeRow(`GET ${VEVENT_STREAM_URL}`);
  assert.match(vresult!, /^101/);
  assert.deepEqual(errnosIn(verrnos!), ['EACCES', 'EINVAL', 'EIO', 'ENOENT']);
});

test('docs: no route row without a command', () => {
  const known = new Set([...COMMANDS.map((c) => `${c.method} ${c.url}`), `GET ${STREAM_URL}`, `GET ${VEVENT_STREAM_URL}`]);
  for (const l of lines) {
    const m = /^\| `((?:GET|POST|DELETE) [^`]+)` \|/.exec(l);
    if (m) assert.ok(known.has(m[1]!), `docs/protocol.md documents ${m[1]} but COMMANDS has no such route`);
  }
  // Routes named in prose, too: `METHOD /path` (a query string or a trailing
  // description aside) must be a command or the stream.
  const knownPath = (method: string, path: string) =>
    [...known].some((k) => {
      const [km, kp] = k.split(' ');
      return km === method && new RegExp(`^${kp!.replace(/:[a-z_]+/g, '[^/]+')}$`).test(path);
    });
  for (const m of readme.matchAll(/`(GET|POST|DELETE) (\/v1[^`?\s]*)/g)) {
    assert.ok(knownPath(m[1]!, m[2]!), `docs/protocol.md names ${m[1]} ${m[2]} but COMMANDS has no such route`);
  }
});

test('docs: the prose route check sees a route the table lacks', () => {
  // Guards the guard: an unknown route in prose must not match a known one.
  const known = COMMANDS.map((c) => new RegExp(`^${c.method} ${c.url.replace(/:[a-z_]+/g, '[^/]+')}$`));
  assert.ok(!known.some((r) => r.test('GET /v1/platform/iommus')));
  assert.ok(known.some((r) => r.test('GET /v1/contexts/7/faults/3')));
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
  for (const [name, offset] of [['cookie', 0], ['code', 4]] as const) {
    assert.ok(lines.some((l) => l.startsWith(`| ${name} | u32 | ${offset} | 4 |`)), `response ${name}`);
  }
  assert.ok(readme.includes(`${RECORD_SIZE} bytes`) && readme.includes(`${RESPONSE_SIZE} bytes`));
  for (const table of [PGFAULT_FLAGS, PERM, RESP_CODE]) {
    for (const [name, v] of Object.entries(table)) assert.ok(readme.includes(`${name} ${v}`), `${name} ${v}`);
  }
  for (const p of SUBPROTOCOLS) assert.ok(readme.includes(p), p);
  assert.ok(readme.includes(`${MIN_WINDOW}..${MAX_WINDOW}, default ${DEFAULT_WINDOW}`), 'window range and default');
  assert.equal(MAX_FRAME, 1 << 20);
  assert.ok(readme.includes('1 MiB (`MAX_FRAME`'), 'frame limit');
});

test('docs: every stream message type is documented', () => {
  for (const t of ['hello', 'faults', 'results', 'write', 'error', 'expired', 'overflow', 'revoked', 'redelivered']) {
    assert.ok(lines.some((l) => l.startsWith(`| ${t} | \`{"type":"${t}"`)), `server message ${t}`);
  }
  assert.ok(readme.includes('{"type":"responses"'), 'client responses frame');
});

test('docs: the repository points at docs/protocol.md for the wire', () => {
  const protoReadme = readFileSync(resolve(repo, 'protocol', 'README.md'), 'utf8');
  assert.ok(protoReadme.includes('docs/protocol.md'));
});
