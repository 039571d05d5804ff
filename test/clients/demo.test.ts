// `npm run demo` as processes: the daemon, the VMM handler and the traffic
// on 127.0.0.1 for 3 s, then one summary line and exit 0 with nothing lost.
// And the children end with the demo, even when it is killed with SIGKILL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { program, waitFor } from './helpers.js';

const demo = program('clients/demo/demo.js');

/** alive() - whether @pid is a live process (a zombie counts as dead). */
function alive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync('/proc')) {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
  try {
    return readFileSync(stat, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

test('demo --duration 3: one summary line, 0 lost, exit 0', async () => {
  const r = await promisify(execFile)(process.execPath, [demo, '--duration', '3'], { timeout: 30000 });
  const m = /^demo: (\d+) DMAs, (\d+) faults resolved, (\d+) invalid, 0 lost\n$/.exec(r.stdout);
  assert.ok(m, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const [dmas, resolved, invalid] = m.slice(1).map(Number) as [number, number, number];
  assert.ok(dmas > 0 && resolved > 0 && invalid > 0, r.stdout);
  assert.match(r.stderr, /daemon at http:\/\/127\.0\.0\.1:\d+/);
});

test('demo: killed with SIGKILL, its processes end too', async () => {
  const child = spawn(process.execPath, [demo, '--duration', '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  await waitFor(() => /traffic running/.test(stderr), 15000, `the demo running (${stderr})`);
  const url = /daemon at (http:\/\/\S+)/.exec(stderr)![1]!;
  const pids = [...stderr.matchAll(/\(pid (\d+)\)/g)].map((x) => Number(x[1]));
  assert.equal(pids.length, 3);
  assert.ok((await fetch(`${url}/healthz`)).ok);
  child.kill('SIGKILL');
  await waitFor(() => pids.every((p) => !alive(p)), 8000, 'the processes to end');
  await assert.rejects(fetch(`${url}/healthz`));
});
