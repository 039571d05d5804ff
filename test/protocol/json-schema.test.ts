import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonSchemas, openApiDocument } from '../../protocol/json-schema.js';
import { COMMANDS } from '../../protocol/schemas.js';

test('json-schema: every command part has a JSON Schema, u64 as a string pattern', () => {
  const s = jsonSchemas();
  for (const c of COMMANDS) {
    for (const part of ['params', 'query', 'body', 'response'] as const) {
      assert.equal(`${c.name}.${part}` in s, c[part] !== undefined, `${c.name}.${part}`);
    }
  }
  const map = s['ioas.map.body'] as { properties: Record<string, { type: string; pattern?: string }>; additionalProperties: boolean };
  assert.equal(map.properties.iova!.type, 'string');
  assert.ok(map.properties.iova!.pattern);
  assert.equal(map.additionalProperties, false);
  for (const k of ['error', 'stream.query', 'stream.server', 'stream.client']) assert.ok(s[k], k);
  assert.doesNotThrow(() => JSON.stringify(s));
});

test('json-schema: OpenAPI 3.1 document covers every command and the stream', () => {
  const doc = openApiDocument() as { openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
  assert.equal(doc.openapi, '3.1.0');
  for (const c of COMMANDS) {
    const path = c.url.replace(/:(\w+)/g, '{$1}');
    const op = doc.paths[path]?.[c.method.toLowerCase()];
    assert.ok(op, `${c.method} ${path}`);
    assert.ok(op.responses[String(c.status)], `${c.name} success status`);
    if (c.errnos.includes('EINVAL')) assert.ok(op.responses['400'], `${c.name} 400`);
    if (c.auth !== 'none') assert.ok(op.responses['401'], `${c.name} 401`);
  }
  assert.ok(doc.paths['/v1/contexts/{ctx}/faults/{id}/stream']?.get);
  assert.doesNotThrow(() => JSON.parse(JSON.stringify(doc)));
});
