// The repository is clean under its formatter and linter (Biome, biome.jsonc):
// `biome check` over the whole tree, the same check as `npm run lint`, with
// warnings counted as failures. Biome runs from node_modules (a devDependency,
// a native binary): no network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const biome = join(repo, 'node_modules', '.bin', process.platform === 'win32' ? 'biome.cmd' : 'biome');

test('biome check: no error and no warning over the tree (npm run lint)', () => {
  assert.ok(existsSync(biome), `${biome} is missing: run npm install (Biome is a devDependency)`);
  const r = spawnSync(biome, ['check', '--error-on-warnings', '--colors=off', '--max-diagnostics=50', '.'], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.error, undefined, `biome did not run: ${r.error?.message}`);
  assert.equal(r.status, 0, `biome check reported problems (fix them, or run npm run format for formatting):\n${r.stdout}\n${r.stderr}`);
  // An exit status of 0 with diagnostics printed would still be infos: none are allowed either.
  assert.doesNotMatch(`${r.stdout}\n${r.stderr}`, /Found \d+ (errors?|warnings?|infos?)/, `${r.stdout}\n${r.stderr}`);
});
