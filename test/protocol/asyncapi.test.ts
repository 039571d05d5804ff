// The AsyncAPI 3 document of the streams, checked by the AsyncAPI project's
// own parser and against the stream definitions it is built from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { asyncApiDocument } from '../../protocol/asyncapi.js';
import { CLOSE, SUBPROTOCOLS, zServerMessage } from '../../protocol/stream.js';

const require = createRequire(import.meta.url);

interface Doc {
  asyncapi: string;
  channels: Record<string, { address: string; messages: Record<string, unknown>; description: string }>;
  operations: Record<string, { action: string; channel: { $ref: string }; messages: Array<{ $ref: string }> }>;
  components: { messages: Record<string, { name: string; description: string; contentType: string; payload: { properties?: { type?: { const?: string } } } }> };
}

test('asyncapi: the @asyncapi/parser validates the document without any diagnostic', async () => {
  const { Parser, DiagnosticSeverity } = require('@asyncapi/parser') as typeof import('@asyncapi/parser');
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(JSON.stringify(asyncApiDocument()));
  // No errors, and no warnings or hints either.
  assert.deepEqual(
    diagnostics.map((d) => `${d.severity} ${d.code} ${d.path.join('.')}: ${d.message}`),
    [],
  );
  assert.ok(document, 'a parsed document');
  assert.equal(document.version(), '3.1.0');
  assert.deepEqual(
    document
      .channels()
      .all()
      .map((c) => c.address())
      .sort(),
    ['/v1/contexts/{ctx}/faults/{id}/stream', '/v1/contexts/{ctx}/veventq/{id}/stream'],
  );
  // The parser is not a rubber stamp: a receive operation on a missing channel is an error.
  const broken = asyncApiDocument() as unknown as Doc;
  broken.operations.receiveFaults!.channel = { $ref: '#/channels/noSuchStream' };
  const bad = await parser.parse(JSON.stringify(broken));
  assert.ok(bad.diagnostics.some((d) => d.severity === DiagnosticSeverity.Error));
});

test('asyncapi: every daemon text frame type, both subprotocols of both streams, every close code', () => {
  const doc = asyncApiDocument() as unknown as Doc;
  assert.equal(doc.asyncapi, '3.1.0');
  const fault = doc.channels.faultStream!;
  const types = new Set(
    Object.keys(fault.messages)
      .map((k) => doc.components.messages[k]!.payload.properties?.type?.const)
      .filter((t) => t !== undefined),
  );
  for (const option of zServerMessage.options) {
    const t = (option.shape as { type: { value: string } }).type.value;
    assert.ok(types.has(t), `fault stream frame ${t}`);
  }
  assert.ok(types.has('responses'), 'the client frame');
  const text = JSON.stringify(doc);
  for (const p of [...SUBPROTOCOLS, 'vevent.v1.json', 'vevent.v1.uapi']) assert.ok(text.includes(p), p);
  for (const code of Object.values(CLOSE)) assert.match(fault.description, new RegExp(`- ${code}: `), String(code));
  const binary = Object.values(doc.components.messages).filter((m) => m.contentType === 'application/octet-stream');
  assert.equal(binary.length, 3, 'fault records, responses, vEVENTQ records');
  const vevent = doc.channels.veventStream!;
  assert.ok(Object.keys(vevent.messages).some((k) => doc.components.messages[k]!.payload.properties?.type?.const === 'vevents'));
  // Every operation message is one of its channel's.
  for (const [name, op] of Object.entries(doc.operations)) {
    const channel = op.channel.$ref.split('/').pop()!;
    for (const m of op.messages) assert.ok(m.$ref.startsWith(`#/channels/${channel}/messages/`), `${name}: ${m.$ref}`);
  }
});
