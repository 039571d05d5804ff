#!/usr/bin/env node
// npm run bench: runs the compiled benchmark (dist/test/bench/bench.js, built
// by `npm run build` first) with --expose-gc for its heap figures. Not part
// of `npm test`. Arguments are passed on (--seconds S, --runs N, --no-docs).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bench = fileURLToPath(new URL('../dist/test/bench/bench.js', import.meta.url));
const r = spawnSync(process.execPath, ['--expose-gc', bench, ...process.argv.slice(2)], { stdio: ['ignore', 'inherit', 'inherit'] });
process.exit(r.status ?? 1);
