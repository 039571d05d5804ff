// The walkthroughs of README.md (Quick start) and docs/server.md run as
// written: each shell block marked `<!-- walkthrough -->` runs with bash
// (set -euo pipefail) twice in a row against one daemon on 127.0.0.1, port 0.
// A walkthrough passes when bash exits 0 (its own checks: the device's
// response log shows the answer, the device is free after cleanup), nothing
// it started is left running, and the devices' response logs hold one
// SUCCESS for every group it sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { delimiter, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type Json } from '../server/helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const MARK = '<!-- walkthrough -->';

/**
 * walkthroughs() - the marked shell blocks of a markdown file.
 * @text: the file's text.
 *
 * Return: the body of every fenced ```sh block that directly follows MARK.
 */
function walkthroughs(text: string): string[] {
  const out: string[] = [];
  const re = /<!-- walkthrough -->\n```sh\n([\s\S]*?)\n```/g;
  for (const m of text.matchAll(re)) out.push(m[1]!);
  assert.equal(out.length, text.split(MARK).length - 1, 'every walkthrough mark is followed by a ```sh block');
  return out;
}

const DOCS = [
  { file: 'README.md', grpid: 1 },
  { file: 'docs/server.md', grpid: 7 },
] as const;

function tool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  leftover: boolean;
}

/** runBash() - run @script with bash in its own process group; kill the group if anything is left. */
function runBash(script: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('bash', ['-c', `set -euo pipefail\n${script}`], { cwd: repo, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      out += `\n[test: killed after ${timeoutMs} ms]\n`;
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const pid = child.pid!;
      const leftover = groupAlive(pid);
      if (leftover) process.kill(-pid, 'SIGKILL');
      resolvePromise({ code, signal, out, leftover });
    });
  });
}

test('docs: the walkthrough blocks are marked and take everything from the responses', () => {
  for (const { file } of DOCS) {
    const blocks = walkthroughs(readFileSync(resolve(repo, file), 'utf8'));
    assert.equal(blocks.length, 1, `${file}: one walkthrough`);
    const b = blocks[0]!;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion in the walkthrough's script, not a template
    assert.ok(b.includes('B=${IOPFD_URL:-http://127.0.0.1:8080}'), `${file}: B defaults to IOPFD_URL`);
    assert.doesNotMatch(b, /\/v1\/contexts\/\d/, `${file}: no hard-coded context id`);
    assert.doesNotMatch(b, /\bT=(?!\$)/, `${file}: the token comes from the response`);
    assert.match(b, /kill \$W/, `${file}: the background client is stopped`);
    assert.match(b, /-XDELETE \$C/, `${file}: the context is released`);
    assert.match(b, /responses\?since=/, `${file}: the response log is read with ?since=`);
  }
});

test('docs: the README and docs/server.md walkthroughs run, twice each, against one daemon', async (t) => {
  const missing = ['bash', 'curl', 'jq'].filter((n) => !tool(n));
  if (missing.length > 0) {
    t.skip(`${missing.join(', ')} not installed: the walkthroughs need bash, curl and jq`);
    return;
  }
  const srv = await startServer();
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, IOPFD_URL: srv.base, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` };
    for (const k of ['IOPFD_ADMIN_TOKEN', 'IOPFD_CTX', 'IOPFD_TOKEN']) delete env[k];
    for (const round of [1, 2]) {
      for (const { file } of DOCS) {
        const [script] = walkthroughs(readFileSync(resolve(repo, file), 'utf8'));
        const r = await runBash(script!, env, 120_000);
        assert.equal(r.code, 0, `${file}, run ${round}: bash exited ${r.code ?? r.signal}\n${r.out}`);
        assert.equal(r.leftover, false, `${file}, run ${round}: a process it started was still running\n${r.out}`);
      }
    }
    // Seen from the daemon: every device free again, and each walkthrough's
    // group answered SUCCESS once per run.
    const platform = (await srv.api.get('/v1/platform')).body as Json;
    for (const d of platform.devices) assert.equal(d.bound, false, `${d.name} is free`);
    const responses: Json[] = [];
    for (const d of platform.devices) responses.push(...((await srv.api.get(`/v1/platform/devices/${d.name}/responses`)).body as Json).responses);
    for (const { file, grpid } of DOCS) {
      const mine = responses.filter((x) => x.grpid === grpid);
      assert.deepEqual(
        mine.map((x) => x.code),
        ['success', 'success'],
        `${file}: one SUCCESS per run`,
      );
    }
  } finally {
    await srv.close();
  }
});
