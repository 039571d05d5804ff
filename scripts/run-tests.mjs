#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's built-in
// test runner. Node 20 takes file paths, Node 22+ also globs; listing the files
// ourselves works on both. Extra arguments are passed to `node --test`
// (e.g. `npm test -- --test-name-pattern=case-12`).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.test.js')) files.push(p);
  }
})(root);
if (files.length === 0) {
  console.error('no test files found under dist/test');
  process.exit(1);
}
// A hung test fails after two minutes instead of holding CI; a file that
// leaves a handle open still ends when its tests are done.
const args = ['--test', '--test-reporter=spec', '--test-timeout=120000', '--test-force-exit', ...process.argv.slice(2), ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
