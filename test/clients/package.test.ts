// The package by its own name (Node's self-reference through package.json
// `exports`): `import { IopfdClient } from 'iopfd'` and 'iopfd/protocol'
// load the SDK and the protocol, their types resolve for TypeScript, and
// nothing else of dist/ is exported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import * as sdk from '../../clients/sdk/index.js';
import * as protocol from '../../protocol/index.js';
import { startDaemon } from './helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** load() - import @specifier at run time (a variable, so tsc does not resolve it at build time). */
function load(specifier: string): Promise<Record<string, unknown>> {
  return import(specifier) as Promise<Record<string, unknown>>;
}

test("import 'iopfd' is the SDK, 'iopfd/protocol' the protocol; a client by the package name talks to a daemon", async () => {
  const pkg = await load('iopfd');
  assert.equal(pkg['IopfdClient'], sdk.IopfdClient, 'the same module as dist/clients/sdk');
  assert.equal(pkg['IopfdError'], sdk.IopfdError);
  assert.equal(pkg['FaultQueue'], sdk.FaultQueue);
  const proto = await load('iopfd/protocol');
  assert.equal(proto['COMMANDS'], protocol.COMMANDS);
  const manifest = 'iopfd/package.json';
  const version = ((await import(manifest, { with: { type: 'json' } })) as { default: { version: string } }).default.version;
  assert.equal(version, JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version);
  await assert.rejects(load('iopfd/dist/server/main.js'), (e: NodeJS.ErrnoException) => e.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED');

  const d = await startDaemon();
  try {
    const Client = pkg['IopfdClient'] as typeof sdk.IopfdClient;
    const client = new Client({ url: d.url, adminToken: 'test-admin-token' });
    assert.deepEqual(await client.health(), { status: 'ok' });
    assert.ok((await client.platform()).devices.length >= 2);
  } finally {
    await d.close();
  }
});

test("TypeScript resolves the package's types: import { IopfdClient } from 'iopfd' type-checks", () => {
  // A consumer file inside the package, so the self-reference applies.
  const dir = join(repo, 'dist', 'test', 'clients', 'package-consumer');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'consumer.ts');
  writeFileSync(
    file,
    [
      "import { IopfdClient, IopfdError, type PlatformDevice } from 'iopfd';",
      "import { COMMANDS } from 'iopfd/protocol';",
      "const c = new IopfdClient({ url: 'http://127.0.0.1:1' });",
      'export const n: number = COMMANDS.length;',
      'export const p: Promise<PlatformDevice> = c.device("nic0");',
      'export const e: typeof IopfdError = IopfdError;',
      // A wrong use must be an error, or this check proves nothing.
      'export const wrong: string = c.contexts();',
    ].join('\n'),
  );
  try {
    const program = ts.createProgram([file], {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ['node'],
    });
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => `${d.start ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    // Exactly the deliberate error: the package's types were found and used.
    assert.equal(diagnostics.length, 1, diagnostics.join('\n'));
    assert.match(diagnostics[0]!, /Type 'Promise<\{ contexts: \{ ctx: number; devices: string\[\];.*' is not assignable to type 'string'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
