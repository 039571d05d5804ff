// `npm run demo` as processes: the daemon, an x86 and an arm VMM handler and
// their traffic on 127.0.0.1 for 3 s, then one summary line per guest and
// exit 0 with nothing lost on either.
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

test('demo --duration 3: an x86 and an arm summary line, 0 lost on both, exit 0', async () => {
  const r = await promisify(execFile)(process.execPath, [demo, '--duration', '3'], { timeout: 45000 });
  const why = `stdout: ${r.stdout}\nstderr: ${r.stderr}`;
  const lines = r.stdout.split('\n');
  assert.equal(lines.length, 3, why);
  const x86 = /^demo: x86: (\d+) DMAs, (\d+) faults resolved, (\d+) invalid, 0 lost$/.exec(lines[0]!);
  assert.ok(x86, why);
  const [dmas, resolved, invalid] = x86.slice(1).map(Number) as [number, number, number];
  // Under load few DMAs may run: invalid ones need a page outside the 12 MiB served.
  assert.ok(dmas > 0 && resolved > 0 && (invalid > 0 || dmas < 200), why);
  const arm = /^demo: arm: (\d+) DMAs, (\d+) stalls served, (\d+) aborted, (\d+) events, (\d+) invalidations \((\d+) TLBI, (\d+) CFGI\), 0 lost$/.exec(
    lines[1]!,
  );
  assert.ok(arm, why);
  const [armDmas, served, , events, invalidations, tlbi, cfgi] = arm.slice(1).map(Number) as number[];
  assert.ok(armDmas! > 0 && served! > 0, why);
  // Every DMA at PASID 3 (CD.S = 0) terminates with an event: one in three.
  assert.ok(events! > 0, why);
  // A CFGI_CD per CD written (SSIDs 0-3); a TLBI once a page read first is then written.
  assert.equal(cfgi, 4, why);
  assert.equal(invalidations, tlbi! + cfgi!, why);
  assert.ok(tlbi! > 0 || armDmas! < 60, why);
  assert.equal(lines[2], '', why);
  assert.match(r.stderr, /daemon at http:\/\/127\.0\.0\.1:\d+/);
});

test('demo: killed with SIGKILL, its processes end too', async () => {
  const child = spawn(process.execPath, [demo, '--duration', '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  await waitFor(() => /arm traffic running/.test(stderr), 15000, `the demo running (${stderr})`);
  const url = /daemon at (http:\/\/\S+)/.exec(stderr)![1]!;
  const pids = [...stderr.matchAll(/\(pid (\d+)\)/g)].map((x) => Number(x[1]));
  assert.equal(pids.length, 5);
  assert.ok((await fetch(`${url}/healthz`)).ok);
  child.kill('SIGKILL');
  await waitFor(() => pids.every((p) => !alive(p)), 8000, 'the processes to end');
  await assert.rejects(fetch(`${url}/healthz`));
});
