// The OpenAPI document against third-party tooling: Spectral's `oas`
// ruleset and swagger-parser's validator, both run clean.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { openApiDocument } from '../../protocol/json-schema.js';
import { COMMANDS } from '../../protocol/schemas.js';

const require = createRequire(import.meta.url);

/** A plain deep copy, as a client would read /openapi.json. */
function documentJson(): Record<string, unknown> {
  return JSON.parse(JSON.stringify(openApiDocument())) as Record<string, unknown>;
}

test('openapi: servers, tags (each used one declared), MIT license, required request bodies', () => {
  const doc = documentJson() as {
    info: { license: { name: string } };
    servers: Array<{ url: string }>;
    tags: Array<{ name: string }>;
    paths: Record<string, Record<string, { tags: string[]; requestBody?: { required: boolean } }>>;
  };
  assert.equal(doc.info.license.name, 'MIT');
  assert.ok(doc.servers.some((s) => s.url === '/'));
  const declared = new Set(doc.tags.map((t) => t.name));
  for (const c of COMMANDS) {
    const op = doc.paths[c.url.replace(/:(\w+)/g, '{$1}')]![c.method.toLowerCase()]!;
    for (const t of op.tags) assert.ok(declared.has(t), `${c.name}: tag ${t} declared`);
    if (c.body) assert.equal(op.requestBody?.required, !c.body.safeParse({}).success, c.name);
  }
  const map = doc.paths['/v1/contexts/{ctx}/ioas/{id}/map']!.post!;
  assert.equal(map.requestBody?.required, true, 'ioas.map needs its body');
  const ctx = doc.paths['/v1/contexts']!.post!;
  assert.equal(ctx.requestBody?.required, false, 'context.create takes an optional body');
});

test('openapi: Spectral oas ruleset reports nothing', async () => {
  const { Spectral, Document } = require('@stoplight/spectral-core') as typeof import('@stoplight/spectral-core');
  const { Json } = require('@stoplight/spectral-parsers') as typeof import('@stoplight/spectral-parsers');
  const { oas } = require('@stoplight/spectral-rulesets') as typeof import('@stoplight/spectral-rulesets');
  const spectral = new Spectral();
  spectral.setRuleset({
    extends: [[oas as never, 'recommended']],
    // The project publishes no contact address; every other rule stays on.
    rules: { 'info-contact': 'off' },
  });
  const text = JSON.stringify(openApiDocument(), null, 2);
  const results = await spectral.run(new Document(text, Json, 'openapi.json'));
  const lines = results.map((r) => `${r.code} [${r.severity}] ${r.path.join('.')}: ${r.message}`);
  // The one accepted finding: the fault fd's WebSocket upgrade succeeds with
  // 101, which is neither 2xx nor 3xx.
  const upgrade = /^operation-success-response \[\d\] paths\.\/v1\/contexts\/\{ctx\}\/faults\/\{id\}\/stream\.get\.responses:/;
  assert.deepEqual(
    lines.filter((l) => !upgrade.test(l)),
    [],
  );
  assert.equal(lines.length, 1, 'the upgrade finding is still there (else drop the exception)');
});

test('openapi: swagger-parser validates the document', async () => {
  const SwaggerParser = require('@apidevtools/swagger-parser') as { validate(doc: unknown): Promise<unknown> };
  await assert.doesNotReject(SwaggerParser.validate(documentJson()));
  // The validator is not a rubber stamp: the error responses' $ref left
  // dangling, or a mistyped info, is refused.
  const dangling = documentJson() as { components: { schemas: Record<string, unknown> } };
  delete dangling.components.schemas.Error;
  await assert.rejects(SwaggerParser.validate(dangling));
  const broken = documentJson();
  broken.info = 'iopfd';
  await assert.rejects(SwaggerParser.validate(broken));
});
