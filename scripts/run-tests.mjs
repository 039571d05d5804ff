#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's built-in
// test runner. Node 20 takes file paths, Node 22+ also globs; listing the files
// ourselves works on both. Extra arguments are passed to `node --test`
// (e.g. `npm test -- --test-name-pattern=case-12`).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const sources = new URL('../test/', import.meta.url).pathname;
const files = [];
// tsc never deletes: a compiled test whose source is gone (renamed or removed
// since the last build in this checkout) is stale, and is not run.
(function walk(dir, src) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, join(src, name));
    else if (name.endsWith('.test.js')) {
      if (existsSync(join(src, name.replace(/\.js$/, '.ts')))) files.push(p);
      else console.error(`npm test: skipping ${p}: its source is gone (a stale build output)`);
    }
  }
})(root, sources);
if (files.length === 0) {
  console.error('no test files found under dist/test');
  process.exit(1);
}
// A hung test fails after two minutes instead of holding CI, and the whole
// run is bounded (a file that left a handle open would otherwise never end).
// No --test-force-exit: with it, node's runner may end a file while it still
// runs and report fewer tests, exit status 0 (seen here: a file's last 16
// tests missing from the summary; nodejs/node#54327 is the same family).
const WHOLE_RUN_MS = 20 * 60 * 1000;
const args = ['--test', '--test-reporter=spec', '--test-timeout=120000', ...process.argv.slice(2), ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', timeout: WHOLE_RUN_MS, killSignal: 'SIGKILL' });
if (r.error || r.signal) {
  console.error(`npm test: the run did not end within ${WHOLE_RUN_MS / 60000} minutes (a test file left a handle open?): ${r.error?.message ?? r.signal}`);
  process.exit(1);
}
process.exit(r.status ?? 1);
